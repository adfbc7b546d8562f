"""``refmodel accuracy`` and ``refmodel plan`` as typed: clipping shown, --json, 80 columns,
one-line errors, preset descriptions, accumulator checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from refmodel.cli import main

INT8 = Path(__file__).with_name("int8_channel.toml")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_backwards_layer_range_is_a_one_line_error(capsys):
    code, out, err = run(capsys, "accuracy", "--model", "random", "--layers", "3-1")
    assert code == 2 and out == ""
    assert err.strip() == "error: --layers '3-1': the range 3-1 runs backwards; write 1-3 (layers run in order as a chain)"


def test_accuracy_json_is_one_object_on_stdout(capsys):
    code, out, err = run(capsys, "accuracy", "--model", "random", "--plan", str(INT8), "--json", "--slanc", "off")
    assert code == 0
    d = json.loads(out)  # nothing else on stdout
    rows = d["runs"]["SLaNC off"]["rows"]
    assert [r["name"] for r in rows][:3] == ["x", "ln1", "q"] and d["plan"] == "int8-channel"
    assert {"saturated", "zero", "underflow", "n", "max_rel", "cosine"} <= set(rows[0])
    w = d["weights"]["per_weight"]["layer 0 wq"]
    assert w["saturated"] == 0 and w["n"] == 64 * 64  # maxabs per channel: nothing saturates
    assert d["weights"]["total"]["n"] == sum(v["n"] for v in d["weights"]["per_weight"].values())
    assert d["plan_summary"]["weights"].startswith("s8.0 x fp32 per channel (maxabs), s8.7 x 2^e per tensor (fit)")


def test_accuracy_shows_clipping_and_warns(capsys):
    # outliers of 300 saturate x in s16.8 (|x| < 128): counted, and warned on stderr above 0.1 %
    code, out, err = run(capsys, "accuracy", "--model", "random", "--plan", "hw", "--outliers", "300", "--slanc", "off")
    assert code == 0
    row = next(ln for ln in out.splitlines() if re.match(r"\s*0\s+x\s", ln))
    assert row.split()[4] == str(3 * 16)  # 3 outlier channels x 16 tokens saturated ("sat" column)
    assert "weights: 0 saturated" in out
    assert "warning: SLaNC off, layer 0: x: 48 saturated of 1024 (4.69 % > 0.1 %)" in err


def test_accuracy_slanc_note_for_fixed_point(capsys):
    code, out, _ = run(capsys, "accuracy", "--model", "random", "--plan", "fixed16")
    assert code == 0 and "note: SLaNC in a fixed-point plan: the integer norm unit sums x and x^2 exactly" in out
    assert "Shifts here: layer 0 ln1 k=" in out


def test_accuracy_table_keeps_exponents_in_80_columns():
    from refmodel.accuracy import TensorAccuracy
    from refmodel.commands.accuracy import accuracy_table

    rows = [TensorAccuracy(12, name, 1.0, rel, 0.987654321, sat, 0, sat, zero, None, 4096)
            for name, rel, sat, zero in (("q_rope", 1.234e-17, 123456, 4096), ("scores", 0.000123, 0, 0),
                                         ("down", float("nan"), 7, 3))]
    console = Console(width=80, record=True, color_system=None)
    console.print(accuracy_table({"SLaNC off": rows, "SLaNC on": rows}, "accuracy of plan fixed16 vs float64"))
    text = console.export_text()
    assert max(len(ln) for ln in text.splitlines()) <= 80 and "…" not in text
    for s in ("1.23e-17", "0.000123", "123456", "0.98765", "100", "0.0732", "nan"):
        assert s in text, s
    assert text.count("1.23e-17") == 2  # both column groups shown


def test_plan_lists_what_each_preset_does(capsys):
    code, out, _ = run(capsys, "plan")
    assert code == 0
    flat = " ".join(out.split())
    assert re.search(r"fp16 \S* fp16 \S* fp16 \S* sequential:fp32", flat.replace("│", ""))
    assert re.search(r"fp16-acc16 \S* fp16 \S* fp16 \S* sequential:fp16", flat.replace("│", ""))
    assert "fp16: fp16 storage, fp32 accumulation" in flat
    assert "s8.7 x 2^e per tensor (fit)" in flat


def test_plan_with_config_states_accumulator_risk(capsys, tmp_path):
    f = tmp_path / "acc32.toml"
    f.write_text('base = "hw"\nname = "acc32"\n[tensors.down]\nacc = "acc:s32:sat"\n[weights]\nw_down = "s16.12"\n')
    code, out, _ = run(capsys, "plan", str(f), "--config", "gpt2-small")
    assert code == 0
    flat = " ".join(out.split())
    assert ("risk: tensor down: accumulator acc:s32:sat has 32 bits, 16x16-bit products (act s16.10 x w_down "
            "s16.12) over K=3072 need 44: it saturates once |sum| >= 2^31 (worst case 2^43)") in flat
    f.write_text(f.read_text().replace("acc:s32:sat", "acc:s32:error"))
    code, out, err = run(capsys, "accuracy", "--model", "random", "--config", "gpt2-small", "--plan", str(f))
    assert code == 2 and "tensor down: accumulator acc:s32:error has 32 bits" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("plan", ["fp16", "fp16-acc16"])
def test_fp16_presets_run(capsys, plan):
    code, out, _ = run(capsys, "accuracy", "--model", "random", "--plan", plan, "--json", "--slanc", "off")
    rel = json.loads(out)["runs"]["SLaNC off"]["final"]["max_rel"]
    assert code == 0 and 0 < rel < 2e-2 and np.isfinite(rel)


def test_unscaled_integer_weights_are_not_silent(capsys, tmp_path):
    f = tmp_path / "s8_0.toml"
    f.write_text('base = "fp32"\nname = "int-no-scale"\n[weights]\nwq = "s8.0"\n')
    code, out, err = run(capsys, "accuracy", "--model", "random", "--plan", str(f), "--slanc", "off", "--layers", "0-1")
    assert code == 0
    assert ('warning: weights.wq: s8.0 holds integers without a scale: weights below 0.5 round to 0 (add scale = '
            '"tensor" or "channel")') in err
    assert ("warning: layers 0,1: weight wq (s8.0): 4096 of 4096 stored as zero (100 % > 50 %, 4096 flushed from "
            "nonzero) (first of them)") in err
    assert "weights: 0 saturated, 8192 flushed to zero" in out
    code, out, _ = run(capsys, "plan", str(f))
    assert code == 0 and "note: weights.wq: s8.0 holds integers without a scale" in " ".join(out.split())
