"""cocotb tests for rtl/requant.v against refmodel.numerics.units.requant (run by test_requant.py).

Configuration: the RTL parameters are read back from the DUT; the rounding mode comes from the
``ROUND_MODE`` parameter. ``RM_REQUANT_N`` sets the random vector count at full rate (default
10000), ``RM_STALL_N`` the count per stall case (default 1000).

Coverage: output zero / max / min codes, saturation (model flag), rounding ties (``x*M`` exactly
halfway between two outputs; unreachable with SHIFT = 0), source idle and sink backpressure.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np

from refmodel.cocotb import PAUSE_PATTERNS, STALL_CASES, StreamBench, hexw, log_rate
from refmodel.cocotb.stream import to_signed
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.rounding import Rounding
from refmodel.numerics.units.requant import ROUND_MODE_CODES, RequantParams, requant_with_flags

MODE_OF_CODE = {v: k for k, v in ROUND_MODE_CODES.items()}


def params_from_dut(dut) -> RequantParams:
    g = lambda n: int(getattr(dut, n).value)  # noqa: E731
    return RequantParams(in_w=g("IN_W"), m_w=g("M_W"), shift=g("SHIFT"), out_w=g("OUT_W"),
                         rounding=MODE_OF_CODE[g("ROUND_MODE")])


def ties(x: np.ndarray, m: np.ndarray, p: RequantParams) -> np.ndarray:
    """x*M exactly halfway between two output codes (the rounding mode decides)."""
    if p.shift == 0:
        return np.zeros(len(x), dtype=bool)
    prod = x.astype(object) * m.astype(object)
    low = np.array([int(v) & ((1 << p.shift) - 1) for v in prod], dtype=np.int64)
    return low == (1 << (p.shift - 1))


class TB(StreamBench):
    def __init__(self, dut):
        super().__init__(dut, source_fields=("data", "mult"), sink_fields=("data", "sat"))
        self.p = params_from_dut(dut)
        self.fmt = FixedFormat(self.p.out_w, 0, True)
        self.declare_reachable()

    def declare_reachable(self) -> None:
        """Which output classes this configuration can produce: the output is monotonic in x*M,
        so the extreme products decide saturation and the max/min codes; a tie needs
        |x*M| >= 2^(SHIFT-1)."""
        p, cov = self.p, self.sb.coverage
        x = np.array([-(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1], dtype=np.int64)
        y, sat = requant_with_flags(x, np.full(2, (1 << p.m_w) - 1, dtype=np.int64), p)
        span = f"x*M / 2^{p.shift} stays inside s{p.out_w}"
        cov.declare("saturation", None if sat.any() else span)
        cov.declare("max_code", None if y.max() == self.fmt.max_code else span + " below the max code")
        cov.declare("min_code", None if y.min() == self.fmt.min_code else span + " above the min code")
        top = (1 << (p.in_w - 1)) * ((1 << p.m_w) - 1)
        cov.declare("tie", "SHIFT = 0: no rounding" if p.shift == 0 else
                    None if top >= 1 << (p.shift - 1) else f"|x*M| <= {top} < 2^(SHIFT-1): no product sits halfway")

    async def check(self, x: np.ndarray, m: np.ndarray, what: str) -> None:
        """Stream (x, m), check every output bit-exactly (data and sat flag)."""
        p = self.p
        got = await self.run([{"data": int(a), "mult": int(b)} for a, b in zip(x.tolist(), m.tolist(), strict=True)])
        y, sat = requant_with_flags(x, m, p)
        desc = lambda ix: f"x={hexw(int(x[ix[0]]), p.in_w)} ({int(x[ix[0]])}) M={int(m[ix[0]])}"  # noqa: E731
        self.sb.exact(f"requant {what} data", [to_signed(it["data"], p.out_w) for it in got], y, fmt=self.fmt,
                      describe=desc)
        self.sb.exact(f"requant {what} sat", [it["sat"] for it in got], sat.astype(int), describe=desc, cover=False)
        self.sb.coverage.add_mask("saturation", sat)
        self.sb.coverage.add_mask("tie", ties(x, m, p))


def random_vectors(p: RequantParams, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x with log-uniform magnitudes (every bit length equally likely) and random sign, 5% full
    scale; M uniform over 0..2^M_W-1 with 5% at 0, 1 and max."""
    bits = rng.integers(0, p.in_w, size=n)
    mag = (rng.integers(0, 1 << 62, size=n, dtype=np.int64) >> (62 - bits)).astype(np.int64)
    x = np.where(rng.random(n) < 0.5, -mag - 1, mag)
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    pick = rng.random(n)
    x = np.where(pick < 0.025, lo, np.where(pick < 0.05, hi, x))
    x = np.clip(x, lo, hi)
    m = rng.integers(0, 1 << p.m_w, size=n, dtype=np.int64)
    pm = rng.random(n)
    m = np.where(pm < 0.02, 0, np.where(pm < 0.04, 1, np.where(pm < 0.06, (1 << p.m_w) - 1, m)))
    return x.astype(np.int64), m.astype(np.int64)


def hard_vectors(p: RequantParams) -> tuple[np.ndarray, np.ndarray]:
    """Ties of both signs with even and odd quotients, +-1 LSB around ties, extremes, zero,
    saturation boundaries."""
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    mmax = (1 << p.m_w) - 1
    xs, ms = [], []
    # exact ties with M = 1: x = k*2^S + 2^(S-1), k in a small range of both signs
    if p.shift >= 1:
        half = 1 << (p.shift - 1)
        for k in range(-6, 6):
            for delta in (-1, 0, 1):
                v = k * (1 << p.shift) + half + delta
                if lo <= v <= hi:
                    xs.append(v)
                    ms.append(1)
    # output saturation boundaries in product space (M = 1 and M = max)
    for m in sorted({1, min(2, mmax), mmax}):
        for q in ((1 << (p.out_w - 1)) - 1, 1 << (p.out_w - 1), -(1 << (p.out_w - 1)), -(1 << (p.out_w - 1)) - 1):
            for delta in (-1, 0, 1):
                prod = (q << p.shift) + delta * (1 << max(p.shift - 1, 0))
                v = prod // m
                for vv in (v, v + 1):
                    if lo <= vv <= hi:
                        xs.append(vv)
                        ms.append(m)
    for v in (0, 1, -1, 2, -2, lo, lo + 1, hi, hi - 1):
        for m in sorted({0, 1, mmax, max(mmax - 1, 0)}):
            xs.append(v)
            ms.append(m)
    return np.array(xs, dtype=np.int64), np.array(ms, dtype=np.int64)


@cocotb.test()
@cocotb.parametrize((("idle", "backpressure"), STALL_CASES))
async def requant_random(dut, idle, backpressure):
    """Random vectors, bit-exact (data and sat): RM_REQUANT_N at full rate, RM_STALL_N per stall case."""
    tb = TB(dut)
    tb.set_pauses(idle, backpressure)
    await tb.reset()
    full = idle == "none" and backpressure == "none"
    n = int(os.environ.get("RM_REQUANT_N", "10000")) if full else int(os.environ.get("RM_STALL_N", "1000"))
    rng = np.random.default_rng([cocotb.RANDOM_SEED, list(PAUSE_PATTERNS).index(idle), list(PAUSE_PATTERNS).index(backpressure)])
    x, m = random_vectors(tb.p, n, rng)
    await tb.check(x, m, f"random idle={idle} bp={backpressure}")
    await tb.expect_no_more(n, 8)
    if full:
        p = tb.p
        log_rate(dut, f"requant[i{p.in_w}m{p.m_w}s{p.shift}o{p.out_w}_{p.rounding.value}]", n, tb.seconds)
    tb.finish()


@cocotb.test()
async def requant_hard_cases(dut):
    """Ties, +-1 around ties, extremes, zero, saturation boundaries; then decoded values
    against the exact real x*M/2^SHIFT within the rounding mode's bound."""
    tb = TB(dut)
    await tb.reset()
    p = tb.p
    x, m = hard_vectors(p)
    await tb.check(x, m, "hard cases")
    got = np.array([to_signed(it["data"], p.out_w) for it in tb.sink.items], dtype=np.float64)
    exact = x.astype(np.float64) * m / 2.0 ** p.shift
    lo, hi = -(1 << (p.out_w - 1)), (1 << (p.out_w - 1)) - 1
    tol = 1.0 if p.rounding is Rounding.FLOOR else 0.5
    inside = (exact >= lo) & (exact <= hi)
    err = np.abs(got - np.clip(exact, lo, hi))
    # float64 rounding of x*M (up to 2^61) is < 2^-52 relative: far below the 0.5 LSB margin
    slack = np.abs(exact) * 2.0 ** -50
    bad = np.flatnonzero(err > np.where(inside, tol, 0.0) + slack)
    assert bad.size == 0, f"decoded error above {tol} LSB at #{bad[0]}: x={x[bad[0]]} M={m[bad[0]]} got {got[bad[0]]} exact {exact[bad[0]]}"
    dut._log.info("hard cases: %d vectors, max |err| inside range %.3f LSB (bound %.1f)", len(x),
                  float(err[inside].max()) if inside.any() else 0.0, tol)
    tb.finish()


@cocotb.test()
async def requant_reset_midstream(dut):
    """Reset while the pipeline is full and the sink stalls; afterwards results are exact."""
    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 99)
    x, m = random_vectors(tb.p, 200, rng)
    tb.set_pauses(None, "rand30")
    tb.source.send({"data": int(a), "mult": int(b)} for a, b in zip(x.tolist(), m.tolist(), strict=True))
    await tb.sink.wait_for(37, timeout_cycles=2000)
    tb.source.clear()
    await tb.reset()
    assert int(dut.m_valid.value) == 0, "m_valid not cleared by reset"
    tb.set_pauses(None, None)
    x, m = random_vectors(tb.p, 300, rng)
    await tb.check(x, m, "after reset")
    dut._log.info("after mid-stream reset: checked %d vectors", len(x))
    tb.finish()
