"""cocotb tests for rtl/rsqrt.v and rtl/rsqrt_isqrt.v against refmodel.numerics.units.rsqrt (run
by test_rsqrt.py). The top level decides which: ``rsqrt`` (parameters V_W, K) or
``rsqrt_isqrt`` (parameter IN_W).

Environment: ``RM_RSQRT_N`` random vectors at full rate (default 10000), ``RM_STALL_N`` per stall
case (default 300), ``RM_RSQRT_EXHAUSTIVE=1`` adds a run over every input code.

Coverage: output zero (isqrt of 0) and all ones (rsqrt of 0), perfect squares (the root's carry
points), source idle, sink backpressure, DUT stalls.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from refmodel.cocotb import STALL_CASES, StreamBench, hexw, log_rate
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.units.rsqrt import IsqrtParams, RsqrtParams, exhaustive_error, isqrt, rsqrt


class TB(StreamBench):
    def __init__(self, dut):
        super().__init__(dut, source_fields=("data",), sink_fields=("data",))
        self.is_sqrt = dut._name == "rsqrt_isqrt"
        if self.is_sqrt:
            self.sp = IsqrtParams(in_w=int(dut.IN_W.value))
            self.in_w, self.out_w = self.sp.in_w, self.sp.out_w
            self.latency = self.sp.latency
            self.interval = self.sp.latency + 1
            self.unit = "isqrt"
        else:
            self.rp = RsqrtParams(v_w=int(dut.V_W.value), k=int(dut.K.value))
            self.in_w, self.out_w = self.rp.v_w, self.rp.out_w
            self.latency = self.rp.latency
            self.interval = self.rp.interval
            self.unit = "rsqrt"
        self.out_fmt = FixedFormat(self.out_w, 0, False)
        if not self.is_sqrt:
            self.sb.coverage.declare("zero", "rsqrt: 2^K / sqrt(V) >= 2^K / 2^(V_W/2) > 0 (V = 0 gives all ones)")
        top = int(self.model(np.array([(1 << self.in_w) - 1], dtype=np.int64))[0])
        if self.is_sqrt and top != (1 << self.out_w) - 1:
            self.sb.coverage.declare("max_code", f"the largest root, isqrt(2^{self.in_w} - 1) = {top}, is below "
                                                 f"the max code {(1 << self.out_w) - 1}")
        self.sb.coverage.declare("perfect_square", None if self.in_w >= 3 else f"IN_W = {self.in_w}: no square > 1")

    def model(self, v: np.ndarray) -> np.ndarray:
        return isqrt(v) if self.is_sqrt else rsqrt(v, self.rp)

    def vectors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Bit lengths uniform in 0..in_w (every magnitude), 2% zero, 2% all ones."""
        bl = rng.integers(0, self.in_w + 1, size=n)
        v = rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64) >> (63 - bl)
        v = v | np.where(bl > 0, np.int64(1) << np.maximum(bl - 1, 0), 0)  # exact bit length
        u = rng.random(n)
        v = np.where(u < 0.02, 0, np.where(u < 0.04, (1 << self.in_w) - 1, v))
        return v.astype(np.int64)

    def hard(self) -> np.ndarray:
        """0, 1, 2, 3, max, every power of two and its neighbours, perfect squares m^2 and
        m^2 - 1 around powers of two (the root's carry points)."""
        top = (1 << self.in_w) - 1
        vals = {0, 1, 2, 3, top, top - 1}
        for i in range(self.in_w):
            vals.update({(1 << i) - 1, 1 << i, (1 << i) + 1})
        for i in range((self.in_w + 1) // 2 + 1):
            for m in ((1 << i) - 1, 1 << i, (1 << i) + 1):
                vals.update({m * m - 1, m * m, m * m + 1})
        if not self.is_sqrt:
            # V where 2^(2K)/V is just above / below a perfect square: V = floor(2^(2K)/m^2) +- 1
            for m in (2, 3, 5, 1 << (self.rp.k // 2), (1 << self.rp.k) - 1):
                b = (1 << (2 * self.rp.k)) // (m * m)
                vals.update({b - 1, b, b + 1})
        return np.array(sorted(x for x in vals if 0 <= x <= top), dtype=np.int64)

    async def check(self, v: np.ndarray, what: str) -> float:
        got = await self.run([int(a) for a in v.tolist()], cycles_per_item=6 * (self.interval + 2))
        exp = self.model(v)
        desc = lambda ix: f"V={hexw(int(v[ix[0]]), self.in_w)} ({int(v[ix[0]])})"  # noqa: E731
        self.sb.exact(f"{self.unit} {what}", [g["data"] for g in got], exp, fmt=self.out_fmt, describe=desc)
        r = isqrt(v)
        self.sb.coverage.add_mask("perfect_square", (r * r == v) & (v > 1))
        return self.seconds

    async def no_extra(self, total: int) -> None:
        await self.expect_no_more(total, self.latency + 4)


@cocotb.test()
@cocotb.parametrize((("idle", "backpressure"), STALL_CASES))
async def rsqrt_random(dut, idle, backpressure):
    """Random inputs over every magnitude, bit-exact, under each stall case."""
    tb = TB(dut)
    tb.set_pauses(idle, backpressure)
    await tb.reset()
    full = idle == "none" and backpressure == "none"
    n = int(os.environ.get("RM_RSQRT_N", "10000")) if full else int(os.environ.get("RM_STALL_N", "300"))
    rng = np.random.default_rng([cocotb.RANDOM_SEED, STALL_CASES.index((idle, backpressure))])
    v = tb.vectors(n, rng)
    sec = await tb.check(v, f"random idle={idle} bp={backpressure}")
    await tb.no_extra(n)
    if full:
        tag = f"isqrt[w{tb.in_w}]" if tb.is_sqrt else f"rsqrt[v{tb.rp.v_w}_k{tb.rp.k}]"
        log_rate(dut, tag, n, sec)
    else:
        dut._log.info("checked %d vectors (idle=%s, backpressure=%s)", n, idle, backpressure)
    tb.finish()


@cocotb.test()
async def rsqrt_hard_cases(dut):
    """Directed inputs, bit-exact; for rsqrt also decoded y against float64 2^K/sqrt(V) within
    the bound from exhaustive_error (exhaustive domains) or the contract's floor (< 1 LSB)."""
    tb = TB(dut)
    await tb.reset()
    v = tb.hard()
    await tb.check(v, "hard cases")
    await tb.no_extra(len(v))
    if tb.is_sqrt:
        tb.finish()
        return
    y = np.array([g["data"] for g in tb.sink.items], dtype=np.float64)
    nz = v != 0
    exact = np.ldexp(1.0 / np.sqrt(v[nz].astype(np.float64)), tb.rp.k)
    err = exact - y[nz]
    ue = exhaustive_error(tb.rp)
    tol = ue.max_abs_err if ue.exhaustive else float(np.nextafter(1.0, 0.0))
    # float64 exact values are good to ~2^-52 relative: allow that much below zero
    slack = exact * 2.0 ** -50
    assert ((err >= -slack) & (err <= tol + slack)).all(), f"decoded error {err.min()}..{err.max()} outside [0, {tol}]"
    assert (y[~nz] == (1 << (tb.rp.k + 1)) - 1).all(), "V = 0 must give all ones"
    dut._log.info("hard cases: %d vectors, max decoded error %.6f LSB (bound %.6f, %s)", len(v), float(err.max()),
                  tol, "exhaustive" if ue.exhaustive else "contract")
    tb.finish()


@cocotb.test(skip=os.environ.get("RM_RSQRT_EXHAUSTIVE") != "1")
async def rsqrt_exhaustive(dut):
    """Every input code (only registered to run when RM_RSQRT_EXHAUSTIVE=1: small widths)."""
    tb = TB(dut)
    await tb.reset()
    v = np.arange(1 << tb.in_w, dtype=np.int64)
    sec = await tb.check(v, "exhaustive")
    await tb.no_extra(len(v))
    dut._log.info("exhaustive: %d inputs in %.2f s", len(v), sec)
    tb.finish()


@cocotb.test()
async def rsqrt_timing(dut):
    """Latency (input transfer edge to m_valid) and full-rate interval match the refmodel."""
    tb = TB(dut)
    await tb.reset()
    task = cocotb.start_soon(tb.check(np.array([5, 7, 9, 11], dtype=np.int64) & ((1 << tb.in_w) - 1), "timing"))
    fires, valid_rises = [], []
    cyc = 0
    prev_valid = 0
    while len(valid_rises) < 1 or len(fires) < 4:
        await RisingEdge(dut.clk)
        cyc += 1
        if int(dut.s_valid.value) and int(dut.s_ready.value):
            fires.append(cyc)
        await ReadOnly()
        mv = int(dut.m_valid.value)
        if mv and not prev_valid:
            valid_rises.append(cyc)
        prev_valid = mv
        assert cyc < 20 * (tb.latency + 4), "timeout"
    await task
    lat = valid_rises[0] - fires[0]
    gaps = set(np.diff(fires).tolist())
    assert lat == tb.latency, f"latency {lat}, refmodel says {tb.latency}"
    assert gaps == {tb.interval}, f"input interval {gaps}, refmodel says {tb.interval}"
    dut._log.info("latency %d cycles, interval %d cycles", lat, tb.interval)
    tb.finish()


@cocotb.test()
async def rsqrt_reset_midstream(dut):
    """Reset while both stages are busy and the output is stalled; afterwards exact again."""
    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 21)
    tb.set_pauses(None, "3of4")
    tb.source.send([int(a) for a in tb.vectors(12, rng).tolist()])
    await tb.sink.wait_for(2, timeout_cycles=40 * (tb.latency + 2))
    await ClockCycles(dut.clk, tb.interval // 2 + 1)
    tb.source.clear()
    await tb.reset()
    assert int(dut.m_valid.value) == 0 and int(dut.s_ready.value) == 1, "reset did not return to idle"
    tb.set_pauses(None, None)
    v = tb.vectors(50, rng)
    await tb.check(v, "after reset")
    await tb.no_extra(50)
    dut._log.info("after mid-stream reset: checked 50 vectors")
    tb.finish()
