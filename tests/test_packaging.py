"""The wheel, as a user installs it: build it from a copy of this checkout (``pip wheel``), install
it into a fresh venv outside the checkout and run the installed ``refmodel`` there: ``--version``,
``demo`` with the RTL layer on Icarus (the Verilog sources must come from the wheel), and
``golden verify`` on a golden set shipped in the wheel.

The venv is created without pip and without the checkout on its path; the dependencies (numpy,
typer, ...) are made visible through a ``.pth`` line naming the test interpreter's site-packages
(as ``--system-site-packages`` would), so nothing is downloaded except the build backend. The
wheel is built once per test session, from a copy so that the checkout gets no build/ folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import refmodel

ROOT = Path(__file__).resolve().parents[1]
#: a gpt2 layer small enough that Icarus simulates it in well under a second
SMALL_LAYER = {"arch": "gpt2", "d_model": 16, "n_heads": 2, "d_ff": 32, "seq_len": 4}
RTL_SUFFIXES = {".v", ".vh", ".sv", ".svh"}


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


#: what is not part of the sources (never copied for the build)
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "sim_build", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache", "demo_out")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from this checkout (once per session)."""
    base = tmp_path_factory.mktemp("wheel_build")
    src, out = base / "src", base / "dist"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCES)
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)], cwd=base)
    assert r.returncode == 0, f"pip wheel failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    wheels = list(out.glob("refmodel-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}, got {wheels}"
    return wheels[0]


@pytest.fixture(scope="session")
def venv(wheel, tmp_path_factory) -> dict:
    """A fresh venv outside the checkout with the wheel installed; returns its paths and an env."""
    base = tmp_path_factory.mktemp("wheel_venv")
    vdir = base / "venv"
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(vdir)], cwd=base)
    assert r.returncode == 0, r.stderr
    py = vdir / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=base).stdout.strip())
    # the dependencies, from the interpreter running the tests (its .pth files, among them an
    # editable install of this checkout, are not processed for a directory added this way)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_refmodel_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{vdir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    r = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", "--no-deps", "--ignore-installed", "-q",
              str(wheel)],
             cwd=base, env=env)
    assert r.returncode == 0, f"pip install of the wheel failed:\n{r.stdout}\n{r.stderr}"
    return {"dir": vdir, "python": py, "refmodel": vdir / "bin" / "refmodel", "env": env, "work": base, "site": site}


def test_wheel_carries_rtl_and_golden_sets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    rtl = sorted(p.name for p in (ROOT / "rtl").iterdir() if p.suffix in RTL_SUFFIXES)
    assert rtl and "layer_top.v" in rtl
    missing = [f"rtl/{n}" for n in rtl if f"refmodel/_rtl/{n}" not in names]
    sets = sorted(p.parent for p in (ROOT / "golden").glob("*/manifest.json"))
    assert sets, "no committed golden set found under golden/"
    for s in sets:
        missing += [f"golden/{s.name}/{f.name}" for f in s.iterdir()
                    if f.is_file() and f"refmodel/_golden/{s.name}/{f.name}" not in names]
    assert not missing, f"files missing from the wheel: {missing[:10]}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_installed_package_uses_its_own_data(venv):
    code = ("import json, sys, refmodel; from refmodel.resources import rtl_dir, golden_sets_dir; "
            "print(json.dumps({'file': refmodel.__file__, 'rtl': str(rtl_dir()), "
            "'golden': str(golden_sets_dir()), 'path': sys.path}))")
    r = _run([str(venv["python"]), "-c", code], cwd=venv["work"], env=venv["env"])
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    pkg = venv["site"] / "refmodel"
    assert Path(info["file"]).parent == pkg
    assert Path(info["rtl"]) == pkg / "_rtl" and (Path(info["rtl"]) / "layer_top.v").is_file()
    assert Path(info["golden"]) == pkg / "_golden"
    on_path = [p for p in info["path"] if p and Path(p).resolve().is_relative_to(ROOT)]
    assert not on_path, f"the checkout is on the installed venv's sys.path: {on_path}"


def test_installed_version(venv):
    r = _run([str(venv["refmodel"]), "--version"], cwd=venv["work"], env=venv["env"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"refmodel {refmodel.__version__}"


def test_installed_demo_runs_the_rtl_on_icarus(venv):
    if shutil.which("iverilog") is None:
        msg = "iverilog not found: install it with `apt-get install -y iverilog`"
        if _under_ci():
            pytest.fail(msg + " -- a missing simulator is a failure under CI", pytrace=False)
        pytest.skip(msg)
    cfg = venv["work"] / "small_gpt2.json"
    cfg.write_text(json.dumps(SMALL_LAYER))
    out = venv["work"] / "demo_out"
    env = {**venv["env"], "COLUMNS": "200"}
    r = _run([str(venv["refmodel"]), "demo", "--config", str(cfg), "--out", str(out)], cwd=venv["work"], env=env)
    assert r.returncode == 0, f"refmodel demo exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "RTL layer simulated on Icarus" in r.stdout, r.stdout[-2000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 15, r.stdout
    rtl_column = [line.split("│")[2].strip() for line in rows]
    assert rtl_column == ["yes"] * 15, f"RTL column: {rtl_column}"


def test_installed_golden_verify_on_a_packaged_set(venv):
    packaged = venv["site"] / "refmodel" / "_golden" / "tiny_gpt2_hw"
    assert (packaged / "manifest.json").is_file()
    r = _run([str(venv["refmodel"]), "golden", "verify", str(packaged)], cwd=venv["work"], env=venv["env"])
    assert r.returncode == 0, f"golden verify exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    assert "OK" in r.stdout
