"""cocotb tests for rtl/layernorm.v (run by test_layernorm.py through harness.run_unit).

Configuration (environment, set by the runner):
  RM_LN_PARAMS  JSON of refmodel.numerics.units.norm.NormParams keyword arguments;
  RM_LN_GAMMA / RM_LN_BETA  the $readmemh files the RTL loaded (read back as the model's codes);
  RM_LN_ROWS    random rows for the full-rate run; RM_LN_OUTLIERS real magnitude of outlier
                channels in half of the random rows (0: none);
  RM_LN_STALL_ROWS  rows per idle/backpressure combination.
Every HDL parameter is read back from the DUT and must equal NormParams.to_hdl().

Model: norm_int (bit-exact on every element, m_last on every D-th beat); decoded outputs are
also checked against float64 norm_ref within norm_error_bound (computed per element, not a
hard-coded tolerance).

Coverage: output zero / max / min codes, saturation (the exact output outside the output range),
rounding ties of the output rounding (RNE configurations), source idle, sink backpressure.
"""

from __future__ import annotations

import json
import os
import zlib

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from refmodel.cocotb import Stopwatch, StreamBench, check_no_xz, hexw, log_rate
from refmodel.golden.hexfile import read_memh
from refmodel.numerics.units.norm import NormParams, norm_error_bound, norm_int, norm_ref, random_rows


def _expect_x() -> bool:
    """RM_LN_EXPECT_X=1: the negative X test run (gamma word 0 is X); the other tests skip."""
    return os.environ.get("RM_LN_EXPECT_X") == "1"


class TB(StreamBench):
    def __init__(self, dut, read_tables: bool = True):
        super().__init__(dut)
        self.p = NormParams(**json.loads(os.environ["RM_LN_PARAMS"]))
        hdl = {k: int(getattr(dut, k).value) for k in self.p.to_hdl()}
        assert hdl == self.p.to_hdl(), f"HDL parameters {hdl} != model {self.p.to_hdl()}"
        p = self.p
        if read_tables:  # the same files the RTL loaded, as the model's codes
            self.gamma = read_memh(os.environ["RM_LN_GAMMA"], p.gamma_fmt.width, signed=True, count=p.d)
            self.beta = read_memh(os.environ["RM_LN_BETA"], p.beta_fmt.width, signed=True, count=p.d)
        self.checked = 0
        self.sb.coverage.declare("saturation")
        # classes this configuration cannot produce, with the reason (set by the runner)
        for name, why in json.loads(os.environ.get("RM_LN_UNREACHABLE", "{}")).items():
            self.sb.coverage.declare(name, why)

    def beats(self, rows: np.ndarray) -> list[dict]:
        mask = (1 << self.p.in_fmt.width) - 1
        d = self.p.d
        return [{"data": int(v) & mask, "last": int(i % d == d - 1)} for i, v in enumerate(rows.ravel().tolist())]

    async def run_rows(self, rows: np.ndarray, what: str) -> None:
        """Send ``rows`` (shape (n, D)), collect n*D outputs, check bit-exact, m_last, float64
        bound, framing_err; then make sure nothing more comes out."""
        p = self.p
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, p.d)
        n_out = rows.size
        n0 = len(self.sink.items)
        items = await self.run(self.beats(rows), cycles_per_item=12 + 600 // p.d + 1)
        w = p.out_fmt.width
        got = [(it["data"] ^ (1 << (w - 1))) - (1 << (w - 1)) for it in items]
        exp = norm_int(rows, self.gamma, self.beta, p).ravel().tolist()
        flat = rows.ravel()
        fin = p.in_fmt

        def describe(ix: tuple[int, ...]) -> str:
            r, c = divmod(ix[0], p.d)
            x = int(flat[ix[0]])
            return (f"row {r} col {c}: x={hexw(x, fin.width)} ({x * 2.0 ** -fin.frac:+.6g}), "
                    f"gamma={int(self.gamma[c])}, beta={int(self.beta[c])}, row[:4]={rows[r, :4].tolist()}")

        self.sb.exact(f"{what}: m_data", got, exp, fmt=p.out_fmt, describe=describe)
        lasts = [it["last"] for it in items]
        self.sb.exact(f"{what}: m_last", lasts, [int(i % p.d == p.d - 1) for i in range(n_out)], cover=False)
        # float64: |out - clamp(ref)| <= bound (both in output LSB)
        x = np.ldexp(rows.astype(np.float64), -fin.frac)
        g = np.ldexp(self.gamma.astype(np.float64), -p.gamma_fmt.frac)
        b = np.ldexp(self.beta.astype(np.float64), -p.beta_fmt.frac)
        ref = np.clip(np.ldexp(norm_ref(x, g, b, p.eps_real, p.rms), p.out_fmt.frac),
                      p.out_fmt.min_code, p.out_fmt.max_code)
        exact = np.ldexp(norm_ref(x, g, b, p.eps_real, p.rms), p.out_fmt.frac)
        self.sb.coverage.add_mask("saturation", (exact > p.out_fmt.max_code + 0.5) | (exact < p.out_fmt.min_code - 0.5))
        bound = norm_error_bound(rows, self.gamma, self.beta, p)
        err = np.abs(np.asarray(got, dtype=np.float64).reshape(rows.shape) - ref)
        bad = err > bound
        if bad.any():
            r, c = np.unravel_index(int(np.argmax(bad)), bad.shape)
            raise AssertionError(
                f"{what}: decoded output off float64 by {err[r, c]:.4f} LSB > bound {bound[r, c]:.4f} "
                f"at row {r} col {c} (x={int(rows[r, c])}, got {got[r * p.d + c]}, ref {ref[r, c]:.3f})"
            )
        assert check_no_xz(self.dut.framing_err.value, "framing_err") == 0, f"{what}: framing_err set"
        await self.expect_no_more(n0 + n_out, 8)
        self.checked += n_out
        n_sat = sum(1 for e in exp if e in (p.out_fmt.max_code, p.out_fmt.min_code))
        self.dut._log.info("%s: %d rows, %d elements bit-exact (%d at a clamp code); max err %.3f LSB "
                           "(max bound %.3f)", what, rows.shape[0], n_out, n_sat, float(err.max()),
                           float(bound.max()))


def hard_rows(p: NormParams, rng: np.random.Generator) -> np.ndarray:
    """Directed rows: zero-variance paths, extremes, maximal variance, spikes, mean ties."""
    f = p.in_fmt
    d = p.d
    lo, hi = f.min_code, f.max_code
    rows = [
        np.zeros(d),                                  # all zero: A = D*EPS (or 0)
        np.full(d, hi), np.full(d, lo),               # constant extremes: variance 0
        np.full(d, int(rng.integers(lo, hi))),        # random constant
        np.where(np.arange(d) % 2 == 0, hi, lo),      # two-valued, maximum variance
        np.where(np.arange(d) < d // 2, lo, hi),      # two-valued halves
        np.where(np.arange(d) == 0, hi, 0),           # spike first
        np.where(np.arange(d) == d - 1, lo, 0),       # spike last (negative)
        np.where(np.arange(d) == d // 3, hi, lo),     # one max among mins
        np.where(np.arange(d) % 3 == 0, 1, 0),        # +-1 LSB structure
        np.where(np.arange(d) % 2 == 0, -1, 0),
        np.where(np.arange(d) % 2 == 0, 1, -1),
        np.linspace(lo, hi, d).round(),               # ramp over the full range
        np.full(d, 1), np.full(d, -1),
    ]
    shift = p.shift
    # mean ties: S 2^G / D = k + 1/2 exactly (possible when 2^(G+1) divides D), both signs;
    # x = x1 2^SHIFT so the SLaNC shift is exact and S is the designed sum
    q = 1 << (p.g + 1)
    if not p.rms and d % q == 0:
        for k in (3, -4):
            base = rng.integers(-20, 21, d)
            base[-1] += (2 * k + 1) * (d // q) - int(base.sum())
            if np.all(np.abs(base << shift) <= hi):
                rows.append(base << shift)
    # SLaNC rounding ties: x = (2m+1) 2^(SHIFT-1) for both signs
    if shift > 0:
        m = rng.integers(-(hi >> shift) + 1, (hi >> shift) - 1, d)
        rows.append(np.clip((2 * m + 1) << (shift - 1), lo, hi))
    return np.asarray(rows, dtype=np.int64)


def _rows(p: NormParams, n: int, seed: int, outliers: float) -> np.ndarray:
    if outliers > 0:
        h = n // 2
        return np.concatenate([random_rows(p, h, seed), random_rows(p, n - h, seed + 1, outliers=outliers)])
    return random_rows(p, n, seed)


@cocotb.test()
async def ln_random_full_rate(dut):
    """RM_LN_ROWS random rows (half with outlier channels if RM_LN_OUTLIERS), no stalls; RATE."""
    if _expect_x():
        return
    tb = TB(dut)
    await tb.reset()
    n = int(os.environ.get("RM_LN_ROWS", "20"))
    rows = _rows(tb.p, n, int(cocotb.RANDOM_SEED), float(os.environ.get("RM_LN_OUTLIERS", "0")))
    with Stopwatch() as sw:
        await tb.run_rows(rows, "random")
    kind = "rmsnorm" if tb.p.rms else "layernorm"
    log_rate(dut, f"{kind}[D={tb.p.d},{tb.p.in_fmt},shift={tb.p.shift}]", rows.size, sw.seconds)
    tb.finish()


@cocotb.test()
@cocotb.parametrize(idle=["none", "3of4", "rand30"], backpressure=["none", "3of4", "rand30"])
async def ln_hard_stalls(dut, idle: str, backpressure: str):
    """Directed rows plus a few random rows under source idle / sink backpressure
    (RM_LN_STALLS=some: only none/none, 3of4/3of4 and rand30/rand30, for long rows)."""
    if _expect_x():
        return
    if os.environ.get("RM_LN_STALLS", "all") == "some" and idle != backpressure:
        return
    tb = TB(dut)
    tb.set_pauses(idle, backpressure)
    await tb.reset()
    rng = np.random.default_rng(int(cocotb.RANDOM_SEED) + zlib.crc32(f"{idle}/{backpressure}".encode()))
    n = int(os.environ.get("RM_LN_STALL_ROWS", "2"))
    rows = hard_rows(tb.p, rng) if (idle, backpressure) == ("none", "none") else np.empty((0, tb.p.d), np.int64)
    rows = np.concatenate([rows, _rows(tb.p, n, int(rng.integers(1 << 30)), float(os.environ.get("RM_LN_OUTLIERS", "0")))])
    await tb.run_rows(rows, f"hard+random idle={idle} bp={backpressure}")
    tb.finish()


@cocotb.test()
async def ln_hard_rows(dut):
    """The directed rows back to back under random source idle and sink backpressure."""
    if _expect_x():
        return
    tb = TB(dut)
    tb.set_pauses("rand30", "rand30")
    await tb.reset()
    await tb.run_rows(hard_rows(tb.p, np.random.default_rng(99)), "hard rows")
    tb.finish()


@cocotb.test()
async def ln_reset_midstream(dut):
    """Reset in the middle of an input row and in the middle of an output row; afterwards a
    clean row must come out exactly (no stale beats, sums restarted)."""
    if _expect_x():
        return
    tb = TB(dut)
    p = tb.p
    await tb.reset()
    rows = random_rows(p, 3, 4242)
    # 1) half a row in, then reset
    tb.source.send(tb.beats(rows[0])[: p.d // 2])
    await tb.source.wait_idle()
    await tb.reset(clear_sink=False)
    assert len(tb.sink.items) == 0
    # 2) a full row, stall the sink so outputs are pending, reset while streaming out
    tb.set_pauses(None, iter(lambda: True, None))
    tb.source.send(tb.beats(rows[1]))
    await tb.source.wait_idle()
    for _ in range(20 * p.d + 400):
        await RisingEdge(dut.clk)
        if int(dut.m_valid.value):
            break
    assert int(dut.m_valid.value) == 1, "no output after a full row"
    await ClockCycles(dut.clk, 3)
    await tb.reset()
    assert int(dut.m_valid.value) == 0 and int(dut.s_ready.value) == 1, "reset did not clear the unit"
    tb.set_pauses(None, None)
    tb.sink.clear()
    await ClockCycles(dut.clk, 4)
    assert not tb.sink.items, "outputs appeared after reset with no input"
    await tb.run_rows(rows[2:], "after reset")
    tb.finish()


@cocotb.test()
async def ln_framing_error(dut):
    """s_last on the wrong beat sets framing_err (sticky); reset clears it; data still follow
    the D-beat framing."""
    if _expect_x():
        return
    tb = TB(dut)
    p = tb.p
    await tb.reset()
    rows = random_rows(p, 1, 77)
    beats = tb.beats(rows)
    beats[0]["last"] = 1                # early last
    beats[-1]["last"] = 0               # missing last
    tb.source.send(beats)
    await tb.sink.wait_for(p.d, timeout_cycles=8 * p.d + 400)
    assert check_no_xz(dut.framing_err.value, "framing_err") == 1, "framing_err not raised"
    exp = norm_int(rows, tb.gamma, tb.beta, p).ravel().tolist()
    w = p.out_fmt.width
    got = [(it["data"] ^ (1 << (w - 1))) - (1 << (w - 1)) for it in tb.sink.items]
    tb.sb.exact("row with bad framing", got, exp, fmt=p.out_fmt)
    await tb.reset()
    assert int(dut.framing_err.value) == 0, "reset did not clear framing_err"


@cocotb.test()
async def ln_latency(dut):
    """m_valid rises 3*RSQ_K + 10 clock edges after the edge that transfers the last input beat
    (the figure in the RTL header and norm.py), with an idle sink."""
    if _expect_x():
        return
    tb = TB(dut)
    await tb.reset()
    t: dict[str, int | None] = {"last": None, "out": None}

    async def monitor():
        cyc = 0
        while t["out"] is None:
            await RisingEdge(dut.clk)  # samples = values the flops saw at this edge
            cyc += 1
            if t["last"] is None and int(dut.s_valid.value) and int(dut.s_ready.value) and int(dut.s_last.value):
                t["last"] = cyc
            elif t["last"] is not None and int(dut.m_valid.value):
                t["out"] = cyc

    mon = cocotb.start_soon(monitor())
    await tb.run_rows(random_rows(tb.p, 1, 31), "latency row")
    await mon
    rise = t["out"] - t["last"] - 1  # m_valid is sampled one edge after the edge that set it
    want = 3 * tb.p.rsq_k + 10
    assert rise == want, f"latency {rise} cycles, documented {want}"
    dut._log.info("last input -> first output: %d cycles", rise)
    tb.finish()


@cocotb.test()
async def ln_x_detected(dut):
    """Negative test (RM_LN_EXPECT_X=1, gamma word 0 loaded as X): column 0 of every row is X and
    the bench must fail on it."""
    if not _expect_x():
        return
    tb = TB(dut, read_tables=False)  # gamma holds an X word: no codes to read back
    await tb.reset()
    tb.source.send(tb.beats(random_rows(tb.p, 1, 3)))
    try:
        await tb.sink.wait_for(tb.p.d, timeout_cycles=8 * tb.p.d + 400)
    except AssertionError as exc:
        assert "X/Z" in str(exc), f"expected an X/Z failure, got: {exc}"
        dut._log.info("X/Z detected as required: %s", str(exc).splitlines()[0])
        return
    raise AssertionError("the bench did not flag X/Z outputs computed from an X gamma word")
