"""What the numerics API accepts as values and as codes, checked once at the public entry points.

Values (:func:`real_values`, used by ``fixed.quantize``, ``minifloat.encode`` and MX quantisation):

* float64, float32, float16 arrays, and ml_dtypes' narrow floats (bfloat16, float8_*): taken as
  they are, each element being its exact value (the fast path; nothing is copied).
* integers (numpy or Python), ``fractions.Fraction``, ``decimal.Decimal``, ``np.longdouble`` and
  bools: each element is its *exact* value. When every element is a float64 the array becomes
  float64 (the fast path); otherwise an :class:`ExactValues` is returned (numerator/denominator
  as Python ints) and the caller rounds the exact value once (never float64 first, then the
  format: that would be a second rounding). Non-finite floats and Decimals (nan, +-inf) stay
  what they are.
* refused with :class:`InputTypeError` naming the type (and the index in a sequence): strings,
  bytes, datetimes and timedeltas, complex numbers, masked arrays (their mask would be dropped),
  ``None`` and any other object that is not a real number.

Codes (:func:`integer_codes`, used by the ``FixedArray`` / ``FloatArray`` constructors and the two
``decode`` functions): integer arrays (or sequences of ints) whose every element lies in the
format's code range; anything else raises ``ValueError`` naming the first bad code, its index and
the range (or :class:`InputTypeError` naming a non-integer type).
"""

from __future__ import annotations

import datetime
import decimal
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["InputTypeError", "ExactValues", "real_values", "integer_codes"]

_F53 = 1 << 53


class InputTypeError(TypeError, ValueError):
    """A value of a type the numerics API does not take as a number (a ValueError too, so callers
    that report bad input by catching ValueError report this one as well)."""


@dataclass(frozen=True)
class ExactValues:
    """Real values float64 cannot all hold: element ``i`` is ``num[i] / den[i]`` exactly (Python
    ints, ``den > 0``) when ``finite[i]``; otherwise it is ``nearest[i]`` (nan or +-inf).
    ``nearest`` is the float64 nearest to each value (+-inf beyond float64's range) and ``exact``
    marks the elements equal to it (non-finite ones included). All arrays share one shape."""

    num: np.ndarray
    den: np.ndarray
    nearest: np.ndarray
    exact: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.nearest.shape

    @property
    def finite(self) -> np.ndarray:
        return ~(self.exact & ~np.isfinite(self.nearest))


def _index(flat_i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat_i, shape)) if shape else ()


def _refuse(what: str, kind: str, index: tuple[int, ...] | None = None) -> InputTypeError:
    at = f" at index {index}" if index else ""
    return InputTypeError(f"{what}: {kind}{at} is not a real number; pass int, float, Fraction or Decimal values "
                          f"(or a numeric numpy array)")


def _refuse_container(x: Any, what: str) -> None:
    if isinstance(x, np.ma.MaskedArray):
        raise InputTypeError(f"{what}: a masked array is not accepted (its mask would be ignored); "
                             f"pass x.filled(value) or x.compressed()")


_DTYPE_KIND = {"U": "a string", "S": "a bytes string", "M": "a datetime64", "m": "a timedelta64", "c": "a complex number"}


def _ratio(v: Any) -> tuple[int, int] | float | None:
    """Exact (num, den) of a real number, a non-finite float for nan/inf, or None (not a number)."""
    if isinstance(v, (bool, np.bool_)):
        return int(v), 1
    if isinstance(v, (int, np.integer)):
        return int(v), 1
    if isinstance(v, (float, np.floating)):
        return v.as_integer_ratio() if np.isfinite(v) else float(v)
    if isinstance(v, Fraction):
        return v.numerator, v.denominator
    if isinstance(v, decimal.Decimal):
        return v.as_integer_ratio() if v.is_finite() else float(v)
    if isinstance(v, numbers.Rational):
        return int(v.numerator), int(v.denominator)
    return None


def _kind_of(v: Any) -> str:
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "a bytes string"
    if isinstance(v, (datetime.date, datetime.time, datetime.timedelta, np.datetime64, np.timedelta64)):
        return f"a {type(v).__name__}"
    if isinstance(v, (complex, np.complexfloating)):
        return "a complex number"
    return f"a {type(v).__name__}" if v is not None else "None"


def _nearest(num: int, den: int) -> tuple[float, bool]:
    """The float64 nearest to num/den (Python's correctly rounded int division; +-inf beyond the
    range) and whether it is exact."""
    try:
        f = num / den
    except OverflowError:
        return (float("inf") if num > 0 else float("-inf")), False
    return f, f.as_integer_ratio() == (num, den)


def _negative(v: Any) -> bool:
    if isinstance(v, decimal.Decimal):
        return v.is_signed()
    return isinstance(v, (float, np.floating)) and bool(np.signbit(v))


def _exact_from_objects(flat: list[Any], shape: tuple[int, ...], what: str) -> np.ndarray | ExactValues:
    n = len(flat)
    num = np.empty(n, dtype=object)
    den = np.empty(n, dtype=object)
    nearest = np.empty(n, dtype=np.float64)
    exact = np.empty(n, dtype=bool)
    for i, v in enumerate(flat):  # object arrays hold Python objects: one conversion each
        r = _ratio(v)
        if r is None:
            raise _refuse(what, _kind_of(v), _index(i, shape))
        if isinstance(r, float):
            num[i], den[i], nearest[i], exact[i] = 0, 1, r, True
            continue
        num[i], den[i] = r
        nearest[i], exact[i] = _nearest(*r)
        if r[0] == 0 and _negative(v):
            nearest[i] = -0.0  # a negative zero keeps its sign
    if exact.all():
        return nearest.reshape(shape)
    return ExactValues(num.reshape(shape), den.reshape(shape), nearest.reshape(shape), exact.reshape(shape))


def real_values(x: Any, what: str) -> np.ndarray | ExactValues:
    """``x`` as an array of exact real values (see the module docstring): a float16/32/64 (or
    ml_dtypes float) array when every element is one, else :class:`ExactValues`. ``what`` names
    the operation in error messages (e.g. ``"quantize to s16.12"``)."""
    if type(x) is np.ndarray:  # the common case: no container to refuse
        a = x
    else:
        _refuse_container(x, what)
        if isinstance(x, (str, bytes, bytearray, memoryview)):
            raise _refuse(what, _kind_of(x))
        a = np.asarray(x)
    k = a.dtype.kind
    if k == "f":
        if a.dtype.itemsize <= 8:
            return a
        f = a.astype(np.float64)  # longdouble: exact only where it round-trips
        with np.errstate(invalid="ignore"):
            if bool(np.all((f.astype(a.dtype) == a) | np.isnan(a))):
                return f
        return _exact_from_objects(list(a.ravel()), a.shape, what)  # numpy scalars: no rounding
    if k in "iu":
        if a.size and (int(a.max()) > _F53 or int(a.min()) < -_F53):
            return _exact_from_objects(a.ravel().tolist(), a.shape, what)
        return a.astype(np.float64)
    if k == "b":
        return a.astype(np.float64)
    if k == "O":
        return _exact_from_objects(a.ravel().tolist(), a.shape, what)
    if k == "V" and a.dtype.itemsize <= 4 and np.can_cast(a.dtype, np.float64, "safe"):
        return a  # ml_dtypes' narrow floats: every value is a float64
    raise _refuse(what, _DTYPE_KIND.get(k, f"dtype {a.dtype}"))


def integer_codes(codes: Any, what: str, lo: int, hi: int, dtype: Any) -> np.ndarray:
    """``codes`` as an array of ``dtype`` after checking that every element is an integer in
    ``[lo, hi]``; ``ValueError`` names the first code outside (and its index), ``InputTypeError``
    a non-integer element or dtype. Integer arrays whose dtype cannot leave the range skip the
    scan."""
    _refuse_container(codes, what)
    if isinstance(codes, (str, bytes, bytearray, memoryview)):
        raise InputTypeError(f"{what}: codes must be integers, got {_kind_of(codes)}")
    c = np.asarray(codes)
    if c.dtype.kind == "O":
        flat = c.ravel().tolist()
        for i, v in enumerate(flat):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise InputTypeError(f"{what}: codes must be integers, got {_kind_of(v)} at index {_index(i, c.shape)}")
        outside = [i for i, v in enumerate(flat) if not lo <= v <= hi][:1]
        if outside:
            raise ValueError(f"{what}: code {flat[outside[0]]} at index {_index(outside[0], c.shape)} is outside the "
                             f"code range {lo}..{hi}")
        return np.array(flat, dtype=dtype).reshape(c.shape)
    if c.dtype.kind not in "iu":
        if c.size == 0:
            return c.astype(dtype)
        raise InputTypeError(f"{what}: codes must be integers, got dtype {c.dtype}")
    info = np.iinfo(c.dtype)
    if c.size and (info.min < lo or info.max > hi):
        cmin, cmax = int(c.min()), int(c.max())
        if cmin < lo or cmax > hi:
            at = _index(int(np.argmax((c < lo) | (c > hi))), c.shape)
            raise ValueError(f"{what}: code {int(c[at])} at index {at} is outside the code range {lo}..{hi}")
    return c.astype(dtype, copy=False)
