"""One direction of imports: ``refmodel.numerics`` is the bottom layer and imports nothing above it.

The number formats, rounding, accumulation and the integer unit models must not know about the
layer model, the bounds, golden files, cocotb, the CLI or any other part of ``refmodel`` built on
top of them. Every module under ``refmodel/numerics`` is parsed (``ast``, so imports inside
functions count too) and each import of a ``refmodel`` module outside ``refmodel.numerics`` --
absolute or relative -- is a failure naming the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMERICS = ROOT / "refmodel" / "numerics"
BOTTOM = "refmodel.numerics"


def _module_name(path: Path) -> str:
    """Dotted module name of ``path`` (a file under ``ROOT``); packages map to their ``__init__``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source``.

    ``from X import a`` is reported as ``X.a`` (``from refmodel import golden`` names the layer in ``a``);
    relative imports are resolved against ``module`` (``is_package``: ``module`` is a package's
    ``__init__``, so ``.`` is the package itself).
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                keep = len(package) - (node.level - 1)
                if keep <= 0:
                    found.append((node.lineno, "." * node.level + (node.module or "")))
                    continue
                base = ".".join(package[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _violations(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Imports in ``source`` of a ``refmodel`` module that is not ``refmodel.numerics`` or below it."""
    bad = []
    for line, name in _imported_modules(source, module, is_package):
        if name.startswith("."):  # relative import climbing above the top-level package
            bad.append((line, name))
        elif (name == "refmodel" or name.startswith("refmodel.")) and not (
            name == BOTTOM or name.startswith(BOTTOM + ".")
        ):
            bad.append((line, name))
    return bad


def _numerics_modules() -> list[Path]:
    return sorted(NUMERICS.rglob("*.py"))


def test_numerics_has_modules() -> None:
    names = {p.name for p in _numerics_modules()}
    assert {"fixed.py", "minifloat.py", "rounding.py", "accumulate.py", "activation.py"} <= names


@pytest.mark.parametrize("path", _numerics_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_numerics_imports_nothing_above_it(path: Path) -> None:
    module = _module_name(path)
    bad = _violations(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    assert not bad, f"{path.relative_to(ROOT)} imports above {BOTTOM}: " + ", ".join(
        f"line {line}: {name}" for line, name in bad
    )


@pytest.mark.parametrize(
    "source",
    [
        "from refmodel.golden.hexfile import write_memh",
        "import refmodel.layer",
        "from refmodel import bounds",
        "from refmodel.cocotb import simulators",
        "from refmodel.commands import golden",
        "import refmodel.cli as cli",
        "import refmodel",
        "from ...golden.hexfile import write_memh",
        "from ... import layer",
        "from .... import x",
        "def f():\n    from refmodel.bounds.norm import x\n    return x",
    ],
)
def test_checker_catches_upward_imports(source: str) -> None:
    """The checker itself: each of these, written in ``refmodel/numerics/units/exp2.py``, is caught."""
    assert _violations(source, "refmodel.numerics.units.exp2")


@pytest.mark.parametrize(
    "source",
    [
        "from refmodel.numerics.fixed import FixedFormat",
        "from refmodel.numerics import f64math",
        "from . import table",
        "from .. import rounding",
        "from ..rounding import Rounding",
        "import numpy as np",
    ],
)
def test_checker_allows_imports_within_numerics(source: str) -> None:
    assert not _violations(source, "refmodel.numerics.units.exp2")
