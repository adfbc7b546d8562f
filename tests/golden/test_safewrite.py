"""Golden sets never cost the user data (issue: golden --out deleted what DIR held): each case that
lost data has a test here, run as the user runs it (the CLI, real processes, real SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from refmodel.cli import main
from refmodel.errors import UserError
from refmodel.golden import generate_set, verify_set
from refmodel.golden.safewrite import LOCK_PREFIX, TEMP_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code: int, out: str, err: str, match: str) -> None:
    assert code == 2, (code, out, err)
    assert match in err, err
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1, err


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_foreign_directory_is_refused_and_kept(capsys, tmp_path):
    """mkdir -p proj/src; echo x > proj/src/top.sv; refmodel golden --out proj: refused, nothing lost."""
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "top.sv").write_text("x\n")
    before = _tree(proj)
    for extra in ([], ["--force"]):
        code, out, err = run(capsys, "golden", "--out", str(proj), *extra)
        _one_line_error(code, out, err, "is not empty and is not a refmodel golden set (it holds src)")
        assert _tree(proj) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]  # no temporary, no lock left


@pytest.mark.parametrize("out", [".", "../here", ".."])
def test_out_is_the_working_directory_or_above(capsys, tmp_path, monkeypatch, out):
    """--out . / --out ../here from inside here / --out ..: a one-line error, the directory intact."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "work.txt").write_text("keep")
    monkeypatch.chdir(here)
    code, o, err = run(capsys, "golden", "--out", out)
    _one_line_error(code, o, err, "current directory")
    assert (here / "work.txt").read_text() == "keep" and sorted(p.name for p in here.iterdir()) == ["work.txt"]
    code, o, err = run(capsys, "golden", "--out", out, "--force")
    _one_line_error(code, o, err, "current directory")


def test_file_as_out_and_existing_set(capsys, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    code, out, err = run(capsys, "golden", "--out", str(f))
    _one_line_error(code, out, err, "exists and is not a directory")
    assert f.read_text() == "mine"
    s = tmp_path / "set"
    assert run(capsys, "golden", "--out", str(s))[0] == 0
    code, out, err = run(capsys, "golden", "--out", str(s), "--plan", "fp8")
    _one_line_error(code, out, err, "already holds a golden set; pass --force")


def test_force_replaces_only_the_sets_own_files(capsys, tmp_path):
    s = tmp_path / "set"
    assert run(capsys, "golden", "--out", str(s), "--plan", "hw")[0] == 0
    assert (s / "act_table.hex").exists()  # hw has unit tables; fp8 has none
    (s / "README.md").write_text("my notes")
    (s / "sim").mkdir()
    (s / "sim" / "wave.vcd").write_text("vcd")
    assert run(capsys, "golden", "--out", str(s), "--plan", "fp8", "--force")[0] == 0
    assert (s / "README.md").read_text() == "my notes" and (s / "sim" / "wave.vcd").read_text() == "vcd"
    assert not (s / "act_table.hex").exists() and not (s / "exp2_lut.hex").exists()
    m = json.loads((s / "manifest.json").read_text())
    assert m["plan"]["name"] == "fp8"
    verify_set(s)  # the notes and the sim folder are not part of the set and do not disturb it
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_files_follow_the_umask(tmp_path):
    for umask, fmode, dmode in ((0o022, 0o644, 0o755), (0o027, 0o640, 0o750)):
        old = os.umask(umask)
        try:
            d = generate_set("tiny", "fp8", tmp_path / f"set{umask:o}", seed=1)
        finally:
            os.umask(old)
        assert stat.S_IMODE(d.stat().st_mode) == dmode
        assert {stat.S_IMODE(p.stat().st_mode) for p in d.iterdir()} == {fmode}


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from refmodel.golden import generate_set
    calls = [0]
    def progress():
        calls[0] += 1
        if calls[0] == 12:  # after the compute steps, while tensors are being written
            os.kill(os.getpid(), signal.SIGKILL)
    generate_set("tiny", "hw", sys.argv[1], seed=0, progress=progress)
""")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_sigkill_leftovers_are_removed_by_the_next_run(capsys, tmp_path):
    out = tmp_path / "set"
    r = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(out)], env=_env(), capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(temps) == 1 and any(temps[0].iterdir()) and not out.exists()
    # a live writer's temporary is left alone
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"{TEMP_PREFIX}set-{sleeper.pid}-0123abcd"
        live.mkdir()
        code, _, err = run(capsys, "golden", "--out", str(out))
        assert code == 0, err
        assert not temps[0].exists() and live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not (tmp_path / f"{LOCK_PREFIX}set").exists()
    verify_set(out)


_RACE_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from refmodel.cli import main
    go = sys.argv[1]
    while not os.path.exists(go):
        time.sleep(0.005)
    sys.exit(main(sys.argv[2:]))
""")


def test_concurrent_writers_exactly_one_wins(tmp_path):
    out = tmp_path / "set"
    go = tmp_path / "go"
    args = ["golden", "--config", "tiny", "--plan", "hw", "--out", str(out)]
    procs = [subprocess.Popen([sys.executable, "-c", _RACE_SCRIPT, str(go), *args], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(1.5)  # let every interpreter import refmodel and wait at the barrier
    go.write_text("")
    results = []
    for p in procs:
        o, e = p.communicate(timeout=300)
        results.append((p.returncode, o, e))
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) == 1, results
    for code, o, err in losers:
        assert code == 2 and "Traceback" not in o + err and len(err.strip().splitlines()) == 1, err
        assert "another refmodel process" in err or "already holds a golden set" in err, err
    assert "wrote" in winners[0][1]
    verify_set(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "set"]


def test_lock_is_refused_in_process(tmp_path):
    from refmodel.golden.safewrite import ConcurrentWriteError, SetTarget

    with SetTarget(tmp_path / "s"):
        with pytest.raises(ConcurrentWriteError, match="another refmodel process"):
            with SetTarget(tmp_path / "s"):
                pass
    with pytest.raises(UserError):  # ConcurrentWriteError is a UserError: exit code 2, one line
        raise ConcurrentWriteError("x")
