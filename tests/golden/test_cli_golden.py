"""``refmodel golden`` and ``golden verify`` as typed: exit codes in --help, --json, options given
in the wrong place, one-line errors."""

from __future__ import annotations

import json

from refmodel.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_states_exit_codes(capsys):
    for args in (["golden", "--help"], ["golden", "verify", "--help"]):
        code, out, _ = run(capsys, *args)
        assert code == 0 and "Exit codes: 0 pass, 1 a check failed, 2 usage error" in " ".join(out.split())


def test_verify_json_pass_and_fail(capsys, tmp_path):
    s = tmp_path / "s"
    assert run(capsys, "golden", "--out", str(s), "--plan", "fp8")[0] == 0
    code, out, err = run(capsys, "golden", "verify", str(s), "--json")
    r = json.loads(out)  # stdout holds exactly one JSON object (the progress bar is on stderr)
    assert code == 0 and r["ok"] is True and r["regenerated"] is True and r["files"] > 30
    assert r["source"]["weights"] == {"kind": "random", "seed": 0}
    code, out, _ = run(capsys, "golden", "verify", str(s), "--json", "--files-only")
    assert code == 0 and json.loads(out)["regenerated"] is False
    ref = s / "probs.ref.hex"
    lines = ref.read_text().splitlines(True)
    lines[3] = "3ff0000000000000\n" if lines[3] != "3ff0000000000000\n" else "0000000000000000\n"
    ref.write_text("".join(lines))
    code, out, err = run(capsys, "golden", "verify", str(s), "--json")
    r = json.loads(out)
    assert code == 1 and r["ok"] is False and "probs.ref.hex does not match its sha256" in r["error"]
    assert err.strip().startswith("FAIL:") and len(err.strip().splitlines()) == 1


def test_regenerated_bytes_differ_is_a_failed_check(capsys, tmp_path):
    """A set whose files are self-consistent (sha256 rewritten) but not what the generator makes:
    the rebuild catches it, exit 1."""
    import hashlib

    s = tmp_path / "s"
    assert run(capsys, "golden", "--out", str(s))[0] == 0
    m = json.loads((s / "manifest.json").read_text())
    f = s / "x.ref.hex"
    text = f.read_text().splitlines(True)
    text[0] = f"{int(text[0], 16) ^ 1:016x}\n"
    f.write_text("".join(text))
    m["tensors"]["x"]["sha256"]["x.ref.hex"] = hashlib.sha256(f.read_bytes()).hexdigest()
    (s / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    code, _, err = run(capsys, "golden", "verify", str(s))
    assert code == 1 and "differs from a fresh regeneration" in err
    code, _, _ = run(capsys, "golden", "verify", str(s), "--files-only")
    assert code == 0


def test_options_before_verify_are_refused(capsys, tmp_path):
    s = tmp_path / "s"
    assert run(capsys, "golden", "--out", str(s))[0] == 0
    code, out, err = run(capsys, "golden", "--plan", "fp8", "--seed", "3", "verify", str(s))
    assert code == 2 and "--plan, --seed given before 'verify'" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "golden", "verify", str(s))
    assert code == 0


def test_output_keeps_numbers_whole_in_80_columns(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "golden", "--out", str(tmp_path / "s"), "--plan", "fp8")
    assert code == 0 and "…" not in out


def test_clipping_counts_and_warnings(capsys, tmp_path):
    """The saturation / flush-to-zero counts the run records are printed when nonzero, with a
    warning above 0.1 % saturated or 50 % zero (here: s4.0 weights flush almost everything)."""
    from refmodel.commands.golden import _clipping_lines

    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"base": "hw", "weights": {"wq": {"format": "s4.0"}}}))
    code, out, err = run(capsys, "golden", "--plan", str(plan), "--out", str(tmp_path / "s"))
    assert code == 0, err
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["clipping"]["wq"]["n"] == 4096 and m["clipping"]["wq"]["zero"] > 2048
    assert "saturated / flushed to zero in quantization:" in out and "  wq: " in out
    assert "warning" in out and "wq: " in out.split("warning", 1)[1]
    info, warn = _clipping_lines({"clipping": {"x": {"n": 10, "saturated": 0, "nonfinite": 0, "zero": 0,
                                                      "underflow": 0}}})
    assert info == [] and warn == []
