"""cocotb tests for rtl/act_table.v (run by test_act_table.py through harness.run_unit).

Configuration (environment, set by the runner): RM_ACT_KIND (gelu_tanh | gelu_erf | silu),
RM_ACT_IN / RM_ACT_OUT (fixed-point specs), RM_ACT_RANDOM (random beats per stall test),
RM_ACT_EXPECT_X=1 (negative test: some table words are X, the bench must see X on the output).
Widths (IN_W, OUT_W, LANES) are read back from the DUT and must match the specs.

Model: refmodel.numerics.units.activation.act_lookup on act_table(kind, in, out), exact; the
decoded outputs are also checked against float64 f within the exhaustive table error bound.

Coverage: output zero / max / min codes, saturation (f(x) outside the output range), source idle,
sink backpressure, DUT stalls.
"""

from __future__ import annotations

import os
import zlib

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from refmodel.cocotb import Stopwatch, StreamBench, hexw, log_rate
from refmodel.cocotb.stream import to_signed
from refmodel.numerics.fixed import FixedFormat, decode
from refmodel.numerics.units.activation import ActParams, act_lookup, act_ref, act_table, table_error


def _params(dut) -> ActParams:
    p = ActParams(
        os.environ.get("RM_ACT_KIND", "gelu_tanh"),
        FixedFormat.parse(os.environ.get("RM_ACT_IN", "s16.12")),
        FixedFormat.parse(os.environ.get("RM_ACT_OUT", "s16.12")),
        int(dut.LANES.value),
    )
    hdl = {k: int(getattr(dut, k).value) for k in ("IN_W", "OUT_W", "LANES")}
    assert hdl == p.to_hdl(), f"HDL parameters {hdl} != model parameters {p.to_hdl()}"
    return p


class TB(StreamBench):
    """Clock, reset, source on s_*, sink on m_*, scoreboard, and the model."""

    def __init__(self, dut):
        super().__init__(dut)
        self.p = _params(dut)
        self.table = act_table(self.p.kind, self.p.in_fmt, self.p.out_fmt)
        f = self.p.out_fmt
        # which output classes the table can produce at all (a table entry holding the code)
        for cls, code in (("zero", 0), ("max_code", f.max_code), ("min_code", f.min_code)):
            if not np.any(self.table == code):
                self.sb.coverage.declare(cls, f"no entry of the {self.p.kind} table is code {code}")
        exact = np.ldexp(act_ref(self.p.kind, decode(np.arange(self.p.in_fmt.min_code, self.p.in_fmt.max_code + 1),
                                                     self.p.in_fmt)), f.frac)
        clamps = (exact >= f.max_code + 0.5) | (exact < f.min_code - 0.5)
        self.sb.coverage.declare("saturation", None if clamps.any() else f"f(x) stays inside {f} for every input")

    # -- packing ---------------------------------------------------------------------------
    def beats(self, codes: np.ndarray, last_every: int = 0) -> list[dict]:
        """Pack input codes (length a multiple of LANES) into beats, lane 0 in the low bits."""
        L, w = self.p.lanes, self.p.in_fmt.width
        mask = (1 << w) - 1
        rows = np.asarray(codes, dtype=np.int64).reshape(-1, L)
        out = []
        for j, row in enumerate(rows.tolist()):
            word = 0
            for i, v in enumerate(row):
                word |= (int(v) & mask) << (i * w)
            last = int(last_every > 0 and (j + 1) % last_every == 0)
            out.append({"data": word, "last": last})
        return out

    def unpack(self, items: list[dict]) -> list[int]:
        """Output beats -> signed output codes, lane order."""
        L, w = self.p.lanes, self.p.out_fmt.width
        mask = (1 << w) - 1
        codes = []
        for it in items:
            for i in range(L):
                u = (it["data"] >> (i * w)) & mask
                codes.append(to_signed(u, w) if self.p.out_fmt.signed else u)
        return codes

    def show_out(self, c: int) -> str:
        f = self.p.out_fmt
        return f"{hexw(c, f.width)} ({float(decode(np.int64(c), f)):+.6g})"

    def describe_in(self, codes: np.ndarray):
        f = self.p.in_fmt

        def d(ix: tuple[int, ...]) -> str:
            c = int(codes[ix[0]])
            return f"x[{ix[0]}]={hexw(c, f.width)} ({float(decode(np.int64(c), f)):+.6g})"

        return d

    # -- checking --------------------------------------------------------------------------
    async def check(self, codes: np.ndarray, last_every: int = 0, what: str = "act_table") -> list[int]:
        """Send ``codes``, collect every output, compare bit-exactly with the model (and tlast)."""
        beats = self.beats(codes, last_every)
        n0 = len(self.sink.items)
        items = await self.run(beats)
        got = self.unpack(items)
        exp = act_lookup(codes, self.table, self.p)
        self.sb.exact(what, got, exp, fmt=self.p.out_fmt, describe=self.describe_in(codes))
        self.sb.exact(f"{what} m_last", [it["last"] for it in items], [b["last"] for b in beats], cover=False)
        await self.expect_no_more(n0 + len(beats), 4)
        return got

    def check_float(self, codes: np.ndarray, got: list[int]) -> None:
        """Decoded output vs float64 f: within the exhaustive table error bound (not a
        hard-coded number) where not clamped, and equal to the clamp code where clamped."""
        p = self.p
        err = table_error(p.kind, p.in_fmt, p.out_fmt, self.table)
        x = decode(codes, p.in_fmt)
        exact = np.ldexp(act_ref(p.kind, x), p.out_fmt.frac)
        g = np.asarray(got, dtype=np.float64)
        hi = exact >= p.out_fmt.max_code + 0.5
        lo = exact < p.out_fmt.min_code - 0.5
        inside = ~(hi | lo)
        dev = np.abs(g - exact)
        assert err.max_abs_err <= 0.5 + 1e-9, f"table error {err.max_abs_err} LSB above the 0.5 LSB contract"
        bad = inside & (dev > err.max_abs_err)
        assert not bad.any(), (
            f"decoded output off float64 by {dev[bad].max():.4f} LSB > bound {err.max_abs_err:.4f} at "
            f"x code {int(codes[np.argmax(bad)])}"
        )
        assert np.all(g[hi] == p.out_fmt.max_code) and np.all(g[lo] == p.out_fmt.min_code), "clamp code wrong"
        self.sb.coverage.add_mask("saturation", hi | lo)
        self.dut._log.info(
            "float64 check: %d values, max %.4f LSB (bound %.4f), %d clamped",
            int(inside.sum()), float(dev[inside].max()) if inside.any() else 0.0, err.max_abs_err,
            int((hi | lo).sum()),
        )


def _hard_codes(p: ActParams) -> np.ndarray:
    f = p.in_fmt
    one = 1 << f.frac if 0 <= f.frac < f.width - 1 else 1
    c = [0, 1, -1, f.max_code, f.max_code - 1, f.min_code, f.min_code + 1, one, -one, 2 * one, -2 * one]
    vals = [v for v in c if f.min_code <= v <= f.max_code]
    # the clamp boundary of the output: the first inputs whose result saturates
    t = act_lookup(np.arange(f.min_code, f.max_code + 1), act_table(p.kind, f, p.out_fmt), p)
    for edge in (p.out_fmt.max_code, p.out_fmt.min_code):
        hit = np.nonzero(t == edge)[0]
        if hit.size:
            k = int(hit[0]) + f.min_code
            vals += [v for v in (k - 1, k, k + 1) if f.min_code <= v <= f.max_code]
    return np.asarray(vals, dtype=np.int64)


def _pad(codes: np.ndarray, lanes: int) -> np.ndarray:
    r = (-len(codes)) % lanes
    return np.concatenate([codes, codes[:r]]) if r else codes


@cocotb.test()
async def act_exhaustive(dut):
    """Every input code in order at full rate, bit-exact, float64 check, RATE; then 4096 codes in
    random order with tlast every 7 beats."""
    if os.environ.get("RM_ACT_EXPECT_X") == "1":
        return
    tb = TB(dut)
    await tb.reset()
    f = tb.p.in_fmt
    codes = np.arange(f.min_code, f.max_code + 1, dtype=np.int64)
    rng = np.random.default_rng(int(cocotb.RANDOM_SEED))
    shuffled = rng.permutation(codes)[:4096]  # address order independence, with tlast
    with Stopwatch() as sw:
        got = await tb.check(_pad(codes, tb.p.lanes), what="exhaustive (ordered)")
    tb.check_float(_pad(codes, tb.p.lanes), got)
    await tb.check(_pad(shuffled, tb.p.lanes), last_every=7, what="exhaustive (shuffled)")
    log_rate(dut, f"act_table[{tb.p.kind},{tb.p.in_fmt}->{tb.p.out_fmt},L{tb.p.lanes}]", len(codes), sw.seconds)
    tb.finish()


@cocotb.test()
@cocotb.parametrize(idle=["none", "3of4", "rand30"], backpressure=["none", "3of4", "rand30"])
async def act_stalls(dut, idle: str, backpressure: str):
    """Random codes plus hard cases under source idle and sink backpressure, bit-exact."""
    if os.environ.get("RM_ACT_EXPECT_X") == "1":
        return
    tb = TB(dut)
    tb.set_pauses(idle, backpressure)
    await tb.reset()
    f = tb.p.in_fmt
    n = int(os.environ.get("RM_ACT_RANDOM", "600"))
    rng = np.random.default_rng(int(cocotb.RANDOM_SEED) + zlib.crc32(f"{idle}/{backpressure}".encode()))
    codes = np.concatenate([_hard_codes(tb.p), rng.integers(f.min_code, f.max_code + 1, n)])
    got = await tb.check(_pad(codes, tb.p.lanes), last_every=5, what=f"stalls idle={idle} bp={backpressure}")
    tb.check_float(_pad(codes, tb.p.lanes), got)
    tb.finish()


@cocotb.test()
async def act_reset_midstream(dut):
    """Reset while beats are in flight (sink stalled): no output survives, then a clean stream."""
    if os.environ.get("RM_ACT_EXPECT_X") == "1":
        return
    tb = TB(dut)
    await tb.reset()
    f = tb.p.in_fmt
    rng = np.random.default_rng(5)
    tb.set_pauses(None, iter(lambda: True, None))  # ready low forever
    tb.source.send(tb.beats(_pad(rng.integers(f.min_code, f.max_code + 1, 8 * tb.p.lanes), tb.p.lanes)))
    await ClockCycles(dut.clk, 5)
    assert int(dut.m_valid.value) == 1, "a beat should be waiting on the stalled output"
    tb.source.clear()
    await tb.reset()
    assert int(dut.m_valid.value) == 0, "m_valid survived reset"
    tb.set_pauses(None, None)  # ready high again
    tb.sink.clear()
    await ClockCycles(dut.clk, 3)
    assert not tb.sink.items, f"{len(tb.sink.items)} outputs appeared after reset with no input"
    codes = _pad(rng.integers(f.min_code, f.max_code + 1, 50), tb.p.lanes)
    await tb.check(codes, last_every=3, what="after reset")
    tb.finish()


@cocotb.test()
async def act_x_detected(dut):
    """Negative test (RM_ACT_EXPECT_X=1, X words in the table): the X output must fail the sink."""
    if os.environ.get("RM_ACT_EXPECT_X") != "1":
        return
    tb = TB(dut)
    await tb.reset()
    f = tb.p.in_fmt
    codes = _pad(np.array([0, f.max_code, f.min_code, 1], dtype=np.int64), tb.p.lanes)
    tb.source.send(tb.beats(codes))
    try:
        await tb.sink.wait_for(len(codes) // tb.p.lanes, timeout_cycles=200)
    except AssertionError as exc:
        assert "X/Z" in str(exc), f"expected an X/Z failure, got: {exc}"
        dut._log.info("X/Z detected as required: %s", str(exc).splitlines()[0])
        return
    raise AssertionError("the bench did not flag X/Z outputs from a short table")
