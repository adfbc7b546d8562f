"""Helpers of the sweep tests: small layer and plan files, the CLI as typed, Icarus."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from refmodel.cli import main

#: a gpt2 layer small enough that the RTL layer simulates it in about a second
SMALL = {"arch": "gpt2", "d_model": 16, "n_heads": 2, "d_ff": 32, "seq_len": 4}
#: fixed16 with the layer output clipped to s2.0 (codes -2..1): runs, but far from float64
CLIPPED = 'base = "fixed16"\nname = "clipped"\n\n[tensors.out]\nformat = "s2.0"\n'
#: the same output format with overflow = "error": the run raises
OVERFLOW = 'base = "fixed16"\nname = "overflow"\n\n[tensors.out]\nformat = "s2.0"\noverflow = "error"\n'


def write_layer_files(d: Path) -> Path:
    """small.json, clipped.toml and overflow.toml in ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "small.json").write_text(json.dumps(SMALL))
    (d / "clipped.toml").write_text(CLIPPED)
    (d / "overflow.toml").write_text(OVERFLOW)
    return d


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``refmodel ARGS`` as typed: exit code, stdout, stderr."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def need_icarus() -> None:
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Icarus Verilog is required under CI (apt-get install -y iverilog)")
        pytest.skip("Icarus Verilog not installed (apt-get install -y iverilog)")


def records(out: Path) -> dict[str, dict]:
    """The records of the sweep result in ``out``, by job id."""
    res = json.loads((out / "results.json").read_text())
    return {r["id"]: r for r in res["records"]}
