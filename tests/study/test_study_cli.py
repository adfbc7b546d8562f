"""``refmodel study`` as typed: the report folder (self-contained HTML with inline PNGs, results.json),
the --out rules (a user's folder is refused and left untouched; an earlier report is rewritten,
other files in it kept), and one-line errors."""

from __future__ import annotations

import json

import pytest

from refmodel.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "softmax"
    code = main(["study", "softmax", "--quick", "--model", "minilm", "--out", str(out)])
    assert code == 0
    return out


@pytest.mark.models
def test_study_writes_a_self_contained_report(report):
    assert sorted(p.name for p in report.iterdir()) == ["report.html", "results.json"]
    html = (report / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") >= 1 and "<table>" in html
    assert "Claims" in html and ("held" in html)
    res = json.loads((report / "results.json").read_text())
    head = res["refmodel_report"]
    assert head["study"] == "softmax" and head["options"]["quick"] is True and head["options"]["models"] == ["minilm"]
    assert res["claims"] and all(isinstance(c["held"], bool) for c in res["claims"])
    # the tables of the JSON are the report's: every claim statement is in the HTML
    for c in res["claims"]:
        assert c["statement"].replace("'", "&#x27;") in html
    assert oct((report / "report.html").stat().st_mode & 0o777) != oct(0o600)


@pytest.mark.models
def test_rerun_into_a_report_keeps_other_files(report, capsys):
    (report / "notes.txt").write_text("mine")
    code, out, _ = run(capsys, "study", "softmax", "--quick", "--model", "minilm", "--out", str(report))
    assert code == 0 and "report written" in out
    assert (report / "notes.txt").read_text() == "mine"


def test_a_users_folder_is_refused_and_untouched(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("x")
    code, out, err = run(capsys, "study", "norms", "--quick", "--out", str(tmp_path))
    assert code == 2
    assert str(tmp_path) in err and "not a refmodel report" in err
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out


@pytest.mark.parametrize("args, match", [
    (["study", "lasers"], "unknown study 'lasers'"),
    (["study", "norms", "--model", "gpt5"], "unknown --model 'gpt5'"),
    (["study", "norms", "--quick", "--full"], "--quick and --full exclude each other"),
    (["study", "residual", "--plans", "fp12"], "unknown plan 'fp12'"),
    (["study", "residual", "--tokens", "0"], "--tokens 0"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, match):
    code, out, err = run(capsys, *args, "--out", str(tmp_path / "r"))
    assert code == 2
    assert match in err
    assert "Traceback" not in err + out and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
