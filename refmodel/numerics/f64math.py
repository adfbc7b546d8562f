"""Elementary functions in float64 that give the same bits on every machine.

numpy's ``exp``, ``tanh``, ``sin``, ``cos`` and ``power`` dispatch to SIMD or libm kernels chosen
at run time from the CPU (AVX2, AVX-512, ...); those kernels differ in the last bit, so a float64
reference computed with them is not reproducible across machines. The functions here use only
IEEE basic operations (``+ - * /``, ``sqrt``, ``rint``, ``floor``, comparisons and exact scaling
by powers of two), each correctly rounded and hence identical everywhere, in a fixed order.

Numeric contract (round-to-nearest-even, float64 in and out, any shape, vectorised; accuracy is
the maximum error in units of the last place of the exact result, measured against mpmath at
300 bits in ``tests/numerics/test_f64math.py``):

===============  ======================================================  ===================
function         method                                                   accuracy
===============  ======================================================  ===================
``exp(x)``       ``x = k ln2 + r`` (Cody-Waite, 42+53-bit ln 2),          <= 1 ulp
                 Taylor degree 13 on ``|r| <= ln2/2``, scaled by 2^k
``expm1(x)``     as ``exp``; ``2^k p + (2^k - 1)`` with one rounding      <= 2 ulp
``tanh(x)``      ``-t / (t + 2)`` with ``t = expm1(-2|x|)``               <= 3 ulp
``erf(x)``       series for ``|x| < 1/2``, else ``1 - erfc(|x|)``          <= 3 ulp
``erfc(x)``      ``exp(-x^2) erfcx(x)``: ``x^2 = h + l`` split exactly,     <= 5 ulp (x < 26.5,
                 erfcx from Taylor tables (step 1/8, degree 20) made      where erfc is normal)
                 at first use in 40-digit decimal arithmetic
``sin, cos(x)``  ``x = k pi/2 + r`` with pi/2 to 173 bits (double-        <= 1.5 ulp
                 double remainder), Taylor degree 23/22 on ``|r|<=pi/4``  (``|x| < 2^29``)
===============  ======================================================  ===================

Specials: NaN in, NaN out; ``exp(+inf) = inf``, ``exp(-inf) = 0``; ``tanh(+-inf) = +-1``;
``erf(+-inf) = +-1``, ``erfc(+inf) = 0``; ``sin``/``cos`` of an infinity is NaN. Results that
are subnormal are rounded twice (polynomial, then the scaling) and may be 1 ulp off; they are
still identical on every machine. ``sin``/``cos`` refuse ``|x| >= 2^29`` (ValueError): the
argument reduction is exact only below that (RoPE angles are at most the position).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["exp", "expm1", "tanh", "erf", "erfc", "sin", "cos", "sincos", "two_prod", "pow_const"]

# ---------------------------------------------------------------------------------------------
# constants, derived once from exact rationals (Decimal's ln is correctly rounded)
# ---------------------------------------------------------------------------------------------
_PI_DIGITS = ("3.14159265358979323846264338327950288419716939937510"
              "58209749445923078164062862089986280348253421170679")
_PI = Fraction(_PI_DIGITS)  # 100 digits: 330 bits


def _ln(v: int) -> Fraction:
    with localcontext() as ctx:
        ctx.prec = 60
        return Fraction(Decimal(v).ln())


def _chop(v: Fraction, bits: int) -> float:
    """``v > 0`` truncated to ``bits`` significant bits (exact as a float64)."""
    e = v.numerator.bit_length() - v.denominator.bit_length() - 1  # 2^e < v < 2^(e+2)
    if Fraction(2) ** (e + 1) <= v:
        e += 1  # now 2^e <= v < 2^(e+1)
    q = Fraction(2) ** (bits - 1 - e)
    return float(Fraction(math.floor(v * q)) / q)


_LN2 = _ln(2)
_LN2_HI = _chop(_LN2, 42)  # k * _LN2_HI is exact for |k| < 2^11
_LN2_LO = float(_LN2 - Fraction(_LN2_HI))
_INV_LN2 = float(1 / _LN2)

_PIO2 = _PI / 2
_PIO2_PARTS: list[float] = []
_rest = _PIO2
for _ in range(5):  # five 24-bit parts: k * part is exact for |k| < 2^29
    _p = _chop(_rest, 24)
    _PIO2_PARTS.append(_p)
    _rest -= Fraction(_p)
_PIO2_PARTS.append(float(_rest))  # the last part to full precision: 5*24 + 53 = 173 bits
_TWO_OVER_PI = float(2 / _PI)
_SINCOS_MAX = 2.0**29

_EXP_COEF = [float(Fraction(1, math.factorial(n))) for n in range(14)]  # 1/n!, n = 0..13
_SIN_COEF = [float(Fraction((-1) ** j, math.factorial(2 * j + 1))) for j in range(12)]  # r^(2j+1)
_COS_COEF = [float(Fraction((-1) ** j, math.factorial(2 * j))) for j in range(12)]  # r^(2j)

_EXP_HI = 709.782712893384  # exp overflows above this (exp(709.78...) < max float64)
_EXP_LO = -745.1332191019412  # exp underflows to 0 below this


def _as_f64(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


#: elements per block: the functions evaluate big arrays block by block, so their temporaries stay
#: a few MiB whatever the array size (a softmax of 12 x 4096 x 4096 scores)
BLOCK = 1 << 18


def _blockwise(fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray | float], Any]:
    """Apply an elementwise ``fn`` (one array or a tuple of arrays out) to blocks of the flattened
    input; results have the input's shape."""
    @functools.wraps(fn)
    def wrapper(x: np.ndarray | float) -> Any:
        a = _as_f64(x)
        if a.size <= BLOCK:
            return fn(a)
        flat = a.reshape(-1)
        first = fn(flat[:BLOCK])
        multi = isinstance(first, tuple)
        parts = first if multi else (first,)
        outs = [np.empty(flat.size, dtype=np.float64) for _ in parts]
        for o, p in zip(outs, parts, strict=True):
            o[:BLOCK] = p
        for i in range(BLOCK, flat.size, BLOCK):
            r = fn(flat[i:i + BLOCK])
            for o, p in zip(outs, r if multi else (r,), strict=True):
                o[i:i + BLOCK] = p
        shaped = tuple(o.reshape(a.shape) for o in outs)
        return shaped if multi else shaped[0]

    return wrapper


def _horner(r: np.ndarray, coef: list[float]) -> np.ndarray:
    """``coef[0] + r (coef[1] + r (coef[2] + ...))`` in a fixed order."""
    acc = np.full_like(r, coef[-1])
    for c in reversed(coef[:-1]):
        acc = acc * r + c
    return acc


def _reduce_ln2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x = k ln2 + r`` with ``k`` an integer (float64) and ``|r| <= ln2/2 (1 + 2^-40)``; ``r``
    is within 0.5 ulp of ``x - k ln2`` (``k _LN2_HI`` is exact, so is ``x - k _LN2_HI``)."""
    k = np.rint(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    return k, r


def _expm1_reduced(r: np.ndarray) -> np.ndarray:
    """``exp(r) - 1`` for ``|r| <= 0.35``: ``r + r^2 (1/2 + r (1/6 + ...))``, Taylor degree 13
    (truncation < 2^-57 relative)."""
    return r + (r * r) * _horner(r, _EXP_COEF[2:])


def _scale(y: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``y * 2^k`` (exact unless the result is subnormal or overflows; IEEE scaleB)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(y, k.astype(np.int32))


@_blockwise
def exp(x: np.ndarray | float) -> np.ndarray:
    """``e^x`` in float64, within 1 ulp, identical on every machine (module docstring)."""
    x = _as_f64(x)
    xc = np.where(np.isfinite(x), np.clip(x, _EXP_LO - 1.0, _EXP_HI + 1.0), 0.0)
    k, r = _reduce_ln2(xc)
    y = _scale(1.0 + _expm1_reduced(r), k)
    y = np.where(xc > _EXP_HI, np.inf, np.where(xc < _EXP_LO, 0.0, y))
    return np.where(np.isnan(x), np.nan, np.where(x == np.inf, np.inf, np.where(x == -np.inf, 0.0, y)))


@_blockwise
def expm1(x: np.ndarray | float) -> np.ndarray:
    """``e^x - 1`` in float64 with relative accuracy near 0, within 1 ulp."""
    x = _as_f64(x)
    xc = np.where(np.isfinite(x), np.clip(x, -60.0, _EXP_HI + 1.0), 0.0)
    k, r = _reduce_ln2(xc)
    p = _expm1_reduced(r)
    # 2^k (1 + p) - 1 = 2^k p + (2^k - 1): both terms exact for -53 <= k <= 53, one rounding
    y = np.where(k == 0, p, _scale(p, k) + (_scale(np.ones_like(p), k) - 1.0))
    y = np.where(xc > _EXP_HI, np.inf, np.where(xc <= -60.0, -1.0, y))
    return np.where(np.isnan(x), np.nan, np.where(x == np.inf, np.inf, np.where(x == -np.inf, -1.0, y)))


@_blockwise
def tanh(x: np.ndarray | float) -> np.ndarray:
    """Hyperbolic tangent in float64 within 3 ulp: ``tanh|x| = -t / (t + 2)``, ``t = expm1(-2|x|)``."""
    x = _as_f64(x)
    ax = np.abs(x)
    t = expm1(-2.0 * np.minimum(ax, 20.0))
    y = np.where(ax > 19.5, 1.0, -t / (t + 2.0))
    y = np.where(ax < 2.0**-28, ax, y)  # tanh x = x (1 - x^2/3 ...) rounds to x here
    return np.where(np.isnan(x), np.nan, np.copysign(y, x))


def two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error-free product ``a b = p + e`` exactly (Dekker/Veltkamp splitting; no FMA needed).
    Valid when ``|a|, |b| < 2^995`` and the product does not underflow."""
    def split(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = 134217729.0 * v  # 2^27 + 1
        hi = c - (c - v)
        return hi, v - hi

    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _exp_neg_square(x: np.ndarray) -> np.ndarray:
    """``exp(-x^2)`` with ``x^2`` split exactly as ``h + l``: ``exp(-h) (1 - l)`` (|l| <= 2^-53 h)."""
    h, lo = two_prod(x, x)
    with np.errstate(under="ignore"):
        return exp(-h) * (1.0 - lo)


_ERF_SERIES_CUTOFF = 0.5  # erf's series below, erfc = exp(-x^2) erfcx(x) above
_ERF_SERIES_TERMS = 16
_ERFCX_LO, _ERFCX_HI, _ERFCX_STEP = 0.5, 27.5, 0.125  # erfc(27.5) < 2^-1074
_ERFCX_DEGREE = 20


@functools.cache
def _erfcx_taylor_table() -> np.ndarray:
    """Taylor coefficients of the scaled complementary error function ``erfcx(x) = e^{x^2} erfc(x)``
    about the centres ``c_j = 0.5 + (j + 1/2) * 0.125`` (one row per centre), and 2/sqrt(pi).

    ``erfcx' = 2x erfcx - 2/sqrt(pi)`` gives ``t_{n+1} = (2c t_n + 2 t_{n-1}) / (n + 1)`` for the
    coefficients ``t_n``; ``erfcx(c)`` is erf's Taylor series (c < 3) or erfc's continued fraction
    evaluated backward (c >= 3), all in 40-digit decimal arithmetic (software: identical everywhere).
    Built on first use (~0.1 s)."""
    rows = []
    with localcontext() as ctx:
        ctx.prec = 40
        sqrt_pi = (Decimal(_PI.numerator) / Decimal(_PI.denominator)).sqrt()
        two_over_sqrt_pi = 2 / sqrt_pi
        n_int = round((_ERFCX_HI - _ERFCX_LO) / _ERFCX_STEP)
        for j in range(n_int):
            c = Decimal(_ERFCX_LO + (j + 0.5) * _ERFCX_STEP)
            if c < 3:
                erf_c, term, n = Decimal(0), c, 0
                while True:  # erf(c) = 2/sqrt(pi) sum (-1)^n c^(2n+1) / (n! (2n+1))
                    add = term / (2 * n + 1)
                    erf_c += add
                    if abs(add) < Decimal(10) ** -38:
                        break
                    n += 1
                    term = -term * c * c / n
                y = (c * c).exp() * (1 - two_over_sqrt_pi * erf_c)
            else:  # erfc(c) = c e^{-c^2}/sqrt(pi) / (b_0 - a_1/(b_1 - a_2/(b_2 - ...))), a_n = n(2n-1)/2
                t = c * c + Decimal("0.5") + 2 * 80
                for n in range(80, 0, -1):
                    t = (c * c + Decimal("0.5") + 2 * (n - 1)) - Decimal(n * (2 * n - 1)) / 2 / t
                y = c / sqrt_pi / t
            coef = [y, 2 * c * y - two_over_sqrt_pi]
            for n in range(1, _ERFCX_DEGREE):
                coef.append((2 * c * coef[n] + 2 * coef[n - 1]) / (n + 1))
            rows.append([float(v) for v in coef])
        return np.array(rows, dtype=np.float64)


with localcontext() as _ctx:
    _ctx.prec = 40
    _TWO_OVER_SQRT_PI = float(2 / (Decimal(_PI.numerator) / Decimal(_PI.denominator)).sqrt())


def _erf_series(x: np.ndarray) -> np.ndarray:
    # erf(x) = 2/sqrt(pi) x exp(-x^2) sum_n (2x^2)^n / (1*3*...*(2n+1)), Horner form, |x| < 0.5
    x2 = x * x
    acc = np.zeros_like(x)
    fk = _ERF_SERIES_TERMS + 0.5
    for _ in range(_ERF_SERIES_TERMS):
        acc = 1.0 + x2 * acc / fk
        fk -= 1.0
    return (x * _TWO_OVER_SQRT_PI) * acc * _exp_neg_square(x)


def _erfc_pos(ax: np.ndarray) -> np.ndarray:
    """erfc for ``ax >= 0.5`` (no NaN): ``exp(-x^2) erfcx(x)``, erfcx from the Taylor table."""
    v = np.minimum(ax, _ERFCX_HI)
    j = np.floor((v - _ERFCX_LO) / _ERFCX_STEP).astype(np.int64)
    h = v - (_ERFCX_LO + (j + 0.5) * _ERFCX_STEP)  # exact (Sterbenz)
    table = _erfcx_taylor_table()
    j = np.minimum(j, len(table) - 1)
    acc = table[j, -1]
    for n in range(_ERFCX_DEGREE - 1, -1, -1):
        acc = acc * h + table[j, n]
    with np.errstate(under="ignore"):
        return np.where(ax >= _ERFCX_HI, 0.0, _exp_neg_square(v) * acc)


def _erf_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask of |x| < 0.5, erf there by the series, erfc(|x|) elsewhere); NaN counts as large."""
    ax = np.abs(x)
    small = ax < _ERF_SERIES_CUTOFF
    s = np.zeros_like(x)
    s[small] = _erf_series(x[small])
    big = ~small & ~np.isnan(x)
    c = np.full_like(x, np.nan)
    c[big] = _erfc_pos(ax[big])
    return small, s, c


@_blockwise
def erf(x: np.ndarray | float) -> np.ndarray:
    """Error function in float64 within 3 ulp: series for ``|x| < 0.5``, ``1 - erfc(|x|)`` above
    (module docstring)."""
    x = _as_f64(x)
    small, s, c = _erf_parts(x)
    return np.where(small, s, np.copysign(1.0 - c, x))


@_blockwise
def erfc(x: np.ndarray | float) -> np.ndarray:
    """Complementary error function ``1 - erf(x)`` in float64 with relative accuracy (within 5
    ulp) also for large positive x, where erfc is tiny; 0 from x = 27.5 on (erfc < 2^-1074)."""
    x = _as_f64(x)
    small, s, c = _erf_parts(x)
    return np.where(small, 1.0 - s, np.where(x > 0, c, 2.0 - c))


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _reduce_pio2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x = k pi/2 + (rh + rl)``: quadrant ``k mod 4`` (int64) and the remainder as a double-
    double, ``|rh| <= pi/4 (1 + 2^-50)``, from pi/2 to 173 bits (every ``k * part`` exact)."""
    k = np.rint(x * _TWO_OVER_PI)
    rh = x - k * _PIO2_PARTS[0]  # exact (Sterbenz)
    rl = np.zeros_like(x)
    for part in _PIO2_PARTS[1:]:
        rh, e = _two_sum(rh, -(k * part))
        rl = rl + e
    rh, rl = _two_sum(rh, rl)
    return (k.astype(np.int64) & 3), rh, rl


def _sin_poly(r: np.ndarray) -> np.ndarray:
    r2 = r * r
    return r + (r * r2) * _horner(r2, _SIN_COEF[1:])


def _cos_poly(r: np.ndarray) -> np.ndarray:
    r2 = r * r
    return 1.0 + r2 * _horner(r2, _COS_COEF[1:])


@_blockwise
def sincos(x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """``(sin x, cos x)`` in float64 within 1.5 ulp (plus 2^-60 absolute near a zero), for
    ``|x| < 2^29``; ``ValueError`` above (module docstring)."""
    x = _as_f64(x)
    finite = np.isfinite(x)
    if np.any(np.abs(x[finite]) >= _SINCOS_MAX):
        bad = float(x[finite][np.abs(x[finite]) >= _SINCOS_MAX][0])
        raise ValueError(f"sin/cos: argument {bad!r} is outside |x| < 2^29 (exact argument reduction range)")
    xc = np.where(finite, x, 0.0)
    q, rh, rl = _reduce_pio2(xc)
    s = _sin_poly(rh) + rl * (1.0 - 0.5 * rh * rh)
    c = _cos_poly(rh) - rh * rl
    sin_x = np.where(q == 0, s, np.where(q == 1, c, np.where(q == 2, -s, -c)))
    cos_x = np.where(q == 0, c, np.where(q == 1, -s, np.where(q == 2, -c, s)))
    sin_x = np.where(xc == 0.0, x, sin_x)  # keeps -0.0
    return np.where(finite, sin_x, np.nan), np.where(finite, cos_x, np.nan)


def sin(x: np.ndarray | float) -> np.ndarray:
    """``sin x`` (see :func:`sincos`)."""
    return sincos(x)[0]


def cos(x: np.ndarray | float) -> np.ndarray:
    """``cos x`` (see :func:`sincos`)."""
    return sincos(x)[1]


def pow_const(base: float, exponents: np.ndarray | list[float]) -> np.ndarray:
    """``base ** e`` for a handful of exponents (e.g. RoPE's ``base^(-2i/hd)``), each correctly
    rounded from a 40-digit decimal evaluation (Python's decimal module: software arithmetic,
    identical everywhere). For tables, not for tensors: one decimal power per element."""
    b = float(base)
    if not (b > 0 and math.isfinite(b)):
        raise ValueError(f"pow_const: base must be finite and > 0, got {base!r}")
    out = []
    with localcontext() as ctx:
        ctx.prec = 40
        db = Decimal(b)
        for e in np.asarray(exponents, dtype=np.float64).ravel().tolist():
            out.append(float(db ** Decimal(e)))
    return np.asarray(out, dtype=np.float64).reshape(np.shape(exponents))
