"""cocotb tests for rtl/softmax_row.v against refmodel.numerics.units.softmax (run by
test_softmax.py).

Parameters are read back from the DUT. ``RM_SOFTMAX_ELEMS`` sets the number of random elements at
full rate (default 10000), ``RM_STALL_ELEMS`` per stall case (default 600).

Coverage: output zero, max code, saturation (the rounded probability above the max code, e.g. 1.0
in UQ0.8), masked elements, source idle, sink backpressure, DUT stalls.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from refmodel.cocotb import STALL_CASES, StreamBench, hexw, log_rate
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.units.softmax import SoftmaxParams, reference_softmax, softmax, softmax_error_bound


def params_from_dut(dut) -> SoftmaxParams:
    g = lambda n: int(getattr(dut, n).value)  # noqa: E731
    p = SoftmaxParams(in_w=g("IN_W"), in_f=g("IN_F"), n_max=g("N_MAX"), lut_bits=g("LUT_BITS"), lut_w=g("LUT_W"),
                      guard=g("GUARD"), out_w=g("OUT_W"), out_f=g("OUT_F"), log2e_f=g("LOG2E_F"), k=g("K"))
    assert g("LOG2E") == p.exp2.log2e, f"LOG2E parameter {g('LOG2E')} != refmodel {p.exp2.log2e}"
    return p


class TB(StreamBench):
    def __init__(self, dut):
        super().__init__(dut, source_fields=("data", "mask", "last"), sink_fields=("data", "last"))
        self.p = params_from_dut(dut)
        self.out_fmt = FixedFormat(self.p.out_w, self.p.out_f, False)
        one = 1 << self.p.out_f
        sat_why = None if one > self.out_fmt.max_code else f"1.0 = {one} fits UQ{self.p.out_w - self.p.out_f}.{self.p.out_f}"
        self.sb.coverage.declare("saturation", sat_why)
        if sat_why is not None:
            self.sb.coverage.declare("max_code", f"probabilities are at most 1.0 = code {one} < max code "
                                                 f"{self.out_fmt.max_code}")
        self.sb.coverage.declare("masked")

    def items(self, rows: list[tuple[np.ndarray, np.ndarray]]) -> list[dict]:
        out = []
        for x, m in rows:
            n = len(x)
            for i in range(n):
                out.append({"data": int(x[i]) & ((1 << self.p.in_w) - 1), "mask": int(m[i]), "last": int(i == n - 1)})
        return out

    async def check(self, rows: list[tuple[np.ndarray, np.ndarray]], what: str, float_check: bool = True) -> tuple[int, float]:
        """Stream rows, check every output bit-exactly (data and last), then decoded values against
        float64 softmax within softmax_error_bound(n unmasked). Returns (elements, seconds)."""
        p = self.p
        items = self.items(rows)
        got = await self.run(items, cycles_per_item=8 + (p.k + 10) // 1)
        exp_y, exp_last, meta, ref, tol = [], [], [], [], []
        sh = np.int64(p.k - p.out_f)
        for r, (x, m) in enumerate(rows):
            y, e, _, rr = softmax(x, p, masked=m, return_parts=True)
            raw = (e * rr + (np.int64(1) << (sh - 1))) >> sh
            self.sb.coverage.add_mask("saturation", raw > self.out_fmt.max_code)
            self.sb.coverage.add_mask("masked", m)
            exp_y.extend(y.tolist())
            exp_last.extend([int(i == len(x) - 1) for i in range(len(x))])
            meta.extend((r, i, int(x[i]), int(m[i]), len(x)) for i in range(len(x)))
            ref.extend(reference_softmax(x, p, masked=m).tolist())
            tol.extend([softmax_error_bound(p, max(1, int((~m).sum())))] * len(x))

        def desc(ix: tuple[int, ...]) -> str:
            r, i, xv, mv, n = meta[ix[0]]
            return (f"row {r} (N={n}) elem {i}: x={hexw(xv, p.in_w)} ({xv / 2 ** p.in_f:+.4f})"
                    f"{' masked' if mv else ''}")

        self.sb.exact(f"softmax {what} data", [g["data"] for g in got], exp_y, fmt=self.out_fmt, describe=desc)
        self.sb.exact(f"softmax {what} last", [g["last"] for g in got], exp_last, describe=desc, cover=False)
        if float_check:
            yv = np.array([g["data"] for g in got], dtype=np.float64)
            err = np.abs(yv - np.array(ref))
            bad = np.flatnonzero(err > np.array(tol))
            assert bad.size == 0, (f"softmax {what}: decoded error {err[bad[0]]:.3f} LSB above the bound "
                                   f"{tol[bad[0]]:.3f} at {desc((int(bad[0]),))}")
            self.dut._log.info("%s: max decoded error %.3f LSB (bound %.3f..%.3f)", what, float(err.max()),
                               min(tol), max(tol))
        return len(items), self.seconds

    async def no_extra(self, total: int) -> None:
        await self.expect_no_more(total, 3 * self.p.n_max + self.p.k + 10)


def random_rows(p: SoftmaxParams, n_elems: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows until ``n_elems`` elements: lengths uniform in 1..n_max (10% n_max, 5% 1), scores
    N(0, sigma^2) with sigma in {0.25, 1, 4, 16} real units, quantised and saturated; masks: 70%
    none, 15% random (p = 0.3), 15% causal-like prefix (first j unmasked)."""
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    rows = []
    total = 0
    while total < n_elems:
        u = rng.random()
        n = p.n_max if u < 0.1 else 1 if u < 0.15 else int(rng.integers(1, p.n_max + 1))
        sigma = float(rng.choice([0.25, 1.0, 4.0, 16.0]))
        x = np.clip(np.floor(rng.normal(0, sigma, n) * 2 ** p.in_f + 0.5), lo, hi).astype(np.int64)
        v = rng.random()
        if v < 0.7:
            m = np.zeros(n, dtype=bool)
        elif v < 0.85:
            m = rng.random(n) < 0.3
        else:
            m = np.arange(n) > int(rng.integers(0, n))
        rows.append((x, m))
        total += n
    return rows


def hard_rows(p: SoftmaxParams) -> list[tuple[np.ndarray, np.ndarray]]:
    """All-equal rows, one-hot (max first / last), all masked but one, fully masked, N = 1,
    N = n_max, extreme codes (exp underflow, the widest d), many tiny terms."""
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    nm = p.n_max
    z = lambda n: np.zeros(n, dtype=bool)  # noqa: E731
    rows = []
    for n in sorted({1, min(2, nm), min(3, nm), min(7, nm), nm}):
        for v in (0, hi, lo, 1, -1):
            rows.append((np.full(n, v, dtype=np.int64), z(n)))            # all equal
        if n > 1:
            oh = np.full(n, lo, dtype=np.int64)
            oh[0] = hi
            rows.append((oh, z(n)))                                      # one-hot, max first
            rows.append((oh[::-1].copy(), z(n)))                         # max last
            m = np.ones(n, dtype=bool)
            m[n // 2] = False
            rows.append((np.arange(n, dtype=np.int64) * 3 - 5, m))       # all masked but one
            rows.append((np.full(n, 7, dtype=np.int64), np.ones(n, dtype=bool)))  # fully masked
            mm = z(n)
            mm[0] = True
            big = np.full(n, 0, dtype=np.int64)
            big[0] = hi                                                  # masked element is the max
            rows.append((big, mm))
            tiny = np.full(n, -(1 << p.in_f) * 2, dtype=np.int64)        # one dominant, rest e^-2.. tiny
            tiny[-1] = 0
            rows.append((tiny, z(n)))
            for step in (1, 1 << p.in_f):                                # ramps: every q/k combination
                rows.append((np.clip(hi - step * np.arange(n, dtype=np.int64), lo, hi), z(n)))
    # d sweeping the exp underflow threshold: q = e_w - 1, e_w, e_w + 1
    ln2 = float(np.log(2.0))
    for qv in (p.e_w - 2, p.e_w - 1, p.e_w, p.e_w + 1):
        dcode = int(round(qv * ln2 * 2 ** p.in_f))
        for delta in (-2, -1, 0, 1, 2):
            dd = dcode + delta
            if 0 <= dd <= hi - lo and min(nm, 2) == 2:
                rows.append((np.array([hi, hi - dd], dtype=np.int64), z(2)))
    return rows


@cocotb.test()
@cocotb.parametrize((("idle", "backpressure"), STALL_CASES))
async def softmax_random(dut, idle, backpressure):
    """Random rows (varying N, scales and masks), bit-exact, under each stall case."""
    tb = TB(dut)
    tb.set_pauses(idle, backpressure)
    await tb.reset()
    full = idle == "none" and backpressure == "none"
    n = int(os.environ.get("RM_SOFTMAX_ELEMS", "10000")) if full else int(os.environ.get("RM_STALL_ELEMS", "600"))
    rng = np.random.default_rng([cocotb.RANDOM_SEED, STALL_CASES.index((idle, backpressure))])
    rows = random_rows(tb.p, n, rng)
    elems, sec = await tb.check(rows, f"random idle={idle} bp={backpressure}")
    await tb.no_extra(elems)
    if full:
        p = tb.p
        log_rate(dut, f"softmax[in{p.in_w}f{p.in_f}_n{p.n_max}_L{p.lut_bits}G{p.guard}_o{p.out_w}f{p.out_f}]", elems, sec)
        dut._log.info("%d rows", len(rows))
    else:
        dut._log.info("checked %d elements in %d rows (idle=%s, backpressure=%s)", elems, len(rows), idle, backpressure)
    tb.finish()


@cocotb.test()
async def softmax_hard_cases(dut):
    """Directed rows (see hard_rows), bit-exact and within the float bound."""
    tb = TB(dut)
    await tb.reset()
    rows = hard_rows(tb.p)
    elems, _ = await tb.check(rows, "hard cases")
    await tb.no_extra(elems)
    dut._log.info("hard cases: %d rows, %d elements", len(rows), elems)
    tb.finish()


@cocotb.test()
async def softmax_full_rate_timing(dut):
    """Rows of n_max back to back: cycles per row match SoftmaxParams.cycles (documented timing)."""
    tb = TB(dut)
    await tb.reset()
    p = tb.p
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 3)
    rows = [(rng.integers(-(1 << (p.in_w - 1)), 1 << (p.in_w - 1), p.n_max), np.zeros(p.n_max, dtype=bool))
            for _ in range(4)]
    t0 = cocotb.simtime.get_sim_time("ns")
    await tb.check(rows, "back to back", float_check=False)
    cycles = (cocotb.simtime.get_sim_time("ns") - t0) / 10
    per_row = cycles / len(rows)
    assert abs(per_row - p.cycles(p.n_max)) <= 1, f"{per_row:.1f} cycles per row, refmodel says {p.cycles(p.n_max)}"
    dut._log.info("%.1f cycles per row of %d (model %d)", per_row, p.n_max, p.cycles(p.n_max))
    # latency: edges from the one that takes the last input to the one after which m_valid is high
    n = max(1, p.n_max // 2)
    x = rng.integers(-(1 << (p.in_w - 1)), 1 << (p.in_w - 1), n)
    task = cocotb.start_soon(tb.check([(x, np.zeros(n, dtype=bool))], "latency row", float_check=False))
    while True:
        await RisingEdge(dut.clk)
        if int(dut.s_valid.value) and int(dut.s_ready.value) and int(dut.s_last.value):
            break
    lat = 0
    while True:
        await RisingEdge(dut.clk)
        lat += 1
        await ReadOnly()
        if int(dut.m_valid.value):
            break
        assert lat < 10 * (n + p.k), "no output"
    assert lat == p.latency(n), f"latency {lat} cycles for N={n}, refmodel says {p.latency(n)}"
    await task
    dut._log.info("latency %d cycles for N=%d (model %d)", lat, n, p.latency(n))
    tb.finish()


@cocotb.test()
async def softmax_reset_midstream(dut):
    """Reset during load, during exp/divide and during output (with a stalled sink); each time
    the next rows come out exact."""
    tb = TB(dut)
    await tb.reset()
    p = tb.p
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 11)
    for phase, wait in (("load", max(1, p.n_max // 2)), ("exp/div", p.n_max + p.k // 2 + 1), ("output", None)):
        n = p.n_max
        x = rng.integers(-(1 << (p.in_w - 1)), 1 << (p.in_w - 1), n)
        tb.set_pauses(None, "3of4" if phase == "output" else None)
        tb.source.send(tb.items([(x, np.zeros(n, dtype=bool))] * 2))
        if wait is None:
            await tb.sink.wait_for(len(tb.sink.items) + max(1, n // 2), timeout_cycles=20 * n + 4 * p.k)
        else:
            await ClockCycles(dut.clk, wait)
        tb.source.clear()
        await tb.reset()
        assert int(dut.m_valid.value) == 0 and int(dut.s_ready.value) == 1, f"reset during {phase}: not idle"
        tb.set_pauses(None, None)
        rows = random_rows(p, 3 * p.n_max, rng)
        elems, _ = await tb.check(rows, f"after reset during {phase}")
        await tb.no_extra(elems)
        dut._log.info("after reset during %s: checked %d elements in %d rows", phase, elems, len(rows))
    tb.finish()
