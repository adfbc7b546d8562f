"""cocotb bench for ``rtl/mac_dot.v`` (run by ``test_mac_dot.py`` through ``harness.run_unit``).

Parameters are read back from the DUT and turned into a :class:`MacParams`; the expected values
come from the refmodel integer model (``dot_acc_int`` / ``requantize_int``), compared bit-exactly
on both ``m_data`` and ``m_acc``. Every data test runs with and without source idle cycles and
sink backpressure; the sink fails on X/Z in any transferred output, and every test ends by
checking that no extra output appeared.

Coverage: output zero / max / min codes, output saturation (the rounded accumulator outside the
output range), rounding ties (the discarded SHIFT bits exactly half; none with SHIFT = 0),
accumulator overflow (wrapped or saturated), source idle, sink backpressure, DUT stalls.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from refmodel.cocotb import Stopwatch, StreamBench, check_no_xz, log_rate
from refmodel.cocotb.stream import to_signed
from refmodel.golden.hexfile import pack_lanes
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.rounding import round_shift
from refmodel.numerics.units.mac import MacParams, dot_acc_int, requantize_int

ROUNDING = {0: "floor", 1: "half_up", 2: "rne"}
N_RANDOM = int(os.environ.get("RM_MAC_N", "150"))  # dot products per random test
K_LONGEST = 300  # the longest directed dot product (accumulator overflow)


def params_from_dut(dut) -> MacParams:
    v = {n: int(getattr(dut, n).value) for n in
         ("A_W", "W_W", "ACC_W", "OUT_W", "SHIFT", "ROUND_MODE", "ACC_SAT", "LANES", "B_W", "BIAS_LSH")}
    return MacParams(a_w=v["A_W"], w_w=v["W_W"], acc_w=v["ACC_W"], out_w=v["OUT_W"], shift=v["SHIFT"],
                     rounding=ROUNDING[v["ROUND_MODE"]], acc_overflow="saturate" if v["ACC_SAT"] else "wrap",
                     lanes=v["LANES"], b_w=v["B_W"], bias_lsh=v["BIAS_LSH"])


class Vec:
    """One dot product: codes a (K,), w (K,), bias code."""

    __slots__ = ("a", "w", "bias")

    def __init__(self, a, w, bias: int = 0):
        self.a = np.asarray(a, dtype=np.int64).ravel()
        self.w = np.asarray(w, dtype=np.int64).ravel()
        self.bias = int(bias)
        assert self.a.shape == self.w.shape and self.a.size >= 1

    def __repr__(self) -> str:
        def short(x):
            s = x.tolist()
            return str(s) if len(s) <= 8 else f"{s[:8]}...(K={len(s)})"
        return f"a={short(self.a)} w={short(self.w)} bias={self.bias}"


class TB(StreamBench):
    def __init__(self, dut):
        super().__init__(dut, source_fields=["a", "w", "bias", "last"], sink_fields=["data", "acc"])
        self.src = self.source
        self.p = params_from_dut(dut)
        self.rng = np.random.default_rng(cocotb.RANDOM_SEED)
        self.out_fmt = FixedFormat(self.p.out_w, 0, True)
        self.sb.coverage.declare("tie", None if self.p.shift > 0 else "SHIFT = 0: no rounding")
        self.sb.coverage.declare("saturation")
        p = self.p
        worst = K_LONGEST * (1 << (p.a_w + p.w_w - 2)) + ((1 << (p.b_w - 1)) << p.bias_lsh)
        self.sb.coverage.declare("acc_overflow", None if worst >= (1 << (p.acc_w - 1)) else
                                 f"ACC_W = {p.acc_w} holds {K_LONGEST} products of the largest magnitude (the "
                                 f"bench's longest dot product) plus the bias")

    async def reset(self, cycles: int = 2, settle: int = 2, clear_sink: bool = False) -> None:
        """Reset; captured outputs are kept (the reset tests assert that none appeared)."""
        await super().reset(cycles, settle, clear_sink)
        await ReadOnly()
        for name in ("m_valid", "m_data", "m_acc", "s_ready"):
            check_no_xz(getattr(self.dut, name).value, name)
        assert int(self.dut.m_valid.value) == 0, "m_valid high after reset"
        await RisingEdge(self.dut.clk)

    # ---- stimulus --------------------------------------------------------------------------
    def beats(self, v: Vec) -> list[dict]:
        p = self.p
        nb = -(-v.a.size // p.lanes)
        a = np.zeros(nb * p.lanes, np.int64)
        w = np.zeros(nb * p.lanes, np.int64)
        a[: v.a.size], w[: v.w.size] = v.a, v.w
        aw = pack_lanes(a.reshape(nb, p.lanes), p.a_w)
        ww = pack_lanes(w.reshape(nb, p.lanes), p.w_w)
        b = v.bias & ((1 << p.b_w) - 1)
        return [{"a": aw[j], "w": ww[j], "bias": b, "last": int(j == nb - 1)} for j in range(nb)]

    def expected(self, vecs: list[Vec]) -> tuple[list[int], list[int]]:
        p = self.p
        acc = [int(dot_acc_int(v.a, v.w, p, bias=v.bias)) for v in vecs]
        data = requantize_int(np.array(acc, dtype=np.int64), p).tolist()
        return data, acc

    def codes(self, n: int, width: int) -> np.ndarray:
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        x = self.rng.integers(lo, hi + 1, n)
        ext = self.rng.random(n) < 0.2
        special = self.rng.choice(np.array([lo, hi, -hi, 0, 1, -1], dtype=np.int64), n)
        return np.where(ext, special, x)

    def random_vecs(self, n: int) -> list[Vec]:
        p = self.p
        out = []
        for _ in range(n):
            r = self.rng.random()
            k = 1 if r < 0.1 else int(self.rng.integers(2, 9)) if r < 0.4 else int(self.rng.integers(9, 65))
            bias = int(self.codes(1, p.b_w)[0]) if self.rng.random() < 0.7 else 0
            out.append(Vec(self.codes(k, p.a_w), self.codes(k, p.w_w), bias))
        return out

    def directed_vecs(self) -> list[Vec]:
        p = self.p
        amin, amax = -(1 << (p.a_w - 1)), (1 << (p.a_w - 1)) - 1
        wmin, wmax = -(1 << (p.w_w - 1)), (1 << (p.w_w - 1)) - 1
        bmin, bmax = -(1 << (p.b_w - 1)), (1 << (p.b_w - 1)) - 1
        v = [
            Vec([0], [0]), Vec([amin], [wmin]), Vec([amax], [wmax]), Vec([amin], [wmax]), Vec([amax], [wmin]),
            Vec([0], [0], bmax), Vec([0], [0], bmin), Vec([amin], [wmin], bmax), Vec([amin], [wmax], bmin),
            Vec([amax, amax], [wmax, -wmax]),  # cancels exactly
            Vec([amin] * 4 + [amax] * 4, [wmin] * 4 + [-wmax] * 4),
        ]
        # accumulator overflow: all most-negative products for as long as it takes, then back
        prod = amin * wmin
        k_sat = min(K_LONGEST, ((1 << (p.acc_w - 1)) // prod) + 3)
        v.append(Vec([amin] * k_sat, [wmin] * k_sat))
        v.append(Vec([amin] * k_sat + [amax] * 5, [wmin] * k_sat + [wmin] * 5))
        v.append(Vec([amin] * k_sat, [wmax] * k_sat, bmin))
        # requantiser ties, near ties and output-saturation boundaries, built from a*1 products
        w1 = 1 if p.w_w >= 2 else -1
        targets = []
        if p.shift >= 1:
            half = 1 << (p.shift - 1)
            for n in [0, 1, 2, 3, -1, -2, -3, 5, -6] + self.rng.integers(-(1 << 12), 1 << 12, 12).tolist():
                base = (n << p.shift) + half
                targets += [base, base - 1, base + 1]
        omax = (1 << (p.out_w - 1)) - 1
        for edge in (omax, -omax - 1):
            base = edge << p.shift
            targets += [base - 1, base, base + 1]
            if p.shift >= 1:
                targets += [base + (1 << (p.shift - 1)), base - (1 << (p.shift - 1))]
        lim = (1 << (p.acc_w - 1)) - 1
        for t in targets if amax >= 1 else []:
            if abs(t) > lim or abs(t) > 200 * amax:
                continue
            a = []
            rest = t * w1
            while rest != 0 or not a:
                step = max(min(rest, amax), amin + 1)
                a.append(step)
                rest -= step
            v.append(Vec(a, [w1] * len(a)))
        return v

    # ---- run and check ---------------------------------------------------------------------
    async def check(self, vecs: list[Vec], what: str) -> float:
        """Send ``vecs``, wait for every result, compare; returns the wall-clock seconds."""
        p = self.p
        exp_data, exp_acc = self.expected(vecs)
        items = [b for v in vecs for b in self.beats(v)]
        self.sink.clear()
        with Stopwatch() as sw:
            self.src.send(items)
            await self.sink.wait_for(len(vecs), timeout_cycles=20 * len(items) + 200)
        await ClockCycles(self.dut.clk, 8)
        got = self.sink.pop_all()
        assert len(got) == len(vecs), f"{what}: {len(got) - len(vecs)} extra outputs"
        desc = lambda ix: repr(vecs[ix[0]])  # noqa: E731
        self.sb.exact(f"{what}: m_acc", [to_signed(g["acc"], p.acc_w) for g in got], exp_acc, describe=desc,
                      fmt=FixedFormat(p.acc_w, 0, True), cover=False)
        self.sb.exact(f"{what}: m_data", [to_signed(g["data"], p.out_w) for g in got], exp_data, fmt=self.out_fmt,
                      describe=desc)
        acc = np.array(exp_acc, dtype=np.int64)
        rounded = round_shift(acc, p.shift, p.rounding)
        cov = self.sb.coverage
        cov.add_mask("saturation", (rounded > self.out_fmt.max_code) | (rounded < self.out_fmt.min_code))
        if p.shift > 0:
            cov.add_mask("tie", (acc & ((1 << p.shift) - 1)) == (1 << (p.shift - 1)))
        exact = [int(np.dot(v.a.astype(object), v.w.astype(object))) + (v.bias << p.bias_lsh) for v in vecs]
        cov.add_mask("acc_overflow", [not -(1 << (p.acc_w - 1)) <= e < (1 << (p.acc_w - 1)) for e in exact])
        return sw.seconds


def _products(vecs: list[Vec]) -> int:
    return sum(v.a.size for v in vecs)


@cocotb.test()
@cocotb.parametrize(idle=["none", "rand30", "3of4"], bp=["none", "rand30"])
async def mac_random(dut, idle, bp):
    """Random dot products (K = 1..64, 20% extreme codes), bit-exact m_data and m_acc."""
    tb = TB(dut)
    await tb.reset()
    tb.set_pauses(idle, bp)
    vecs = tb.random_vecs(N_RANDOM)
    secs = await tb.check(vecs, f"random idle={idle} bp={bp}")
    n = _products(vecs)
    dut._log.info("PRODUCTS %d in %d dot products (%s)", n, len(vecs), tb.p.to_hdl())
    if idle == "none" and bp == "none":
        log_rate(dut, "mac_dot", n, secs)
    tb.finish()


@cocotb.test()
@cocotb.parametrize(bp=["none", "3of4"])
async def mac_directed(dut, bp):
    """Zero, extreme codes and bias, K=1, exact cancellation, accumulator wrap/saturation,
    requantiser ties / near ties and output saturation boundaries."""
    tb = TB(dut)
    await tb.reset()
    tb.set_pauses("none", bp)
    vecs = tb.directed_vecs()
    await tb.check(vecs, f"directed bp={bp}")
    dut._log.info("PRODUCTS %d in %d directed dot products", _products(vecs), len(vecs))
    tb.finish()


@cocotb.test()
async def mac_reset_midstream(dut):
    """Reset with a partial dot product inside and a finished result held by backpressure: both
    are dropped, and the next dot products start from a clean accumulator."""
    tb = TB(dut)
    await tb.reset()
    hold = {"on": False}

    def gate():
        while True:
            yield hold["on"]

    tb.set_pauses(None, gate())
    # (1) a partial dot product (3 of its beats accepted, no last) when reset hits
    part = Vec(tb.codes(40, tb.p.a_w), tb.codes(40, tb.p.w_w), -7)
    tb.src.send(tb.beats(part)[:3])
    await tb.src.wait_idle()
    await ClockCycles(dut.clk, 2)
    await tb.reset()
    assert not tb.sink.items, f"output from a partial dot product: {tb.sink.items}"
    await tb.check(tb.random_vecs(30), "after reset with a partial dot product")
    # (2) a finished dot product whose result is held by backpressure when reset hits
    hold["on"] = True
    await RisingEdge(dut.clk)
    tb.src.send(tb.beats(Vec(tb.codes(5, tb.p.a_w), tb.codes(5, tb.p.w_w), 3)))
    for _ in range(200):
        await RisingEdge(dut.clk)
        if int(dut.m_valid.value) == 1:
            break
    assert int(dut.m_valid.value) == 1, "result of the finished dot product never appeared"
    await ClockCycles(dut.clk, 5)
    await tb.reset()
    hold["on"] = False
    await ClockCycles(dut.clk, 3)
    assert not tb.sink.items, f"a held output survived reset: {tb.sink.items}"
    await tb.check(tb.random_vecs(30), "after reset with a held output")
    # (3) reset in the middle of a long stream of complete dot products
    tb.src.send([b for v in tb.random_vecs(30) for b in tb.beats(v)])
    await ClockCycles(dut.clk, 37)
    tb.src.clear()
    await tb.reset()
    tb.sink.clear()
    await tb.check(tb.random_vecs(20), "after a reset mid-stream")
    tb.finish()
