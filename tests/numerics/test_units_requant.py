"""refmodel.numerics.units.requant against an independent Python-int / Fraction reference."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from refmodel.numerics.units.requant import RequantParams, choose_multiplier, requant, requant_with_flags

MODES = ("floor", "half_up", "rne")


def ref_round(v: Fraction, mode: str) -> int:
    fl = math.floor(v)
    frac = v - fl
    if mode == "floor":
        return fl
    if mode == "half_up":
        return fl + (frac >= Fraction(1, 2))
    # rne
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and fl % 2 == 1):
        return fl + 1
    return fl


def ref_requant(x: int, m: int, p: RequantParams) -> tuple[int, bool]:
    r = ref_round(Fraction(x * m, 1 << p.shift), p.rounding.value)
    lo, hi = -(1 << (p.out_w - 1)), (1 << (p.out_w - 1)) - 1
    y = min(max(r, lo), hi)
    return y, y != r


@pytest.mark.parametrize("mode", MODES)
def test_exhaustive_small(mode):
    """Every (x, M) for 6-bit x, 3-bit M, every shift 0..9, OUT_W = 4."""
    xs = np.arange(-32, 32, dtype=np.int64)
    ms = np.arange(0, 8, dtype=np.int64)
    X, M = np.meshgrid(xs, ms)
    for shift in range(0, 10):
        p = RequantParams(in_w=6, m_w=3, shift=shift, out_w=4, rounding=mode)
        y, sat = requant_with_flags(X, M, p)
        for (x, m, yy, ss) in zip(X.ravel().tolist(), M.ravel().tolist(), y.ravel().tolist(), sat.ravel().tolist(), strict=True):
            assert (yy, ss) == ref_requant(x, m, p), (mode, shift, x, m)


@pytest.mark.parametrize("mode", MODES)
def test_random_wide(mode):
    rng = np.random.default_rng(1)
    p = RequantParams(in_w=40, m_w=22, shift=37, out_w=16, rounding=mode)
    x = rng.integers(-(1 << 39), 1 << 39, size=3000, dtype=np.int64) >> rng.integers(0, 39, size=3000)
    m = rng.integers(0, 1 << 22, size=3000, dtype=np.int64)
    y, sat = requant_with_flags(x, m, p)
    for a, b, yy, ss in zip(x.tolist(), m.tolist(), y.tolist(), sat.tolist(), strict=True):
        assert (yy, ss) == ref_requant(a, b, p)


def test_tie_table():
    """The rounding.py tie table: -2.5 -1.5 -0.5 0.5 1.5 2.5 at shift 1 (M = 1)."""
    x = np.array([-5, -3, -1, 1, 3, 5])
    want = {"floor": [-3, -2, -1, 0, 1, 2], "half_up": [-2, -1, 0, 1, 2, 3], "rne": [-2, -2, 0, 0, 2, 2]}
    for mode, w in want.items():
        assert requant(x, 1, RequantParams(in_w=8, m_w=1, shift=1, out_w=8, rounding=mode)).tolist() == w


def test_saturation_and_broadcast():
    p = RequantParams(in_w=16, m_w=8, shift=0, out_w=8)
    y, sat = requant_with_flags(np.array([[127, 128], [-128, -129]]), np.array([[1], [1]]), p)
    assert y.tolist() == [[127, 127], [-128, -128]]
    assert sat.tolist() == [[False, True], [False, True]]


def test_errors():
    p = RequantParams(in_w=8, m_w=4, shift=2, out_w=8)
    with pytest.raises(ValueError, match="input code 128"):
        requant([128], 1, p)
    with pytest.raises(ValueError, match="multiplier 16"):
        requant([1], 16, p)
    with pytest.raises(ValueError, match="rounding"):
        RequantParams(rounding="rtz")
    with pytest.raises(ValueError, match="in_w \\+ m_w <= 62"):
        RequantParams(in_w=40, m_w=30)
    with pytest.raises(ValueError, match="shift"):
        RequantParams(in_w=8, m_w=4, shift=13)


def test_to_hdl():
    assert RequantParams(in_w=24, m_w=8, shift=10, out_w=16, rounding="rne").to_hdl() == {
        "IN_W": 24, "M_W": 8, "SHIFT": 10, "OUT_W": 16, "ROUND_MODE": 2}


@pytest.mark.parametrize("scale", [1e-6, 0.0123, 0.5, 0.999999, 1.0, 3.7, 1000.0])
@pytest.mark.parametrize("m_w", [8, 16, 31])
def test_choose_multiplier(scale, m_w):
    if scale >= (1 << m_w) - 0.5:
        with pytest.raises(ValueError, match="more than"):
            choose_multiplier(scale, m_w)
        return
    m, s = choose_multiplier(scale, m_w)
    assert 0 < m < (1 << m_w)
    assert abs(Fraction(m, 1 << s) - Fraction(scale)) <= Fraction(1, 2 * (1 << s))  # correctly rounded
    if s > 0:
        assert m >= 1 << (m_w - 1)
        assert abs(m / 2 ** s - scale) / scale <= 2.0 ** -m_w
