"""Two's-complement fixed point: formats, quantisation from float64, casts, exact arithmetic.

A fixed-point value is an int64 *code* plus a :class:`FixedFormat`; its value is
``code * 2**-frac``. Widths 1..63 are supported (int64 holds every code); anything wider is
refused with ``ValueError`` rather than silently wrapped by numpy.

Numeric contract of :func:`quantize` (real values -> fixed):
  * the scaling ``x * 2**frac`` is exact (power of two), then ONE rounding to an integer under the
    chosen :class:`Rounding`, computed with exact float64 operations only; values float64 cannot
    hold (integers beyond 2^53, ``Fraction``, ``Decimal``, ``np.longdouble``) are rounded from
    their exact value in integer arithmetic, with the same definitions (see
    :mod:`refmodel.numerics.inputs` for what is accepted and what is refused);
  * out-of-range results follow :class:`Overflow`: ``wrap`` (mod 2^width), ``saturate`` (clamp),
    ``error`` (``OverflowError`` naming the first bad value);
  * NaN is always an error; +-inf is accepted only under ``saturate`` (clamps to max/min).

:func:`cast` narrows or widens between fixed formats with the same rounding/overflow contract,
entirely in int64 (round bit + sticky bit, as an RTL shifter does). :func:`add`, :func:`sub` and
:func:`mul` are exact: the result format grows as hardware's does (table below); only an explicit
:func:`cast` loses bits.

=========  ==============================  ========================================
op         result frac                     result width (integer bits grow)
=========  ==============================  ========================================
a + b      max(fa, fb)                     signed + max(int bits) + 1 + frac
a - b      max(fa, fb)                     always signed, max(int bits) + 1
a * b      fa + fb                         wa + wb
=========  ==============================  ========================================

>>> q = quantize([1.3, -0.25], FixedFormat.parse("s16.12"))
>>> q
FixedArray(codes=[5325, -1024], fmt=s16.12)
>>> q.to_float().tolist()
[1.300048828125, -0.25]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .inputs import ExactValues, InputTypeError, integer_codes, real_values
from .rounding import STOCHASTIC_BITS, Overflow, Rounding, _resolve_random, round_float_to_int, round_shift

__all__ = ["FixedFormat", "FixedArray", "quantize", "decode", "cast", "add", "sub", "mul", "apply_overflow"]

MAX_WIDTH = 63
_SPEC = re.compile(r"^\s*([su])(\d+)\.(-?\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class FixedFormat:
    """Fixed-point format: ``width`` bits in total (sign included), ``frac`` fractional bits.

    ``frac`` may be negative (LSB above 1) or exceed ``width`` (all bits fractional). Spec strings:
    ``s16.12`` (signed, 16 bits, 12 fractional), ``u8.8``, ``s8.-2``.
    """

    width: int
    frac: int
    signed: bool = True

    def __post_init__(self) -> None:
        for name in ("width", "frac"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
                raise InputTypeError(f"FixedFormat {name} must be an int, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not isinstance(self.signed, (bool, np.bool_)):
            raise InputTypeError(f"FixedFormat signed must be True or False, got {self.signed!r}")
        object.__setattr__(self, "signed", bool(self.signed))
        if not 1 <= self.width <= MAX_WIDTH:
            raise ValueError(
                f"FixedFormat width must be in 1..{MAX_WIDTH} (int64 codes), got {self.width}"
            )
        if not -1000 <= self.frac <= 1000:
            raise ValueError(f"FixedFormat frac must be in -1000..1000, got {self.frac}")

    # ---- spec strings -------------------------------------------------------------------
    @classmethod
    def parse(cls, spec: str | FixedFormat) -> FixedFormat:
        if isinstance(spec, FixedFormat):
            return spec
        m = _SPEC.match(str(spec))
        if not m:
            raise ValueError(
                f"bad fixed-point spec {spec!r}: expected s<width>.<frac> or u<width>.<frac>, e.g. s16.12"
            )
        try:
            return cls(int(m.group(2)), int(m.group(3)), m.group(1).lower() == "s")
        except ValueError as e:
            raise ValueError(f"bad fixed-point spec {spec!r}: {e}") from None

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.width}.{self.frac}"

    @property
    def spec(self) -> str:
        return str(self)

    # ---- derived quantities (defined once) ------------------------------------------------
    @property
    def int_bits(self) -> int:
        """Integer bits excluding the sign bit (may be negative)."""
        return self.width - self.frac - int(self.signed)

    @property
    def min_code(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def lsb(self) -> float:
        """Value of one code step, 2^-frac."""
        return float(np.ldexp(1.0, -self.frac))

    @property
    def max(self) -> float:
        return float(np.ldexp(float(self.max_code), -self.frac))

    @property
    def min(self) -> float:
        return float(np.ldexp(float(self.min_code), -self.frac))

    @property
    def epsilon(self) -> float:
        """Fixed point has an absolute, not relative, resolution: one LSB."""
        return self.lsb

    @property
    def hex_digits(self) -> int:
        return (self.width + 3) // 4


def _fmt(fmt: FixedFormat | str) -> FixedFormat:
    return FixedFormat.parse(fmt)


@dataclass(frozen=True, eq=False)
class FixedArray:
    """int64 codes plus their :class:`FixedFormat`. ``to_float()`` decodes exactly (width <= 53).

    The constructor takes integer codes within ``fmt``'s code range (``ValueError`` names the first
    code outside it; non-integer codes raise :class:`~refmodel.numerics.inputs.InputTypeError`)."""

    codes: np.ndarray
    fmt: FixedFormat

    def __post_init__(self) -> None:
        fmt = _fmt(self.fmt)
        object.__setattr__(self, "fmt", fmt)
        object.__setattr__(self, "codes", integer_codes(self.codes, f"FixedArray of {fmt}", fmt.min_code,
                                                        fmt.max_code, np.int64))

    @classmethod
    def _unchecked(cls, codes: np.ndarray, fmt: FixedFormat) -> FixedArray:
        """Codes already int64 and in range (this module's own results): no checks."""
        a = object.__new__(cls)
        object.__setattr__(a, "codes", codes)
        object.__setattr__(a, "fmt", fmt)
        return a

    def to_float(self) -> np.ndarray:
        return _decode(self.codes, self.fmt)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    def identical(self, other: FixedArray) -> bool:
        """Same format, shape and codes (bit identity, not value equality)."""
        return (
            isinstance(other, FixedArray)
            and self.fmt == other.fmt
            and self.codes.shape == other.codes.shape
            and bool(np.array_equal(self.codes, other.codes))
        )

    def __repr__(self) -> str:
        body = self.codes.tolist() if self.codes.size <= 16 else np.array2string(self.codes, separator=", ", threshold=16)
        return f"FixedArray(codes={body}, fmt={self.fmt})"

    def __getitem__(self, idx: Any) -> FixedArray:
        return FixedArray._unchecked(np.asarray(self.codes[idx]), self.fmt)

    def __len__(self) -> int:
        return len(self.codes)


def decode(codes: np.ndarray | Iterable[int], fmt: FixedFormat | str) -> np.ndarray:
    """Codes -> float64 values ``code * 2**-frac`` (exact for width <= 53, else correctly rounded).

    ``codes`` must be integers within ``fmt``'s code range: ``ValueError`` names the first code
    outside it (a code is never wrapped or clamped here)."""
    fmt = _fmt(fmt)
    return _decode(integer_codes(codes, f"decode {fmt}", fmt.min_code, fmt.max_code, np.int64), fmt)


def _decode(c: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    return np.ldexp(c.astype(np.float64), -fmt.frac)


def _first_bad(mask: np.ndarray, values: np.ndarray) -> str:
    idx = np.unravel_index(int(np.argmax(mask)), mask.shape) if mask.ndim else ()
    v = values[idx]
    return f"{v.item() if hasattr(v, 'item') else v!r} at index {tuple(int(i) for i in idx)}"


def apply_overflow(codes: np.ndarray, fmt: FixedFormat, overflow: Overflow | str, *, what: str = "value") -> np.ndarray:
    """Bring int64 ``codes`` into ``fmt``'s code range under ``overflow`` (wrap / saturate / error)."""
    overflow = Overflow.parse(overflow)
    c = np.asarray(codes, dtype=np.int64)
    lo, hi = fmt.min_code, fmt.max_code
    if c.size == 0:
        return c
    cmin, cmax = int(c.min()), int(c.max())
    if lo <= cmin and cmax <= hi:
        return c
    if overflow is Overflow.SATURATE:
        return np.clip(c, lo, hi)
    if overflow is Overflow.ERROR:
        bad = (c < lo) | (c > hi)
        raise OverflowError(
            f"{what} overflows {fmt} (codes {lo}..{hi}): code {_first_bad(bad, c)}"
        )
    return _wrap(c, fmt)


def _wrap(c: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    mask = np.uint64((1 << fmt.width) - 1)
    u = c.view(np.uint64) & mask
    if not fmt.signed:
        return u.view(np.int64)
    s = np.uint64(1 << (fmt.width - 1))
    return (u ^ s).view(np.int64) - np.int64(1 << (fmt.width - 1))


def _raise_nan(x: np.ndarray, y: np.ndarray, fmt: FixedFormat) -> None:
    bad = np.isnan(y)
    idx = np.unravel_index(int(np.argmax(bad)), bad.shape)
    raise ValueError(f"quantize to {fmt}: NaN input at index {tuple(int(i) for i in idx)}")


def quantize(
    x: np.ndarray | Iterable[float] | float,
    fmt: FixedFormat | str,
    rounding: Rounding | str = Rounding.RNE,
    overflow: Overflow | str = Overflow.SATURATE,
    *,
    seed: int | np.random.Generator | None = None,
    random_bits: np.ndarray | None = None,
) -> FixedArray:
    """Real values -> :class:`FixedArray`, one rounding, then the overflow policy. See module docstring.

    ``x``: float arrays (the fast path), or ints, Fractions, Decimals, which are rounded from their
    exact values; strings, bytes, datetimes, complex numbers and masked arrays are refused
    (:class:`~refmodel.numerics.inputs.InputTypeError` naming the type)."""
    fmt = _fmt(fmt)
    rounding = Rounding.parse(rounding)
    overflow = Overflow.parse(overflow)
    v = real_values(x, f"quantize to {fmt}")
    if isinstance(v, ExactValues):
        return FixedArray._unchecked(_quantize_exact(v, fmt, rounding, overflow, seed, random_bits), fmt)
    x = np.asarray(v, dtype=np.float64)
    scalar = x.ndim == 0
    if scalar:
        x = x.reshape(1)
    # exact power-of-two scaling unless it overflows float64 (|x * 2^frac| >= 2^1024: then the
    # value is far outside every format and a multiple of 2^64) or underflows (frac < 0 only)
    with np.errstate(over="ignore", under="ignore"):
        y = x * np.float64(2.0) ** fmt.frac
    if fmt.frac < 0 and rounding in (Rounding.FLOOR, Rounding.CEIL, Rounding.STOCHASTIC) and y.size:
        # |x * 2^frac| < 2^-1022 may have been rounded (to 0, or to another subnormal); every mode's
        # result for such tiny values depends only on the sign and on x != 0, so restore those.
        lost = (y == 0) & (x != 0)
        if lost.any():
            y[lost] = np.copysign(np.float64(2.0**-1074), x[lost])
    if rounding is Rounding.RNE:
        y = np.rint(y, out=y)  # y is our own temporary: round in place
    else:
        y = round_float_to_int(y, rounding, seed=seed, random_bits=random_bits)
    lo, hi = float(fmt.min_code), float(fmt.max_code)
    if overflow is Overflow.SATURATE:
        if fmt.max_code < (1 << 53):
            y = np.clip(y, lo, hi, out=y)
            over = None
        else:
            # max_code is not a float64; clip to the largest float below 2^(w-1) (or 2^w) and map
            # anything at or above that power of two to max_code in integers.
            top = float(fmt.max_code + 1)
            over = y >= top
            y = np.clip(y, lo, np.nextafter(top, -np.inf), out=y)
        if y.size and np.isnan(np.add.reduce(y.ravel())):
            _raise_nan(x, y, fmt)
        codes = y.astype(np.int64)
        if over is not None:
            codes[over] = fmt.max_code
    else:
        top = float(1 << (fmt.width - 1) if fmt.signed else 1 << fmt.width)
        if y.size:
            ymin, ymax = y.min(), y.max()
            if np.isnan(ymin) or np.isnan(ymax):
                _raise_nan(x, y, fmt)
            if np.isinf(ymin) or np.isinf(ymax):
                bad = np.isinf(x)
                if bad.any():
                    raise ValueError(
                        f"quantize to {fmt}: infinite input {_first_bad(bad, x)} "
                        f"(inf is accepted only with overflow='saturate')"
                    )
            in_range = ymin >= lo and ymax < top
        else:
            in_range = True
        if in_range:
            codes = y.astype(np.int64)
        elif overflow is Overflow.ERROR:
            bad = (y < lo) | (y >= top)
            raise OverflowError(
                f"quantize to {fmt}: value {_first_bad(bad, x)} is outside [{fmt.min}, {fmt.max}]"
            )
        else:  # wrap: fmod by 2^width is exact in IEEE arithmetic
            y[np.isinf(y)] = 0.0  # finite x whose scaled value overflowed: a multiple of 2^64
            r = np.fmod(y, float(1 << fmt.width))
            codes = _wrap(r.astype(np.int64), fmt)
    if scalar:
        codes = codes.reshape(())
    return FixedArray._unchecked(codes, fmt)


def _overflow_ints(n: np.ndarray, fmt: FixedFormat, overflow: Overflow,
                   value_at: Callable[[tuple[int, ...]], str]) -> np.ndarray:
    """``apply_overflow`` on an object array of Python ints (any magnitude) -> int64 codes.
    ``value_at(i)`` names the input behind element ``i`` in the ``error`` message."""
    lo, hi = fmt.min_code, fmt.max_code
    below, above = (n < lo).astype(bool), (n > hi).astype(bool)
    if below.any() or above.any():
        if overflow is Overflow.ERROR:
            i = tuple(int(t) for t in np.unravel_index(int(np.argmax(below | above)), n.shape)) if n.shape else ()
            raise OverflowError(f"quantize to {fmt}: value {value_at(i)} at index {i} is outside [{fmt.min}, {fmt.max}]")
        if overflow is Overflow.SATURATE:
            n = np.where(above, hi, np.where(below, lo, n))
        else:
            n = (n - lo) % (1 << fmt.width) + lo
    return n.astype(np.int64)


def _quantize_exact(v: ExactValues, fmt: FixedFormat, rounding: Rounding, overflow: Overflow,
                    seed: int | np.random.Generator | None, random_bits: np.ndarray | None) -> np.ndarray:
    """Exact values -> int64 codes: ``num / den * 2**frac`` rounded once in integer arithmetic
    (floor, remainder and the comparisons that decide each mode, as :func:`round_float_to_int`
    defines them; stochastic from the same random integers the float path would draw), then
    ``overflow``. +-inf clamps under ``saturate``; NaN, or inf under another policy, raises."""
    shape = v.shape
    finite = v.finite
    nonfinite = ~finite
    if nonfinite.any():
        i = np.unravel_index(int(np.argmax(nonfinite)), shape) if shape else ()
        at = tuple(int(t) for t in i)
        if np.isnan(v.nearest[nonfinite]).any():
            j = np.unravel_index(int(np.argmax(nonfinite & np.isnan(v.nearest))), shape) if shape else ()
            raise ValueError(f"quantize to {fmt}: NaN input at index {tuple(int(t) for t in j)}")
        if overflow is not Overflow.SATURATE:
            raise ValueError(f"quantize to {fmt}: infinite input {v.nearest[i]} at index {at} "
                             f"(inf is accepted only with overflow='saturate')")
    num, den = v.num.reshape(-1), v.den.reshape(-1)
    if fmt.frac >= 0:
        N, D = num * (1 << fmt.frac), den
    else:
        N, D = num, den * (1 << -fmt.frac)
    fl = N // D
    rem = N - fl * D  # 0 <= rem < D
    if rounding is Rounding.FLOOR:
        up = np.zeros(fl.shape, dtype=bool)
    elif rounding is Rounding.CEIL:
        up = (rem != 0).astype(bool)
    elif rounding is Rounding.RTZ:
        up = (rem != 0).astype(bool) & (N < 0).astype(bool)
    elif rounding is Rounding.STOCHASTIC:
        r = _resolve_random(shape or (1,), STOCHASTIC_BITS, seed, random_bits).reshape(-1)
        up = ((rem << STOCHASTIC_BITS) // D + r.astype(object) >= (1 << STOCHASTIC_BITS)).astype(bool)
    else:
        twice = 2 * rem
        tie = (twice == D).astype(bool)
        if rounding is Rounding.HALF_UP:
            up = (twice > D).astype(bool) | tie
        elif rounding is Rounding.HALF_AWAY:
            up = (twice > D).astype(bool) | (tie & (N >= 0).astype(bool))
        else:  # rne
            up = (twice > D).astype(bool) | (tie & (fl % 2 == 1).astype(bool))
    n = fl + up.astype(np.int64).astype(object)
    inf = nonfinite.reshape(-1)
    if inf.any():  # saturate (checked above): +-inf clamps to the extreme codes
        n[inf] = np.where(v.nearest.reshape(-1)[inf] > 0, fmt.max_code, fmt.min_code)

    def value_at(i: tuple[int, ...]) -> str:
        k = int(np.ravel_multi_index(i, shape)) if shape else 0
        return str(num[k]) if den[k] == 1 else f"{num[k]}/{den[k]}"

    return _overflow_ints(n.reshape(shape), fmt, overflow, value_at)


def cast(
    a: FixedArray,
    fmt: FixedFormat | str,
    rounding: Rounding | str = Rounding.RNE,
    overflow: Overflow | str = Overflow.SATURATE,
    *,
    seed: int | np.random.Generator | None = None,
    random_bits: np.ndarray | None = None,
) -> FixedArray:
    """Fixed -> fixed. Narrowing the fraction rounds (integer shifter model); the integer part
    follows ``overflow``. Widening is exact."""
    fmt = _fmt(fmt)
    if not isinstance(a, FixedArray):
        raise TypeError(f"cast expects a FixedArray, got {type(a).__name__}")
    shift = a.fmt.frac - fmt.frac
    c = a.codes
    if shift > 0:
        c = round_shift(c, shift, rounding, seed=seed, random_bits=random_bits)
        return FixedArray._unchecked(apply_overflow(c, fmt, overflow, what=f"cast {a.fmt}->{fmt}"), fmt)
    k = -shift
    if k and c.size:
        # codes that would leave the target range after the left shift are overflow;
        # detect them before shifting so int64 never overflows.
        hi = fmt.max_code >> k
        lo = -((-fmt.min_code) >> k) if fmt.min_code < 0 else 0
        if int(c.min()) < lo or int(c.max()) > hi:
            ov = Overflow.parse(overflow)
            if ov is Overflow.ERROR:
                bad = (c < lo) | (c > hi)
                raise OverflowError(f"cast {a.fmt}->{fmt} overflows: code {_first_bad(bad, c)}")
            if ov is Overflow.SATURATE:
                out = np.clip(c, lo, hi) << np.int64(k)
                out = np.where(c > hi, fmt.max_code, np.where(c < lo, fmt.min_code, out))
                return FixedArray._unchecked(out, fmt)
            # wrap: only the low (width - k) bits of the code survive
            return FixedArray._unchecked(_wrap(c << np.int64(k) if k < 63 else np.zeros_like(c), fmt), fmt)
        c = c << np.int64(k)
    return FixedArray._unchecked(apply_overflow(c, fmt, overflow, what=f"cast {a.fmt}->{fmt}"), fmt)


def _grown(width: int, frac: int, signed: bool, op: str, a: FixedFormat, b: FixedFormat) -> FixedFormat:
    if width > MAX_WIDTH:
        raise ValueError(
            f"{op}({a}, {b}) needs a {width}-bit result, above the {MAX_WIDTH}-bit int64 limit; "
            f"cast the operands narrower first"
        )
    return FixedFormat(width, frac, signed)


def _align(a: FixedArray, b: FixedArray, frac: int) -> tuple[np.ndarray, np.ndarray]:
    return a.codes << np.int64(frac - a.fmt.frac), b.codes << np.int64(frac - b.fmt.frac)


def add(a: FixedArray, b: FixedArray) -> FixedArray:
    """Exact a + b; result format per the module table."""
    fa, fb = a.fmt, b.fmt
    frac = max(fa.frac, fb.frac)
    signed = fa.signed or fb.signed
    # integer bits incl. sign of the wider operand (unsigned operands gain a sign bit when mixed)
    ia = max(fa.width - fa.frac + (signed and not fa.signed), fb.width - fb.frac + (signed and not fb.signed))
    fmt = _grown(ia + 1 + frac, frac, signed, "add", fa, fb)
    ca, cb = _align(a, b, frac)
    return FixedArray._unchecked(ca + cb, fmt)


def sub(a: FixedArray, b: FixedArray) -> FixedArray:
    """Exact a - b; always signed."""
    fa, fb = a.fmt, b.fmt
    frac = max(fa.frac, fb.frac)
    ia = max(fa.width - fa.frac + (not fa.signed), fb.width - fb.frac + (not fb.signed))
    fmt = _grown(ia + 1 + frac, frac, True, "sub", fa, fb)
    ca, cb = _align(a, b, frac)
    return FixedArray._unchecked(ca - cb, fmt)


def mul(a: FixedArray, b: FixedArray) -> FixedArray:
    """Exact a * b: frac fa + fb, width wa + wb (enough for every sign combination)."""
    fa, fb = a.fmt, b.fmt
    signed = fa.signed or fb.signed
    width = fa.width + fb.width
    fmt = _grown(width, fa.frac + fb.frac, signed, "mul", fa, fb)
    return FixedArray._unchecked(a.codes * b.codes, fmt)
