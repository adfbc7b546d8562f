"""cocotb bench for ``rtl/layer_top.v`` through its simulation wrapper ``rtl/layer_top_tb.v``
(run by ``test_layer_top.py``).

The wrapper streams the golden input x into the layer, collects the output stream and, when the
layer is done, dumps every stage buffer with ``$writememh``. This module then compares every stage
(x ln1 q k v scores probs attn proj res1 ln2 up act down out, forward order) bit-exactly with the
golden set's codes -- the integer model ``refmodel.layer.quantized.run_quantized(.., "hw")`` -- and
reports, per mismatching stage, the first mismatch (index in the golden tensor's shape, expected
and got as hex code and decoded value) and the mismatch count. It also checks the output stream
against the golden out codes, the ``err`` flag, that nothing follows the last output word, and the
decoded out against the float64 reference: within the per-element tolerance where the set has a
finite one (infinite = the bounds give no guarantee, reported with their reason); without
tolerances the measured max error is reported (no tolerance is invented). The other stages'
tolerances are checked and reported, not asserted.

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
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from tb_common import CLK_NS, Stopwatch, reset, start_clock

from refmodel.golden.manifest import load_tensor, read_manifest
from refmodel.layer.config import LayerConfig
from refmodel.layer.forward import tensor_names
from refmodel.numerics.fixed import FixedFormat
from refmodel.rtl_layer import STAGES, compare_stage, from_rtl_layout, read_dump, read_stage_cycles

def golden_codes(g: dict, fmt: FixedFormat) -> np.ndarray:
    """The golden codes read with the signedness of the tensor's format. (Manifests written by
    refmodel.golden.generate mark every fixed-point tensor ``"signed": true``, u16.15 probs
    included, so ``load_tensor`` sign-extends a probability of 1.0 (0x8000) to -32768; the bits
    are right, the decoding is not.)"""
    codes = g["codes"]
    if not fmt.signed:
        codes = codes & np.int64((1 << fmt.width) - 1)
    return codes


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

    reports = []
    checked = 0
    dumps: dict[str, np.ndarray] = {}
    for name in tensor_names(cfg):
        g = load_tensor(gdir, name, man)
        e = g["entry"]
        fmt = FixedFormat.parse(e["format"])
        exp = golden_codes(g, fmt)
        flat = read_dump(ddir / f"{name}.hex", fmt.width, fmt.signed, exp.size)
        got = from_rtl_layout(name, flat, exp.shape)
        dumps[name] = got
        checked += exp.size
        r = compare_stage(name, got, exp, fmt)
        if r:
            reports.append(r)
        if name == "out":
            stream = read_dump(ddir / "out_stream.hex", fmt.width, fmt.signed, exp.size).reshape(exp.shape)
            r = compare_stage("out (m_* stream)", stream, exp, fmt)
            if r:
                reports.append(r)
    if reports:
        raise AssertionError(f"{len(reports)} stage(s) mismatch (forward order; first is the first wrong stage):\n"
                             + "\n".join(reports))

    # every stage against the float64 reference, within the set's tolerance where it has one
    # (infinite where the bounds give no guarantee); asserted for out, reported for the others
    tol_report: dict[str, str] = {}
    for name in tensor_names(cfg):
        g = load_tensor(gdir, name, man)
        if "tolerance" not in g or "reference" not in g:
            continue
        tol = g["tolerance"]
        assert not np.isnan(tol).any(), f"{name}: the golden tolerance file holds NaN"
        err = np.abs(dumps[name] * FixedFormat.parse(g["entry"]["format"]).lsb - g["reference"])
        fin = np.isfinite(tol)
        over = np.argwhere(fin & (err > tol))
        tol_report[name] = (f"{int(fin.sum())}/{tol.size} bounded, {len(over)} over"
                            + (f", max |err|/tol {float((err[fin] / np.maximum(tol[fin], 1e-300)).max()):.3g}"
                               if fin.any() else "")
                            + (f"; {g['entry']['no_guarantee']}" if "no_guarantee" in g["entry"] else ""))
        if name == "out" and over.size:
            t = tuple(int(i) for i in over[0])
            raise AssertionError(f"out{list(t)}: |rtl - float64| = {err[t]:.6g} > tolerance {tol[t]:.6g} "
                                 f"({len(over)} elements over)")
    g = load_tensor(gdir, "out", man)
    fmt = FixedFormat.parse(g["entry"]["format"])
    err = np.abs(dumps["out"] * fmt.lsb - g["reference"])  # the DUT's out buffer (bit-exact, checked above)
    out_tol = g.get("tolerance")
    bounded = 0 if out_tol is None else int(np.isfinite(out_tol).sum())
    summary = {
        "cycles": cycles,
        "stage_cycles": read_stage_cycles(ddir / "stages.txt"),
        "codes_checked": int(checked),
        "out_max_abs_err": float(err.max()),
        "out_max_abs_err_lsb": float(err.max() / fmt.lsb),
        "out_mean_abs_err": float(err.mean()),
        "out_tolerance": ("none in the set" if out_tol is None else
                          f"{bounded}/{out_tol.size} elements bounded, all within" if bounded else
                          g["entry"].get("no_guarantee", "no guarantee (infinite tolerance)")),
        "tolerances": tol_report,
        "sim_seconds": sw.seconds,
    }
    dut._log.info("layer: %d stages bit-exact (%d codes), %d cycles, out max |err| vs float64 = %.3g (%.2f LSB); "
                  "out tolerance: %s", len(tensor_names(cfg)), checked, cycles, summary["out_max_abs_err"],
                  summary["out_max_abs_err_lsb"], summary["out_tolerance"])
    for name, r in tol_report.items():
        dut._log.info("tolerance %s: %s", name, r)
    dut._log.info("cycles per stage: %s", summary["stage_cycles"])
    rep = os.environ.get("RM_LAYER_REPORT")
    if rep:
        Path(rep).write_text(json.dumps(summary, indent=1))
