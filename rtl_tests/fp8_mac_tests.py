"""cocotb benches for ``rtl/fp8_mac.v`` and its helpers (run by ``test_fp8_mac.py``).

Which tests exist depends on the simulated top level (``COCOTB_TOPLEVEL``):

* ``fp8_mac``: Python-driven streams (random dot products, directed hard cases, K beyond K_MAX,
  reset mid-stream) with source idle and sink backpressure; bit-exact ``m_data`` (fp32 code) and
  ``m_acc`` (Kulisch accumulator) against ``refmodel.numerics.units.fp8mac``; plus an independent
  check of every output against the exact (Fraction) sum of ml_dtypes-decoded operands: within
  half an fp32 ulp of the exact sum, NaN / inf by IEEE float64 semantics.
* ``fp8_mac_hex_tb``: the $readmemh fast path (stimulus file in, result file out, checked in
  Python): all 65,536 fp8 x fp8 products as K = 1 dot products, or a long random stream.
* ``fp8_acc_to_fp32``: the final normaliser + RNE alone, with accumulator formats that reach fp32
  subnormals and overflow (unreachable from fp8 inputs).

Coverage: the fp32 output classes (zero, NaN; inf from e5m2 inputs; subnormal, max finite and
overflow only through ``fp8_acc_to_fp32``'s wider accumulator formats: an fp8 dot product cannot
reach them, which the summary says), exact cancellation to zero, accumulator wrap beyond K_MAX,
source idle, sink backpressure, DUT stalls. ``RM_FP8_UNREACHABLE`` (JSON ``{bin: reason}``) names
the classes a configuration cannot produce.
"""

from __future__ import annotations

import json
import math
import os
from fractions import Fraction
from pathlib import Path

import cocotb
import ml_dtypes
import numpy as np
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, Timer

from refmodel.cocotb import Scoreboard, Stopwatch, StreamBench, check_no_xz, log_rate, reset, start_clock
from refmodel.cocotb.stream import to_signed as signed
from refmodel.golden.hexfile import pack_lanes, read_memh
from refmodel.numerics.minifloat import FloatFormat
from refmodel.numerics.units.fp8mac import Fp8MacParams, acc_to_fp32, dot_fp8, dot_fp8_acc

TOP = os.environ.get("COCOTB_TOPLEVEL", "")
FORMATS = {0: "e4m3fn", 1: "e5m2"}
DTYPES = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
N_RANDOM = int(os.environ.get("RM_FP8_N", "120"))  # dot products per random stream test
FP32 = FloatFormat.parse("fp32")
#: fp32 classes an fp8 dot product cannot produce (|x| of a product is in [2^-32, 2^32))
FROM_FP8 = {"subnormal": "an fp8 dot product never lands below 2^-126 unless it is zero",
            "max_finite": "fp8 products and their sums stay far below the fp32 max"}


def declare_unreachable(sb: Scoreboard, fmt: str | None) -> None:
    """The classes this configuration cannot produce (e4m3fn: no inf in, none out)."""
    for name, why in json.loads(os.environ.get("RM_FP8_UNREACHABLE", "{}")).items():
        sb.coverage.declare(name, why)
    if fmt is not None:
        for name, why in FROM_FP8.items():
            sb.coverage.declare(name, why)
        if fmt == "e4m3fn":
            sb.coverage.declare("inf", "e4m3fn has no inf and its sums cannot overflow fp32")


# ---- independent reference: ml_dtypes decode, exact Fraction sum, IEEE float64 specials --------


def fp32_value(code: int) -> float:
    return float(np.array([code], dtype=np.uint32).view(np.float32)[0])


def half_ulp_fp32(x: Fraction) -> Fraction:
    """Half an fp32 ulp in the binade of the exact value x != 0 (subnormal spacing below 2**-126)."""
    ax = abs(x)
    e = ax.numerator.bit_length() - ax.denominator.bit_length()
    if Fraction(2) ** e > ax:
        e -= 1
    return Fraction(2) ** (max(e, -126) - 23) / 2


def independent_check(fmt: str, a: np.ndarray, b: np.ndarray, got: int) -> str | None:
    """None if ``got`` (fp32 code) is an acceptable single rounding of sum(a*b); else a reason."""
    va = a.astype(np.uint8).view(DTYPES[fmt]).astype(np.float64)
    vb = b.astype(np.uint8).view(DTYPES[fmt]).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        f64 = float(np.sum(va * vb))  # IEEE specials: NaN in, inf*0, inf-inf -> NaN
    g = fp32_value(got)
    if math.isnan(f64):
        return None if got == 0x7FC00000 else f"expected canonical NaN, got {g!r}"
    if math.isinf(f64):
        return None if g == f64 else f"expected {f64}, got {g!r}"
    exact = sum((Fraction(x) * Fraction(y) for x, y in zip(va.tolist(), vb.tolist(), strict=True)), Fraction(0))
    if exact == 0:
        return None if got == 0 else f"exact zero sum must give +0, got {hex(got)}"
    if not math.isfinite(g):
        return f"finite exact sum {float(exact)!r} gave {g!r}"
    err = abs(Fraction(g) - exact)
    tol = half_ulp_fp32(exact)
    return None if err <= tol else f"|{g!r} - exact {float(exact)!r}| = {float(err):.3e} > half ulp {float(tol):.3e}"


# ---- stimulus helpers ---------------------------------------------------------------------------


def pow2_code(fmt: str, k: int) -> int:
    """fp8 code of +2**k (normal or subnormal)."""
    f = Fp8MacParams(fmt).fmt
    emin = 1 - f.bias
    if k >= emin:
        assert k <= f.emax, (fmt, k)
        return (k + f.bias) << f.man
    assert k >= emin - f.man, (fmt, k)
    return 1 << (k - (emin - f.man))


def max_unit_bit(fmt: str) -> int:
    """Largest j such that 2**j accumulator units is a product of two fp8 powers of two."""
    p = Fp8MacParams(fmt)
    return 2 * p.fmt.emax + p.acc_frac


def unit_pair(fmt: str, j: int) -> tuple[int, int]:
    """Two fp8 codes whose product is 2**j accumulator units (2**(j - ACC_FRAC)), 0 <= j <= max_unit_bit."""
    p = Fp8MacParams(fmt)
    f = p.fmt
    kmin, kmax = 1 - f.bias - f.man, f.emax
    t = j - p.acc_frac
    k1 = max(kmin, min(kmax, t // 2))
    k2 = t - k1
    return pow2_code(fmt, k1), pow2_code(fmt, k2)


def finite_codes(fmt: str) -> np.ndarray:
    c = np.arange(256)
    v = c.astype(np.uint8).view(DTYPES[fmt]).astype(np.float64)
    return c[np.isfinite(v)]


class Vec:
    """One dot product: fp8 codes a (K,), b (K,)."""

    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a = np.asarray(a, dtype=np.int64).ravel()
        self.b = np.asarray(b, dtype=np.int64).ravel()
        assert self.a.shape == self.b.shape and self.a.size >= 1

    def __repr__(self) -> str:
        pairs = [f"{x:02x}*{y:02x}" for x, y in zip(self.a.tolist(), self.b.tolist(), strict=True)]
        s = " ".join(pairs[:10]) + (f" ... (K={len(pairs)})" if len(pairs) > 10 else "")
        return f"[{s}]"


class TB(StreamBench):
    def __init__(self, dut):
        super().__init__(dut, source_fields=["a", "b", "last"], sink_fields=["data", "acc"])
        self.src = self.source
        self.fmt = FORMATS[int(dut.FORMAT.value)]
        self.p = Fp8MacParams(self.fmt, k_max=int(dut.K_MAX.value), lanes=int(dut.LANES.value))
        assert int(dut.ACC_W.value) == self.p.acc_w, (int(dut.ACC_W.value), self.p.acc_w)
        self.rng = np.random.default_rng(cocotb.RANDOM_SEED + int(dut.FORMAT.value))
        self.finite = finite_codes(self.fmt)
        self.specials = np.setdiff1d(np.arange(256), self.finite)
        declare_unreachable(self.sb, self.fmt)
        self.sb.coverage.declare("cancellation_to_zero")

    async def reset(self, cycles: int = 2, settle: int = 2, clear_sink: bool = False) -> None:
        """Reset; captured outputs are kept (the reset tests assert that none appeared)."""
        await super().reset(cycles, settle, clear_sink)
        await ReadOnly()
        for name in ("m_valid", "m_data", "m_acc", "s_ready"):
            check_no_xz(getattr(self.dut, name).value, name)
        assert int(self.dut.m_valid.value) == 0, "m_valid high after reset"
        await RisingEdge(self.dut.clk)

    def beats(self, v: Vec) -> list[dict]:
        lanes = self.p.lanes
        nb = -(-v.a.size // lanes)
        a = np.zeros(nb * lanes, np.int64)
        b = np.zeros(nb * lanes, np.int64)
        a[: v.a.size], b[: v.b.size] = v.a, v.b
        aw, bw = pack_lanes(a.reshape(nb, lanes), 8), pack_lanes(b.reshape(nb, lanes), 8)
        return [{"a": aw[j], "b": bw[j], "last": int(j == nb - 1)} for j in range(nb)]

    # ---- vector sets -------------------------------------------------------------------------
    def random_vec(self, k: int) -> Vec:
        r = self.rng.random()
        if r < 0.5:  # any finite code
            a, b = self.rng.choice(self.finite, k), self.rng.choice(self.finite, k)
        else:  # a narrow band of magnitudes with random signs: long carries, cancellation, ties
            lo = int(self.rng.integers(0, 0x70))
            band = np.arange(lo, lo + int(self.rng.integers(2, 17)))
            band = np.intersect1d(band, self.finite)
            a = self.rng.choice(band, k) | (self.rng.integers(0, 2, k) << 7)
            b = self.rng.choice(band, k) | (self.rng.integers(0, 2, k) << 7)
            a = np.where(np.isin(a, self.finite), a, band[0])
            b = np.where(np.isin(b, self.finite), b, band[0])
        if self.rng.random() < 0.08:  # sprinkle one special code
            i = int(self.rng.integers(0, k))
            (a if self.rng.random() < 0.5 else b)[i] = self.rng.choice(self.specials)
        return Vec(a, b)

    def random_vecs(self, n: int) -> list[Vec]:
        out = []
        for _ in range(n):
            r = self.rng.random()
            k = 1 if r < 0.1 else int(self.rng.integers(2, 9)) if r < 0.4 else int(self.rng.integers(9, 65))
            out.append(self.random_vec(min(k, self.p.k_max)))
        return out

    def tie_vecs(self, n: int) -> list[Vec]:
        """Exact sums with more than 24 significant bits, built from power-of-two products: exact
        ties of the final RNE (both parities), one unit above / below a tie, and the same pattern
        with a large cancelling pair around it."""
        fmt = self.fmt
        out = []
        for i in range(n):
            m = int(self.rng.integers(24, max_unit_bit(fmt) + 1))
            bits = [m] + [j for j in range(m - 23, m) if self.rng.random() < 0.5] + [m - 24]
            kind = i % 4
            if kind == 1 and m - 25 >= 0:  # just above the tie
                bits.append(int(self.rng.integers(0, m - 24)))
            elif kind == 2:  # just below the tie: drop the round bit, set everything else below
                bits = bits[:-1] + list(range(max(0, m - 30), m - 24))
            pairs = [unit_pair(fmt, j) for j in sorted(set(bits))]
            neg = self.rng.random() < 0.5
            a = [x | (0x80 if neg else 0) for x, _ in pairs]
            b = [y for _, y in pairs]
            if kind == 3:  # huge + pattern - huge: catastrophic cancellation around the pattern
                big = unit_pair(fmt, max_unit_bit(fmt))
                a = [big[0]] + a + [big[0] | 0x80]
                b = [big[1]] + b + [big[1]]
            order = self.rng.permutation(len(a))
            out.append(Vec(np.array(a)[order], np.array(b)[order]))
        return out

    def directed_vecs(self) -> list[Vec]:
        fmt, f = self.fmt, self.p.fmt
        mx = f.max_code_magnitude
        one = pow2_code(fmt, 0)
        v = [
            Vec([0x00], [0x00]), Vec([0x80], [0x00]), Vec([0x80], [one]), Vec([0x80, 0x80], [one, one]),
            Vec([0x01], [0x01]), Vec([0x81], [0x01]), Vec([0x01] * 7, [0x01] * 7),  # subnormal x subnormal
            Vec([mx], [mx]), Vec([mx | 0x80], [mx]), Vec([mx] * 3, [mx] * 3),  # max x max
            Vec([mx, 0x01, mx | 0x80], [mx, 0x01, mx]),  # catastrophic cancellation -> 2**-ACC_FRAC
            Vec([mx, mx | 0x80], [mx, mx]),  # exact zero from cancellation -> +0
            Vec([0x01, mx], [mx, 0x01]), Vec([mx], [0x01]),
            Vec([one] * 5 + [one | 0x80] * 5, [one] * 10),
        ]
        if fmt == "e4m3fn":
            v += [Vec([0x7F], [one]), Vec([0xFF], [one]), Vec([one], [0x7F]), Vec([0x00], [0xFF]),
                  Vec([one, 0x7F, one], [one, one, one]), Vec([mx, 0xFF], [mx, 0x00])]
        else:
            pinf, ninf = 0x7C, 0xFC
            v += [Vec([0x7D], [one]), Vec([0xFF], [one]), Vec([0x7E], [0x00]),  # NaN patterns
                  Vec([pinf], [one]), Vec([ninf], [one]), Vec([pinf], [0x80 | one]),  # inf x finite
                  Vec([pinf], [0x00]), Vec([0x80], [ninf]),  # inf x 0 -> NaN
                  Vec([pinf, ninf], [one, one]),  # inf - inf -> NaN
                  Vec([pinf, pinf], [one, one]), Vec([pinf, mx], [0x80 | one, mx]),
                  Vec([pinf], [pinf]), Vec([pinf], [ninf]), Vec([ninf], [ninf]),
                  Vec([mx, pinf, mx | 0x80], [mx, one, mx])]
        return v

    # ---- run and check -----------------------------------------------------------------------
    def expected(self, vecs: list[Vec]) -> tuple[list[int], list[int]]:
        data, acc = [], []
        for v in vecs:
            data.append(int(dot_fp8(v.a, v.b, self.p)))
            acc.append(dot_fp8_acc(v.a, v.b, self.p).to_int()[0])
        return data, acc

    async def check(self, vecs: list[Vec], what: str, *, independent: bool = True) -> float:
        p = self.p
        exp_data, exp_acc = self.expected(vecs)
        items = [bt for v in vecs for bt in self.beats(v)]
        self.sink.clear()
        with Stopwatch() as sw:
            self.src.send(items)
            await self.sink.wait_for(len(vecs), timeout_cycles=20 * len(items) + 200)
        await ClockCycles(self.dut.clk, 8)
        got = self.sink.pop_all()
        assert len(got) == len(vecs), f"{what}: {len(got) - len(vecs)} extra outputs"
        desc = lambda ix: repr(vecs[ix[0]])  # noqa: E731
        self.sb.exact(f"{what}: m_acc ({p.acc_w}-bit, units of 2**-{p.acc_frac})",
                      [signed(g["acc"], p.acc_w) for g in got], exp_acc, describe=desc, cover=False)
        self.sb.exact(f"{what}: m_data", [g["data"] for g in got], exp_data, fmt=FP32, describe=desc)
        nonzero_terms = np.array([bool(np.any(((v.a & 0x7F) != 0) & ((v.b & 0x7F) != 0))) for v in vecs])
        self.sb.coverage.add_mask("cancellation_to_zero", (np.array(exp_data) == 0) & nonzero_terms)
        if independent:
            for i, g in enumerate(got):
                why = independent_check(self.fmt, vecs[i].a, vecs[i].b, g["data"])
                assert why is None, f"{what}: #{i} {vecs[i]!r}: {why}"
        return sw.seconds


def _products(vecs: list[Vec]) -> int:
    return sum(v.a.size for v in vecs)


if TOP == "fp8_mac":

    @cocotb.test()
    @cocotb.parametrize(idle=["none", "rand30"], bp=["none", "rand30", "3of4"])
    async def fp8_random(dut, idle, bp):
        """Random fp8 dot products (K = 1..64, finite codes, narrow bands, sprinkled specials)."""
        tb = TB(dut)
        await tb.reset()
        tb.set_pauses(idle, bp)
        vecs = tb.random_vecs(N_RANDOM)
        secs = await tb.check(vecs, f"random idle={idle} bp={bp}")
        n = _products(vecs)
        dut._log.info("PRODUCTS %d in %d dot products (%s)", n, len(vecs), tb.p.to_hdl())
        if idle == "none" and bp == "none":
            log_rate(dut, f"fp8_mac_{tb.fmt}", n, secs)
        tb.finish()

    @cocotb.test()
    @cocotb.parametrize(bp=["none", "3of4"])
    async def fp8_directed(dut, bp):
        """Zeros and -0, subnormal x subnormal, max x max, cancellation, NaN/inf patterns, K=1,
        final-RNE ties / near ties built from power-of-two products."""
        tb = TB(dut)
        await tb.reset()
        tb.set_pauses("none", bp)
        vecs = tb.directed_vecs() + tb.tie_vecs(60)
        await tb.check(vecs, f"directed bp={bp}")
        dut._log.info("PRODUCTS %d in %d directed dot products", _products(vecs), len(vecs))
        tb.finish()

    @cocotb.test()
    async def fp8_beyond_k_max(dut):
        """Dot products longer than K_MAX (max x max repeated): the accumulator wraps mod
        2**ACC_W exactly as the model says (the independent check does not apply)."""
        tb = TB(dut)
        await tb.reset()
        mx = tb.p.fmt.max_code_magnitude
        k = tb.p.k_max
        vecs = [Vec([mx] * n, [mx] * n) for n in (k, k + 1, 2 * k + 3)]
        vecs += [Vec([mx | 0x80] * n, [mx] * n) for n in (k, k + 1, 2 * k + 3)]
        if k <= 64:
            await tb.check(vecs, "beyond K_MAX", independent=False)
        else:  # only the exact-at-K_MAX cases are affordable; still a check
            await tb.check(vecs[:1], "at K_MAX")
        tb.finish()

    @cocotb.test()
    async def fp8_reset_midstream(dut):
        """Reset with a partial dot product inside, then with a result held by backpressure."""
        tb = TB(dut)
        await tb.reset()
        hold = {"on": False}

        def gate():
            while True:
                yield hold["on"]

        tb.set_pauses(None, gate())
        tb.src.send(tb.beats(tb.random_vec(40))[:3])
        await tb.src.wait_idle()
        await ClockCycles(dut.clk, 2)
        await tb.reset()
        assert not tb.sink.items, f"output from a partial dot product: {tb.sink.items}"
        await tb.check(tb.random_vecs(20), "after reset with a partial dot product")
        hold["on"] = True
        await RisingEdge(dut.clk)
        tb.src.send(tb.beats(tb.random_vec(4)))
        for _ in range(200):
            await RisingEdge(dut.clk)
            if int(dut.m_valid.value) == 1:
                break
        assert int(dut.m_valid.value) == 1, "result of the finished dot product never appeared"
        await ClockCycles(dut.clk, 4)
        await tb.reset()
        hold["on"] = False
        await ClockCycles(dut.clk, 3)
        assert not tb.sink.items, f"a held output survived reset: {tb.sink.items}"
        await tb.check(tb.random_vecs(20), "after reset with a held output")
        tb.src.send([bt for v in tb.random_vecs(20) for bt in tb.beats(v)])
        await ClockCycles(dut.clk, 29)
        tb.src.clear()
        await tb.reset()
        tb.sink.clear()
        await tb.check(tb.random_vecs(10), "after a reset mid-stream")
        tb.finish()


if TOP == "fp8_mac_hex_tb":

    @cocotb.test()
    async def fp8_hex_stream(dut):
        """Stimulus from $readmemh, results dumped with $writememh and checked here: bit-exact vs
        the model (m_data and m_acc); K=1 sets also vs float64 (a product is exact in float64,
        so numpy's float32 cast is the correctly rounded reference) with the half-ulp bound."""
        fmt = FORMATS[int(dut.FORMAT.value)]
        p = Fp8MacParams(fmt, k_max=int(dut.K_MAX.value))
        stim = read_memh(os.environ["RM_FP8_STIM"], 17)
        nout = int(dut.NOUT.value)
        last = (stim >> 16) & 1
        a, b = (stim >> 8) & 0xFF, stim & 0xFF
        ends = np.flatnonzero(last) + 1
        starts = np.concatenate([[0], ends[:-1]])
        assert len(ends) == nout and ends[-1] == len(stim), "stimulus must end with last and hold NOUT dot products"
        start_clock(dut)
        dut.start.value = 0
        dut.dump.value = 0
        await reset(dut)
        assert int(dut.loaded.value) == 1, "$readmemh did not run"
        with Stopwatch() as sw:
            dut.start.value = 1
            res = await First(RisingEdge(dut.done), Timer(40 * len(stim) + 1000, unit="ns"))
            assert res is not None and int(dut.done.value) == 1, f"timeout: {int(dut.count.value)} of {nout} results"
        await ClockCycles(dut.clk, 20)
        assert int(dut.count.value) == nout, f"extra outputs: {int(dut.count.value)} > {nout}"
        dut.dump.value = 1
        await ClockCycles(dut.clk, 2)
        out = Path(os.environ["RM_FP8_RESULT"])
        words = read_memh(out, p.acc_w + 32, count=nout)  # raises on X/Z ('x' is not hex)
        got_data = [int(w) & 0xFFFFFFFF for w in words]
        got_acc = [signed(int(w) >> 32, p.acc_w) for w in words]
        # expected: vectorised when every dot product has the same length, else per vector
        lens = ends - starts
        if np.all(lens == lens[0]):
            k = int(lens[0])
            exp_data = dot_fp8(a.reshape(-1, k), b.reshape(-1, k), p).astype(np.int64).tolist()
            exp_acc = dot_fp8_acc(a.reshape(-1, k), b.reshape(-1, k), p).to_int()
        else:
            exp_data = [int(dot_fp8(a[s:e], b[s:e], p)) for s, e in zip(starts, ends, strict=True)]
            exp_acc = [dot_fp8_acc(a[s:e], b[s:e], p).to_int()[0] for s, e in zip(starts, ends, strict=True)]
        def desc(ix: tuple[int, ...]) -> str:
            i = ix[0]
            return " ".join(f"{x:02x}*{y:02x}" for x, y in zip(a[starts[i]:ends[i]], b[starts[i]:ends[i]], strict=True))

        sb = Scoreboard(dut._name, log=dut._log)
        declare_unreachable(sb, fmt)
        sb.exact(f"{fmt} hex: m_acc", got_acc, exp_acc, describe=desc, cover=False)
        sb.exact(f"{fmt} hex: m_data", got_data, exp_data, fmt=FP32, describe=desc)
        if np.all(lens == 1):
            dt = DTYPES[fmt]
            va = a.astype(np.uint8).view(dt).astype(np.float64)
            vb = b.astype(np.uint8).view(dt).astype(np.float64)
            with np.errstate(invalid="ignore"):
                prod = va * vb  # exact
            g = np.array(got_data, dtype=np.uint32).view(np.float32).astype(np.float64)
            nan = np.isnan(prod)
            assert np.all(np.array(got_data)[nan] == 0x7FC00000), "NaN products must give 0x7fc00000"
            fin = np.isfinite(prod)
            assert np.all(g[~nan & ~fin] == prod[~nan & ~fin]), "inf products must give inf"
            ref = prod[fin].astype(np.float32).astype(np.float64)  # single correct rounding
            ref = np.where(ref == 0, 0.0, ref)  # the unit returns +0 for an exact zero
            bad = np.flatnonzero((g[fin] != ref) | (np.signbit(g[fin]) != np.signbit(ref)))
            assert bad.size == 0, f"{bad.size} products differ from float64->float32, first {np.flatnonzero(fin)[bad[0]]}"
            e = np.frexp(np.where(prod[fin] == 0, 1.0, prod[fin]))[1] - 1  # floor(log2|x|), exact
            tol = np.ldexp(1.0, np.maximum(e, -126) - 24)  # half an fp32 ulp, computed per value
            assert np.all(np.abs(g[fin] - prod[fin]) <= tol), "error above half an fp32 ulp"
            dut._log.info("%d products also match float64 -> float32 and the half-ulp bound", len(prod))
        cycles = int(dut.cycles.value)
        dut._log.info("PRODUCTS %d in %d dot products, %d cycles (STALL=%d)", len(stim), nout, cycles,
                      int(dut.STALL.value))
        log_rate(dut, f"fp8_mac_hex_{fmt}", len(stim), sw.seconds)
        sb.record_coverage()
        dut._log.info(sb.report())


if TOP == "fp8_acc_to_fp32":

    @cocotb.test()
    async def fp8_round_alone(dut):
        """The normaliser + RNE on its own: random accumulators of every bit length, exact ties
        and near ties, extremes, flags; bit-exact vs acc_to_fp32; plus half-ulp vs Fraction."""
        acc_w, frac = int(dut.ACC_W.value), signed(int(dut.ACC_FRAC.value), 32)  # integer parameter
        rng = np.random.default_rng(cocotb.RANDOM_SEED)
        vals: list[int] = [0, 1, -1, (1 << (acc_w - 1)) - 1, -(1 << (acc_w - 1)), 1 << 24, (1 << 25) - 1]
        if 0 <= 104 + frac and (1 << 24) << (104 + frac) <= (1 << (acc_w - 1)):  # exactly the fp32 max, +-
            fmax = ((1 << 24) - 1) << (104 + frac)
            vals += [fmax, -fmax]
        for _ in range(1500):
            m = int(rng.integers(0, acc_w - 1))
            v = (1 << m) | int(rng.integers(0, 1 << 62)) % (1 << m) if m else 1
            vals.append(v if rng.random() < 0.5 else -v)
        for _ in range(600):  # ties and near ties of the kept significand (24 bits or subnormal grid)
            m = int(rng.integers(0, acc_w - 1))
            lsb = max(m - 23, frac - 149)  # accumulator bit holding the fp32 result LSB
            if lsb < 1 or lsb - 1 > m:
                continue
            v = (1 << m) | (1 << (lsb - 1))
            for j in range(lsb, m):
                v |= int(rng.integers(0, 2)) << j
            v += int(rng.choice([-1, 0, 0, 1]))
            vals.append(v if rng.random() < 0.5 else -v)
        flags = [(0, 0, 0)] * len(vals)
        extra = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (1, 1, 1)]
        vals += [12345] * len(extra)
        flags += extra
        got = []
        for v, (fn, fp, fm) in zip(vals, flags, strict=True):
            dut.acc.value = v & ((1 << acc_w) - 1)
            dut.nan.value, dut.pinf.value, dut.ninf.value = fn, fp, fm
            await Timer(1, unit="ns")
            got.append(check_no_xz(dut.fp32.value, "fp32"))
        arr = np.array(vals, dtype=object)
        hi = np.array([v >> 32 for v in vals], dtype=np.int64)
        lo = np.array([v & 0xFFFFFFFF for v in vals], dtype=np.int64)
        fl = np.array(flags, dtype=bool)
        exp = acc_to_fp32(hi, lo, frac, fl[:, 0], fl[:, 1], fl[:, 2]).astype(np.int64).tolist()
        sb = Scoreboard(dut._name, log=dut._log)
        declare_unreachable(sb, None)
        sb.exact(f"acc_to_fp32 ACC_W={acc_w} ACC_FRAC={frac}", got, exp, fmt=FP32,
                 describe=lambda ix: f"acc={arr[ix[0]]} flags={flags[ix[0]]}")
        n_sub = n_inf = 0
        for v, g, f in zip(vals, got, flags, strict=True):
            if any(f) or v == 0:
                continue
            x = Fraction(v) / Fraction(2) ** frac if frac >= 0 else Fraction(v) * Fraction(2) ** (-frac)
            gv = fp32_value(g)
            if abs(x) >= Fraction(2) ** 128 - Fraction(2) ** 103:  # rounds to >= 2**128: overflow
                assert math.isinf(gv) and (gv > 0) == (x > 0), f"acc={v}: expected inf, got {gv!r}"
                n_inf += 1
                continue
            n_sub += abs(x) < Fraction(2) ** -126
            assert abs(Fraction(gv) - x) <= half_ulp_fp32(x), f"acc={v}: {gv!r} vs exact {float(x)!r}"
        dut._log.info("VECTORS %d accumulators checked (%d fp32-subnormal, %d overflow)", len(vals), n_sub, n_inf)
        sb.record_coverage()
        dut._log.info(sb.report())
