"""``refmodel sweep`` refuses bad input with one line and exit code 2 before any cluster starts or
any file is written; the grid parser on its own."""

from __future__ import annotations

import pytest
from sweep_testkit import run

from refmodel.errors import UserError
from refmodel.sweep import JobOptions, build_grid, load_grid_file, parse_seeds


@pytest.mark.parametrize("args, match", [
    (["--jobs", "golden,fuzz"], "unknown job kind 'fuzz'"),
    (["--seeds", "5-2"], "the range 5-2 runs backwards"),
    (["--seeds", "1,x"], "bad --seeds '1,x'"),
    (["--seeds", "0,1,1"], "seed 1 appears twice"),
    (["--configs", "tiny,huge"], "unknown config 'huge'"),
    (["--plans", "hw,fp12"], "unknown plan 'fp12'"),
    (["--plans", "nothere.toml"], "plan file not found: nothere.toml"),
    (["--trials", "0"], "--trials must be an integer >= 1, got 0"),
    (["--max-rel", "-1"], "--max-rel must be a positive number"),
    (["--sim", "modelsim"], "unknown --sim 'modelsim'"),
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"], "size the local cluster"),
    (["--scheduler", "localhost"], "--scheduler 'localhost'"),
    (["--scheduler", "tcp://127.0.0.1:1"], "no Dask scheduler answers there"),
    (["--grid", "grid.yaml"], "a grid file is .toml or .json"),
    (["--grid", "missing.toml"], "--grid missing.toml: cannot read it"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "sweep", *args, "--out", "result")
    assert code == 2, err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "result").exists()


def test_needs_out(capsys):
    code, _, err = run(capsys, "sweep", "--jobs", "accuracy")
    assert code == 2 and "refmodel sweep needs --out DIR" in err


def test_foreign_out_dir_is_refused_and_untouched(tmp_path, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("precious")
    code, _, err = run(capsys, "sweep", "--jobs", "accuracy", "--out", str(d))
    assert code == 2
    assert f"--out {d} is not empty and is not a refmodel sweep result (it holds 'thesis.tex'" in err
    assert [p.name for p in d.iterdir()] == ["thesis.tex"] and (d / "thesis.tex").read_text() == "precious"
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run(capsys, "sweep", "--jobs", "accuracy", "--out", str(f))
    assert code == 2 and f"--out {f} exists and is not a directory" in err and f.read_text() == "x"


def test_broken_marker_is_not_a_licence_to_delete(tmp_path, capsys):
    d = tmp_path / "res"
    d.mkdir()
    (d / ".refmodel-sweep").write_text("not json")
    (d / "results.json").write_text("{}")
    code, _, err = run(capsys, "sweep", "--jobs", "accuracy", "--out", str(d))
    assert code == 2 and "cannot be read as a refmodel sweep marker" in err
    assert sorted(p.name for p in d.iterdir()) == [".refmodel-sweep", "results.json"]


def test_grid_file_unknown_key_and_relative_files(tmp_path):
    g = tmp_path / "g" / "grid.json"
    g.parent.mkdir()
    g.write_text('{"configs": ["tiny", "layer.json"], "seed": 3}')
    with pytest.raises(UserError, match="unknown key 'seed'; known: configs, plans, seeds"):
        load_grid_file(g)
    g.write_text('{"configs": "tiny, layer.json", "seeds": "0-2"}')
    spec = load_grid_file(g)
    assert spec == {"configs": ["tiny", str(tmp_path / "g" / "layer.json")], "seeds": "0-2"}


def test_seeds_and_grid_order():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds(5) == [5] and parse_seeds([2, 0]) == [2, 0]
    with pytest.raises(UserError, match="seed -1 is negative"):
        parse_seeds([-1])
    with pytest.raises(UserError, match="every seed must be an integer"):
        parse_seeds([1.5])  # type: ignore[list-item]
    g = build_grid("tiny,tiny-llama", "hw", "0-1", "rtl,golden", JobOptions(trials=2))
    ids = [j.id for j in g.jobs()]
    assert ids == [f"{c}/hw/s{s}/{k}" for c in ("tiny", "tiny-llama") for s in (0, 1) for k in ("golden", "rtl")]
    assert g.jobs()[1].inputs() == {"job": "rtl", "config": "tiny", "plan": "hw", "seed": 0,
                                    "options": {"sim": "icarus", "lanes": 1}}
    with pytest.raises(UserError, match="two configs are labelled 'a'"):
        build_grid("x/a.json,y/a.json", "hw", "0", "golden")
