"""The command line: every subcommand runs, prints what it promises, and turns bad input into a
one-line error (exit 2, no traceback, nothing half-written)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from refmodel.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_formats_list(capsys):
    code, out, _ = run(capsys, "formats")
    assert code == 0
    for name in ("e4m3fn", "e5m2", "fp16", "bf16", "e2m1", "e8m0", "s16.12", "mxfp8_e4m3"):
        assert name in out
    assert "448" in out and "57344" in out and "65504" in out


def test_formats_show_fixed(capsys):
    code, out, _ = run(capsys, "formats", "s16.12", "--show", "1.3")
    assert code == 0
    assert "code 5325 = 0x14cd" in out
    assert "sign 0 | int 001 | frac 010011001101" in out


def test_formats_show_float(capsys):
    code, out, _ = run(capsys, "formats", "e4m3fn", "--show", "-0.3")
    assert code == 0
    # -0.3 -> nearest e4m3fn is -0.3125 = -1.25 * 2^-2: sign 1, exponent 0101, mantissa 010
    assert "0xaa" in out and "sign 1 | exponent 0101 | mantissa 010" in out


@pytest.mark.parametrize("args, match", [
    (["formats", "s99.3"], "width must be in 1..63"),
    (["formats", "q7"], "unknown format 'q7'"),
    (["formats", "s8.4", "--rounding", "nearest"], "unknown rounding mode 'nearest'"),
    (["plan", "fp12"], "unknown plan 'fp12'"),
    (["golden", "--plan", "hw"], "needs --out"),
    (["golden", "verify", "/nonexistent/set"], "not a directory"),
    (["accuracy", "--model", "gpt5"], "unknown --model 'gpt5'"),
    (["accuracy", "--model", "random", "--layers", "x"], "bad --layers 'x'"),
    (["accuracy", "--model", "random", "--plot", "a.jpg"], "--plot must name a .png"),
    (["accuracy", "--model", "random", "--plot", "/nonexistent/dir/a.png"], "directory /nonexistent/dir does not exist"),
])
def test_bad_input_is_one_line(capsys, args, match):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert match in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_plan_table_and_save(capsys, tmp_path):
    code, out, _ = run(capsys, "plan", "hw", "--save", str(tmp_path / "hw.toml"))
    assert code == 0 and "u16.15" in out and "acc:s40:wrap" in out
    code, out, _ = run(capsys, "plan", str(tmp_path / "hw.toml"))
    assert code == 0 and "u16.15" in out
    code, out, _ = run(capsys, "plan")
    assert code == 0 and "fixed16" in out and "mxfp8" in out


def test_golden_generate_verify_and_damage(capsys, tmp_path):
    out_dir = tmp_path / "set"
    code, out, _ = run(capsys, "golden", "--config", "tiny", "--plan", "fp8", "--seed", "3", "--out", str(out_dir))
    assert code == 0 and "wrote" in out
    m = json.loads((out_dir / "manifest.json").read_text())
    assert m["seed"] == 3 and m["plan"]["name"] == "fp8" and "timestamp" not in json.dumps(m)
    code, out, _ = run(capsys, "golden", "verify", str(out_dir))
    assert code == 0 and "OK" in out
    f = out_dir / "q.hex"
    f.write_text(f.read_text().replace("0", "1", 1))
    code, _, err = run(capsys, "golden", "verify", str(out_dir))
    assert code == 1 and "q.hex" in err  # a failed check (exit 1), not a usage error


def test_accuracy_random_with_plot(capsys, tmp_path):
    png = tmp_path / "acc.png"
    code, out, _ = run(capsys, "accuracy", "--model", "random", "--plan", "fp16-acc16", "--outliers", "1000",
                       "--plot", str(png))
    assert code == 0
    assert "SLaNC off" in out and "SLaNC on" in out and "ln2" in out
    assert png.stat().st_size > 10_000


@pytest.mark.models
def test_accuracy_minilm_one_layer(capsys):
    code, out, _ = run(capsys, "accuracy", "--model", "minilm", "--plan", "fp16", "--layers", "0",
                       "--text", "Fixed point is fun.")
    assert code == 0 and "all-MiniLM-L6-v2" in out and "cosine" in out


def test_demo_without_rtl(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path / "d"), "--no-rtl")
    assert "stages pass" in out and "RTL simulation not requested" in out
    assert (tmp_path / "d" / "demo_error_vs_bound.png").exists()
    assert (tmp_path / "d" / "golden" / "manifest.json").exists()
    assert code == 0


def test_demo_mx_plan_judges_every_stage(capsys, tmp_path):
    """Under mxfp8 eight stages are MX tensors (elements + scales): the demo judges them on their
    exact values against both tiers, so all 15 stages are in the table."""
    code, out, _ = run(capsys, "demo", "--plan", "mxfp8", "--out", str(tmp_path / "d"), "--no-rtl")
    assert code == 0 and "15/15 stages pass" in out
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert rows == ["x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act",
                    "down", "out"]


def test_demo_table_fits_80_columns_with_the_local_column(capsys, monkeypatch, tmp_path):
    """The stage table at 80 columns: every stage has its local err/bound and warning count (the
    model's own codes without --no-rtl's RTL run), every number whole."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path / "d"), "--no-rtl")
    assert code == 0
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in out and "(warn)" in out
    rows = [ln.split("│")[1:-1] for ln in lines if ln.startswith("│") and ln.split("│")[1].strip()]
    assert len(rows) == 15 and all(len(r) == 7 for r in rows), rows[:2]
    for r in rows:
        local = re.fullmatch(r"([0-9.e+-]+) \((\d+)\)", r[5].strip())
        assert local and 0.0 <= float(local.group(1)) <= 1.0 and local.group(2) == "0", r
        assert re.fullmatch(r"\d\.\d{3}e[+-]\d\d", r[2].strip()) and r[6].strip() == "PASS", r


def test_console_script_installed():
    r = subprocess.run([sys.executable, "-m", "refmodel.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "formats" in r.stdout and "golden" in r.stdout


def test_no_partial_golden_set_on_error(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"base": "hw", "tensors": {"q": {"format": "s99.3"}}}')
    code, _, err = run(capsys, "golden", "--plan", str(bad), "--out", str(tmp_path / "s"))
    assert code == 2 and "s99.3" in err
    assert not (tmp_path / "s").exists()
    assert [p.name for p in Path(tmp_path).iterdir()] == ["bad.json"]


# ---- root options, exit codes, 80 columns, formats --show/--seed ------------------------------------
def test_version(capsys):
    import refmodel

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"refmodel {refmodel.__version__}"


def test_root_help_states_the_exit_codes():
    r = subprocess.run([sys.executable, "-m", "refmodel.cli", "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "100"})
    assert r.returncode == 0
    assert "Exit codes: 0 pass, 1 a check failed, 2 usage error" in " ".join(r.stdout.split())


def test_formats_table_fits_80_columns_with_every_number_whole(capsys, monkeypatch):
    # an 80-column terminal: rich takes a terminal's width from COLUMNS
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "formats")
    assert code == 0
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # the terminal's colour and bold codes
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in out
    cells = out.split()
    for number in ("3.40282e+38", "2^-149", "65504", "57344", "448", "2^-9", "2^127", "2^-127", "2^7-2^-8",
                   "mxfp8_e4m3", "e4m3fnuz", "e5m2fnuz"):
        assert number in cells, number


def test_formats_show_rounds_the_value_as_typed(capsys):
    # 1.0625 + 1e-25 is above the tie between 1.0 and 1.125 (0x38 / 0x39); float64 would drop the 1e-25
    code, out, _ = run(capsys, "formats", "e4m3fn", "--show", "1.0625000000000000000000001")
    assert code == 0 and "code 0x39" in out
    code, out, _ = run(capsys, "formats", "e4m3fn", "--show", "1.0625")
    assert code == 0 and "code 0x38" in out


def test_formats_stochastic_takes_a_seed(capsys):
    from fractions import Fraction

    import numpy as np
    from oracle import fixed_quantize_oracle

    for seed in (0, 1, 2, 3):
        code, out, _ = run(capsys, "formats", "s8.4", "--show", "0.1", "--rounding", "stochastic", "--seed", str(seed))
        assert code == 0 and f"stochastic, seed {seed}" in out
        r = int(np.random.default_rng(seed).integers(0, 1 << 32, size=1)[0])
        want = fixed_quantize_oracle(Fraction(1, 10), 8, 4, True, "stochastic", r=r)
        assert f"code {want} " in out
    code, _, err = run(capsys, "formats", "s8.4", "--show", "0.1", "--rounding", "stochastic")
    assert code == 2 and "--rounding stochastic needs --seed" in err
    code, _, err = run(capsys, "formats", "s8.4", "--show", "0.1", "--seed", "3")
    assert code == 2 and "--seed is used only by --rounding stochastic" in err


@pytest.mark.parametrize("args, match", [
    (["formats", "e4m3fn", "--show", "abc"], "--show 'abc' is not a number"),
    (["formats", "e4m3fn:inf"], "specials='fn' has no inf"),
    (["formats", "fp16:sat,inf"], "two overflow policies"),
    (["formats", "e2m1", "--show", "nan"], "e2m1 has no NaN code"),
    (["formats", "s8.4", "--show", "nan"], "NaN input"),
])
def test_formats_bad_input_is_one_line(capsys, args, match):
    code, out, err = run(capsys, *args)
    assert code == 2 and match in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_output_path_is_one_line(capsys, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("mine")
    code, out, err = run(capsys, "demo", "--out", str(f), "--no-rtl")
    assert code == 2 and "a_file" in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1
    assert f.read_text() == "mine"


def test_bounds_table_fits_80_columns_with_every_number_whole(capsys, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "bounds", "--plan", "fp16", "--trials", "2")
    assert code == 0
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert max(len(line) for line in out.splitlines()) <= 80, max(out.splitlines(), key=len)
    assert "…" not in out
    rows = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert len(rows) == 15 and all(len(r.split("│")) == 9 for r in rows), rows[:2]


@pytest.mark.parametrize("cmd", ["demo", "golden", "accuracy", "bounds", "study"])
def test_negative_seed_is_a_usage_error(capsys, cmd):
    args = {"golden": ["golden", "--plan", "hw", "--out", "x"], "study": ["study", "norms"]}.get(cmd, [cmd])
    code, out, err = run(capsys, *args, "--seed", "-1")
    assert code == 2 and "--seed" in err + out and "Traceback" not in err + out
