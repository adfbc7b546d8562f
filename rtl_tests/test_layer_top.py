"""pytest runner for rtl/layer_top.v: the whole GPT-2 layer under the ``hw`` plan on Icarus,
every stage compared bit-exactly with a golden set (cocotb bench: layer_top_tests.py, through
the simulation wrapper rtl/layer_top_tb.v).

Every Verilog parameter comes from the golden set's manifest (``config``, ``plan``, ``units``);
:func:`layer_params` checks each assumption the RTL makes about the plan (one activation width,
one rounding mode, residual operands in one format, ...) and refuses a set that breaks one, naming
it. The weight, bias, gamma/beta and table files are the golden set's own, handed over as quoted
absolute string parameters.

Tests:
* ``test_tiny_gpt2_hw``: the committed set golden/tiny_gpt2_hw, end to end (prints wall time
  including the compile, and cycles per stage);
* ``test_gpt2_odd_shape_seed11_hw``: a set generated now from another seed and in another shape
  (not the committed vectors), 3 MAC lanes, pseudo-random stalls on both streams, and a reset in
  the middle of a first run;
* ``test_layer_top_lint``: verilator --lint-only -Wall of layer_top and its submodules;
* ``test_gpt2_d128_s64_hw`` (slow, --run-slow): d_model 128, 4 heads, d_ff 512, seq 64.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, RTL, build_dir_for, run_unit

from refmodel.golden.generate import generate_set
from refmodel.layer.config import LayerConfig

TINY_SET = ROOT / "golden" / "tiny_gpt2_hw"
#: second default-suite shape: no power-of-two buffer depths, 3 heads, softmax row buffer > row
ODD_SHAPE = LayerConfig(arch="gpt2", d_model=48, n_heads=3, d_ff=96, seq_len=12)
#: the smallest useful layer: Python drives and watches its streams cycle by cycle
MICRO = LayerConfig(arch="gpt2", d_model=16, n_heads=2, d_ff=32, seq_len=4)

# the parameter map and its checks live in the package (the demo runs the same RTL without cocotb)
from refmodel.rtl_layer import (  # noqa: E402
    SOURCES,
    TB_SOURCES,
    UnsupportedSet,
    cycle_budget,
    layer_params,
    parameter_decls,
)


def run_layer(set_dir: Path, lanes: int, *, stall: bool = False, reset_at: int = 0) -> dict[str, Any]:
    """Build and run layer_top_tb on ``set_dir``; returns the bench's summary plus wall times."""
    params = layer_params(set_dir, lanes)
    bdir = build_dir_for("layer_top_tb", params)
    dump = bdir / "dump"
    if dump.exists():
        shutil.rmtree(dump)
    dump.mkdir(parents=True)
    report = bdir / "layer_report.json"
    report.unlink(missing_ok=True)
    t0 = time.perf_counter()
    run_unit(
        "layer_top_tb",
        sources=TB_SOURCES,
        test_module="layer_top_tests",
        parameters=params,
        plusargs=[f"+X_FILE={(set_dir / 'x.hex').resolve()}", f"+DUMP_DIR={dump}"],
        extra_env={
            "RM_LAYER_GOLDEN": str(set_dir.resolve()),
            "RM_LAYER_DUMP": str(dump),
            "RM_LAYER_TIMEOUT": str(cycle_budget(params)),
            "RM_LAYER_STALL": "1" if stall else "0",
            "RM_LAYER_RESET_AT": str(reset_at),
            "RM_LAYER_REPORT": str(report),
        },
        build_dir=bdir,
    )
    summary = json.loads(report.read_text())
    summary["wall_seconds"] = time.perf_counter() - t0
    print(f"LAYER {set_dir.name} LANES={lanes} stall={int(stall)} reset_at={reset_at}: all stages bit-exact, "
          f"{summary['cycles']} cycles, wall {summary['wall_seconds']:.1f} s incl. compile "
          f"(run {summary['sim_seconds']:.1f} s); out max |err| vs float64 {summary['out_max_abs_err']:.3g} "
          f"= {summary['out_max_abs_err_lsb']:.2f} LSB (tolerance: {summary['out_tolerance']})")
    print(f"LAYER cycles per stage: {summary['stage_cycles']}")
    for name, r in summary["tolerances"].items():
        print(f"LAYER float64 tolerance {name}: {r}")
    return summary


def test_tiny_gpt2_hw():
    """The committed golden set, one MAC lane, no stalls."""
    s = run_layer(TINY_SET, lanes=1)
    assert s["codes_checked"] > 0


def test_gpt2_odd_shape_seed11_hw(tmp_path):
    """A set generated now from another seed in another shape (d_model 48, 3 heads of 16, d_ff 96,
    seq 12: no power-of-two buffer depths, softmax row buffer larger than the row), 3 MAC lanes
    (partial last beats in the scores and the mix), pseudo-random stalls on both streams, and a
    reset in the middle of a first run."""
    set_dir = generate_set(ODD_SHAPE, "hw", 11, tmp_path / "gpt2_d48_h3_f96_s12_hw_seed11")
    s = run_layer(set_dir, lanes=3, stall=True, reset_at=6000)
    assert s["codes_checked"] > 0


@pytest.mark.slow
def test_gpt2_d128_s64_hw(tmp_path):
    """d_model 128, 4 heads, d_ff 512, seq 64 (generated now), one MAC lane."""
    cfg = LayerConfig(arch="gpt2", d_model=128, n_heads=4, d_ff=512, seq_len=64)
    set_dir = generate_set(cfg, "hw", 0, tmp_path / "gpt2_d128_s64_hw")
    s = run_layer(set_dir, lanes=1)
    assert s["codes_checked"] > 0


@pytest.mark.parametrize("shape,lanes", [("tiny", 1), ("tiny", 4), ("odd", 3)])
def test_layer_top_lint(shape, lanes, tmp_path):
    """verilator --lint-only -Wall is clean for layer_top and its submodules with the parameters
    of every configuration the benches run (the tb wrapper is simulation-only and not linted)."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not found (apt-get install -y verilator)")
    set_dir = TINY_SET if shape == "tiny" else generate_set(ODD_SHAPE, "hw", 11, tmp_path / "odd")
    p = layer_params(set_dir, lanes)
    kinds = dict(parameter_decls())
    # 64-bit parameters need sized literals (Verilator)
    gen = [f"-G{k}=64'd{v}" if kinds[k] == "[63:0]" else f"-G{k}={v}" for k, v in p.items()]
    res = subprocess.run(
        ["verilator", "--lint-only", "-Wall", f"-I{RTL}", "--top-module", "layer_top", *gen,
         *[str(RTL / s) for s in SOURCES]],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr[:3000]


def test_unsupported_set_is_refused(tmp_path):
    """A plan the RTL does not implement (here: floor rounding on q only) is refused by name,
    never run with wrong parameters."""
    m = json.loads((TINY_SET / "manifest.json").read_text())
    m["plan"]["tensors"]["q"]["rounding"] = "floor"
    d = tmp_path / "bad"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(UnsupportedSet, match="tensor q: rounding floor -- the RTL rounds every requantised stage alike"):
        layer_params(d, 1)


def test_framing_and_resets(tmp_path):
    """layer_top as the toplevel, streams driven from Python (2 MAC lanes): short and long input
    frames are dropped with err set and the layer resynchronises; one-cycle resets in LN1, inside
    a Q dot product, in the softmax and in the output stream; after each, a complete frame gives
    the golden output; m_data / m_last are 0 outside valid beats and never X (checked every cycle)."""
    set_dir = generate_set(MICRO, "hw", 3, tmp_path / "micro")
    params = layer_params(set_dir, 2)
    run_unit("layer_top", sources=SOURCES, test_module="layer_top_tests", parameters=params,
             extra_env={"RM_LAYER_GOLDEN": str(set_dir), "RM_LAYER_TIMEOUT": str(cycle_budget(params))},
             testcase=["layer_framing", "layer_one_cycle_resets"])
