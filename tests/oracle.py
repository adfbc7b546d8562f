"""Slow, independent oracle for refmodel's number formats (after TestFloat's ``slowfloat.c``).

Everything here is exact Python ``int`` / ``fractions.Fraction`` arithmetic on ONE value at a time,
written from the format definitions and the rounding-mode definitions, with one explicit branch per
rounding mode. It reads only the defining fields of a format (``exp, man, bias, subnormals,
specials, overflow, signed, has_zero``; for fixed point ``width, frac, signed``) and derives
everything else (largest finite value, NaN/inf codes) itself: it never calls the vectorised code
under test and never uses a FloatFormat derived property.

Public functions:
  * :func:`decode_oracle` -- minifloat code -> :class:`Value` (kind, sign, exact magnitude).
  * :func:`encode_oracle` -- a real value (float or Fraction) -> minifloat code, one rounding.
  * :func:`value_to_float` -- :class:`Value` -> Python float (exact for every format here).
  * :func:`fixed_quantize_oracle` -- a real value -> fixed-point code (rounding, then overflow).

Rounding definitions (IEEE 754 / TestFloat names), applied to the magnitude grid of the format:
  rne (nearest, ties to even), rtz (toward zero), floor (toward -inf), ceil (toward +inf),
  half_up (nearest, ties toward +inf), half_away (nearest, ties away from zero), stochastic (the
  discarded fraction truncated to ``sr_bits`` bits plus an ``sr_bits``-bit integer ``r``; a carry
  rounds the magnitude up; for fixed point the same on the two's complement value, i.e. floor(x + r)).

Float overflow (IEEE 754 7.4 and the format's policy): a result that, rounded with an unbounded
exponent, exceeds the largest finite value is +-max under ``saturate``; under ``inf`` / ``nan`` it is
+-inf / NaN, except that a mode rounding toward zero for that sign (rtz; floor for positive values;
ceil for negative values) gives +-max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from refmodel.numerics.rounding import STOCHASTIC_BITS

__all__ = ["Value", "decode_oracle", "encode_oracle", "value_to_float", "fixed_quantize_oracle", "float_max_oracle"]

MODES = ("rne", "rtz", "floor", "ceil", "half_up", "half_away", "stochastic")


@dataclass(frozen=True)
class Value:
    """An exactly known value: ``kind`` in {"finite", "inf", "nan"}, ``sign`` 0/1, ``mag`` >= 0."""

    kind: str
    sign: int
    mag: Fraction = Fraction(0)


def _pow2(e: int) -> Fraction:
    return Fraction(2) ** e


def _floor_log2(v: Fraction) -> int:
    """floor(log2(v)) for v > 0, exactly."""
    e = v.numerator.bit_length() - v.denominator.bit_length()
    if v < _pow2(e):
        e -= 1
    assert _pow2(e) <= v < _pow2(e + 1)
    return e


# ---- format facts, from the definition ------------------------------------------------------
def _nbits(fmt) -> int:
    return (1 if fmt.signed else 0) + fmt.exp + fmt.man


def _top(fmt) -> int:
    return (1 << fmt.exp) - 1


def _emin(fmt) -> int:
    # smallest normal exponent: field 1 (field 0 is zero/subnormal), or field 0 if there is no zero
    return (1 if fmt.has_zero else 0) - fmt.bias


def _is_nan_code(code: int, fmt) -> bool:
    mag = code & ((1 << (fmt.exp + fmt.man)) - 1)
    field, mant = mag >> fmt.man, mag & ((1 << fmt.man) - 1)
    if fmt.specials == "ieee":
        return field == _top(fmt) and mant != 0
    if fmt.specials == "fn":
        return mag == (1 << (fmt.exp + fmt.man)) - 1
    if fmt.specials == "fnuz":
        return code == 1 << (_nbits(fmt) - 1)
    return False


def decode_oracle(code: int, fmt) -> Value:
    """Code -> exact value, straight from the format definition."""
    code = int(code)
    nb = _nbits(fmt)
    assert 0 <= code < (1 << nb), (code, nb)
    sign = (code >> (nb - 1)) & 1 if fmt.signed else 0
    mag = code & ((1 << (fmt.exp + fmt.man)) - 1)
    field, mant = mag >> fmt.man, mag & ((1 << fmt.man) - 1)
    if _is_nan_code(code, fmt):
        return Value("nan", sign)
    if fmt.specials == "ieee" and field == _top(fmt):
        return Value("inf", sign)
    if field == 0 and fmt.has_zero:
        if not fmt.subnormals:
            return Value("finite", sign, Fraction(0))
        # subnormal: 0.mant * 2^emin
        return Value("finite", sign, Fraction(mant, 1 << fmt.man) * _pow2(_emin(fmt)))
    # normal: 1.mant * 2^(field - bias)
    return Value("finite", sign, (1 + Fraction(mant, 1 << fmt.man)) * _pow2(field - fmt.bias))


def value_to_float(v: Value) -> float:
    if v.kind == "nan":
        return math.copysign(math.nan, -1.0 if v.sign else 1.0)
    if v.kind == "inf":
        return -math.inf if v.sign else math.inf
    f = float(v.mag)  # exact: every magnitude here is a float64
    assert Fraction(f) == v.mag
    return -f if v.sign else f


def float_max_oracle(fmt) -> Fraction:
    """Largest finite magnitude, from the definition of each specials class."""
    top, man, bias = _top(fmt), fmt.man, fmt.bias
    if fmt.specials == "ieee":  # top field reserved for inf/NaN
        return (2 - Fraction(1, 1 << man)) * _pow2(top - 1 - bias)
    if fmt.specials == "fn":  # only S.1111.111 is NaN
        if man == 0:
            return _pow2(top - 1 - bias)
        return (2 - Fraction(2, 1 << man)) * _pow2(top - bias)
    # fnuz and none: every magnitude of the top field is finite
    return (2 - Fraction(1, 1 << man)) * _pow2(top - bias)


def _nan_code_oracle(fmt, sign: int) -> int:
    nb = _nbits(fmt)
    s = (sign << (nb - 1)) if fmt.signed else 0
    if fmt.specials == "ieee":
        if fmt.man == 0:
            raise ValueError("no NaN code")
        return s | (_top(fmt) << fmt.man) | (1 << (fmt.man - 1))  # quiet NaN, zero payload
    if fmt.specials == "fn":
        return s | ((1 << (fmt.exp + fmt.man)) - 1)
    if fmt.specials == "fnuz":
        return 1 << (nb - 1)
    raise ValueError(f"format e{fmt.exp}m{fmt.man} ({fmt.specials}) has no NaN")


def _code_of_value(mag: Fraction, sign: int, fmt) -> int:
    """Code of a representable finite magnitude (asserts that it is representable)."""
    nb = _nbits(fmt)
    emin = _emin(fmt)
    if mag == 0:
        assert fmt.has_zero
        field, mant = 0, 0
    else:
        e = _floor_log2(mag)
        if e < emin:
            assert fmt.subnormals and fmt.has_zero
            q = mag / _pow2(emin - fmt.man)
            field, mant = 0, q
        else:
            field = e + fmt.bias
            mant = mag / _pow2(e - fmt.man) - (1 << fmt.man)
        assert mant.denominator == 1 and 0 <= mant < (1 << fmt.man), mag
        mant = int(mant)
    s = sign if fmt.signed else 0
    if fmt.specials == "fnuz" and mag == 0:
        s = 0  # no negative zero
    return (s << (nb - 1)) | (field << fmt.man) | mant


def _round_magnitude(v: Fraction, sign: int, q: int, mode: str, r: int | None, sr_bits: int) -> Fraction:
    """Round magnitude v >= 0 (of a number with the given sign) to a multiple of 2^q."""
    t = v / _pow2(q)
    n = t.numerator // t.denominator  # floor
    f = t - n  # discarded fraction in [0, 1)
    half = Fraction(1, 2)
    if mode == "rne":
        up = f > half or (f == half and n % 2 == 1)
    elif mode == "rtz":
        up = False
    elif mode == "floor":  # toward -inf: magnitude grows for negative numbers
        up = sign == 1 and f != 0
    elif mode == "ceil":  # toward +inf: magnitude grows for positive numbers
        up = sign == 0 and f != 0
    elif mode == "half_up":  # ties toward +inf
        up = f > half or (f == half and sign == 0)
    elif mode == "half_away":  # ties away from zero
        up = f >= half
    elif mode == "stochastic":
        if r is None:
            raise ValueError("stochastic oracle needs r")
        top = math.floor(f * (1 << sr_bits))
        up = top + r >= (1 << sr_bits)
    else:
        raise ValueError(f"oracle: unknown rounding mode {mode!r}")
    return (n + (1 if up else 0)) * _pow2(q)


def encode_oracle(x, fmt, mode: str = "rne", r: int | None = None, sr_bits: int = 32) -> int:
    """Exact value ``x`` (float, int or Fraction) -> code of ``fmt``, one rounding under ``mode``."""
    nb = _nbits(fmt)
    if isinstance(x, float) and math.isnan(x):
        return _nan_code_oracle(fmt, 1 if math.copysign(1.0, x) < 0 else 0)
    if isinstance(x, float):
        sign = 1 if math.copysign(1.0, x) < 0 else 0
    else:
        sign = 1 if x < 0 else 0
    if isinstance(x, float) and math.isinf(x):
        if not fmt.signed and sign:
            return _nan_code_oracle(fmt, 0)
        if fmt.overflow == "inf":
            return (sign << (nb - 1)) | (_top(fmt) << fmt.man)
        if fmt.overflow == "nan":
            return _nan_code_oracle(fmt, sign)
        return _code_of_value(float_max_oracle(fmt), sign, fmt)
    v = abs(Fraction(x))
    if not fmt.signed:
        if sign and (v != 0 or not fmt.has_zero):
            return _nan_code_oracle(fmt, 0)  # negative value in an unsigned format
        sign = 0
    if not fmt.has_zero and v == 0:
        return _nan_code_oracle(fmt, 0)  # e8m0: zero is not a value
    emin = _emin(fmt)
    if v == 0:
        res = Fraction(0)
    else:
        e = _floor_log2(v)
        q = max(e, emin) - fmt.man  # grid spacing in v's binade (the subnormal one below emin)
        res = _round_magnitude(v, sign, q, mode, r, sr_bits)
    vmax = float_max_oracle(fmt)
    if res > vmax:
        if fmt.overflow == "saturate":
            return _code_of_value(vmax, sign, fmt)
        toward_zero = mode == "rtz" or (mode == "floor" and sign == 0) or (mode == "ceil" and sign == 1)
        if toward_zero:
            return _code_of_value(vmax, sign, fmt)
        if fmt.overflow == "inf":
            return (sign << (nb - 1)) | (_top(fmt) << fmt.man)
        return _nan_code_oracle(fmt, sign)
    if res < _pow2(emin):
        if not fmt.has_zero:
            res = _pow2(emin)  # no zero: the smallest value stands in for it
        elif not fmt.subnormals:
            res = Fraction(0)  # flush to zero after rounding
    return _code_of_value(res, sign, fmt)


# ---- fixed point -------------------------------------------------------------------------------
def fixed_quantize_oracle(
    x,
    width: int,
    frac: int,
    signed: bool,
    rounding: str = "rne",
    overflow: str = "saturate",
    r: int | None = None,
    sr_bits: int = 32,
) -> int:
    """Exact value ``x`` -> fixed-point code (Python int) of ``width`` bits, ``frac`` fractional.

    Rounds ``x * 2**frac`` to an integer under ``rounding`` (two's complement value, so ``floor``
    is toward -inf for negatives; ``stochastic`` is ``floor(y) + (floor(frac(y) * 2**sr_bits) + r
    >= 2**sr_bits)``), then applies ``overflow``: ``saturate`` clamps to the code range, ``wrap``
    reduces modulo ``2**width`` into it, ``error`` raises ``OverflowError``. NaN raises
    ``ValueError``; +-inf is accepted only with ``saturate`` (-> the extreme code), else ValueError.
    """
    lo = -(1 << (width - 1)) if signed else 0
    hi = (1 << (width - 1)) - 1 if signed else (1 << width) - 1
    if isinstance(x, float) and math.isnan(x):
        raise ValueError("fixed oracle: NaN input")
    if isinstance(x, float) and math.isinf(x):
        if overflow != "saturate":
            raise ValueError("fixed oracle: infinite input needs saturate")
        return hi if x > 0 else lo
    y = Fraction(x) * _pow2(frac)
    n = y.numerator // y.denominator  # floor
    f = y - n
    half = Fraction(1, 2)
    if rounding == "rne":
        n += 1 if (f > half or (f == half and n % 2 == 1)) else 0
    elif rounding == "rtz":
        n += 1 if (y < 0 and f != 0) else 0
    elif rounding == "floor":
        pass
    elif rounding == "ceil":
        n += 1 if f != 0 else 0
    elif rounding == "half_up":
        n += 1 if f >= half else 0
    elif rounding == "half_away":
        n += 1 if (f > half or (f == half and y > 0)) else 0
    elif rounding == "stochastic":
        if r is None:
            raise ValueError("stochastic oracle needs r")
        n += 1 if math.floor(f * (1 << sr_bits)) + r >= (1 << sr_bits) else 0
    else:
        raise ValueError(f"oracle: unknown rounding mode {rounding!r}")
    if lo <= n <= hi:
        return n
    if overflow == "saturate":
        return hi if n > hi else lo
    if overflow == "error":
        raise OverflowError(f"fixed oracle: {x} -> {n} outside [{lo}, {hi}]")
    if overflow == "wrap":
        m = n % (1 << width)
        return m - (1 << width) if signed and m > hi else m
    raise ValueError(f"oracle: unknown overflow mode {overflow!r}")


# ---- integer rounding of an exact rational (shared by the fixed-point and rounding tests) ----
def oracle_round(v: Fraction, mode: str, r: int | None = None, rbits: int = STOCHASTIC_BITS) -> int:
    """Round the exact rational ``v`` to an integer. Stochastic: floor(v) + carry of
    trunc(frac * 2^rbits) + r."""
    fl = math.floor(v)
    rem = v - fl  # in [0, 1)
    half = Fraction(1, 2)
    if mode == "floor":
        return fl
    if mode == "ceil":
        return fl if rem == 0 else fl + 1
    if mode == "rtz":
        return fl + 1 if (rem != 0 and v < 0) else fl
    if mode == "rne":
        if rem != half:
            return fl + 1 if rem > half else fl
        return fl if fl % 2 == 0 else fl + 1
    if mode == "half_up":
        return fl + 1 if rem >= half else fl
    if mode == "half_away":
        if rem != half:
            return fl + 1 if rem > half else fl
        return fl + 1 if v > 0 else fl
    if mode == "stochastic":
        t = math.floor(rem * (1 << rbits))
        return fl + 1 if t + r >= (1 << rbits) else fl
    raise AssertionError(mode)


# ---- the docstring table ------------------------------------------------------------------
