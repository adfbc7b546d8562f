"""pytest runner for layer_top's own units (cocotb module layer_units_tests.py): the residual
saturating add ``layer_sat_add`` and the per-stage accumulator ``layer_acc``."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from harness import RTL, build_dir_for, run_unit


@pytest.mark.parametrize("w", [6, 16])
def test_layer_sat_add(w):
    """Every pair at W = 6 (4,096), random pairs and all corners at W = 16 (the hw residual)."""
    run_unit("layer_sat_add", sources=["layer_sat_add.v"], test_module="layer_units_tests", parameters={"W": w},
             extra_env={"RM_W": str(w)}, testcase="sat_add_all_pairs")


@pytest.mark.parametrize("lanes,a_w,w_w,acc_w", [(1, 8, 6, 30), (3, 7, 5, 24)])
def test_layer_acc(lanes, a_w, w_w, acc_w):
    """Wrap at three widths (and saturate, with one lane) per dot product, against dot_acc_int."""
    beat_w = a_w + w_w + (lanes - 1).bit_length()
    run_unit("layer_acc", sources=["layer_acc.v"], test_module="layer_units_tests",
             parameters={"BEAT_W": beat_w, "ACC_W": acc_w},
             extra_env={"RM_LANES": str(lanes), "RM_A_W": str(a_w), "RM_W_W": str(w_w), "RM_BEAT_W": str(beat_w),
                        "RM_ACC_W": str(acc_w)},
             testcase="acc_modes")


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_layer_memcheck_short_file(sim, tmp_path):
    """layer_top's ROM load check (layer_memcheck) in the 4-state and the 2-state simulator: a file
    one word short stops the simulation at time 0 naming the file (under Verilator the missing word
    would otherwise load as 0); the complete file passes."""
    w, n = 8, 24
    words = [(7 * i + 3) % 256 for i in range(n)]
    full, short = tmp_path / "w_full.hex", tmp_path / "w_short.hex"
    full.write_text("".join(f"{v:02x}\n" for v in words))
    short.write_text("".join(f"{v:02x}\n" for v in words[:-1]))
    run_unit("layer_memcheck", sources=["layer_memcheck.v"], test_module="layer_units_tests", simulator_name=sim,
             parameters={"W": w, "N": n, "MEMFILE": full}, extra_env={"RM_W": str(w), "RM_N": str(n)},
             testcase="memcheck_loads", waves="never")
    with pytest.raises(pytest.fail.Exception) as ei:
        run_unit("layer_memcheck", sources=["layer_memcheck.v"], test_module="layer_units_tests", simulator_name=sim,
                 parameters={"W": w, "N": n, "MEMFILE": short}, extra_env={"RM_W": str(w), "RM_N": str(n)},
                 testcase="memcheck_loads", waves="never", build_dir=build_dir_for("layer_memcheck_short", {}, sim))
    assert f"did not load {n} words" in str(ei.value) and "w_short.hex" in str(ei.value), str(ei.value)[:2000]


@pytest.mark.parametrize("src,params", [
    ("layer_acc.v", {}), ("layer_acc.v", {"BEAT_W": 40, "ACC_W": 30}), ("layer_sat_add.v", {"W": 5}),
    ("layer_memcheck.v", {"MEMFILE": '"/x/w.hex"'}), ("layer_seq.v", {"LANES": 3}), ("layer_ext.v", {"SIGNED": 0}),
])
def test_layer_units_lint(src, params):
    """verilator --lint-only -Wall is clean for each of layer_top's own units on its own."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not found (apt-get install -y verilator)")
    res = subprocess.run(["verilator", "--lint-only", "-Wall", *[f"-G{k}={v}" for k, v in params.items()],
                          str(RTL / src)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr[:2000]
