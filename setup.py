"""Package layout (the metadata is in pyproject.toml).

The wheel carries the Verilog sources and the committed golden sets as package data without moving
them in the repository: the subpackage ``refmodel._rtl`` is mapped onto the top-level folder
``rtl/`` and ``refmodel._golden.<set>`` onto ``golden/<set>/`` (``package_dir``), so a wheel or an
sdist installs them as ``refmodel/_rtl/`` and ``refmodel/_golden/<set>/``. ``refmodel.resources``
finds them there, or in the checkout (``rtl/``, ``golden/``) when refmodel runs from a checkout or
an editable install. This lives in setup.py because pyproject.toml cannot combine automatic package
discovery with mapped packages, nor list the golden sets that exist.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
#: every committed golden set: a directory under golden/ with a manifest.json
GOLDEN_SETS = sorted(p.parent.name for p in (ROOT / "golden").glob("*/manifest.json"))
DATA_PACKAGES = {
    "refmodel._rtl": "rtl",
    "refmodel._golden": "golden",
    **{f"refmodel._golden.{name}": f"golden/{name}" for name in GOLDEN_SETS},
}

setup(
    packages=[*find_packages(include=["refmodel", "refmodel.*"]), *DATA_PACKAGES],
    package_dir=DATA_PACKAGES,
    package_data={
        "refmodel": ["py.typed"],
        "refmodel._rtl": ["*.v", "*.vh", "*.sv", "*.svh", "README.md"],
        "refmodel._golden": ["*.md"],
        # a set: manifest.json and its hex files (and whatever else the set holds)
        **{f"refmodel._golden.{name}": ["*"] for name in GOLDEN_SETS},
    },
)
