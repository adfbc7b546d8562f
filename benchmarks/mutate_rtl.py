"""Mutation run of the RTL benches: how many one-line hardware faults do the tests catch?

    python benchmarks/mutate_rtl.py --jobs 2            # every mutant of rtl_tests/mutants.toml
    python benchmarks/mutate_rtl.py --only sat_add_ovf_zero,ln_slast_inverted
    python benchmarks/mutate_rtl.py --baseline          # first: the unmutated RTL passes every listed test

The list (``rtl_tests/mutants.toml``) holds one-line mutations of the files in ``rtl/``: an exact
substring ``find`` that occurs exactly once in ``file`` and its replacement ``replace``. Each
mutant is applied to a private copy of ``rtl/`` (``rtl/`` itself is never written); the pytest
benches that cover the file (``tests`` of the mutant, else ``[files].<file>`` of the list, cheapest
first) run against the copy through ``REFMODEL_RTL_DIR`` (every bench finds its sources through
:func:`refmodel.resources.rtl_dir`), with their own build directories (``RM_SIM_BUILD``,
``REFMODEL_CACHE_DIR``), on Icarus, without waveform re-runs (``RM_WAVES=never``), stopping at the
first failing test.

Outcome per mutant:
* ``KILLED`` -- a test failed (the first failing test is named) or the run exceeded ``--timeout``
  (a hung simulation is caught by any CI timeout);
* ``SURVIVED`` -- every test passed: a hole in the benches, unless the mutant is listed with
  ``equivalent = "<argument>"`` (it cannot change any output; the argument says why) or with
  ``survives = "<argument>"`` (it can, but no bench of practical size reaches the case; the
  argument says why -- it still counts as not killed);
* ``ERROR`` -- pytest could not run the tests (usage error, nothing collected).

Score: killed / (mutants - listed equivalents); exit status 0 when that is >= ``--goal`` (0.98),
every survivor is argued (``equivalent`` or ``survives``) and no mutant listed as equivalent was
killed (its argument would be wrong), else 1.
A JSON report (``--json``) keeps every mutant's outcome, killer, time and output tail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parent.parent
RTL = ROOT / "rtl"
MUTANTS = ROOT / "rtl_tests" / "mutants.toml"
WORK = ROOT / "sim_build" / "mutants"


class MutantError(ValueError):
    """The list names a mutation that cannot be applied (the message says which and why)."""


@dataclass(frozen=True)
class Mutant:
    """One one-line mutation: ``find`` (exactly once in ``rtl/<file>``, one line) becomes ``replace``."""

    id: str
    file: str
    find: str
    replace: str
    what: str
    tests: tuple[str, ...]
    equivalent: str | None = None
    survives: str | None = None


@dataclass
class Outcome:
    """What became of one mutant."""

    id: str
    file: str
    status: str                  # killed | survived | error
    killer: str | None
    seconds: float
    equivalent: bool
    tests_run: int = 0
    tail: list[str] = field(default_factory=list)
    argued: bool = False


def load_mutants(path: Path = MUTANTS) -> list[Mutant]:
    """The mutants of ``path``, each with its tests (the mutant's own, else its file's)."""
    data = tomllib.loads(path.read_text())
    files: dict[str, list[str]] = data.get("files", {})
    out: list[Mutant] = []
    seen: set[str] = set()
    for i, m in enumerate(data.get("mutant", [])):
        missing = [k for k in ("id", "file", "find", "replace", "what") if k not in m]
        if missing:
            raise MutantError(f"mutant #{i + 1} ({m.get('id', '?')}): missing {', '.join(missing)}")
        if m["id"] in seen:
            raise MutantError(f"mutant id {m['id']!r} is listed twice")
        seen.add(m["id"])
        tests = m.get("tests") or files.get(m["file"])
        if not tests:
            raise MutantError(f"mutant {m['id']}: no tests (neither its own nor [files].{m['file']!r})")
        if "equivalent" in m and "survives" in m:
            raise MutantError(f"mutant {m['id']}: either equivalent or survives, not both")
        out.append(Mutant(m["id"], m["file"], m["find"], m["replace"], m["what"], tuple(dict.fromkeys(tests)),
                          m.get("equivalent"), m.get("survives")))
    return out


def mutated_text(m: Mutant, rtl: Path = RTL) -> str:
    """The text of ``rtl/<m.file>`` with the mutation applied; MutantError unless ``find`` is one
    line, occurs exactly once, and ``replace`` differs from it."""
    src = rtl / m.file
    if not src.is_file():
        raise MutantError(f"mutant {m.id}: {m.file} is not a file of rtl/")
    if "\n" in m.find or "\n" in m.replace:
        raise MutantError(f"mutant {m.id}: find/replace must be one line")
    if m.find == m.replace:
        raise MutantError(f"mutant {m.id}: replace equals find")
    text = src.read_text()
    n = text.count(m.find)
    if n != 1:
        raise MutantError(f"mutant {m.id}: {m.find!r} occurs {n} times in {m.file} (must be exactly once)")
    return text.replace(m.find, m.replace)


def make_copy(m: Mutant | None, dst: Path, rtl: Path = RTL) -> Path:
    """A copy of ``rtl`` in ``dst/rtl`` with ``m`` applied (None: unmutated)."""
    out = dst / "rtl"
    shutil.copytree(rtl, out)
    if m is not None:
        (out / m.file).write_text(mutated_text(m, rtl))
    return out


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)")


def run_tests(tests: list[str], rtl_copy: Path, work: Path, timeout: float) -> tuple[int | None, str, str | None]:
    """pytest on ``tests`` against ``rtl_copy`` (stops at the first failure). Returns (exit
    code or None on timeout, output, first failing node id)."""
    env = dict(os.environ)
    env.update({
        "REFMODEL_RTL_DIR": str(rtl_copy),
        "RM_SIM_BUILD": str(work / "sim_build"),
        "REFMODEL_CACHE_DIR": str(work / "cache"),
        "RM_SIM": "icarus",
        "RM_WAVES": "never",
        "PYTHONPATH": str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-rfE", "-p", "no:xdist", "-p", "no:cacheprovider",
           "--run-slow", f"--basetemp={work / 'tmp'}", *tests]
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                           start_new_session=True)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out, None
    out = r.stdout + r.stderr
    killer = next((mm.group(1) for ln in out.splitlines() if (mm := _FAILED.match(ln))), None)
    return r.returncode, out, killer


def run_mutant(m: Mutant, timeout: float, keep: bool = False) -> Outcome:
    """Apply ``m`` to a private copy of rtl/ and run its tests."""
    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{m.id}-", dir=WORK))
    t0 = time.perf_counter()
    try:
        rtl_copy = make_copy(m, work)
        code, out, killer = run_tests(list(m.tests), rtl_copy, work, timeout)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    secs = time.perf_counter() - t0
    tail = [ln for ln in out.splitlines() if ln.strip()][-12:]
    ran = sum(1 for ln in out.splitlines() if ln.startswith(("PASSED", "FAILED")))
    if code is None:
        return Outcome(m.id, m.file, "killed", f"timeout after {timeout:.0f} s", secs, m.equivalent is not None, ran, tail)
    if code == 1:
        return Outcome(m.id, m.file, "killed", killer or "?", secs, m.equivalent is not None, ran, tail)
    if code == 0:
        return Outcome(m.id, m.file, "survived", None, secs, m.equivalent is not None, ran, tail,
                       argued=m.survives is not None)
    return Outcome(m.id, m.file, "error", f"pytest exit {code}", secs, m.equivalent is not None, ran, tail)


def baseline(mutants: list[Mutant], timeout: float) -> tuple[bool, float, str]:
    """Every test the list names, on an unmutated copy: all must pass."""
    tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="baseline-", dir=WORK))
    t0 = time.perf_counter()
    try:
        code, out, _ = run_tests(tests, make_copy(None, work), work, timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return code == 0, time.perf_counter() - t0, "\n".join(out.splitlines()[-20:])


def summarise(outcomes: list[Outcome], wall: float) -> dict[str, Any]:
    """Counts and score: killed / (mutants - listed equivalents)."""
    n = len(outcomes)
    eq = [o for o in outcomes if o.equivalent]
    killed = [o for o in outcomes if o.status == "killed" and not o.equivalent]
    survived = [o for o in outcomes if o.status == "survived" and not o.equivalent]
    errors = [o for o in outcomes if o.status == "error"]
    eq_killed = [o for o in eq if o.status == "killed"]
    scored = n - len(eq)
    return {
        "mutants": n, "equivalent": len(eq), "scored": scored, "killed": len(killed),
        "survived": [o.id for o in survived], "errors": [o.id for o in errors],
        "unargued": [o.id for o in survived if not o.argued],
        "equivalent_but_killed": [o.id for o in eq_killed],
        "score": (len(killed) / scored) if scored else 1.0, "wall_seconds": wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    ap.add_argument("--list", type=Path, default=MUTANTS, help="mutant list (default rtl_tests/mutants.toml)")
    ap.add_argument("--only", default="", help="comma-separated mutant ids (default: all)")
    ap.add_argument("--file", default="", help="only the mutants of this rtl/ file")
    ap.add_argument("--skip-equivalent", action="store_true", help="do not run the mutants listed as equivalent")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant before it counts as killed (hang)")
    ap.add_argument("--baseline", action="store_true", help="first run every listed test on the unmutated RTL")
    ap.add_argument("--goal", type=float, default=0.98, help="score needed for exit status 0 (default 0.98)")
    ap.add_argument("--json", type=Path, default=None, help="write the full report here")
    ap.add_argument("--keep", action="store_true", help="keep each mutant's work directory")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        print(f"mutate_rtl: --jobs must be >= 1, got {a.jobs}", file=sys.stderr)
        return 2
    try:
        mutants = load_mutants(a.list)
        for m in mutants:
            mutated_text(m)
    except (MutantError, OSError, tomllib.TOMLDecodeError) as e:
        print(f"mutate_rtl: {e}", file=sys.stderr)
        return 2
    if a.only:
        want = [s.strip() for s in a.only.split(",") if s.strip()]
        unknown = sorted(set(want) - {m.id for m in mutants})
        if unknown:
            print(f"mutate_rtl: unknown mutant id(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.id in want]
    if a.file:
        mutants = [m for m in mutants if m.file == a.file]
        if not mutants:
            print(f"mutate_rtl: no mutant of {a.file!r}", file=sys.stderr)
            return 2
    if a.skip_equivalent:
        mutants = [m for m in mutants if m.equivalent is None]
    t0 = time.perf_counter()
    if a.baseline:
        ok, secs, tail = baseline(mutants, a.timeout * 4)
        print(f"BASELINE {'passed' if ok else 'FAILED'} in {secs:.0f} s", flush=True)
        if not ok:
            print(tail)
            return 1
    print(f"{len(mutants)} mutants, {a.jobs} at a time", flush=True)
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futs = {pool.submit(run_mutant, m, a.timeout, a.keep): m for m in mutants}
        for f in as_completed(futs):
            m = futs[f]
            o = f.result()
            outcomes.append(o)
            tag = o.status.upper() + (" (listed equivalent)" if o.equivalent else " (argued)" if o.argued else "")
            by = f" by {o.killer}" if o.status == "killed" else (f": {o.killer}" if o.killer else "")
            print(f"[{len(outcomes):3d}/{len(mutants)}] {tag:<30s} {m.id:<28s} {m.file:<16s}{by} ({o.seconds:.0f} s)",
                  flush=True)
            if o.status == "error":
                print("    " + "\n    ".join(o.tail[-6:]), flush=True)
    order = {m.id: i for i, m in enumerate(mutants)}
    outcomes.sort(key=lambda o: order[o.id])
    s = summarise(outcomes, time.perf_counter() - t0)
    print(f"\nMUTATION SCORE {s['killed']}/{s['scored']} = {100 * s['score']:.1f} % killed "
          f"({s['mutants']} mutants, {s['equivalent']} listed equivalent), wall {s['wall_seconds']:.0f} s")
    byid = {m.id: m for m in mutants}
    for oid in s["survived"]:
        why = f" -- argued: {byid[oid].survives}" if byid[oid].survives else " -- NOT ARGUED"
        print(f"  SURVIVED {oid}: {byid[oid].what}{why}")
    for oid in s["equivalent_but_killed"]:
        print(f"  LISTED EQUIVALENT BUT KILLED {oid}: its argument is wrong")
    for oid in s["errors"]:
        print(f"  ERROR {oid}")
    if a.json:
        a.json.write_text(json.dumps({"summary": s, "mutants": [asdict(o) for o in outcomes]}, indent=1))
    good = s["score"] >= a.goal and not s["unargued"] and not s["equivalent_but_killed"] and not s["errors"]
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
