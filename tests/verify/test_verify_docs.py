"""docs/verify.md shows the tutorial test file exactly as it runs in the suite, and it is short."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tutorial_listing_is_the_tested_file():
    doc = (ROOT / "docs" / "verify.md").read_text()
    tutorial = doc.split("## Tutorial", 1)[1]
    listing = re.search(r"```python\n(.*?)```", tutorial, re.S)
    assert listing is not None, "no python listing in the tutorial section"
    tested = (ROOT / "rtl_tests" / "test_user_requant.py").read_text()
    assert listing.group(1) == tested, "docs/verify.md's tutorial listing differs from rtl_tests/test_user_requant.py"
    n = len(tested.splitlines())
    assert n <= 40, f"the tutorial test file has {n} lines"
    assert f"in {n} lines of test" in doc, "the tutorial's heading states the file's length"
