"""Correctly rounded float64 products and sums: every element equals the exact value (Python
Fractions) rounded once, on random, cancelling, wide-range, low-precision, zero and non-finite
data, through the fast path, the exact path and the refinement between them."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from refmodel.numerics import f64dot


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    A = [[Fraction(v) for v in row] for row in a.tolist()]
    B = [[Fraction(v) for v in col] for col in b.T.tolist()]
    return np.array([[float(sum(x * y for x, y in zip(r, c, strict=True))) for c in B] for r in A]).reshape(
        a.shape[0], b.shape[1])


def _cases(rng: np.random.Generator):
    for trial in range(120):
        m, K, n = int(rng.integers(1, 6)), int(rng.integers(1, 70)), int(rng.integers(1, 6))
        a, b = rng.normal(size=(m, K)), rng.normal(size=(K, n))
        kind = trial % 8
        if kind == 1:  # wide dynamic range inside rows and columns
            a *= np.exp2(rng.integers(-80, 80, size=(m, K)))
            b *= np.exp2(rng.integers(-80, 80, size=(K, n)))
        elif kind == 2:  # massive cancellation: a row is (v, -v) against (w, w)
            h = max(1, K // 2)
            a = np.concatenate([a[:, :h], -a[:, :h] * (1 + 2.0**-45)], axis=1)
            b = np.concatenate([b[:h], b[:h]])
        elif kind == 3:  # few significant bits (decoded low-precision formats)
            a, b = np.round(a * 16) / 16, np.round(b * 8) / 8
        elif kind == 4:  # exponents beyond the fast path's range
            a *= np.exp2(rng.integers(-1000, 960, size=(m, 1)))
            b *= np.exp2(rng.integers(-60, 60, size=(1, n)))
        elif kind == 5:  # zeros: whole rows and scattered
            a[rng.random(a.shape) < 0.5] = 0
            a[0] = 0
        elif kind == 6:  # exact ties of the final rounding: (1 + 2^-53) built from two terms
            a = np.zeros((m, 2))
            b = np.zeros((2, n))
            a[:, 0], a[:, 1], b[0], b[1] = 1.0, 2.0**-27, 1.0, 2.0**-26 + 2.0**-52 * rng.integers(0, 3, n)
        elif kind == 7:  # outlier channel (massive activation)
            a[:, 0] *= 1e4
        yield kind, a, b


def test_matmul_is_correctly_rounded():
    rng = np.random.default_rng(1)
    for kind, a, b in _cases(rng):
        got, want = f64dot.matmul(a, b), _exact_matmul(a, b)
        bad = got != want
        assert not bad.any(), (kind, got[bad][:3], want[bad][:3])


def test_fast_path_refines_what_it_cannot_decide():
    """Results that cancel to far below the operands' scale are undecided by the fast path's bound
    and recomputed exactly; decided ones agree with the exact path."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(40, 96))
    b = rng.normal(size=(96, 30))
    b[:, :10] = np.concatenate([b[:48, :10], b[:48, :10]])  # columns that cancel against ...
    a[:20, 48:] = -a[:20, :48]  # ... these rows: exact result 0
    K = 96
    bs = f64dot._BSide(b, f64dot._beta(K, 2))
    res, ok = f64dot._matmul_fast(a, bs)
    assert not ok.all() and ok.any()
    exact = f64dot._matmul_exact_2d(a, b)
    assert np.array_equal(res[ok], exact[ok])
    assert np.array_equal(f64dot.matmul(a, b), exact)
    assert np.all(exact[:20, :10] == 0) and not np.signbit(exact[:20, :10]).any()


def test_matmul_batch_broadcast_and_shapes():
    rng = np.random.default_rng(3)
    q, k = rng.normal(size=(3, 5, 8)), rng.normal(size=(1, 8, 7))
    got = f64dot.matmul(q, k)
    assert got.shape == (3, 5, 7)
    for h in range(3):
        assert np.array_equal(got[h], _exact_matmul(q[h], k[0]))
    assert f64dot.matmul(np.zeros((2, 0)), np.zeros((0, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="do not align"):
        f64dot.matmul(q, q)


def test_matmul_nonfinite_follows_ieee():
    a = np.array([[np.inf, 1.0], [1.0, np.nan], [np.inf, 0.0], [1e308, 1e308], [-np.inf, 2.0]])
    b = np.array([[1.0, 0.0, -1.0], [2.0, 3.0, 1.0]])
    got = f64dot.matmul(a, b)
    assert got[0, 0] == np.inf and np.isnan(got[0, 1]) and got[0, 2] == -np.inf  # inf*0 is NaN
    assert np.isnan(got[1]).all()
    assert got[2, 0] == np.inf and np.isnan(got[2, 1])
    assert got[3, 0] == np.inf and got[3, 2] == 0.0  # overflow of a finite exact sum; exact cancellation
    assert got[4, 0] == -np.inf


def test_fsum_and_dot_rows_are_correctly_rounded():
    rng = np.random.default_rng(4)
    for trial in range(200):
        x = rng.normal(size=(3, int(rng.integers(1, 300)))) * np.exp2(rng.integers(-60, 60, size=(3, 1)))
        if trial % 3 == 0:
            x *= np.exp2(rng.integers(-200, 200, size=x.shape))
        if trial % 3 == 1:
            x = np.concatenate([x, -x * (1 + 2.0**-40)], axis=1)
        assert np.array_equal(f64dot.fsum(x, axis=1), np.array([math.fsum(r) for r in x.tolist()]))
        assert np.array_equal(f64dot.fsum(x.T, axis=0), np.array([math.fsum(r) for r in x.tolist()]))
        y = rng.normal(size=x.shape)
        want = [float(sum(Fraction(p) * Fraction(q) for p, q in zip(r, s, strict=True))) for r, s in
                zip(x.tolist(), y.tolist(), strict=True)]
        assert np.array_equal(f64dot.dot_rows(x, y), np.array(want))
    assert f64dot.fsum(np.array([[np.inf, 1.0], [np.inf, -np.inf], [np.nan, 0.0]]), 1).tolist()[0] == np.inf
    assert np.isnan(f64dot.fsum(np.array([[np.inf, -np.inf]]), 1)).all()
    assert f64dot.mean(np.array([[1.0, 2.0, 4.0]]), keepdims=True).shape == (1, 1)


def test_result_does_not_depend_on_chunking(monkeypatch):
    """The rows of a product are computed in chunks; results are the same for any chunk size."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(37, 50)) * np.exp2(rng.integers(-30, 30, size=(37, 1))), rng.normal(size=(50, 23))
    full = f64dot.matmul(a, b)
    monkeypatch.setattr(f64dot, "_CHUNK_ELEMS", 64)
    assert np.array_equal(f64dot.matmul(a, b), full)


@pytest.mark.parametrize("slices", [1, 2])
def test_matmul_upper_bounds_the_exact_product(slices):
    """For magnitudes (error bounds): never below the exact product, within K 2^(Ea+Eb) 2^(1-slices*beta)."""
    rng = np.random.default_rng(6 + slices)
    for _ in range(40):
        m, K, n = int(rng.integers(1, 5)), int(rng.integers(1, 50)), int(rng.integers(1, 5))
        a = np.abs(rng.normal(size=(m, K))) * np.exp2(rng.integers(-40, 40, size=(m, K)))
        b = np.abs(rng.normal(size=(K, n)))
        b[rng.random(b.shape) < 0.3] = 0.0
        up = f64dot.matmul_upper(a, b, slices=slices)
        exact = [[sum(Fraction(x) * Fraction(y) for x, y in zip(r, c, strict=True)) for c in b.T.tolist()]
                 for r in a.tolist()]
        beta = f64dot._beta(K, 2)
        for i in range(m):
            for j in range(n):
                assert Fraction(float(up[i, j])) >= exact[i][j]
                slack = K * a[i].max() * b[:, j].max() * 2.0 ** (3 - slices * beta)
                assert float(up[i, j]) - float(exact[i][j]) <= slack + abs(float(exact[i][j])) * 2.0**-50
    with pytest.raises(ValueError, match="non-negative"):
        f64dot.matmul_upper(-np.ones((2, 2)), np.ones((2, 2)))
