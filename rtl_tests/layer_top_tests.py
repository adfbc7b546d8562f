"""cocotb bench for ``rtl/layer_top.v`` through its simulation wrapper ``rtl/layer_top_tb.v``
(run by ``test_layer_top.py``).

The wrapper streams the golden input x into the layer, collects the output stream and, when the
layer is done, dumps every stage buffer with ``$writememh``. This module then checks every stage
(x ln1 q k v scores probs attn proj res1 ln2 up act down out, forward order) with
:func:`refmodel.rtl_layer_check.check_layer`: within the stage's *local* tolerance (the float64 op
on the stage's own golden inputs, bounded by the local rounding bound of the manifest), with the
elements above the statistical tier reported as warnings (never failures), and bit-exactly
against the golden codes -- the integer model ``refmodel.layer.quantized.run_quantized(.., "hw")``,
which layer_top implements bit for bit. A failure names the first failing stage in forward order,
its first bad element (index in the golden tensor's shape, expected and got as hex code and
decoded value, reference, error, bound) and its err/bound ratio. It also checks the output stream
against the golden out codes, the ``err`` flag, that nothing follows the last output word, and
the decoded out against the float64 layer within the end-to-end tolerance where the set has a
finite one (infinite = the bounds give no guarantee). The stage table (bit-exact, max err, local
bound, err/bound, warnings) goes to the log and to the run summary.

Python only wakes at the start, at ``done`` and on a timeout: no per-cycle callbacks.

Environment (set by the runner):
  RM_LAYER_GOLDEN    golden set directory (manifest.json + .hex files)
  RM_LAYER_DUMP      directory the wrapper dumps into (its +DUMP_DIR)
  RM_LAYER_TIMEOUT   cycles allowed for one run
  RM_LAYER_STALL     "1": pseudo-random source idle cycles and sink backpressure
  RM_LAYER_RESET_AT  >0: start a run, reset after that many cycles, then run again and check
  RM_LAYER_RESET_CYCLES  cycles of every reset (default 1: one cycle must be enough)
  RM_LAYER_REPORT    file the run summary (JSON) is written to
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, Timer

from refmodel.cocotb import GoldenSet
from refmodel.cocotb.stream import CLK_NS, Stopwatch, StreamSource, random_pause, reset, start_clock
from refmodel.golden.manifest import load_tensor, read_manifest
from refmodel.layer.config import LayerConfig
from refmodel.layer.forward import tensor_names
from refmodel.numerics.fixed import FixedFormat
from refmodel.rtl_layer import STAGES, compare_stage, from_rtl_layout, read_dump, read_stage_cycles
from refmodel.rtl_layer_check import check_layer


def signed(u: int, width: int) -> int:
    """Two's-complement reading of the unsigned ``width``-bit integer ``u``."""
    u &= (1 << width) - 1
    return u - (1 << width) if u >> (width - 1) else u


async def power_on(dut, rst_cycles: int) -> None:
    """Clock running with reset low for a few edges (registers hold power-on garbage: X in Icarus),
    then a reset of ``rst_cycles`` edges (the clock's first edge at time 0 is not one of them)."""
    start_clock(dut)
    dut.rst.value = 0
    if hasattr(dut, "start"):
        dut.start.value = 0
    await ClockCycles(dut.clk, 3)
    await reset(dut, cycles=rst_cycles)


async def run_layer(dut, timeout: int) -> None:
    """Pulse start and wait for done (or fail after ``timeout`` cycles)."""
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    done = RisingEdge(dut.done)
    res = await First(done, Timer(timeout * CLK_NS, unit="ns"))
    if res is not done:
        raise AssertionError(f"layer did not finish within {timeout} cycles (stage {int(dut.stage.value)} = "
                             f"{STAGES[int(dut.stage.value)]})")
    await ClockCycles(dut.clk, 2)  # the dumps are written 1 ns after the last output edge


@cocotb.test()
async def layer_end_to_end(dut):
    """Run the layer on the golden input; every stage bit-exact, then out against float64."""
    gdir = Path(os.environ["RM_LAYER_GOLDEN"])
    ddir = Path(os.environ["RM_LAYER_DUMP"])
    timeout = int(os.environ.get("RM_LAYER_TIMEOUT", "3000000"))
    reset_at = int(os.environ.get("RM_LAYER_RESET_AT", "0"))
    rst_cycles = int(os.environ.get("RM_LAYER_RESET_CYCLES", "1"))
    man = read_manifest(gdir)
    cfg = LayerConfig.from_dict(man["config"])

    await power_on(dut, rst_cycles)
    dut.stall.value = 1 if os.environ.get("RM_LAYER_STALL") == "1" else 0

    with Stopwatch() as sw:
        if reset_at > 0:  # abandon a run part-way, then a full run must still be exact
            dut.start.value = 1
            await RisingEdge(dut.clk)
            dut.start.value = 0
            await ClockCycles(dut.clk, reset_at)
            stage_at_reset = STAGES[int(dut.stage.value)]
            assert int(dut.done.value) == 0, f"layer finished before the reset at cycle {reset_at}"
            await reset(dut, cycles=rst_cycles)
            assert int(dut.stage.value) == 0, "reset did not return the layer to LOAD"
            dut._log.info("reset in stage %s after %d cycles, then a full run", stage_at_reset, reset_at)
        await run_layer(dut, timeout)
    cycles = int(dut.cycles.value)
    assert int(dut.err.value) == 0, "err is high: framing error on the input stream or in a layernorm"
    # after the last output word: back in LOAD, nothing more on m_*
    await ClockCycles(dut.clk, 20)
    assert int(dut.stage.value) == 0, f"layer in stage {STAGES[int(dut.stage.value)]} after its last output"
    assert int(dut.dut.m_valid.value) == 0, "m_valid high after the last output word (extra output)"

    # every stage, forward order: within its local tolerance (the float64 op on the stage's own
    # golden inputs), warnings from the statistical tier, and bit-exact (layer_top is the model)
    gs = GoldenSet(gdir)
    dumps: dict[str, np.ndarray] = {}
    for name in tensor_names(cfg):
        fmt, exp = gs.fmt(name), gs.codes(name)
        dumps[name] = from_rtl_layout(name, read_dump(ddir / f"{name}.hex", fmt.width, fmt.signed, exp.size),
                                      exp.shape)
    check = check_layer(gs, dumps, log=dut._log)
    dut._log.info("layer stage by stage (local tolerance, warnings from the statistical tier):\n%s\n%s",
                  check.table(), check.summary())
    check.assert_passed(exact=True)
    fmt, exp = gs.fmt("out"), gs.codes("out")
    stream = read_dump(ddir / "out_stream.hex", fmt.width, fmt.signed, exp.size).reshape(exp.shape)
    r = compare_stage("out (m_* stream)", stream, exp, fmt)
    assert r is None, r

    # out against the float64 layer, within the end-to-end tolerance where the set has a finite one
    # (infinite = the bounds give no guarantee)
    e2e = gs.tolerance("out", "end_to_end")
    err, out_tol = np.full(exp.shape, np.nan), "none in the set"
    if e2e is not None:
        err = np.abs(dumps["out"] * fmt.lsb - e2e.reference)  # the DUT's out buffer (bit-exact, checked above)
        fin = np.isfinite(e2e.abs)
        over = np.argwhere(fin & ~(err <= e2e.abs))
        if over.size:
            t = tuple(int(i) for i in over[0])
            raise AssertionError(f"out{list(t)}: |rtl - float64| = {err[t]:.6g} > end-to-end tolerance "
                                 f"{e2e.abs[t]:.6g} ({len(over)} elements over)")
        out_tol = (f"{int(fin.sum())}/{fin.size} elements bounded, all within" if fin.any()
                   else e2e.meta.get("no_guarantee", "no guarantee (infinite tolerance)"))
    summary = {
        "cycles": cycles,
        "stage_cycles": read_stage_cycles(ddir / "stages.txt"),
        "codes_checked": sum(s.elements for s in check.stages),
        "out_max_abs_err": float(np.max(err)),
        "out_max_abs_err_lsb": float(np.max(err) / fmt.lsb),
        "out_tolerance": out_tol,
        "stages": {s.stage: {"bit_exact": s.bit_exact, "tier": s.tier, "max_err": s.max_err, "max_bound": s.max_bound,
                             "ratio": s.ratio, "warnings": s.warnings, "failed": s.failed} for s in check.stages},
        "check_table": check.table(),
        "check_summary": check.summary(),
        "sim_seconds": sw.seconds,
    }
    dut._log.info("out max |err| vs float64 = %.3g (%.2f LSB); end-to-end tolerance: %s; %d cycles",
                  summary["out_max_abs_err"], summary["out_max_abs_err_lsb"], out_tol, cycles)
    dut._log.info("cycles per stage: %s", summary["stage_cycles"])
    rep = os.environ.get("RM_LAYER_REPORT")
    if rep:
        Path(rep).write_text(json.dumps(summary, indent=1))


# ==== framing, resets and output gating: layer_top itself as the toplevel ===========================
# (run by test_layer_top.py::test_framing_and_resets on a small generated set; Python drives s_*
# and watches m_* every cycle)


class OutputMonitor:
    """Drives m_ready (pseudo-random backpressure when ``stall``) and, at every rising edge,
    checks the outputs: never X/Z; m_data and m_last 0 whenever m_valid is low; m_last only with
    the last word of a frame. Collects the transferred words."""

    def __init__(self, dut, n_words: int, stall: bool = True, seed: int = 7):
        self.dut, self.n = dut, n_words
        self.words: list[int] = []
        self.lasts: list[int] = []
        self.errors: list[str] = []
        self.cycle = 0
        self.rng = np.random.default_rng(seed)
        self.stall = stall
        dut.m_ready.value = 1
        self.task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            self.cycle += 1
            v, data, last, rdy = d.m_valid.value, d.m_data.value, d.m_last.value, d.m_ready.value
            if not (v.is_resolvable and data.is_resolvable and last.is_resolvable):
                self.errors.append(f"cycle {self.cycle}: X/Z on m_valid/m_data/m_last ({v} {data} {last})")
            elif int(v) == 0:
                if int(data) != 0 or int(last) != 0:
                    self.errors.append(f"cycle {self.cycle}: m_data={int(data):#x} m_last={int(last)} while m_valid=0")
            elif int(rdy) == 1 and int(d.rst.value) == 0:
                self.words.append(int(data))
                self.lasts.append(int(last))
            d.m_ready.value = 0 if (self.stall and self.rng.random() < 0.3) else 1

    def reset_capture(self) -> None:
        self.words, self.lasts = [], []

    def check(self, expected: np.ndarray, width: int, what: str) -> None:
        """The collected stream equals ``expected`` (golden out codes), m_last exactly on the last."""
        assert not self.errors, f"{what}: output gating violated:\n" + "\n".join(self.errors[:5])
        got = np.array([signed(w, width) for w in self.words], dtype=np.int64)
        exp = expected.reshape(-1)
        assert got.size == exp.size, f"{what}: {got.size} output words, expected {exp.size}"
        bad = np.flatnonzero(got != exp)
        assert bad.size == 0, (f"{what}: {bad.size} of {exp.size} out words differ, first at {int(bad[0])}: "
                               f"expected {int(exp[bad[0]])} got {int(got[bad[0]])}")
        want_last = [0] * (exp.size - 1) + [1]
        assert self.lasts == want_last, f"{what}: m_last at words {[i for i, x in enumerate(self.lasts) if x]}"


def check_buffers(dut, what: str) -> None:
    """Every stage buffer of the DUT (read through the simulator) is within its local tolerance and
    equals the golden codes: a fault can hide from the output (query 0 attends to key 0 alone, so
    q[0] never reaches out)."""
    gs = GoldenSet(Path(os.environ["RM_LAYER_GOLDEN"]))
    bufs = {}
    for name in tensor_names(LayerConfig.from_dict(gs.config)):
        exp = gs.codes(name)
        mem = getattr(dut, f"{name}_mem")
        flat = np.array([int(mem[i].value) for i in range(exp.size)], dtype=np.int64)
        bufs[name] = from_rtl_layout(name, flat, exp.shape)
    check = check_layer(gs, bufs, log=dut._log)
    try:
        check.assert_passed(exact=True)
    except AssertionError as e:
        raise AssertionError(f"{what}: stage buffers (forward order): {e}") from None


def _frame(x: np.ndarray, width: int, last_at: int | None) -> list[dict]:
    """Input words (two's complement codes) with s_last only on word ``last_at`` (None: nowhere)."""
    return [{"data": int(c) & ((1 << width) - 1), "last": int(i == last_at)} for i, c in enumerate(x.reshape(-1))]


async def _wait_stage(dut, code: int, limit: int) -> int:
    for n in range(limit):
        if int(dut.stage.value) == code:
            return n
        await RisingEdge(dut.clk)
    raise AssertionError(f"stage {STAGES[code]} not reached within {limit} cycles (now "
                         f"{STAGES[int(dut.stage.value)]})")


async def _run_frame(dut, src, mon, x, fmt, exp, timeout: int, what: str) -> None:
    """A complete frame in, the whole output out; checked against the golden out codes."""
    mon.reset_capture()
    src.send(_frame(x, fmt.width, x.size - 1))
    for _ in range(timeout):
        await RisingEdge(dut.clk)
        if len(mon.words) >= exp.size:
            break
    await ClockCycles(dut.clk, 4)
    mon.check(exp, fmt.width, what)
    check_buffers(dut, what)
    assert int(dut.stage.value) == STAGES.index("LOAD"), f"{what}: stage {STAGES[int(dut.stage.value)]} after the output"


def _layer_io(gdir: Path):
    man = read_manifest(gdir)
    x = load_tensor(gdir, "x", man)["codes"]
    g = load_tensor(gdir, "out", man)
    fmt = FixedFormat.parse(g["entry"]["format"])
    return x, fmt, g["codes"]


@cocotb.test()
async def layer_framing(dut):
    """Short frame (s_last early) and long frame (no s_last on the last word): each is dropped with
    err set, the layer resynchronises (LOAD / SKIP up to the next s_last), and the next complete
    frame computes the golden output. One-cycle resets throughout."""
    gdir = Path(os.environ["RM_LAYER_GOLDEN"])
    timeout = int(os.environ.get("RM_LAYER_TIMEOUT", "3000000"))
    x, fmt, exp = _layer_io(gdir)
    n = x.size
    await power_on(dut, 1)
    src = StreamSource(dut, "s")
    src.set_idle_generator(random_pause(0.2, seed=3))
    mon = OutputMonitor(dut, n)
    assert int(dut.err.value) == 0, "err high after reset"

    # short frame: s_last on word 9 of n
    src.send(_frame(x.reshape(-1)[:10], fmt.width, 9))
    await src.wait_idle()
    await ClockCycles(dut.clk, 3)
    assert int(dut.err.value) == 1, "a short frame did not set err"
    assert int(dut.stage.value) == STAGES.index("LOAD"), f"short frame: stage {STAGES[int(dut.stage.value)]}, not LOAD"
    await _run_frame(dut, src, mon, x, fmt, exp, timeout, "complete frame after a short one")
    assert int(dut.err.value) == 1, "err is not sticky"

    # long frame: n words without s_last, then 3 more, the third with s_last
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    assert int(dut.err.value) == 0, "a one-cycle reset did not clear err"
    mon.reset_capture()
    src.send(_frame(x, fmt.width, None))
    await src.wait_idle()
    await ClockCycles(dut.clk, 2)
    assert int(dut.err.value) == 1, "a long frame did not set err"
    assert int(dut.stage.value) == STAGES.index("SKIP"), f"long frame: stage {STAGES[int(dut.stage.value)]}, not SKIP"
    for i in range(3):  # words are dropped up to and including the next s_last
        src.send([{"data": 0, "last": int(i == 2)}])
        await src.wait_idle()
        await ClockCycles(dut.clk, 2)
        want = "LOAD" if i == 2 else "SKIP"
        assert int(dut.stage.value) == STAGES.index(want), \
            f"after {i + 1} word(s) in SKIP (s_last {int(i == 2)}): stage {STAGES[int(dut.stage.value)]}, not {want}"
    assert not mon.words, f"{len(mon.words)} output words from a dropped frame"
    await _run_frame(dut, src, mon, x, fmt, exp, timeout, "complete frame after a long one")


@cocotb.test()
async def layer_one_cycle_resets(dut):
    """One-cycle resets in the middle of LN1, of a Q dot product (operand register loaded, not
    the dot product's last beat), of the softmax and of the output stream; after each the layer
    is idle in LOAD with clean outputs, and a complete frame then computes the golden output."""
    gdir = Path(os.environ["RM_LAYER_GOLDEN"])
    timeout = int(os.environ.get("RM_LAYER_TIMEOUT", "3000000"))
    x, fmt, exp = _layer_io(gdir)
    await power_on(dut, 1)
    src = StreamSource(dut, "s")
    mon = OutputMonitor(dut, x.size, stall=False)
    for where in ("LN1", "Q", "SM", "DRAIN"):
        mon.reset_capture()
        src.send(_frame(x, fmt.width, x.size - 1))
        await _wait_stage(dut, STAGES.index(where), timeout)
        if where == "Q":
            # inside a dot product: the beat the reset edge would move into the operand register
            # is not the dot product's last (a stray beat would then corrupt the next one)
            for _ in range(10_000):
                await RisingEdge(dut.clk)
                await ReadOnly()
                if (int(dut.f_valid_reg.value) == 1 and int(dut.f_last_reg.value) == 0
                        and int(dut.op_ready.value) == 1 and int(dut.op_valid_reg.value) == 1):
                    break
            await Timer(1, unit="ns")
        else:
            await ClockCycles(dut.clk, 5)
        dut.rst.value = 1
        await RisingEdge(dut.clk)
        dut.rst.value = 0
        src.clear()
        await ReadOnly()
        assert int(dut.stage.value) == 0 and int(dut.m_valid.value) == 0 and int(dut.err.value) == 0, \
            f"reset in {where}: stage {STAGES[int(dut.stage.value)]}, m_valid {dut.m_valid.value}, err {dut.err.value}"
        await RisingEdge(dut.clk)
        await _run_frame(dut, src, mon, x, fmt, exp, timeout, f"complete frame after a reset in {where}")
