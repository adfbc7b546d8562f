"""``refmodel demo`` and the RTL capability check: the RTL runs whenever the plan's content is one
it implements, whatever the plan is called; otherwise demo says which feature is missing (or what
else stops the RTL: no simulator, no sources) in one line and exits 2, unless --no-rtl."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from refmodel.cli import main
from refmodel.layer.config import LayerConfig
from refmodel.layer.plan import PrecisionPlan
from refmodel.rtl_layer import rtl_support

MICRO = {"arch": "gpt2", "d_model": 16, "n_heads": 2, "d_ff": 32, "seq_len": 4}


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, out: str, err: str, match: str) -> None:
    assert code == 2, (code, out, err)
    assert match in err, err
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1, err


def _write(tmp_path: Path, name: str, plan: PrecisionPlan) -> str:
    p = tmp_path / name
    plan.save(p)
    return str(p)


def test_capability_messages():
    tiny = LayerConfig.from_name("tiny")
    assert rtl_support(tiny, PrecisionPlan.from_name("hw")) == []
    assert rtl_support(tiny, PrecisionPlan.from_name("fixed16")) == []
    assert "tensor q: acc acc:s48:sat saturates at every product -- the RTL does that with LANES = 1 only " \
           "(asked for 4); with more lanes its accumulators wrap" in rtl_support(tiny, PrecisionPlan.from_name("fixed16"), 4)
    assert "tensor x: format fp16 -- the RTL computes in fixed point" in rtl_support(tiny, PrecisionPlan.from_name("fp16"))
    assert rtl_support(LayerConfig.from_name("tiny-bert"), PrecisionPlan.from_name("hw")) == [
        "config: arch bert -- the RTL layer is gpt2 (pre-LN LayerNorm, biases, GELU MLP)"]
    hw = PrecisionPlan.from_name("hw")
    seq = hw.replace(tensors={**hw.tensors, "up": replace(hw.tensors["up"], acc="sequential:fp32")})
    assert rtl_support(tiny, seq) == ["tensor up: acc sequential:fp32 -- the RTL accumulates in fixed point "
                                      "(acc:s<W>:wrap|sat, or exact)"]
    units = hw.replace(units=replace(hw.units, softmax="float"))
    assert rtl_support(tiny, units) == ["units.softmax float -- the RTL softmax is the exp2-LUT unit (exp2_lut)"]


def test_per_channel_scales_are_named():
    """The int8 per-channel plan of the plan docs: each per-channel weight is named (later step)."""
    plan = PrecisionPlan.load(Path(__file__).parent / "layer" / "int8_channel.toml")
    why = rtl_support(LayerConfig.from_name("tiny"), plan)
    assert [w for w in why if "scale channel" in w] == [
        "weight wq: scale channel -- per-channel weight scales are not implemented in the RTL yet (it requantises "
        "every output of a stage with one multiplier and shift)",
        "weight w_up: scale channel -- per-channel weight scales are not implemented in the RTL yet (it requantises "
        "every output of a stage with one multiplier and shift)"]
    hw = PrecisionPlan.from_name("hw")
    assert hw.weights["wq"].scale == "tensor" and hw.weights["wq"].scale_kind == "pow2"
    assert rtl_support(LayerConfig.from_name("tiny"), hw) == []


def test_demo_changed_plan_named_hw_says_what_is_missing(capsys, tmp_path):
    """A plan file still named hw whose q accumulator saturates, asked with 2 lanes: one line naming
    the tensor and the feature, exit 2, nothing written."""
    hw = PrecisionPlan.from_name("hw")
    plan = hw.replace(tensors={**hw.tensors, "q": replace(hw.tensors["q"], acc="acc:s32:sat")})
    assert plan.name == "hw"
    out_dir = tmp_path / "d"
    res = run(capsys, "demo", "--out", str(out_dir), "--plan", _write(tmp_path, "hw.toml", plan), "--lanes", "2")
    one_line_error(*res, "tensor q: acc acc:s32:sat saturates at every product")
    assert "--no-rtl" in res[2]
    assert not out_dir.exists()


def test_demo_same_content_other_name_runs_the_rtl(capsys, tmp_path):
    """hw's content under another name, a small config: the RTL runs (Icarus) and every stage is
    bit-exact."""
    cfg = tmp_path / "micro.json"
    cfg.write_text(json.dumps(MICRO))
    plan = PrecisionPlan.from_name("hw").replace(name="our-asic")
    code, out, err = run(capsys, "demo", "--out", str(tmp_path / "d"), "--config", str(cfg), "--plan",
                         _write(tmp_path, "ours.json", plan), "--sim", "icarus")
    assert "RTL layer simulated on Icarus" in out, out + err
    assert out.count(" yes ") >= 15 and " NO " not in out
    assert code in (0, 1)  # the verdict also needs every tolerance met; the RTL column is what is tested here


def test_demo_without_simulator_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no iverilog / vvp on PATH
    res = run(capsys, "demo", "--out", str(tmp_path / "d"), "--sim", "icarus")
    one_line_error(*res, "Icarus Verilog is not installed")


def test_demo_without_rtl_sources_says_so(capsys, tmp_path, monkeypatch):
    import refmodel.rtl_build as rb

    monkeypatch.setattr(rb, "rtl_dir", lambda: tmp_path / "no_rtl")
    res = run(capsys, "demo", "--out", str(tmp_path / "d"))
    one_line_error(*res, "the RTL sources are not installed")


def test_demo_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "report.txt"
    f.write_text("mine\n")
    one_line_error(*run(capsys, "demo", "--out", str(f), "--no-rtl"), "exists and is not a directory")
    assert f.read_text() == "mine\n"


def test_demo_unknown_simulator(capsys, tmp_path):
    one_line_error(*run(capsys, "demo", "--out", str(tmp_path / "d"), "--sim", "vcs"), "unknown --sim 'vcs'")


def test_rtl_layer_module_cli(capsys, tmp_path):
    """``python -m refmodel.rtl_layer SET``: 0 and every stage bit-exact on a small set; 2 and one
    line naming the missing feature for a set the RTL cannot run."""
    from refmodel.golden.generate import generate_set
    from refmodel.rtl_layer import main as rtl_main

    cfg = LayerConfig.from_dict(MICRO)
    good = generate_set(cfg, "hw", 2, tmp_path / "hw")
    assert rtl_main([str(good), "--sim", "icarus", "--work", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "15/15 stages bit-exact" in out and "15/15 within the local tolerance" in out
    assert re.search(r"^proj +yes +0 .* local$", out, re.M), out
    bad = generate_set(cfg, "fp16", 2, tmp_path / "fp16")
    assert rtl_main([str(bad), "--work", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    assert "tensor x: format fp16 -- the RTL computes in fixed point" in err and len(err.strip().splitlines()) == 1
