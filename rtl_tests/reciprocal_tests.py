"""cocotb tests for rtl/reciprocal.v (serial divider) against
refmodel.numerics.units.reciprocal (run by test_reciprocal.py).

Environment: ``RM_RECIP_K`` -- when set, the reciprocal use (dividend fixed at 2^K, NUM_W must
be K+1); otherwise the general divider with random dividends. ``RM_RECIP_N`` random vectors
at full rate (default 10000), ``RM_STALL_N`` per stall case (default 300), ``RM_RECIP_EXHAUSTIVE=1``
adds an all-pairs run (small widths only).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from tb_common import (
    PAUSE_PATTERNS,
    STALL_CASES,
    StreamSink,
    StreamSource,
    compare,
    hexw,
    log_rate,
    reset,
    run_stream,
    start_clock,
)

from refmodel.numerics.units.reciprocal import DividerParams, ReciprocalParams, divide, exhaustive_error


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.p = DividerParams(num_w=int(dut.NUM_W.value), den_w=int(dut.DEN_W.value))
        k = os.environ.get("RM_RECIP_K")
        self.k = int(k) if k else None
        if self.k is not None:
            assert self.p.num_w == self.k + 1, f"reciprocal mode needs NUM_W = K+1, got {self.p.num_w} for K={self.k}"
        start_clock(dut)
        self.source = StreamSource(dut, "s", signals=("num", "den"))
        self.sink = StreamSink(dut, "m", signals=("quot", "rem"))

    async def reset(self) -> None:
        await reset(self.dut)

    def stalls(self, idle: str, bp: str) -> None:
        gi, gb = PAUSE_PATTERNS[idle], PAUSE_PATTERNS[bp]
        self.source.set_idle_generator(gi() if gi else None)
        self.sink.set_backpressure_generator(gb() if gb else None)

    def vectors(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Divisors log-uniform over bit lengths 0..DEN_W (so small quotients and huge ones
        both occur), 3% zero; dividends log-uniform too (or 2^K in reciprocal mode)."""
        p = self.p
        bl = rng.integers(0, p.den_w + 1, size=n)
        b = rng.integers(0, 1 << 62, size=n, dtype=np.int64) >> (62 - bl)
        b = np.where(rng.random(n) < 0.03, 0, b)
        if self.k is not None:
            a = np.full(n, 1 << self.k, dtype=np.int64)
        else:
            al = rng.integers(0, p.num_w + 1, size=n)
            a = rng.integers(0, 1 << 62, size=n, dtype=np.int64) >> (62 - al)
        return a.astype(np.int64), b.astype(np.int64)

    def hard(self) -> tuple[np.ndarray, np.ndarray]:
        """Divide by zero, one, max; A = 0, max, B, B+-1, k*B, k*B-1; powers of two."""
        p = self.p
        amax, bmax = (1 << p.num_w) - 1, (1 << p.den_w) - 1
        bs = sorted({0, 1, 2, 3, bmax, max(bmax - 1, 0), 1 << (p.den_w - 1), (1 << (p.den_w - 1)) - 1,
                     (1 << (p.den_w - 1)) + 1} & set(range(bmax + 1)))
        pairs = []
        for b in bs:
            if self.k is not None:
                pairs.append((1 << self.k, b))
                continue
            for a in (0, 1, amax, amax - 1, b, b - 1, b + 1, 3 * b, 3 * b - 1, 1 << (p.num_w - 1)):
                if 0 <= a <= amax:
                    pairs.append((a, b))
        a, b = np.array(pairs, dtype=np.int64).T
        return a, b

    async def check(self, a: np.ndarray, b: np.ndarray, what: str) -> float:
        p = self.p
        items = [{"num": int(x), "den": int(y)} for x, y in zip(a.tolist(), b.tolist())]
        got, sec = await run_stream(self.source, self.sink, items, cycles_per_item=6 * (p.num_w + 2))
        q, r = divide(a, b, p)
        desc = lambda i: f"A={hexw(int(a[i]), p.num_w)} ({int(a[i])}) B={hexw(int(b[i]), p.den_w)} ({int(b[i])})"  # noqa: E731
        compare([g["quot"] for g in got], q.tolist(), what=f"divider {what} quotient", describe=desc,
                show=lambda c: f"{hexw(c, p.num_w)} ({c})")
        compare([g["rem"] for g in got], r.tolist(), what=f"divider {what} remainder", describe=desc,
                show=lambda c: f"{hexw(c, p.den_w)} ({c})")
        return sec

    async def no_extra(self, expected_total: int) -> None:
        await ClockCycles(self.dut.clk, self.p.num_w + 4)
        assert len(self.sink.items) == expected_total, f"{len(self.sink.items) - expected_total} extra outputs"


@cocotb.test()
@cocotb.parametrize((("idle", "backpressure"), STALL_CASES))
async def divider_random(dut, idle, backpressure):
    """Random operands, bit-exact quotient and remainder, under each stall case."""
    tb = TB(dut)
    tb.stalls(idle, backpressure)
    await tb.reset()
    full = idle == "none" and backpressure == "none"
    n = int(os.environ.get("RM_RECIP_N", "10000")) if full else int(os.environ.get("RM_STALL_N", "300"))
    rng = np.random.default_rng([cocotb.RANDOM_SEED, STALL_CASES.index((idle, backpressure))])
    a, b = tb.vectors(n, rng)
    sec = await tb.check(a, b, f"random idle={idle} bp={backpressure}")
    await tb.no_extra(n)
    if full:
        mode = f"recip_k{tb.k}" if tb.k is not None else "div"
        log_rate(dut, f"reciprocal[{mode}_n{tb.p.num_w}_d{tb.p.den_w}]", n, sec)
    else:
        dut._log.info("checked %d vectors (idle=%s, backpressure=%s)", n, idle, backpressure)


@cocotb.test()
async def divider_hard_cases(dut):
    """Directed operands, bit-exact; then the reciprocal's decoded value against float64 2^K/D
    within the bound measured by exhaustive_error (general divider: the floor's < 1 LSB)."""
    tb = TB(dut)
    await tb.reset()
    a, b = tb.hard()
    await tb.check(a, b, "hard cases")
    await tb.no_extra(len(a))
    q = np.array([g["quot"] for g in tb.sink.items], dtype=np.int64)
    nz = b != 0
    # exact error q - A/B = -(A mod B)/B, from integers; float A/B only for the message
    err = (a[nz] - q[nz] * b[nz]).astype(np.float64) / b[nz]
    if tb.k is not None:
        ue = exhaustive_error(ReciprocalParams(k=tb.k, den_w=tb.p.den_w))
        assert ue.exhaustive, "choose DEN_W <= 20 so the bound is exhaustive"
        tol = ue.max_abs_err
    else:
        tol = float(np.nextafter(1.0, 0.0))  # floor: error in [0, 1)
    assert (err >= 0).all() and (err <= tol).all(), f"decoded error {err.max()} LSB above bound {tol}"
    assert (q[~nz] == (1 << tb.p.num_w) - 1).all(), "divide by zero must give all ones"
    dut._log.info("hard cases: %d vectors, max decoded error %.6f LSB (bound %.6f)", len(a), float(err.max()), tol)


@cocotb.test(skip=os.environ.get("RM_RECIP_EXHAUSTIVE") != "1")
async def divider_exhaustive(dut):
    """Every (A, B) pair (only registered to run when RM_RECIP_EXHAUSTIVE=1: small widths)."""
    tb = TB(dut)
    await tb.reset()
    p = tb.p
    a, b = np.meshgrid(np.arange(1 << p.num_w, dtype=np.int64), np.arange(1 << p.den_w, dtype=np.int64))
    sec = await tb.check(a.ravel(), b.ravel(), "exhaustive")
    dut._log.info("exhaustive: %d pairs in %.2f s", a.size, sec)


@cocotb.test()
async def divider_reset_midstream(dut):
    """Reset in the middle of a division and while a result is stalled; then exact again."""
    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 5)
    a, b = tb.vectors(20, rng)
    tb.sink.set_backpressure_generator(PAUSE_PATTERNS["3of4"]())
    tb.source.send({"num": int(x), "den": int(y)} for x, y in zip(a.tolist(), b.tolist()))
    await tb.sink.wait_for(3, timeout_cycles=50 * (tb.p.num_w + 2))
    await ClockCycles(dut.clk, tb.p.num_w // 2)  # mid-division
    tb.source.clear()
    await tb.reset()
    assert int(dut.m_valid.value) == 0 and int(dut.s_ready.value) == 1, "reset did not return to idle"
    tb.sink.clear()
    tb.sink.set_backpressure_generator(None)
    a, b = tb.vectors(100, rng)
    await tb.check(a, b, "after reset")
    await tb.no_extra(100)
    dut._log.info("after mid-stream reset: checked 100 vectors")
