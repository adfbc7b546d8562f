"""Where refmodel's data lives: the Verilog sources and the committed golden sets.

Both are directories of the source checkout (``rtl/`` and ``golden/`` next to the package).
Code that needs them calls these functions instead of walking up from ``__file__``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["rtl_dir", "golden_sets_dir"]

_ROOT = Path(__file__).resolve().parent.parent


def rtl_dir() -> Path:
    """The directory of the Verilog sources (``layer_top.v`` and the units)."""
    return _ROOT / "rtl"


def golden_sets_dir() -> Path:
    """The directory of the committed golden sets (one subdirectory per set)."""
    return _ROOT / "golden"
