"""Fixtures of the sweep tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_testkit import write_layer_files


@pytest.fixture
def layer_files(tmp_path: Path) -> Path:
    """A directory with small.json (a gpt2 layer the RTL simulates in a second), clipped.toml and
    overflow.toml (fixed16 with the output in s2.0, saturating / raising)."""
    return write_layer_files(tmp_path / "inputs")
