"""pytest-side runner of the project's own benches, on :func:`refmodel.cocotb.run_bench`.

``run_unit(top, sources, test_module, ...)`` builds rtl/ sources (names relative to rtl/) on the
simulator named by ``RM_SIM`` (default icarus) and runs the cocotb module; a failing cocotb test
fails the pytest test with the scoreboard's first bad element and a waveform path.
``run_matrix(...)`` runs the same bench on Icarus and on Verilator and asserts that both give
identical results (:meth:`BenchResult.identity`: every test's status and simulated time, every
check's element count and code digest, every coverage count).

Conventions: one build dir per (simulator, top, parameter set, pytest test) under ``sim_build/``;
timescale 1ns/1ps; fixed seed (``RM_SEED``, default 12345); environment names prefixed ``RM_``;
cocotb modules named ``<unit>_tests.py`` so pytest does not collect them. A missing simulator
skips a test on a user's machine and fails it under CI (``CI=true``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from refmodel.cocotb import BenchResult, run_bench
from refmodel.errors import UserError
from refmodel.resources import rtl_dir

ROOT = Path(__file__).resolve().parent.parent
RTL = rtl_dir()
#: build directories: ``$RM_SIM_BUILD`` when set (the mutation run gives each mutant its own)
SIM_ROOT = Path(os.environ.get("RM_SIM_BUILD") or ROOT / "sim_build")
TIMESCALE = ("1ns", "1ps")


def simulator() -> str:
    return os.environ.get("RM_SIM", "icarus")


def _missing(exc: UserError) -> None:
    msg = str(exc)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + " -- a missing simulator is a failure under CI", pytrace=False)
    pytest.skip(msg)


def build_dir_for(top: str, parameters: Mapping[str, Any] | None, sim: str | None = None) -> Path:
    """One build dir per (simulator, top, parameter set, pytest test): parallel workers never
    share one."""
    test_id = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    key = repr(sorted((parameters or {}).items())) + test_id
    tag = hashlib.sha1(key.encode()).hexdigest()[:10]
    return SIM_ROOT / f"{sim or simulator()}_{top}_{tag}"


def run_unit(
    top: str,
    sources: Iterable[str | Path],
    test_module: str,
    parameters: Mapping[str, Any] | None = None,
    plusargs: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    testcase: str | None = None,
    build_dir: Path | None = None,
    seed: int | None = None,
    simulator_name: str | None = None,
    golden: str | Path | None = None,
    waves: str | None = None,
) -> BenchResult:
    """Build ``sources`` (relative to rtl/ or absolute) and run ``test_module``; fails the pytest
    test with the cocotb failure messages when any cocotb test fails. ``waves`` defaults to
    ``$RM_WAVES``, else ``on_failure`` (the mutation run sets ``never``: no re-run for a dump)."""
    sim = simulator_name or simulator()
    srcs = [Path(s) if Path(s).is_absolute() else RTL / s for s in sources]
    try:
        return run_bench(test_module, sources=srcs, toplevel=top, simulator=sim, parameters=parameters or {},
                         golden=golden, seed=seed, testcase=testcase, plusargs=plusargs or [],
                         extra_env=extra_env, includes=[RTL], timescale=TIMESCALE,
                         build_dir=build_dir or build_dir_for(top, parameters, sim),
                         waves=waves or os.environ.get("RM_WAVES", "on_failure"))
    except UserError as e:
        if "not found" in str(e) and ("Verilator" in str(e) or "Icarus" in str(e)):
            _missing(e)
        raise


def run_matrix(top: str, sources: Iterable[str | Path], test_module: str, **kw: Any) -> dict[str, BenchResult]:
    """The bench on Icarus and on Verilator; asserts identical results and prints both times."""
    srcs = list(sources)
    out = {sim: run_unit(top, srcs, test_module, simulator_name=sim, **kw) for sim in ("icarus", "verilator")}
    a, b = out["icarus"].identity(), out["verilator"].identity()
    for part in ("tests", "checks", "coverage"):
        assert a[part] == b[part], (f"{top}: Icarus and Verilator differ in {part}:\n  icarus:    {a[part]}\n"
                                    f"  verilator: {b[part]}")
    n = sum(int(c["checked"]) for c in out["icarus"].checks)
    print(f"MATRIX {top}: Icarus and Verilator identical ({len(a['tests'])} cocotb tests, {len(a['checks'])} checks, "
          f"{n} elements); icarus build {out['icarus'].build_seconds:.1f} s run {out['icarus'].test_seconds:.1f} s, "
          f"verilator build {out['verilator'].build_seconds:.1f} s run {out['verilator'].test_seconds:.1f} s",
          flush=True)
    return out


# ---- coverage closure between the golden-set benches and the random ones ------------------------

NOT_IN_GOLDEN = "not in golden set"


def golden_gaps(result: BenchResult) -> set[str]:
    """Coverage bins a golden-set bench declared unreachable because the set holds no such code
    (``<stage>.<class>``: the summary prints "not in golden set ...")."""
    cov = result.coverage_total()
    return {k for k, why in cov.reachable.items() if why is not None and why.startswith(NOT_IN_GOLDEN)}


def assert_golden_gaps(result: BenchResult, gaps: Mapping[str, str], stages: Iterable[str]) -> None:
    """The classes the golden set cannot produce for ``stages`` are exactly the keys of ``gaps``
    that name those stages; each maps to the random configuration whose bench must hit the class
    (:func:`assert_gap_hits` in that configuration's test) or to ``"cannot: <reason>"``."""
    stages = set(stages)
    want = {k for k in gaps if k.split(".", 1)[0] in stages}
    got = golden_gaps(result)
    assert got == want, (f"golden-set coverage gaps changed: new {sorted(got - want)}, closed {sorted(want - got)}; "
                         f"map each new gap to the random configuration that hits it")


def assert_gap_hits(result: BenchResult, config: str, gaps: Mapping[str, str]) -> None:
    """The random configuration ``config`` hits every class the golden set cannot produce that
    ``gaps`` assigns to it."""
    need = sorted({k.split(".", 1)[1] for k, v in gaps.items() if v == config})
    cov = result.coverage_total()
    missed = [c for c in need if cov.hits.get(c, 0) == 0]
    assert not missed, f"{config} must hit {missed} (the golden set cannot): {cov.summary()}"
