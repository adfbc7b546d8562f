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
import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness import RTL, ROOT, build_dir_for, run_unit
from refmodel.golden.generate import generate_set
from refmodel.golden.manifest import read_manifest
from refmodel.layer.config import LayerConfig
from refmodel.numerics.fixed import FixedFormat

TINY_SET = ROOT / "golden" / "tiny_gpt2_hw"
#: second default-suite shape: no power-of-two buffer depths, 3 heads, softmax row buffer > row
ODD_SHAPE = LayerConfig(arch="gpt2", d_model=48, n_heads=3, d_ff=96, seq_len=12)

#: layer_top and its submodules (the units it composes); the lint covers exactly these
SOURCES = ["layer_top.v", "layer_seq.v", "layer_ext.v", "layer_sat_add.v", "mac_dot.v", "requant.v",
           "softmax_row.v", "reciprocal.v", "layernorm.v", "rsqrt.v", "rsqrt_isqrt.v", "act_table.v"]
#: simulation-only wrapper ($readmemh input, $writememh dumps)
TB_SOURCES = ["layer_top_tb.v", *SOURCES]

ROUND_MODE = {"floor": 0, "half_up": 1, "rne": 2}
#: golden-set file of each *_MEMFILE parameter
MEMFILES = {
    "WQ": "wq", "WK": "wk", "WV": "wv", "WO": "wo", "W_UP": "w_up", "W_DOWN": "w_down",
    "BQ": "bq", "BK": "bk", "BV": "bv", "BO": "bo", "B_UP": "b_up", "B_DOWN": "b_down",
    "LN1_G": "ln1_g", "LN1_B": "ln1_b", "LN2_G": "ln2_g", "LN2_B": "ln2_b",
    "EXP2": "exp2_lut", "ACT_TABLE": "act_table",
}
#: manifest norm_params keys passed as LN1_* / LN2_* (D, IN_W, OUT_W, RMS are fixed by the top)
NORM_KEYS = ("SHIFT", "MEAN_G", "EPS_G", "EPS", "N_F", "RSQ_K", "RSQ_W", "SQD_F", "SQD", "G_W", "G_F", "B_W",
             "B_F", "OUT_F", "OUT_RNE")
SOFTMAX_KEYS = ("IN_F", "N_MAX", "LUT_BITS", "LUT_W", "GUARD", "OUT_F", "LOG2E_F", "LOG2E", "K")
LINEAR = {"q": "Q", "k": "K", "v": "V", "proj": "PROJ", "up": "UP", "down": "DOWN"}


class UnsupportedSet(ValueError):
    """The golden set needs something layer_top does not implement (message names it)."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise UnsupportedSet(f"layer_top cannot run this golden set: {what}")


def layer_params(set_dir: Path, lanes: int) -> dict[str, Any]:
    """Verilog parameters of layer_top for the golden set in ``set_dir`` (see module docstring).
    ``UnsupportedSet`` names the first assumption the set breaks."""
    m = read_manifest(set_dir)
    cfg, plan, units = m["config"], m["plan"], m["units"]
    _need(cfg["arch"] == "gpt2", f"arch {cfg['arch']!r} (only gpt2: pre-LN, biases, GELU MLP)")
    _need(bool(cfg["causal"]), "non-causal attention")
    _need(cfg["n_kv_heads"] == cfg["n_heads"], "grouped-query attention")
    t = plan["tensors"]
    fmt = {n: FixedFormat.parse(t[n]["format"]) for n in
           ("x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down", "out")}
    acts = [n for n in fmt if n != "probs"]
    act_w = fmt["x"].width
    _need(all(fmt[n].width == act_w and fmt[n].signed for n in acts), f"activation widths {[str(fmt[n]) for n in acts]}")
    _need(not fmt["probs"].signed, f"signed probs {fmt['probs']}")
    _need(fmt["x"] == fmt["proj"] == fmt["res1"] and fmt["res1"] == fmt["down"] == fmt["out"],
          "residual adds with operands in different formats (only the saturating same-format add is built)")
    rounding = {t[n]["rounding"] for n in fmt if n not in ("x", "res1", "out")}
    _need(len(rounding) == 1 and rounding <= set(ROUND_MODE), f"rounding modes {sorted(rounding)}")
    rnd = ROUND_MODE[rounding.pop()]
    _need(all(t[n]["overflow"] == "saturate" for n in fmt), "a tensor that wraps instead of saturating")
    w = plan["weights"]
    mats = {FixedFormat.parse(w[n]["format"]) for n in ("wq", "wk", "wv", "wo", "w_up", "w_down")}
    biases = {FixedFormat.parse(w[n]["format"]) for n in ("bq", "bk", "bv", "bo", "b_up", "b_down")}
    _need(len(mats) == 1 and len(biases) == 1, "weight or bias matrices in different formats")
    wgt, bias = mats.pop(), biases.pop()

    p: dict[str, Any] = {
        "D_MODEL": cfg["d_model"], "N_HEADS": cfg["n_heads"], "D_FF": cfg["d_ff"], "SEQ": cfg["seq_len"],
        "LANES": lanes, "ACT_W": act_w, "PROB_W": fmt["probs"].width, "WGT_W": wgt.width, "BIAS_W": bias.width,
        "ROUND_MODE": rnd,
    }
    macs = {n: units[n]["mac"] for n in (*LINEAR, "scores", "attn")}
    accs = {(mc["ACC_W"], mc["ACC_SAT"]) for mc in macs.values()}
    _need(len(accs) == 1, f"accumulators differ between stages: {sorted(accs)}")
    p["ACC_W"], p["ACC_SAT"] = accs.pop()
    _need(p["ACC_SAT"] == 0 or lanes == 1, "a saturating accumulator with LANES > 1")
    for n, key in LINEAR.items():
        mc = macs[n]
        _need("bias_requant" not in units[n], f"{n}: bias finer than the accumulator (rounded offline)")
        _need(mc["A_W"] == act_w and mc["W_W"] == wgt.width and mc["OUT_W"] == act_w and mc["B_W"] == bias.width
              and mc["ROUND_MODE"] == rnd and mc["LANES"] == 1, f"{n}: MAC parameters {mc}")
        p[f"{key}_SHIFT"], p[f"{key}_BIAS_LSH"] = mc["SHIFT"], mc["BIAS_LSH"]
    sc, rq = macs["scores"], units["scores"]["requant"]
    _need(sc["A_W"] == act_w and sc["W_W"] == act_w and sc["SHIFT"] == 0, f"scores MAC {sc}")
    _need(rq["OUT_W"] == act_w and rq["ROUND_MODE"] == rnd, f"scores requant {rq}")
    p["SC_MULT"], p["SC_SHIFT"] = units["scores"]["multiplier"], rq["SHIFT"]
    mix = macs["attn"]
    _need(mix["A_W"] == fmt["probs"].width + 1 and mix["W_W"] == act_w and mix["OUT_W"] == act_w
          and mix["ROUND_MODE"] == rnd, f"attention mix MAC {mix}")
    p["MIX_SHIFT"] = mix["SHIFT"]
    sm = units["probs"]["softmax"]
    _need(sm["IN_W"] == act_w and sm["OUT_W"] == fmt["probs"].width, f"softmax widths {sm}")
    p.update({f"SM_{k}": sm[k] for k in SOFTMAX_KEYS})
    act = units["act"]
    tin = FixedFormat.parse(act["table_in"])
    _need(act["act_params"]["OUT_W"] == act_w and tin.signed and tin.frac <= fmt["up"].frac,
          f"activation table {act}")
    p["ACT_IN_W"], p["ACT_SHIFT"] = act["act_params"]["IN_W"], fmt["up"].frac - tin.frac
    for ln in ("ln1", "ln2"):
        npar = units[ln]["norm_params"]
        _need(npar["D"] == cfg["d_model"] and npar["IN_W"] == act_w and npar["OUT_W"] == act_w and npar["RMS"] == 0,
              f"{ln} norm parameters {npar}")
        slanc = (m.get("slanc") or {}).get(ln)
        _need(slanc is None or slanc["shift"] == npar["SHIFT"], f"{ln}: SLaNC shift {slanc} != norm SHIFT")
        p.update({f"{ln.upper()}_{k}": npar[k] for k in NORM_KEYS})
    for key, name in MEMFILES.items():
        f = (set_dir / m["tensors"][name]["file"]).resolve()
        _need(f.exists(), f"file {f} missing")
        p[f"{key}_MEMFILE"] = f'"{f}"'
    return p


def cycle_budget(p: dict[str, Any]) -> int:
    """A generous cycle limit for one run: MAC beats (as issued) plus the streamed stages."""
    s, d, f, h, lanes = p["SEQ"], p["D_MODEL"], p["D_FF"], p["N_HEADS"], p["LANES"]
    hd = d // h
    beats = s * d * math.ceil(d / lanes) * 4 + 2 * s * f * math.ceil(d / lanes)  # q k v proj, up down
    beats += h * s * s * math.ceil(hd / lanes) + s * d * sum(math.ceil((i + 1) / lanes) for i in range(s))
    norms = 2 * s * (2 * d + 3 * p["LN1_RSQ_K"] + 20)
    soft = h * s * (3 * p["SM_N_MAX"] + p["SM_K"] + 10)
    return 3 * (beats + norms + soft + 8 * s * (d + f)) + 10_000


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
    tol = "within tolerance" if summary["tolerance"] else "no tolerance in the set"
    print(f"LAYER {set_dir.name} LANES={lanes} stall={int(stall)} reset_at={reset_at}: all stages bit-exact, "
          f"{summary['cycles']} cycles, wall {summary['wall_seconds']:.1f} s incl. compile "
          f"(run {summary['sim_seconds']:.1f} s); out max |err| vs float64 {summary['out_max_abs_err']:.3g} "
          f"= {summary['out_max_abs_err_lsb']:.2f} LSB ({tol})")
    print(f"LAYER cycles per stage: {summary['stage_cycles']}")
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
    gen = []
    for k, v in p.items():
        if k.endswith(("_EPS", "_SQD")):
            gen.append(f"-G{k}=64'd{v}")  # 64-bit parameters need sized literals (Verilator)
        else:
            gen.append(f"-G{k}={v}")
    res = subprocess.run(
        ["verilator", "--lint-only", "-Wall", "--top-module", "layer_top", *gen, *[str(RTL / s) for s in SOURCES]],
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
    with pytest.raises(UnsupportedSet, match="rounding modes"):
        layer_params(d, 1)
