"""pytest runner for rtl/layer_top.v: the whole GPT-2 layer on Icarus and Verilator, every stage
checked against a golden set stage by stage -- within its local tolerance, warnings from the
statistical tier, bit-exact (cocotb bench: layer_top_tests.py, through the simulation wrapper
rtl/layer_top_tb.v, or layer_top itself; and the package's runner without cocotb).

Every Verilog parameter comes from the golden set's manifest (``config``, ``plan``, ``units``);
:func:`layer_params` checks each assumption the RTL makes about the plan (one activation width,
one rounding mode, residual operands in one format, ...) and refuses a set that breaks one, naming
it. The weight, bias, gamma/beta and table files are the golden set's own, handed over as quoted
absolute string parameters.

Tests:
* ``test_tiny_gpt2_hw``: the committed set golden/tiny_gpt2_hw, end to end, 4 MAC lanes (prints
  wall time including the compile, cycles per stage and the stage table);
* ``test_layer_bench_flags_proj_shift_fault``: the same bench with PROJ_SHIFT one too large fails
  at proj by the local tolerance, naming the first bad element and the err/bound ratio;
* ``test_gpt2_odd_shape_seed11_hw``: a set generated now from another seed and in another shape
  (not the committed vectors), 3 MAC lanes, pseudo-random stalls on both streams, and a reset in
  the middle of a first run;
* ``test_layer_top_lint``: verilator --lint-only -Wall of layer_top and its submodules;
* ``test_gpt2_d128_s64_hw`` (slow, --run-slow): d_model 128, 4 heads, d_ff 512, seq 64;
* ``test_framing_and_resets``: layer_top itself driven from Python: short/long frames, one-cycle
  resets in four stages, output gating every cycle, every stage buffer compared;
* through the package runner (``refmodel.rtl_layer.simulate_layer``, no cocotb): Icarus and
  Verilator agree; distinct q/k/v shifts under another plan name; saturating residual adds; a score
  row at the exp underflow threshold; per-tensor accumulators and the fixed16 preset;
  ``test_gpt2_small_verilator_64_lanes`` (slow): the GPT-2-small shape end to end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import ROOT, RTL, build_dir_for, run_unit

from refmodel.golden.generate import generate_set
from refmodel.golden.manifest import load_tensor, read_manifest
from refmodel.layer.config import LayerConfig
from refmodel.layer.plan import PrecisionPlan

TINY_SET = ROOT / "golden" / "tiny_gpt2_hw"
#: second default-suite shape: no power-of-two buffer depths, 3 heads, softmax row buffer > row
ODD_SHAPE = LayerConfig(arch="gpt2", d_model=48, n_heads=3, d_ff=96, seq_len=12)
#: the smallest useful layer: Python drives and watches its streams cycle by cycle
MICRO = LayerConfig(arch="gpt2", d_model=16, n_heads=2, d_ff=32, seq_len=4)

# the parameter map and its checks live in the package (the demo runs the same RTL without cocotb)
from refmodel.rtl_layer import (  # noqa: E402
    SIMULATORS,
    SOURCES,
    TB_SOURCES,
    LayerSim,
    UnsupportedSet,
    check_set,
    cycle_budget,
    layer_params,
    parameter_decls,
    rtl_support,
    simulate_layer,
    simulator_available,
)


def run_layer(set_dir: Path, lanes: int, *, stall: bool = False, reset_at: int = 0,
              overrides: dict[str, Any] | None = None, waves: str = "on_failure") -> dict[str, Any]:
    """Build and run layer_top_tb on ``set_dir``; returns the bench's summary plus wall times.
    ``overrides``: Verilog parameters to change after the set's map (fault injection)."""
    params = {**layer_params(set_dir, lanes), **(overrides or {})}
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
        testcase="layer_end_to_end",
        waves=waves,
    )
    summary = json.loads(report.read_text())
    summary["wall_seconds"] = time.perf_counter() - t0
    print(f"LAYER {set_dir.name} LANES={lanes} stall={int(stall)} reset_at={reset_at}: {summary['check_summary']}; "
          f"{summary['cycles']} cycles, wall {summary['wall_seconds']:.1f} s incl. compile "
          f"(run {summary['sim_seconds']:.1f} s); out max |err| vs float64 {summary['out_max_abs_err']:.3g} "
          f"= {summary['out_max_abs_err_lsb']:.2f} LSB (end-to-end tolerance: {summary['out_tolerance']})")
    print(f"LAYER cycles per stage: {summary['stage_cycles']}")
    print(summary["check_table"])
    return summary


def assert_stage_by_stage(summary: dict[str, Any]) -> None:
    """The bench's stage table: every stage checked against its local tier, bit-exact, within the
    bound (err/bound <= 1), failures 0."""
    st = summary["stages"]
    assert list(st) == ["x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act",
                        "down", "out"], list(st)
    for name, r in st.items():
        assert r["tier"] == "local" and r["bit_exact"] and r["failed"] == 0 and r["ratio"] <= 1.0, (name, r)


def test_tiny_gpt2_hw():
    """The committed golden set, four MAC lanes (223,469 cycles, half the Icarus time of one lane;
    one lane is run by the other tests and by the demo), no stalls."""
    s = run_layer(TINY_SET, lanes=4)
    assert s["codes_checked"] == 21_504
    assert_stage_by_stage(s)


def test_layer_bench_flags_proj_shift_fault():
    """The bench with a parameter-level fault: layer_top's PROJ_SHIFT one too large (every proj
    output halved). The stage-by-stage check fails at proj -- the first stage in forward order
    outside its local tolerance -- naming the first bad element and the err/bound ratio; the stages
    before it pass (they are bit-exact), the ones after it are named as downstream."""
    shift = layer_params(TINY_SET, 4)["PROJ_SHIFT"]
    with pytest.raises(pytest.fail.Exception) as info:
        run_layer(TINY_SET, lanes=4, overrides={"PROJ_SHIFT": shift + 1}, waves="never")
    msg = str(info.value)
    m = re.search(r"tiny_gpt2_hw: stage (\w+): (\d+) of 1024 elements outside the local tolerance "
                  r"\(max err/bound ([0-9.e+]+),.*?; first at \[(\d+), (\d+)\]: .*?\(err/bound ([0-9.e+]+)\)", msg)
    assert m, msg[:3000]
    assert m.group(1) == "proj", msg[:3000]
    assert int(m.group(2)) > 900 and float(m.group(3)) > 10 and float(m.group(6)) > 1, msg[:3000]
    assert "downstream" in msg and "res1" in msg, msg[:3000]
    print("LAYER fault PROJ_SHIFT+1 flagged:", next(ln for ln in msg.splitlines() if "stage proj:" in ln).strip())


def test_gpt2_odd_shape_seed11_hw(tmp_path):
    """A set generated now from another seed in another shape (d_model 48, 3 heads of 16, d_ff 96,
    seq 12: no power-of-two buffer depths, softmax row buffer larger than the row), 3 MAC lanes
    (partial last beats in the scores and the mix), pseudo-random stalls on both streams, and a
    reset in the middle of a first run."""
    set_dir = generate_set(ODD_SHAPE, "hw", 11, tmp_path / "gpt2_d48_h3_f96_s12_hw_seed11")
    s = run_layer(set_dir, lanes=3, stall=True, reset_at=6000)
    assert_stage_by_stage(s)


@pytest.mark.slow
def test_gpt2_small_verilator_64_lanes(tmp_path):
    """A GPT-2-small-shape layer (d768, 12 heads, ff3072, seq 128, hw plan, generated now), 64 MAC
    lanes on Verilator, through the package runner: every stage bit-exact (about 16.4M cycles;
    generation, build and simulation take a few minutes on a 2-core machine)."""
    need("verilator")
    t0 = time.perf_counter()
    set_dir = generate_set("gpt2-small", "hw", 0, tmp_path / "gpt2_small_hw")
    t1 = time.perf_counter()
    s = simulate_layer(set_dir, tmp_path / "run", lanes=64, sim="verilator")
    assert_bit_exact(set_dir, s)
    print(f"LAYER gpt2-small LANES=64 verilator: {s.cycles} cycles, all 15 stages bit-exact; golden set "
          f"{t1 - t0:.0f} s, build {s.build_seconds:.0f} s, simulation {s.seconds:.0f} s "
          f"({s.cycles / s.seconds:.3g} cycles/s), end to end {time.perf_counter() - t0:.0f} s")
    print(f"LAYER cycles per stage: {s.stage_cycles}")


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


# ==== the package's runner (refmodel.rtl_layer.simulate_layer), no cocotb ==========================
def need(sim: str) -> None:
    """Skip when ``sim`` cannot run on a user's machine; fail under CI (CI=true)."""
    why = simulator_available(sim)
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{why} -- a missing simulator is a failure under CI", pytrace=False)
        pytest.skip(why)


def assert_bit_exact(set_dir: Path, sim: LayerSim) -> None:
    """Every stage of ``sim`` equals the golden codes (reports name the first wrong stage), and the
    m_* stream equals the out buffer."""
    out = sim.codes["out"]
    assert sim.out_stream is not None and np.array_equal(sim.out_stream, out), "m_* stream differs from the out buffer"
    reports = check_set(set_dir, sim)
    assert not reports, "stages differ (forward order):\n" + "\n".join(reports)


@pytest.fixture(scope="module")
def odd_set(tmp_path_factory) -> Path:
    return generate_set(ODD_SHAPE, "hw", 11, tmp_path_factory.mktemp("odd") / "gpt2_d48_s12_hw_seed11")


def test_runner_icarus_and_verilator_agree(odd_set, tmp_path):
    """The runner on both simulators (2 MAC lanes): identical dumps, equal to the golden codes,
    same cycle count."""
    for sim in SIMULATORS:
        need(sim)
    runs = {sim: simulate_layer(odd_set, tmp_path / sim, lanes=2, sim=sim) for sim in SIMULATORS}
    ic, vl = runs["icarus"], runs["verilator"]
    assert ic.cycles == vl.cycles and ic.stage_cycles == vl.stage_cycles
    for name in ic.codes:
        assert np.array_equal(ic.codes[name], vl.codes[name]), f"{name}: Icarus and Verilator dumps differ"
    for sim in SIMULATORS:
        dumps = {p.name: p.read_bytes() for p in sorted((tmp_path / sim / "dump").glob("*.hex"))}
        assert len(dumps) == 16
    assert_bit_exact(odd_set, vl)
    print(f"LAYER runner odd shape LANES=2: {ic.cycles} cycles; icarus {ic.seconds:.2f} s, verilator "
          f"{vl.seconds:.2f} s (+{vl.build_seconds:.1f} s build)")


def _custom_plan() -> PrecisionPlan:
    """hw's content with different formats for q, k, v (so Q/K/V_SHIFT differ: 9, 11, 10) and for
    their biases (so Q/K/V_BIAS_LSH differ: 6, 7, 8), under another name."""
    hw = PrecisionPlan.from_name("hw")
    t = dict(hw.tensors)
    t["q"], t["k"] = replace(t["q"], format="s16.9"), replace(t["k"], format="s16.7")
    w = dict(hw.weights)
    w["bk"], w["bv"] = replace(w["bk"], format="s16.11"), replace(w["bv"], format="s16.10")
    return hw.replace(name="my-datapath", description="hw with per-tensor q/k/v formats", tensors=t, weights=w)


def test_distinct_qkv_shifts_run_under_another_name(tmp_path):
    """A plan named `my-datapath` whose q, k, v requant shifts and bias shifts all differ: the RTL
    runs it (content, not the name, decides) and every stage is bit-exact."""
    plan = _custom_plan()
    assert rtl_support(LayerConfig.from_name("tiny"), plan) == []
    set_dir = generate_set(MICRO, plan, 4, tmp_path / "set")
    p = layer_params(set_dir, 1)
    assert len({p["Q_SHIFT"], p["K_SHIFT"], p["V_SHIFT"]}) == 3, p
    assert len({p["Q_BIAS_LSH"], p["K_BIAS_LSH"], p["V_BIAS_LSH"]}) == 3, p
    calls: list[tuple[int, int]] = []
    s = simulate_layer(set_dir, tmp_path / "run", lanes=1, sim="icarus", progress=lambda d, t: calls.append((d, t)),
                       progress_every=500)
    assert_bit_exact(set_dir, s)
    done = [d for d, _ in calls]
    assert len(calls) > 5 and done == sorted(done) and calls[-1][0] == calls[-1][1], calls[:3] + calls[-3:]


def test_residual_saturation(tmp_path):
    """A set whose input is large (N(0, 100^2) in s16.8: |x| saturates at 128), so x + proj and
    res1 + down overflow: the residual adds saturate in the model and must in the RTL."""
    from refmodel.layer.weights import random_inputs

    set_dir = generate_set(MICRO, "hw", tmp_path / "set", seed=5, inputs=random_inputs(MICRO, 6, scale=100.0))
    man = read_manifest(set_dir)
    x, proj, res1 = (load_tensor(set_dir, n, man)["codes"] for n in ("x", "proj", "res1"))
    lim = 1 << 15
    over = (x + proj >= lim) | (x + proj < -lim)
    assert over.sum() >= 5 and np.all(np.abs(res1[over]) >= lim - 1), "the set does not saturate res1"
    assert_bit_exact(set_dir, simulate_layer(set_dir, tmp_path / "run", lanes=1, sim="icarus"))


#: 16 tokens of a 16-wide layer: enough unmasked score pairs to find a row at the exp underflow point
THRESH_SHAPE = LayerConfig(arch="gpt2", d_model=16, n_heads=2, d_ff=32, seq_len=16)


def _threshold_gaps(sm: dict[str, int]) -> np.ndarray:
    """Score gaps d = max - x (codes) whose exp is the last nonzero one: t = d log2(e) rounds to
    exactly (LUT_W + GUARD - 1) whole units and no fraction, where e = LUT[0] >> (LUT_W + GUARD - 1)
    is 1; one more unit (or a threshold one lower) gives 0."""
    d = np.arange(1 << 16, dtype=np.int64)
    sh = sm["IN_F"] + sm["LOG2E_F"] - sm["LUT_BITS"]
    tq = (d * sm["LOG2E"] + (1 << (sh - 1))) >> sh
    return d[tq == (sm["LUT_W"] + sm["GUARD"] - 1) << sm["LUT_BITS"]]


def _mutant_visible_rows(scores: np.ndarray, sm: dict[str, int]) -> int:
    """Rows whose probabilities change if the exp underflow threshold were one lower: the elements
    at a threshold gap lose their exp (1 LSB), the row sum drops by as much, and some output code
    changes. Returns how many such rows ``scores`` [H, S, S] (causal) has."""
    from refmodel.numerics.units.softmax import SoftmaxParams, softmax

    H, S, _ = scores.shape
    masked = ~np.tril(np.ones((S, S), bool))
    p = SoftmaxParams(in_w=sm["IN_W"], in_f=sm["IN_F"], n_max=sm["N_MAX"], lut_bits=sm["LUT_BITS"],
                      lut_w=sm["LUT_W"], guard=sm["GUARD"], out_w=sm["OUT_W"], out_f=sm["OUT_F"], k=sm["K"])
    y, e, s, _ = softmax(scores, p, masked=masked, return_parts=True)
    xmax = np.where(masked, -(1 << 40), scores).max(axis=-1, keepdims=True)
    at = ~masked & np.isin(xmax - scores, _threshold_gaps(sm))
    e2 = np.where(at, 0, e)
    s2 = e2.sum(axis=-1, keepdims=True)
    r2 = (np.int64(1) << np.int64(p.k)) // np.maximum(s2, 1)
    sh = np.int64(p.k - p.out_f)
    y2 = np.minimum((e2 * r2 + (np.int64(1) << (sh - 1))) >> sh, np.int64((1 << p.out_w) - 1))
    return int(np.any(y2 != y, axis=-1).sum())


def _coarse_exp_plan() -> PrecisionPlan:
    """hw with an 8-bit exp LUT and no guard bits: the last nonzero exp (1 LSB) weighs 1/128 of
    the row maximum, so it shows in the probabilities; the plan has its own name."""
    hw = PrecisionPlan.from_name("hw")
    return hw.replace(name="hw-coarse-exp", units=replace(hw.units, softmax_lut_w=8, softmax_guard_bits=0))


def test_softmax_underflow_threshold_rows(tmp_path):
    """A set with score rows in which an element sits exactly at the exp underflow threshold and
    the probabilities would change if the threshold were one lower (wq, wk scaled x2 so scores
    spread; the first seed that gives such rows; the coarse-exp plan makes that element's exp
    visible). Bit-exact through the RTL."""
    from refmodel.layer.quantized import run_quantized
    from refmodel.layer.weights import random_inputs, random_weights

    def spread(cfg, seed):
        w = random_weights(cfg, seed=seed)
        return w.replace(wq=w.get("wq") * 2.0, wk=w.get("wk") * 2.0)

    plan = _coarse_exp_plan()
    for seed in range(200):
        run = run_quantized(THRESH_SHAPE, spread(THRESH_SHAPE, seed), random_inputs(THRESH_SHAPE, seed=seed + 1), plan)
        sm = next(r for r in run.records if r.name == "probs").details["softmax"].to_hdl()
        if _mutant_visible_rows(run.tensors["scores"].codes, sm):
            break
    else:
        pytest.fail("no seed in 0..199 gives a score row where the exp underflow threshold shows")
    set_dir = generate_set(THRESH_SHAPE, plan, tmp_path / "set", seed=seed, weights=spread(THRESH_SHAPE, seed))
    man = read_manifest(set_dir)
    rows = _mutant_visible_rows(load_tensor(set_dir, "scores", man)["codes"], man["units"]["probs"]["softmax"])
    assert rows > 0, "the golden set has no row at the threshold"
    assert_bit_exact(set_dir, simulate_layer(set_dir, tmp_path / "run", lanes=1, sim="icarus"))


def test_per_stage_accumulators(tmp_path):
    """Per-tensor accumulators (widths 24..36, wrap and saturate mixed) map onto the per-stage
    <STAGE>_ACC_W / _ACC_SAT parameters and run bit-exactly (one lane: saturation is per product);
    the fixed16 preset (48-bit saturating accumulators) runs too."""
    hw = PrecisionPlan.from_name("hw")
    accs = {"q": "acc:s28:sat", "k": "acc:s30:wrap", "v": "acc:s25:sat", "scores": "acc:s34:sat",
            "attn": "acc:s36:wrap", "proj": "acc:s26:wrap", "up": "acc:s24:sat", "down": "acc:s27:wrap"}
    t = dict(hw.tensors)
    for n, a in accs.items():
        t[n] = replace(t[n], acc=a)
    plan = hw.replace(name="per-tensor-acc", tensors=t)
    set_dir = generate_set(MICRO, plan, 6, tmp_path / "set")
    p = layer_params(set_dir, 1)
    key = {"q": "Q", "k": "K", "v": "V", "scores": "SC", "attn": "MIX", "proj": "PROJ", "up": "UP", "down": "DOWN"}
    for n, a in accs.items():
        assert (p[f"{key[n]}_ACC_W"], p[f"{key[n]}_ACC_SAT"]) == (int(a[5:7]), int(a.endswith("sat"))), (n, a)
    with pytest.raises(UnsupportedSet, match="tensor q: acc acc:s28:sat saturates at every product"):
        layer_params(set_dir, 2)
    assert_bit_exact(set_dir, simulate_layer(set_dir, tmp_path / "run", lanes=1, sim="icarus"))
    f16 = generate_set(MICRO, "fixed16", 6, tmp_path / "fixed16")
    assert layer_params(f16, 1)["Q_ACC_SAT"] == 1
    assert_bit_exact(f16, simulate_layer(f16, tmp_path / "run16", lanes=1, sim="icarus"))


def test_parameter_lists_agree():
    """layer_top_pass.vh passes every parameter of layer_top_params.vh, in order and nothing else,
    and the runner knows each parameter's type (64-bit ones get sized literals)."""
    import re

    names = [n for n, _ in parameter_decls()]
    passed = re.findall(r"^\s*\.(\w+)\((\w+)\)", (RTL / "layer_top_pass.vh").read_text(), re.M)
    assert [a for a, _ in passed] == names and all(a == b for a, b in passed)
    assert len(names) == len(set(names)) > 90
    assert {n for n, k in parameter_decls() if k == "[63:0]"} == {"LN1_EPS", "LN1_SQD", "LN2_EPS", "LN2_SQD"}
    assert set(layer_params(TINY_SET, 1)) <= set(names)
