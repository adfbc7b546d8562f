"""Rounding kernels: ``round_float_to_int`` (float64 -> integer) and ``round_shift`` (int64
rounding shifter), one test per mode with ties and near-ties of both signs, checked against a
slow Fraction oracle written here independently of ``rounding.py``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refmodel.numerics import rounding as R
from refmodel.numerics.rounding import (
    Overflow,
    Rounding,
    round_float_to_int,
    round_shift,
    stochastic_bits,
)

DETERMINISTIC = ["rne", "rtz", "floor", "ceil", "half_up", "half_away"]

# The tie table of the rounding.py docstring, written out here as the specification.
TIES = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
TABLE = {
    "rne": [-2, -2, 0, 0, 2, 2],
    "rtz": [-2, -1, 0, 0, 1, 2],
    "floor": [-3, -2, -1, 0, 1, 2],
    "ceil": [-2, -1, 0, 1, 2, 3],
    "half_up": [-2, -1, 0, 1, 2, 3],
    "half_away": [-3, -2, -1, 1, 2, 3],
}


from oracle import oracle_round  # noqa: E402  (one explicit branch per mode, exact rationals)


def test_docstring_table_matches_spec():
    """The table in the module docstring is the one this file tests (no silent drift)."""
    doc = R.__doc__
    for mode, row in TABLE.items():
        line = next(ln for ln in doc.splitlines() if ln.startswith(mode + " "))
        nums = [int(t.replace("+", "")) for t in re.findall(r"[+-]\d+", line)]
        assert nums[-6:] == row, (mode, line)


@pytest.mark.parametrize("mode", DETERMINISTIC)
def test_tie_table_round_float_to_int(mode):
    got = round_float_to_int(np.array(TIES), mode)
    assert got.tolist() == TABLE[mode]
    assert [oracle_round(Fraction(t), mode) for t in TIES] == TABLE[mode]


@pytest.mark.parametrize("mode", DETERMINISTIC)
@pytest.mark.parametrize("shift", [1, 2, 7, 30, 52, 60, 61])  # 2.5 * 2^61 < 2^63
def test_tie_table_round_shift(mode, shift):
    # t * 2^shift is an exact integer code whose value at the shifted LSB is the tie t
    codes = np.array([int(Fraction(t) * (1 << shift)) for t in TIES], dtype=np.int64)
    assert round_shift(codes, shift, mode).tolist() == TABLE[mode]


# ---- one test per mode: ties and near-ties of both signs ---------------------------------
def _near_ties() -> np.ndarray:
    base = []
    for k in range(-6, 6):
        t = k + 0.5
        base += [t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), float(k)]
    for big in (2.0**51 + 0.5, -(2.0**51) - 0.5, 2.0**52, -(2.0**52) + 1, 2.0**60, -(2.0**62)):
        base.append(big)
    # inside (-1, 0), where y - floor(y) is not exact in float64
    base += [-(0.5 - 2**-54), -(0.5 + 2**-53), -(2**-60), -(2**-32 + 2**-60), -5e-324, 5e-324]
    base += [0.5 - 2**-54, -0.0, 0.0]
    return np.array(base)


@pytest.mark.parametrize("mode", DETERMINISTIC)
def test_round_float_to_int_near_ties(mode):
    y = _near_ties()
    got = round_float_to_int(y, mode)
    want = [oracle_round(Fraction(v), mode) for v in y.tolist()]
    assert got.tolist() == want


@pytest.mark.parametrize("mode", DETERMINISTIC)
def test_round_shift_near_ties(mode):
    codes = []
    for shift in (1, 3, 12, 40, 62, 63):
        h = 1 << (shift - 1)
        for k in (-3, -2, -1, 0, 1, 2):
            for d in (-1, 0, 1):
                c = k * (1 << shift) + h + d
                if -(1 << 63) <= c < (1 << 63):
                    codes.append((c, shift))
    for c, s in codes:
        got = int(round_shift(np.array([c], dtype=np.int64), s, mode)[0])
        assert got == oracle_round(Fraction(c, 1 << s), mode), (c, s)


@pytest.mark.parametrize("mode", DETERMINISTIC)
@settings(deadline=None, max_examples=150)
@given(
    c=st.lists(st.integers(-(1 << 63), (1 << 63) - 1), min_size=1, max_size=20),
    shift=st.integers(1, 70),
)
def test_round_shift_random_int64(mode, c, shift):
    """Every int64 code and every shift (>= 63 included) rounds exactly like the oracle."""
    got = round_shift(np.array(c, dtype=np.int64), shift, mode).tolist()
    assert got == [oracle_round(Fraction(v, 1 << shift), mode) for v in c]


@pytest.mark.parametrize("mode", DETERMINISTIC)
@settings(deadline=None, max_examples=150)
@given(y=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20))
def test_round_float_to_int_random(mode, y):
    got = round_float_to_int(np.array(y), mode).tolist()
    assert got == [oracle_round(Fraction(v), mode) for v in y]


def test_round_shift_nonpositive_shift_is_exact_left_shift():
    c = np.array([-3, 0, 5], dtype=np.int64)
    assert round_shift(c, 0, "rne").tolist() == [-3, 0, 5]
    assert round_shift(c, -4, "floor").tolist() == [-48, 0, 80]


@pytest.mark.parametrize("mode", DETERMINISTIC + ["stochastic"])
def test_inf_nan_pass_through_quietly(mode):
    y = np.array([np.inf, -np.inf, np.nan, 1.25])
    got = round_float_to_int(y, mode, seed=1)  # pytest turns any RuntimeWarning into an error
    assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2])


# ---- regressions (bugs found while writing these tests) ---------------------------------
def test_issue_half_away_just_below_minus_half():
    # -(0.5 - 2^-54): 1 + y rounds to 0.5 in float64, so a frac-based test mis-rounded it to -1
    assert round_float_to_int(np.array([-(0.5 - 2**-54)]), "half_away").tolist() == [0.0]


def test_issue_shift_63_of_large_unsigned_codes():
    c = np.array([(1 << 63) - 1, 1 << 62, (1 << 62) + 1, -(1 << 62)], dtype=np.int64)
    assert round_shift(c, 63, "rne").tolist() == [1, 0, 1, 0]
    assert round_shift(c, 63, "half_away").tolist() == [1, 1, 1, -1]
    assert round_shift(c, 63, "ceil").tolist() == [1, 1, 1, 0]


# ---- stochastic ----------------------------------------------------------------------------
def test_stochastic_reproducible_with_seed():
    y = np.linspace(-3, 3, 1001)
    a = round_float_to_int(y, "stochastic", seed=123)
    b = round_float_to_int(y, "stochastic", seed=123)
    c = round_float_to_int(y, "stochastic", seed=124)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    codes = np.arange(-5000, 5000, dtype=np.int64)
    assert np.array_equal(round_shift(codes, 5, "stochastic", seed=9), round_shift(codes, 5, "stochastic", seed=9))
    assert np.array_equal(stochastic_bits(10, 7, 3), stochastic_bits(10, 7, 3))


def test_stochastic_explicit_bits_float():
    # 2.25: floor 2, frac 1/4 -> trunc(frac * 2^32) = 2^30; rounds up iff 2^30 + r >= 2^32
    up = 3 << 30
    y = np.array([2.25, 2.25, -2.25, -2.25, 7.0, 7.0])
    # -2.25: floor -3, frac 3/4 -> 3 * 2^30; rounds up iff r >= 2^30.  7.0: frac 0, never up.
    r = np.array([up - 1, up, (1 << 30) - 1, 1 << 30, 0, (1 << 32) - 1])
    assert round_float_to_int(y, "stochastic", random_bits=r).tolist() == [2, 3, -3, -2, 7, 7]


def test_stochastic_explicit_bits_tiny_negative():
    # y = -(2^-32 + 2^-60): frac = 1 - 2^-32 - 2^-60 -> trunc(frac * 2^32) = 2^32 - 2: up iff r >= 2
    y = np.full(3, -(2.0**-32 + 2.0**-60))
    assert round_float_to_int(y, "stochastic", random_bits=np.array([0, 1, 2])).tolist() == [-1, -1, 0]


def test_stochastic_explicit_bits_shift():
    # code 5 >> 2: floor 1, remainder 1 -> up iff 1 + r >= 4;  code -5: floor -2, remainder 3 -> up iff r >= 1
    c = np.array([5, 5, -5, -5], dtype=np.int64)
    assert round_shift(c, 2, "stochastic", random_bits=np.array([2, 3, 0, 1])).tolist() == [1, 2, -2, -1]


def test_stochastic_unbiased_on_average():
    n = 200_000
    for v in (0.3, -1.7, 2.0**-20, -(2.0**-20)):
        got = round_float_to_int(np.full(n, v), "stochastic", seed=7)
        # E[result] = floor(v) + trunc(frac * 2^32) / 2^32 exactly; sd of the mean <= 0.5/sqrt(n)
        fl = math.floor(v)
        expect = fl + math.floor((v - fl) * 2**32) / 2**32
        assert abs(got.mean() - expect) < 5 * 0.5 / math.sqrt(n), v
    c = np.full(n, 0b1011, dtype=np.int64)  # 11 / 8 = 1.375
    assert abs(round_shift(c, 3, "stochastic", seed=3).mean() - 1.375) < 5 * 0.5 / math.sqrt(n)


def test_stochastic_errors():
    with pytest.raises(ValueError, match="needs a seed"):
        round_float_to_int(np.array([0.5]), "stochastic")
    with pytest.raises(ValueError, match=r"random_bits must lie in \[0, 2\*\*32\)"):
        round_float_to_int(np.array([0.5]), "stochastic", random_bits=np.array([1 << 32]))
    with pytest.raises(ValueError, match=r"random_bits must lie in \[0, 2\*\*3\)"):
        round_shift(np.array([5]), 3, "stochastic", random_bits=np.array([8]))
    with pytest.raises(ValueError, match="stochastic round_shift supports shift <= 62, got 63"):
        round_shift(np.array([5]), 63, "stochastic", seed=1)
    with pytest.raises(ValueError, match="nbits must be in 1..62, got 63"):
        stochastic_bits(4, 63, 1)


# ---- enums --------------------------------------------------------------------------------
def test_parse_enums():
    assert Rounding.parse("RNE") is Rounding.RNE
    assert Rounding.parse(Rounding.FLOOR) is Rounding.FLOOR
    assert Overflow.parse("Saturate") is Overflow.SATURATE
    with pytest.raises(ValueError, match=r"unknown rounding mode 'nearest'; expected one of: rne, rtz"):
        Rounding.parse("nearest")
    with pytest.raises(ValueError, match=r"unknown overflow mode 'clamp'; expected one of: wrap, saturate, error"):
        Overflow.parse("clamp")


def test_random_bits_broadcast():
    # one scalar random integer applies to every element
    y = np.array([0.25, 0.5, 0.75])
    assert round_float_to_int(y, "stochastic", random_bits=np.int64(1 << 31)).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match=r"random_bits of shape \(2,\) does not broadcast to the input shape \(3,\)"):
        round_float_to_int(y, "stochastic", random_bits=np.array([1, 2]))
