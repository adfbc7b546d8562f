"""refmodel.cocotb.Scoreboard and Coverage: first bad element, tiers, warnings, summary, report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refmodel.cocotb import Coverage, Scoreboard, ScoreboardError, Tolerance
from refmodel.cocotb.coverage import classify_codes, code_classes
from refmodel.cocotb.scoreboard import read_report
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.minifloat import FloatFormat

S16_8 = FixedFormat.parse("s16.8")


def test_exact_names_first_mismatch_in_row_major_order():
    exp = np.arange(24).reshape(2, 3, 4)
    got = exp.copy()
    got[1, 2, 0] = 99
    got[0, 1, 3] = -5  # earlier in row-major order: this one is reported
    sb = Scoreboard("t")
    with pytest.raises(ScoreboardError) as ei:
        sb.exact("stage", got, exp, fmt=S16_8, describe=lambda ix: f"row {ix[1]}")
    msg = str(ei.value)
    assert "stage: 2 of 24 elements differ" in msg
    assert "first at [0, 1, 3]: expected 0x0007 (+0.02734375), got 0xfffb (-0.01953125)" in msg
    assert "|err| 0.046875 (12 LSB) > bound 0; inputs: row 1" in msg
    r = sb.results[0]
    assert (r.failed, r.checked, r.first.index, r.first.expected_code, r.first.got_code) == (2, 24, (0, 1, 3), 7, -5)


def test_exact_where_mask_and_length_mismatch():
    exp = np.array([1, 2, 3, 4])
    got = np.array([1, 9, 3, 4])
    sb = Scoreboard("t", fail_fast=False)
    assert sb.exact("masked", got, exp, where=np.array([True, False, True, True])).passed
    r = sb.exact("short", got[:3], exp)
    assert not r.passed and r.note == "got 3 elements, expected 4"
    with pytest.raises(ScoreboardError, match="short: 4 of 4 elements differ.*got 3 elements, expected 4"):
        sb.assert_all()


def _tol(ref, bound, tier="local", **meta):
    return Tolerance(tier, np.asarray(bound, dtype=np.float64), np.asarray(ref, dtype=np.float64), meta)


def test_tolerance_first_failure_warnings_and_unbounded():
    ref = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    codes = np.round(ref * 256).astype(np.int64)
    codes[0, 1] += 2   # 2 LSB: above the warning tier (1 LSB), within local (3 LSB)
    codes[1, 0] += 5   # 5 LSB: fails local
    codes[1, 2] += 40  # no guarantee (inf bound): never a failure
    unbounded = np.arange(6).reshape(2, 3) == 5
    local = _tol(ref, np.where(unbounded, np.inf, 3 / 256))
    warn = _tol(ref, np.where(unbounded, np.inf, 1 / 256), tier="warning")
    sb = Scoreboard("t", fail_fast=False)
    r = sb.tolerance("y", codes, local, fmt=S16_8, expected=np.round(ref * 256), warning=warn)
    assert (r.failed, r.warnings, r.unbounded, r.checked) == (1, 1, 1, 6)
    assert r.first.index == (1, 0) and r.first.bound == 3 / 256 and r.first.error == 5 / 256
    assert r.first_warning.index == (0, 1)
    assert math.isclose(r.max_ratio, 5 / 3) and math.isclose(r.max_err, 5 / 256)
    text = sb.failure_text(r)
    assert "y: 1 of 6 elements are outside the local tolerance; first at [1, 0]: expected 0x0300 (+3), " in text
    assert "got 0x0305 (+3.01953125), reference +3, |err| 0.0195312 (5 LSB) > bound 0.0117188" in text
    # warnings alone never fail
    codes[1, 0] -= 5
    r2 = Scoreboard("t").tolerance("y", codes, local, fmt=S16_8, warning=warn)
    assert r2.passed and r2.warnings == 1


def test_tolerance_counts_codes_that_differ_from_the_expected_ones():
    """A DUT that is not bit-exact but within the tier: the check passes and says how many codes
    differ from golden (masked elements not counted); without ``expected`` the count is None."""
    ref = np.array([0.5, 1.0, 1.5, 2.5]) / 256
    gold = np.array([0, 1, 2, 2])          # the plan rounds half to even
    got = np.array([1, 1, 2, 3])           # the DUT rounds half up: two ties differ
    sb = Scoreboard("t")
    r = sb.tolerance("y", got, _tol(ref, [0.5 / 256] * 4), fmt=S16_8, expected=gold)
    assert r.passed and r.differ == 2 and "within local tolerance" in r.line() and "2 codes differ" in r.line()
    assert sb.tolerance("y", got, _tol(ref, [0.5 / 256] * 4), fmt=S16_8, expected=gold,
                        where=np.array([False, True, True, True])).differ == 1
    r = sb.tolerance("y", gold, _tol(ref, [0.5 / 256] * 4), fmt=S16_8)
    assert r.differ is None and "differ" not in r.line()


def test_tolerance_nan_handling():
    f32 = FloatFormat.parse("fp32")
    nan_code = 0x7FC00000
    ref = np.array([np.nan, 1.0])
    got = np.array([nan_code, nan_code])
    r = Scoreboard("t", fail_fast=False).tolerance("n", got, _tol(ref, [0.1, 0.1]), fmt=f32)
    assert r.failed == 1 and r.first.index == (1,)  # NaN where the reference is finite fails


def test_report_lines_and_summary(tmp_path):
    path = tmp_path / "r.jsonl"
    sb = Scoreboard("unit", report=path)
    sb.exact("a", [1, 2], [1, 2], fmt=S16_8)
    sb.tolerance("b", [256, 512], _tol([1.0, 2.0], [np.inf, 1e-3]), fmt=S16_8)
    lines = read_report(path)
    checks = [x for x in lines if x["kind"] == "check"]
    assert [c["what"] for c in checks] == ["a", "b"] and checks[1]["unbounded"] == 1
    assert checks[0]["digest"] != checks[1]["digest"]
    s = sb.summary()
    assert (s["checks"], s["elements"], s["failed"], s["warnings"]) == (2, 4, 0, 0)
    assert "SCOREBOARD unit: 2 checks, 4 elements, 0 failed" in sb.report()


def test_digest_depends_on_codes_only():
    a = Scoreboard("x").exact("a", [1, 2, 3], [1, 2, 3])
    b = Scoreboard("y").exact("a", np.array([1, 2, 3]), [1, 2, 3])
    c = Scoreboard("y", fail_fast=False).exact("a", [1, 2, 4], [1, 2, 3])
    assert a.digest == b.digest != c.digest


def test_code_classes_of_formats():
    assert code_classes(FixedFormat.parse("u8.8"))["min_code"] is not None
    e4 = FloatFormat.parse("e4m3fn")
    cl = code_classes(e4)
    assert cl["inf"] is not None and cl["nan"] is None and cl["subnormal"] is None
    got = classify_codes(np.array([0x00, 0x80, 0x01, 0x7E, 0xFE, 0x7F, 0x38]), e4)
    assert got == {"zero": 2, "subnormal": 1, "max_finite": 2, "inf": 0, "nan": 1}
    fx = classify_codes(np.array([0, 32767, -32768, 5]), S16_8)
    assert fx == {"zero": 1, "max_code": 1, "min_code": 1}


def test_coverage_missing_and_golden_absent_classes():
    cov = Coverage("c")
    gold = np.array([0, 5, 7])
    cov.add_codes(np.array([0, 5]), S16_8, prefix="y.", golden=gold, golden_label="set/y")
    assert cov.missing() == []  # max/min are not in the golden tensor: unreachable with the reason
    assert cov.reachable["y.max_code"] == "not in set/y"
    cov.add_mask("saturation", np.array([False, False]))
    assert cov.missing() == ["saturation"]
    assert "MISSED: saturation" in cov.summary() and "y.max_code (not in set/y)" in cov.summary()
    cov.add_mask("saturation", np.array([True]))
    assert cov.missing() == [] and cov.hits["saturation"] == 1
    rt = Coverage.from_dict(cov.to_dict())
    assert rt.hits == cov.hits and rt.reachable == cov.reachable
