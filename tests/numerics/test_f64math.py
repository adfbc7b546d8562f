"""Reproducible float64 elementary functions: accuracy in ulp against mpmath (300 bits) on many
points, specials, and the constants they are built from."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refmodel.numerics import f64math

mpmath = pytest.importorskip("mpmath")
mpmath.mp.prec = 300


def _ulp_errors(got: np.ndarray, xs: np.ndarray, fn) -> np.ndarray:
    """|got - exact| in ulps of the exact value (correctly rounded float64 ulp)."""
    out = []
    for g, x in zip(got.tolist(), xs.tolist(), strict=True):
        ex = fn(mpmath.mpf(x))
        exf = float(ex)
        if exf == 0.0:
            out.append(0.0 if g == 0.0 else math.inf)
            continue
        u = math.ulp(exf) if abs(exf) >= 2.2250738585072014e-308 else 5e-324
        out.append(float(abs(mpmath.mpf(g) - ex) / u))
    return np.array(out)


RNG = np.random.default_rng(20250101)
N = 3000
CASES = {
    # name: (function, mpmath function, points, documented max ulp)
    "exp": (f64math.exp, mpmath.exp, np.concatenate([RNG.uniform(-708, 709.78, N), RNG.uniform(-1, 1, N),
                                                     RNG.normal(0, 1e-6, N), [0.0, 1.0, -1.0, 709.78, -708.3]]), 1.0),
    "expm1": (f64math.expm1, mpmath.expm1, np.concatenate([RNG.uniform(-40, 709, N), RNG.uniform(-1, 1, N),
                                                           RNG.normal(0, 1e-9, N), [0.34, -0.35, 0.36]]), 2.0),
    "tanh": (f64math.tanh, mpmath.tanh, np.concatenate([RNG.uniform(-25, 25, N), RNG.uniform(-1, 1, N),
                                                        RNG.normal(0, 1e-7, N)]), 3.0),
    "erf": (f64math.erf, mpmath.erf, np.concatenate([RNG.uniform(-6.5, 6.5, N), RNG.uniform(-0.6, 0.6, N),
                                                     RNG.normal(0, 1e-7, N), [0.5, -0.5, 0.4999999999]]), 3.0),
    "erfc": (f64math.erfc, mpmath.erfc, np.concatenate([RNG.uniform(-6, 26.5, N), RNG.uniform(0.4, 4.1, N),
                                                        RNG.uniform(-0.6, 0.6, N)]), 5.0),
    "sin": (f64math.sin, mpmath.sin, np.concatenate([RNG.uniform(-8, 8, N), RNG.uniform(0, 5000, N),
                                                     RNG.uniform(0, 2.0**28, N), [math.pi / 2, 3 * math.pi]]), 1.5),
    "cos": (f64math.cos, mpmath.cos, np.concatenate([RNG.uniform(-8, 8, N), RNG.uniform(0, 5000, N),
                                                     RNG.uniform(0, 2.0**28, N), [math.pi / 4, 1e6]]), 1.5),
}


@pytest.mark.parametrize("name", list(CASES))
def test_accuracy_in_ulp(name):
    fn, ref, xs, bound = CASES[name]
    err = _ulp_errors(fn(xs), xs, ref)
    i = int(np.argmax(err))
    assert err[i] <= bound, f"{name}({xs[i]!r}) is {err[i]:.3g} ulp off (documented: {bound})"


def test_sin_cos_near_multiples_of_pi_over_2():
    """The argument reduction keeps relative accuracy near zeros of sin/cos (pi/2 to 173 bits)."""
    k = np.arange(1, 2000, dtype=np.float64)
    x = np.nextafter(k * (math.pi / 2), np.inf)
    s = _ulp_errors(f64math.sin(x), x, mpmath.sin)
    c = _ulp_errors(f64math.cos(x), x, mpmath.cos)
    assert s.max() <= 1.5 and c.max() <= 1.5


def test_specials():
    assert f64math.exp(np.inf) == np.inf and f64math.exp(-np.inf) == 0.0 and np.isnan(f64math.exp(np.nan))
    assert f64math.exp(710.0) == np.inf and f64math.exp(-746.0) == 0.0
    assert f64math.expm1(-np.inf) == -1.0 and f64math.expm1(-100.0) == -1.0
    assert f64math.tanh(np.inf) == 1.0 and f64math.tanh(-np.inf) == -1.0 and np.isnan(f64math.tanh(np.nan))
    assert np.signbit(f64math.tanh(-0.0)) and np.signbit(f64math.sin(-0.0)) and f64math.cos(0.0) == 1.0
    assert f64math.erf(np.inf) == 1.0 and f64math.erf(-np.inf) == -1.0 and np.isnan(f64math.erf(np.nan))
    assert f64math.erfc(np.inf) == 0.0 and f64math.erfc(-np.inf) == 2.0 and f64math.erfc(28.0) == 0.0
    assert np.isnan(f64math.sin(np.inf)) and np.isnan(f64math.cos(-np.inf))
    with pytest.raises(ValueError, match="outside"):
        f64math.sin(np.array([1.0, 2.0**30]))


def test_subnormal_results_stay_within_one_ulp():
    xs = np.linspace(-744.0, -709.0, 500)
    err = _ulp_errors(f64math.exp(xs), xs, mpmath.exp)
    assert err.max() <= 1.0


def test_constants_match_high_precision():
    pio2 = sum(mpmath.mpf(p) for p in f64math._PIO2_PARTS)
    assert abs(pio2 - mpmath.pi / 2) < mpmath.mpf(2) ** -170
    assert abs(mpmath.mpf(f64math._LN2_HI) + mpmath.mpf(f64math._LN2_LO) - mpmath.log(2)) < mpmath.mpf(2) ** -100
    assert math.frexp(f64math._LN2_HI * 2**42)[0] * 2**53 % 2**11 == 0  # at most 42 significant bits


def test_pow_const_is_correctly_rounded():
    e = -np.arange(0, 64, 2) / 64.0
    got = f64math.pow_const(10000.0, e)
    want = np.array([float(mpmath.mpf(10000) ** mpmath.mpf(v)) for v in e.tolist()])
    assert np.array_equal(got, want)
