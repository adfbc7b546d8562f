"""docs/verify.md shows the tutorial test files exactly as they run in the suite, and they are short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("number, test_file", [(1, "test_user_requant.py"), (2, "test_user_systolic.py")])
def test_tutorial_listing_is_the_tested_file(number, test_file):
    doc = (ROOT / "docs" / "verify.md").read_text()
    parts = doc.split(f"\n## Tutorial {number}:", 1)
    assert len(parts) == 2, f"no section 'Tutorial {number}' in docs/verify.md"
    tutorial = parts[1].split("\n## ", 1)[0]
    listing = re.search(r"```python\n(.*?)```", tutorial, re.S)
    assert listing is not None, f"no python listing in the Tutorial {number} section"
    tested = (ROOT / "rtl_tests" / test_file).read_text()
    assert listing.group(1) == tested, f"docs/verify.md's Tutorial {number} listing differs from rtl_tests/{test_file}"
    n = len(tested.splitlines())
    assert n <= 40, f"the tutorial test file {test_file} has {n} lines"
    heading = tutorial.splitlines()[0]
    assert f"in {n} lines of test" in heading, "the tutorial's heading states the file's length"
