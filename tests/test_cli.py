"""The command line: every subcommand runs, prints what it promises, and turns bad input into a
one-line error (exit 2, no traceback, nothing half-written)."""

from __future__ import annotations

import json
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
    assert code == 2 and "q.hex" in err


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
