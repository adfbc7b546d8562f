"""``run_bench``: build a DUT, run its cocotb tests against a golden set, and turn the outcome into
a pytest pass or fail that carries the scoreboard summary.

Call it from an ordinary pytest function (cocotb's ``cocotb_tools.runner`` does the build and the
run underneath)::

    @pytest.mark.parametrize("sim", ["icarus", "verilator"])
    def test_my_unit(sim):
        run_bench(__name__, sources=["rtl/my_unit.sv"], toplevel="my_unit", simulator=sim,
                  parameters={"W": 16}, golden="tiny_gpt2_hw", seed=1)

What it does:

* one build directory per (simulator, top level, parameters, sources, pytest test), rebuilt every
  time for Icarus (stale builds otherwise ignore changed parameters) and incrementally for
  Verilator (whose runtime objects are compiled once, see :mod:`refmodel.cocotb.simulators`);
* ``Path`` parameters become quoted string literals (``$readmemh`` file names); integers beyond
  32 bits become sized 64-bit literals for Verilator;
* ``golden=`` (a directory, a shipped set's name, or a :class:`GoldenSet`) reaches the bench as
  ``RM_GOLDEN_SET`` (``GoldenSet.from_env()``); the scoreboard reports go to ``RM_REPORT``;
* the simulator output goes to ``<build dir>/sim.log``;
* on failure, the failing cocotb tests are run again with waves on (``waves="on_failure"``, the
  default unless ``RM_WAVES`` names another mode) and the dump's path is part of the failure message, with each failing test's message
  (the scoreboard's first bad element), the scoreboard summary and the simulator's error lines.

Returns a :class:`BenchResult` on success. Outside pytest a failure raises
:class:`refmodel.errors.CheckFailed` with the same message.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refmodel.errors import CheckFailed, UserError

from .coverage import Coverage
from .golden import GOLDEN_ENV, GoldenSet
from .scoreboard import REPORT_ENV, read_report
from .simulators import (
    SIMULATORS,
    simulator_environment,
    store_verilator_runtime,
    verilator_make_fixes,
    verilator_runtime_makeflags,
)

__all__ = ["run_bench", "BenchResult", "TestOutcome", "SIM_ENV", "SEED_ENV", "WAVES_ENV", "DEFAULT_SEED"]

#: environment defaults a suite can set for every run_bench call that does not pass them
SIM_ENV, SEED_ENV, BUILD_ENV, WAVES_ENV = "RM_SIM", "RM_SEED", "RM_SIM_BUILD", "RM_WAVES"
DEFAULT_SEED = 12345
TIMESCALE = ("1ns", "1ps")
WAVES_MODES = ("on_failure", "always", "never")


@dataclass
class TestOutcome:
    """One cocotb test of a run: name, pass/fail, simulated time and failure message."""

    name: str
    passed: bool
    sim_time_ns: float
    message: str = ""
    skipped: bool = False


@dataclass
class BenchResult:
    """Outcome of :func:`run_bench`: tests, scoreboard checks, coverage, files and timings."""

    simulator: str
    toplevel: str
    build_dir: Path
    tests: list[TestOutcome]
    checks: list[dict[str, Any]]
    coverage: dict[str, Coverage]
    log: Path
    build_seconds: float
    test_seconds: float
    waves: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.tests) and all(t.passed for t in self.tests)

    def coverage_total(self) -> Coverage:
        """All scoreboards' coverage merged."""
        c = Coverage(self.toplevel)
        for cv in self.coverage.values():
            c.merge(cv)
        return c

    def identity(self) -> dict[str, Any]:
        """What two simulators must agree on: every test's status and simulated time, every
        check's element counts and code digest, every coverage count."""
        return {
            "tests": [(t.name, t.passed, t.skipped, t.sim_time_ns) for t in self.tests],
            "checks": [(c["scoreboard"], c["what"], c["mode"], c["tier"], c["checked"], c["failed"], c["warnings"],
                        c["digest"]) for c in self.checks],
            "coverage": {k: dict(sorted(v.hits.items())) for k, v in sorted(self.coverage.items())},
        }

    def summary(self) -> str:
        n_el = sum(int(c["checked"]) for c in self.checks)
        warn = sum(int(c["warnings"]) for c in self.checks)
        lines = [f"{self.simulator} {self.toplevel}: {sum(t.passed for t in self.tests)}/{len(self.tests)} cocotb "
                 f"tests passed, {len(self.checks)} checks, {n_el} elements, {warn} warnings "
                 f"(build {self.build_seconds:.1f} s, run {self.test_seconds:.1f} s)"]
        lines += [f"  {_check_line(c)}" for c in self.checks]
        lines += [cv.summary() for cv in self.coverage.values()]
        return "\n".join(lines)


def _check_line(c: dict[str, Any]) -> str:
    head = f"{c['what']}: {c['checked']} elements: "
    if c["mode"] == "exact":
        return head + ("bit-exact" if not c["failed"] else f"{c['failed']} differ")
    s = head + (f"within {c['tier']}" if not c["failed"] else f"{c['failed']} outside {c['tier']}")
    s += f" (max |err| {_num(c['max_err'])}, max err/bound {_num(c['max_ratio'])}"
    differ = c.get("differ")
    s += f"; {differ} codes differ from golden)" if differ else ")"
    if c["warnings"]:
        s += f", {c['warnings']} warnings"
    return s


def _num(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) else str(x)


# ---- parameters and directories ----------------------------------------------------------------


def _param_value(v: Any, sim: str) -> Any:
    if isinstance(v, Path):
        return '"' + str(v.resolve()) + '"'
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int) and sim == "verilator" and not -(1 << 31) <= v < (1 << 31):
        return f"64'sd{v}" if v >= 0 else f"-64'sd{-v}"
    return v


def _sim_root() -> Path:
    return Path(os.environ.get(BUILD_ENV) or (Path.cwd() / "sim_build"))


def default_build_dir(sim: str, toplevel: str, key: str) -> Path:
    """``<RM_SIM_BUILD or ./sim_build>/<sim>_<top>_<hash of parameters, sources, pytest test>``."""
    test_id = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    tag = hashlib.sha1((key + test_id).encode()).hexdigest()[:10]
    return _sim_root() / f"{sim}_{toplevel}_{tag}"


def _results(xml: Path) -> list[TestOutcome]:
    if not xml.exists():
        return []
    out = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        msg = ""
        failed = False
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                failed = True
                msg = (node.get("message") or node.text or "").strip()
        skipped = case.find("skipped") is not None
        out.append(TestOutcome(str(case.get("name")), not failed, float(props.get("sim_time_duration") or 0.0),
                               msg, skipped))
    return out


_ERROR_LINE = re.compile(r"(%Error|\w*Error:|\bERROR\b|\berror\b|\$error|\bFATAL\b|not loaded|Assertion)",
                         re.IGNORECASE)


def _error_lines(log: Path, limit: int = 12) -> list[str]:
    if not log.exists():
        return []
    lines = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines()
             if _ERROR_LINE.search(ln) and "vpi_iterate returned NULL" not in ln]
    return lines[:limit]


class BuildError(Exception):
    """A simulator build failed (message: the build log's error lines)."""


def _fail(msg: str) -> None:
    if os.environ.get("PYTEST_CURRENT_TEST"):
        import pytest

        pytest.fail(msg, pytrace=False)
    raise CheckFailed(msg)


# ---- the entry point --------------------------------------------------------------------------


def run_bench(
    test_module: str | Sequence[str],
    *,
    sources: Sequence[str | Path],
    toplevel: str,
    simulator: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    golden: str | Path | GoldenSet | None = None,
    seed: int | None = None,
    testcase: str | Sequence[str] | None = None,
    plusargs: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    includes: Sequence[str | Path] = (),
    defines: Mapping[str, Any] | None = None,
    build_args: Sequence[str] = (),
    build_dir: str | Path | None = None,
    timescale: tuple[str, str] = TIMESCALE,
    waves: str | None = None,
) -> BenchResult:
    """Build ``sources`` with ``toplevel`` on ``simulator`` ("icarus" | "verilator"; default
    ``RM_SIM`` or icarus), run the cocotb tests of ``test_module`` (importable module names) with
    ``seed`` (default ``RM_SEED`` or 12345), and fail the calling pytest test with the failing
    tests' messages and the scoreboard summary if any cocotb test fails. See the module
    docstring for ``golden``, ``parameters`` and ``waves`` (default ``RM_WAVES`` or "on_failure")."""
    sim = simulator or os.environ.get(SIM_ENV) or "icarus"
    if sim not in SIMULATORS:
        raise UserError(f"unknown simulator {sim!r}: one of {', '.join(SIMULATORS)}")
    waves = waves or os.environ.get(WAVES_ENV) or "on_failure"
    if waves not in WAVES_MODES:
        raise UserError(f"waves={waves!r}: one of {', '.join(WAVES_MODES)}")
    seed = int(os.environ.get(SEED_ENV, DEFAULT_SEED)) if seed is None else int(seed)
    srcs = [Path(s).resolve() for s in sources]
    for s in srcs:
        if not s.exists():
            raise UserError(f"HDL source not found: {s}")
    params = {k: _param_value(v, sim) for k, v in (parameters or {}).items()}
    modules = [test_module] if isinstance(test_module, str) else list(test_module)
    key = repr((sorted(params.items()), [str(s) for s in srcs], sorted((defines or {}).items()), list(build_args),
                list(includes)))
    bdir = Path(build_dir).resolve() if build_dir is not None else default_build_dir(sim, toplevel, key)
    env = dict(extra_env or {})
    if golden is not None:
        gpath = golden.path if isinstance(golden, GoldenSet) else GoldenSet.open(golden).path
        env[GOLDEN_ENV] = str(gpath)
    spec = _Spec(sim, toplevel, srcs, params, modules, seed, testcase, list(plusargs), env,
                 [Path(i).resolve() for i in includes], dict(defines or {}), list(build_args), timescale)
    try:
        result = _build_and_run(spec, bdir, waves=(waves == "always"))
    except BuildError as e:
        _fail(str(e))
        raise  # unreachable: _fail raises
    if result.passed:
        print(result.summary(), flush=True)
        return result
    msg = _failure_message(result)
    ran = [t for t in result.tests if t.name != "(simulation)"]
    if waves == "on_failure" and not ran:
        msg += "\nwaves: not rerun (the simulation stopped before any cocotb test ran)"
    elif waves == "on_failure":
        failing = [t.name for t in result.tests if not t.passed and t.name != "(simulation)"] or None
        try:
            rerun = _build_and_run(spec, bdir.with_name(bdir.name + "-waves"), waves=True, testcase=failing)
            result.waves = rerun.waves
        except Exception as e:  # noqa: BLE001 -- the original failure is what the user needs
            result.notes.append(f"waves rerun failed: {type(e).__name__}: {e}")
        msg += f"\nwaves: {result.waves}" if result.waves else "\nwaves: none written (" + "; ".join(result.notes) + ")"
    elif result.waves:
        msg += f"\nwaves: {result.waves}"
    _fail(msg)
    return result


@dataclass
class _Spec:
    sim: str
    toplevel: str
    sources: list[Path]
    parameters: dict[str, Any]
    modules: list[str]
    seed: int
    testcase: str | Sequence[str] | None
    plusargs: list[str]
    env: dict[str, str]
    includes: list[Path]
    defines: dict[str, Any]
    build_args: list[str]
    timescale: tuple[str, str]


def _build_and_run(spec: _Spec, bdir: Path, *, waves: bool, testcase: Sequence[str] | None = None) -> BenchResult:
    from cocotb_tools.runner import get_runner

    bdir.mkdir(parents=True, exist_ok=True)
    log = bdir / "sim.log"
    build_log = bdir / "build.log"
    results = bdir / "results.xml"
    report = bdir / "report.jsonl"
    for f in (results, report, log):
        f.unlink(missing_ok=True)
    for old in list(bdir.glob("*.fst")) + list(bdir.glob("*.vcd")):
        old.unlink()
    build_args = list(spec.build_args)
    if spec.sim == "verilator":
        # waves: VCD (FST would need the lz4 headers for Verilator's FST writer)
        build_args = ["-Wno-fatal", *build_args]
    env = {**spec.env, REPORT_ENV: str(report)}
    t0 = time.perf_counter()
    with simulator_environment(spec.sim) as vbin:
        runner = get_runner(spec.sim)
        runtime = verilator_runtime_makeflags(vbin, waves, build_args) if vbin is not None else None
        fixes = verilator_make_fixes(vbin) if vbin is not None else None
        flags = " ".join(f for f in (fixes, runtime) if f)
        old_flags = os.environ.get("MAKEFLAGS")
        if flags:
            os.environ["MAKEFLAGS"] = f"{old_flags} {flags}" if old_flags else flags
        try:
            runner.build(sources=spec.sources, hdl_toplevel=spec.toplevel, parameters=spec.parameters,
                         includes=spec.includes, defines=spec.defines, build_args=build_args, build_dir=bdir,
                         timescale=spec.timescale, always=True, waves=waves, log_file=build_log)
        except (RuntimeError, SystemExit) as e:
            errs = _error_lines(build_log, 20)
            raise BuildError(f"{spec.sim} build of {spec.toplevel} failed ({e}); log {build_log}:\n"
                             + "\n".join(errs)) from None
        finally:
            if flags:
                if old_flags is None:
                    os.environ.pop("MAKEFLAGS", None)
                else:
                    os.environ["MAKEFLAGS"] = old_flags
        if vbin is not None and runtime is None:
            store_verilator_runtime(vbin, bdir, waves, build_args)
        t1 = time.perf_counter()
        crashed = ""
        try:
            runner.test(test_module=spec.modules, hdl_toplevel=spec.toplevel, build_dir=bdir, test_dir=bdir,
                        results_xml=str(results), plusargs=spec.plusargs, extra_env=env, seed=spec.seed,
                        testcase=testcase if testcase is not None else spec.testcase, waves=waves,
                        timescale=spec.timescale, log_file=log)
        except SystemExit as e:
            crashed = "" if results.exists() else f"simulator exit {e.code}"
        except RuntimeError as e:  # the simulator process failed (e.g. $error + $finish at time 0)
            crashed = str(e)
        t2 = time.perf_counter()
    tests = _results(results)
    lines = read_report(report)
    checks = [ln for ln in lines if ln.get("kind") == "check"]
    last: dict[tuple[str, int], dict[str, Any]] = {}  # the final snapshot of each scoreboard instance
    for ln in lines:
        if ln.get("kind") == "coverage":
            last[(str(ln["scoreboard"]), int(ln.get("instance", 0)))] = ln
    cov: dict[str, Coverage] = {}
    for (name, _), ln in last.items():
        cov.setdefault(name, Coverage(name)).merge(Coverage.from_dict(ln))
    res = BenchResult(spec.sim, spec.toplevel, bdir, tests, checks, cov, log, t1 - t0, t2 - t1)
    if crashed or not tests:
        res.tests.append(TestOutcome("(simulation)", False, 0.0,
                                     crashed or "no results: the simulator stopped before cocotb ran (see the errors)"))
    if waves:
        dumps = sorted(list(bdir.glob("*.fst")) + list(bdir.glob("*.vcd")), key=lambda p: p.stat().st_mtime)
        res.waves = dumps[-1] if dumps else None
    return res


def _failure_message(r: BenchResult) -> str:
    bad = [t for t in r.tests if not t.passed]
    head = f"{r.simulator} {r.toplevel}: {len(bad)} of {len(r.tests)} cocotb tests failed"
    lines = [head]
    for t in bad:
        lines.append(f"  {t.name}: {t.message[:3000]}")
    failed_checks = [c for c in r.checks if c["failed"]]
    if failed_checks:
        lines.append("scoreboard:")
        lines += [f"  {_check_line(c)}" for c in r.checks]
    said = " ".join(t.message for t in bad)
    errs = [e for e in _error_lines(r.log)  # what the tests' own messages do not already say
            if re.sub(r"^[\w.]*(Error|Exception): ", "", e.strip()) not in said]
    if errs:
        lines.append("simulator errors:")
        lines += [f"  {e}" for e in errs]
    lines.append(f"log: {r.log}")
    return "\n".join(lines)
