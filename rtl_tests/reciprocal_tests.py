"""cocotb tests for rtl/reciprocal.v (serial divider) against
refmodel.numerics.units.reciprocal (run by test_reciprocal.py).

Environment: ``RM_RECIP_K`` -- when set, the reciprocal use (dividend fixed at 2^K, NUM_W must
be K+1); otherwise the general divider with random dividends. ``RM_RECIP_N`` random vectors
at full rate (default 10000), ``RM_STALL_N`` per stall case (default 300), ``RM_RECIP_EXHAUSTIVE=1``
adds an all-pairs run (small widths only).

Coverage: quotient zero and all ones (the divide-by-zero result and the max code), remainder zero
(exact division), divide by zero, source idle, sink backpressure, DUT stalls (the serial divider
takes one division at a time).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from refmodel.cocotb import STALL_CASES, StreamBench, hexw, log_rate
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.units.reciprocal import DividerParams, ReciprocalParams, divide, exhaustive_error


class TB(StreamBench):
    def __init__(self, dut):
        super().__init__(dut, source_fields=("num", "den"), sink_fields=("quot", "rem"))
        self.p = DividerParams(num_w=int(dut.NUM_W.value), den_w=int(dut.DEN_W.value))
        k = os.environ.get("RM_RECIP_K")
        self.k = int(k) if k else None
        if self.k is not None:
            assert self.p.num_w == self.k + 1, f"reciprocal mode needs NUM_W = K+1, got {self.p.num_w} for K={self.k}"
        self.q_fmt = FixedFormat(self.p.num_w, 0, False)
        if self.k is not None and self.p.den_w <= self.k:
            self.sb.coverage.declare("zero", "reciprocal mode: 2^K / B >= 1 for every B < 2^DEN_W <= 2^K")
        self.sb.coverage.declare("exact_division")
        self.sb.coverage.declare("divide_by_zero")

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
        items = [{"num": int(x), "den": int(y)} for x, y in zip(a.tolist(), b.tolist(), strict=True)]
        got = await self.run(items, cycles_per_item=6 * (p.num_w + 2))
        q, r = divide(a, b, p)
        desc = lambda ix: f"A={hexw(int(a[ix[0]]), p.num_w)} ({int(a[ix[0]])}) B={hexw(int(b[ix[0]]), p.den_w)} ({int(b[ix[0]])})"  # noqa: E731
        self.sb.exact(f"divider {what} quotient", [g["quot"] for g in got], q, fmt=self.q_fmt, describe=desc)
        self.sb.exact(f"divider {what} remainder", [g["rem"] for g in got], r, describe=desc, cover=False)
        self.sb.coverage.add_mask("exact_division", (r == 0) & (b != 0))
        self.sb.coverage.add_mask("divide_by_zero", b == 0)
        return self.seconds

    async def no_extra(self, expected_total: int) -> None:
        await self.expect_no_more(expected_total, self.p.num_w + 4)


@cocotb.test()
@cocotb.parametrize((("idle", "backpressure"), STALL_CASES))
async def divider_random(dut, idle, backpressure):
    """Random operands, bit-exact quotient and remainder, under each stall case."""
    tb = TB(dut)
    tb.set_pauses(idle, backpressure)
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
    tb.finish()


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
    tb.finish()


@cocotb.test(skip=os.environ.get("RM_RECIP_EXHAUSTIVE") != "1")
async def divider_exhaustive(dut):
    """Every (A, B) pair (only registered to run when RM_RECIP_EXHAUSTIVE=1: small widths)."""
    tb = TB(dut)
    await tb.reset()
    p = tb.p
    a, b = np.meshgrid(np.arange(1 << p.num_w, dtype=np.int64), np.arange(1 << p.den_w, dtype=np.int64))
    sec = await tb.check(a.ravel(), b.ravel(), "exhaustive")
    dut._log.info("exhaustive: %d pairs in %.2f s", a.size, sec)
    tb.finish()


@cocotb.test()
async def divider_reset_midstream(dut):
    """Reset in the middle of a division and while a result is stalled; then exact again."""
    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 5)
    a, b = tb.vectors(20, rng)
    tb.set_pauses(None, "3of4")
    tb.source.send({"num": int(x), "den": int(y)} for x, y in zip(a.tolist(), b.tolist(), strict=True))
    await tb.sink.wait_for(3, timeout_cycles=50 * (tb.p.num_w + 2))
    await ClockCycles(dut.clk, tb.p.num_w // 2)  # mid-division
    tb.source.clear()
    await tb.reset()
    assert int(dut.m_valid.value) == 0 and int(dut.s_ready.value) == 1, "reset did not return to idle"
    tb.set_pauses(None, None)
    a, b = tb.vectors(100, rng)
    await tb.check(a, b, "after reset")
    await tb.no_extra(100)
    dut._log.info("after mid-stream reset: checked 100 vectors")
    tb.finish()
