"""Every golden set committed under golden/ verifies: schema, word counts and sha256, and a fresh
regeneration from its manifest is identical byte for byte (``refmodel golden verify`` as typed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from refmodel.cli import main


def _sets_dir() -> Path:
    try:
        from refmodel.resources import golden_sets_dir  # type: ignore[import-not-found]

        return Path(golden_sets_dir())
    except ImportError:
        return Path(__file__).resolve().parents[2] / "golden"


SETS = sorted(p.parent for p in _sets_dir().glob("*/manifest.json"))


def test_there_are_committed_sets():
    assert len(SETS) >= 2, f"no golden sets under {_sets_dir()}"


@pytest.mark.parametrize("set_dir", SETS, ids=[p.name for p in SETS])
def test_committed_set_verifies(capsys, set_dir):
    code = main(["golden", "verify", str(set_dir)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "identical to a fresh regeneration" in out.out
