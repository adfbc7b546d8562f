"""refmodel.numerics.units.reciprocal against Python ints and a bit-serial restoring-division
reference written from the RTL's recurrence."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from refmodel.numerics.units.reciprocal import DividerParams, ReciprocalParams, divide, exhaustive_error, reciprocal


def restoring(a: int, b: int, num_w: int, den_w: int) -> tuple[int, int]:
    """The RTL recurrence: remainder register den_w bits, one dividend bit per step."""
    r = 0
    q = 0
    for i in range(num_w - 1, -1, -1):
        sh = (r << 1) | ((a >> i) & 1)
        ge = sh >= b
        r = ((sh - b) if ge else sh) & ((1 << den_w) - 1)
        q = (q << 1) | int(ge)
    return q, r


def test_exhaustive_small_against_recurrence():
    """Every (A, B) for 7-bit A, 5-bit B, including B = 0, against the recurrence and //."""
    p = DividerParams(num_w=7, den_w=5)
    A, B = np.meshgrid(np.arange(128), np.arange(32))
    q, r = divide(A, B, p)
    for a, b, qq, rr in zip(A.ravel().tolist(), B.ravel().tolist(), q.ravel().tolist(), r.ravel().tolist(), strict=True):
        assert (qq, rr) == restoring(a, b, 7, 5), (a, b)
        if b:
            assert (qq, rr) == (a // b, a % b)
        else:
            assert qq == 127 and rr == a % 32


def test_random_wide():
    rng = np.random.default_rng(2)
    p = DividerParams(num_w=63, den_w=62)
    a = rng.integers(0, np.iinfo(np.int64).max, size=4000, dtype=np.int64) >> rng.integers(0, 63, 4000)
    b = rng.integers(1, 1 << 62, size=4000, dtype=np.int64) >> rng.integers(0, 62, 4000)
    b = np.maximum(b, 1)
    q, r = divide(a, b, p)
    for x, y, qq, rr in zip(a.tolist(), b.tolist(), q.tolist(), r.tolist(), strict=True):
        assert (qq, rr) == (x // y, x % y)
    # the recurrence on a few wide ones too
    for x, y in list(zip(a.tolist(), b.tolist(), strict=True))[:50]:
        assert restoring(x, y, 63, 62) == (x // y, x % y)


def test_reciprocal_values():
    p = ReciprocalParams(k=35, den_w=26)
    d = np.array([0, 1, 2, 3, 7, (1 << 26) - 1, 1 << 19, 123456])
    want = [(1 << 36) - 1] + [(1 << 35) // int(v) for v in d[1:]]
    assert reciprocal(d, p).tolist() == want
    assert p.to_hdl() == {"NUM_W": 36, "DEN_W": 26}


def test_errors():
    with pytest.raises(ValueError, match="divisor 16"):
        divide([1], [16], DividerParams(num_w=8, den_w=4))
    with pytest.raises(ValueError, match="dividend -1"):
        divide([-1], [1], DividerParams(num_w=8, den_w=4))
    with pytest.raises(ValueError, match="num_w"):
        DividerParams(num_w=64)


def test_exhaustive_error_matches_fraction():
    """The measured max error equals the exact max of (2^k mod d)/d over every d."""
    p = ReciprocalParams(k=12, den_w=8)
    ue = exhaustive_error(p)
    assert ue.exhaustive and ue.n == 255
    errs = {d: Fraction((1 << 12) % d, d) for d in range(1, 256)}
    worst = max(errs, key=lambda d: errs[d])
    assert ue.max_abs_err == pytest.approx(float(errs[worst]), abs=1e-12)
    assert 0 <= ue.max_abs_err < 1
    rel = max(float(errs[d] / Fraction(1 << 12, d)) for d in range(1, 256) if Fraction(1 << 12, d) >= 1)
    assert ue.max_rel_err == pytest.approx(rel, rel=1e-9)


def test_exhaustive_error_sampled_large():
    ue = exhaustive_error(ReciprocalParams(k=45, den_w=30), n_random=1 << 12)
    assert not ue.exhaustive and 0 < ue.max_abs_err < 1
