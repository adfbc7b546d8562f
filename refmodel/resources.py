"""Where the data that ships with refmodel lives: the Verilog sources and the committed golden sets.

The repository keeps them at its top level (``rtl/``, ``golden/``). A wheel carries the same files
inside the package, as ``refmodel/_rtl/`` and ``refmodel/_golden/`` (``setup.py`` maps those two
subpackages onto the top-level folders, so nothing is copied or moved in the checkout). The
functions below return whichever of the two exists:

* installed from a wheel (or an sdist): ``<site-packages>/refmodel/_rtl``, ``.../_golden``;
* a checkout (``PYTHONPATH`` pointing at it, or an editable install, where ``refmodel/`` is the
  checkout's own folder): ``<checkout>/rtl``, ``<checkout>/golden``.

Both are directories of plain files, so callers hand the paths to ``iverilog`` or
:func:`refmodel.golden.manifest.read_manifest` directly. When neither exists (a broken install)
the packaged location is returned and the caller reports the missing file by name.

``REFMODEL_RTL_DIR``, when set, names the Verilog directory instead (a modified copy of ``rtl/``:
the mutation run of ``benchmarks/mutate_rtl.py`` points every bench at a mutant this way).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["rtl_dir", "golden_sets_dir", "RTL_DIR_ENV"]

#: environment variable naming another Verilog directory (a copy of rtl/)
RTL_DIR_ENV = "REFMODEL_RTL_DIR"

_PACKAGE = Path(__file__).resolve().parent


def _locate(packaged: str, checkout: str, pattern: str) -> Path:
    """The packaged directory if it holds a file matching ``pattern``, else the checkout's."""
    inside = _PACKAGE / packaged
    for candidate in (inside, _PACKAGE.parent / checkout):
        if next(candidate.glob(pattern), None) is not None:
            return candidate
    return inside


def rtl_dir() -> Path:
    """Directory holding the Verilog sources (``layer_top.v`` and the units it composes):
    ``$REFMODEL_RTL_DIR`` when set, else the packaged or checkout copy."""
    env = os.environ.get(RTL_DIR_ENV)
    if env:
        return Path(env).resolve()
    return _locate("_rtl", "rtl", "layer_top.v")


def golden_sets_dir() -> Path:
    """Directory holding the committed golden sets, one subdirectory per set
    (``tiny_gpt2_hw/manifest.json``, ...)."""
    return _locate("_golden", "golden", "*/manifest.json")
