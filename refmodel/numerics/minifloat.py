"""Minifloat formats (fp32 down to fp4): spec, presets, and exact encode / decode / cast.

A minifloat value is an unsigned integer *code* (the raw bit pattern, sign in the top bit) plus a
:class:`FloatFormat`. Decoding to float64 is exact for every format here (<= 24 significand bits,
exponents within float64's range).

Format vocabulary (ml_dtypes-style suffixes):
  * ``ieee``  -- exponent field all ones is reserved: mantissa 0 = +-inf, otherwise NaN.
  * ``fn``    -- finite: no inf; NaN only where exponent AND mantissa are all ones (``S.1111.111``
    for e4m3fn), so the top binade keeps all other codes (e4m3fn max = 1.75 * 2^8 = 448).
  * ``fnuz``  -- finite, unsigned zero: no inf, no -0; the single NaN is ``0x80`` (sign set, rest 0).
  * ``none``  -- every code is a finite number (OCP MX elements e3m2, e2m3, e2m1).

Overflow policy on encode (``overflow``): ``inf`` (IEEE: round to +-inf), ``saturate`` (clamp to
+-max finite, OCP "satfinite"), ``nan`` (values that round above max become NaN; ml_dtypes'
behaviour for e4m3fn).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from .inputs import ExactValues, InputTypeError, integer_codes, real_values
from .rounding import STOCHASTIC_BITS, Rounding, _resolve_random

if TYPE_CHECKING:
    from .block import BlockFormat

__all__ = ["FloatFormat", "PRESETS", "FloatArray", "encode", "decode", "cast"]

_SPECIALS = ("ieee", "fn", "fnuz", "none")
_OVERFLOW = ("inf", "saturate", "nan")


@dataclass(frozen=True)
class FloatFormat:
    """Binary floating-point format.

    Fields are the whole identity: ``exp`` exponent bits, ``man`` stored mantissa bits, ``bias``
    (default ``2**(exp-1) - 1``, +1 for ``fnuz``), ``subnormals`` (False: exponent field 0 encodes
    zero, flush-to-zero), ``specials`` (see module docstring), ``overflow`` (``inf | saturate |
    nan``), ``signed`` (False only for e8m0), ``has_zero`` (False only for e8m0, whose exponent
    field 0 is the normal value 2^-127). ``name`` is a display label, not part of equality.
    """

    exp: int
    man: int
    bias: int = None  # type: ignore[assignment]  # None: the standard bias, set in __post_init__
    subnormals: bool = True
    specials: str = "ieee"
    overflow: str = "inf"
    signed: bool = True
    has_zero: bool = True
    name: str | None = None

    def __post_init__(self) -> None:
        for name in ("exp", "man", "bias"):
            v = getattr(self, name)
            if v is None and name == "bias":
                continue
            if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
                raise InputTypeError(f"FloatFormat {name} must be an int, got {v!r}")
            object.__setattr__(self, name, int(v))
        for name in ("subnormals", "signed", "has_zero"):
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise InputTypeError(f"FloatFormat {name} must be True or False, got {v!r}")
            object.__setattr__(self, name, bool(v))
        if not 1 <= self.exp <= 11:
            raise ValueError(f"FloatFormat exp bits must be in 1..11, got {self.exp}")
        if not 0 <= self.man <= 52:
            raise ValueError(f"FloatFormat man bits must be in 0..52, got {self.man}")
        if self.specials not in _SPECIALS:
            raise ValueError(f"FloatFormat specials must be one of {_SPECIALS}, got {self.specials!r}")
        if self.overflow not in _OVERFLOW:
            raise ValueError(f"FloatFormat overflow must be one of {_OVERFLOW}, got {self.overflow!r}")
        if self.bias is None:
            object.__setattr__(self, "bias", (1 << (self.exp - 1)) - 1 + (1 if self.specials == "fnuz" else 0))
        if self.specials == "ieee" and self.overflow == "nan":
            raise ValueError("FloatFormat: overflow='nan' makes no sense for an IEEE format with inf")
        if self.specials in ("fn", "fnuz", "none") and self.overflow == "inf":
            raise ValueError(f"FloatFormat: specials={self.specials!r} has no inf; use overflow='nan' or 'saturate'")
        if self.specials == "none" and self.overflow == "nan":
            raise ValueError("FloatFormat: specials='none' has no NaN; use overflow='saturate'")

    # equality ignores the display name
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FloatFormat):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return (self.exp, self.man, self.bias, self.subnormals, self.specials, self.overflow, self.signed, self.has_zero)

    # ---- derived quantities (defined once) ------------------------------------------------
    @property
    def bits(self) -> int:
        return int(self.signed) + self.exp + self.man

    @property
    def exp_max_field(self) -> int:
        """Largest exponent field holding finite values (e8m0: 254, its field 255 being NaN only)."""
        top = (1 << self.exp) - 1
        if self.specials == "ieee" or (self.specials == "fn" and self.man == 0):
            return top - 1
        return top

    @property
    def emax(self) -> int:
        return self.exp_max_field - self.bias

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return (0 if not self.has_zero else 1) - self.bias

    @property
    def max_code_magnitude(self) -> int:
        """Magnitude bits (exponent|mantissa) of the largest finite value."""
        mant_all = (1 << self.man) - 1
        if self.specials == "fn" and self.man > 0:
            return (self.exp_max_field << self.man) | (mant_all - 1)  # S.1111.111 is NaN
        return (self.exp_max_field << self.man) | mant_all  # e8m0: field 254 (0xFF is NaN)

    @property
    def max(self) -> float:
        m = self.max_code_magnitude
        e, f = m >> self.man, m & ((1 << self.man) - 1)
        return float(np.ldexp(1.0 + f / (1 << self.man) if self.man else 1.0, e - self.bias))

    @property
    def min_normal(self) -> float:
        return float(np.ldexp(1.0, self.emin))

    @property
    def min_subnormal(self) -> float:
        return float(np.ldexp(1.0, self.emin - self.man)) if self.subnormals and self.man else self.min_normal

    @property
    def epsilon(self) -> float:
        """Distance from 1 to the next larger value, 2^-man."""
        return float(np.ldexp(1.0, -self.man))

    @property
    def unit_roundoff(self) -> float:
        """u = 2^-(man+1) for round-to-nearest."""
        return float(np.ldexp(1.0, -self.man - 1))

    @property
    def has_inf(self) -> bool:
        return self.specials == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.specials != "none"

    @property
    def code_dtype(self) -> type[np.unsignedinteger[Any]]:
        return np.uint8 if self.bits <= 8 else np.uint16 if self.bits <= 16 else np.uint32 if self.bits <= 32 else np.uint64

    @property
    def hex_digits(self) -> int:
        return (self.bits + 3) // 4

    def with_overflow(self, overflow: str) -> FloatFormat:
        return replace(self, overflow=overflow, name=None)

    # ---- spec strings -------------------------------------------------------------------
    def __str__(self) -> str:
        if self.name:
            return self.name
        for n, f in PRESETS.items():
            if f == self:
                return n
        for n, f in PRESETS.items():
            if f.overflow == self.overflow:
                continue
            try:
                if f.with_overflow(self.overflow) == self:
                    return f"{n}:{_OVERFLOW_SUFFIX[self.overflow]}"
            except ValueError:
                continue
        s = f"e{self.exp}m{self.man}"
        tags = []
        if self.specials != "ieee":
            tags.append(self.specials)
        if self.bias != (1 << (self.exp - 1)) - 1 + (1 if self.specials == "fnuz" else 0):
            tags.append(f"b{self.bias}")
        if not self.subnormals:
            tags.append("ftz")
        tags.append(_OVERFLOW_SUFFIX[self.overflow])
        return s + ":" + ",".join(tags)

    @property
    def spec(self) -> str:
        return str(self)

    @classmethod
    def parse(cls, spec: str | FloatFormat) -> FloatFormat:
        """Preset name (``fp16``, ``e4m3fn``...), optionally ``:sat`` / ``:inf`` / ``:nan`` for the
        overflow policy, or ``e<E>m<M>[:tag,...]`` with tags ``fn|fnuz|none``, ``b<bias>``, ``ftz``,
        ``sat|inf|nan``."""
        if isinstance(spec, FloatFormat):
            return spec
        text = str(spec).strip().lower()
        base, _, tagstr = text.partition(":")
        tags = [t.strip() for t in tagstr.split(",") if t.strip()] if tagstr else []
        ov = None
        rest = []
        for t in tags:
            if t in _SUFFIX_OVERFLOW:
                if ov is not None and ov != _SUFFIX_OVERFLOW[t]:
                    raise ValueError(f"bad float spec {spec!r}: two overflow policies ({_OVERFLOW_SUFFIX[ov]} and {t}); "
                                     f"give one of :sat, :inf, :nan")
                ov = _SUFFIX_OVERFLOW[t]
            else:
                rest.append(t)
        if base in PRESETS:
            if rest:
                raise ValueError(f"bad float spec {spec!r}: preset {base!r} takes only :sat, :inf or :nan")
            fmt = PRESETS[base]
            if ov is not None and ov != fmt.overflow:
                try:
                    fmt = fmt.with_overflow(ov)
                except ValueError as e:
                    raise ValueError(f"bad float spec {spec!r}: {e}") from None
            return fmt
        m = re.fullmatch(r"e(\d+)m(\d+)", base)
        if not m:
            names = ", ".join(PRESETS)
            raise ValueError(f"unknown float format {spec!r}; presets: {names}; or e<E>m<M>[:tags]")
        kw: dict[str, Any] = {"exp": int(m.group(1)), "man": int(m.group(2))}
        for t in rest:
            val: str | bool | int
            if t in _SPECIALS:
                key, val = "specials", t
            elif t == "ftz":
                key, val = "subnormals", False
            elif re.fullmatch(r"b-?\d+", t):
                key, val = "bias", int(t[1:])
            else:
                raise ValueError(f"bad float spec {spec!r}: unknown tag {t!r} (tags: fn, fnuz, none, b<bias>, ftz, "
                                 f"sat, inf, nan)")
            if key in kw and kw[key] != val:
                raise ValueError(f"bad float spec {spec!r}: contradictory tags for {key} ({kw[key]} and {val})")
            kw[key] = val
        sp = kw.get("specials", "ieee")
        kw["overflow"] = ov or ("inf" if sp == "ieee" else "nan" if sp in ("fn", "fnuz") else "saturate")
        try:
            return cls(**kw)
        except ValueError as e:
            raise ValueError(f"bad float spec {spec!r}: {e}") from None


_OVERFLOW_SUFFIX = {"inf": "inf", "saturate": "sat", "nan": "nan"}
_SUFFIX_OVERFLOW = {"inf": "inf", "sat": "saturate", "saturate": "saturate", "nan": "nan"}

#: Named formats. OCP FP8 (e4m3fn, e5m2), OCP MX elements (e3m2, e2m3, e2m1, e8m0), IEEE-like e4m3.
PRESETS: dict[str, FloatFormat] = {
    "fp32": FloatFormat(8, 23, name="fp32"),
    "tf32": FloatFormat(8, 10, name="tf32"),
    "fp16": FloatFormat(5, 10, name="fp16"),
    "bf16": FloatFormat(8, 7, name="bf16"),
    "e5m2": FloatFormat(5, 2, name="e5m2"),
    "e4m3fn": FloatFormat(4, 3, specials="fn", overflow="nan", name="e4m3fn"),
    "e4m3": FloatFormat(4, 3, name="e4m3"),
    "e4m3fnuz": FloatFormat(4, 3, specials="fnuz", overflow="nan", name="e4m3fnuz"),
    "e5m2fnuz": FloatFormat(5, 2, specials="fnuz", overflow="nan", name="e5m2fnuz"),
    "e3m2": FloatFormat(3, 2, specials="none", overflow="saturate", name="e3m2"),
    "e2m3": FloatFormat(2, 3, specials="none", overflow="saturate", name="e2m3"),
    "e2m1": FloatFormat(2, 1, specials="none", overflow="saturate", name="e2m1"),
    "e8m0": FloatFormat(8, 0, specials="fn", overflow="nan", subnormals=False, signed=False, has_zero=False, name="e8m0"),
}


@dataclass(frozen=True, eq=False)
class FloatArray:
    """Raw codes (unsigned ints, ``fmt.code_dtype``) plus their :class:`FloatFormat`.

    The constructor takes integer codes in ``[0, 2**fmt.bits)`` (``ValueError`` names the first
    code outside; a code is never wrapped) and a format object or spec string."""

    codes: np.ndarray
    fmt: FloatFormat

    def __post_init__(self) -> None:
        fmt = _fmt(self.fmt)
        object.__setattr__(self, "fmt", fmt)
        object.__setattr__(self, "codes", integer_codes(self.codes, f"FloatArray of {fmt}", 0, (1 << fmt.bits) - 1,
                                                        fmt.code_dtype))

    def to_float(self) -> np.ndarray:
        _check_range(self.fmt)
        return _decode_codes(self.codes, self.fmt)  # the constructor checked the codes

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    def identical(self, other: FloatArray) -> bool:
        return (
            isinstance(other, FloatArray)
            and self.fmt == other.fmt
            and self.codes.shape == other.codes.shape
            and bool(np.array_equal(self.codes, other.codes))
        )

    def __repr__(self) -> str:
        d = self.fmt.hex_digits
        body = [f"0x{int(c):0{d}x}" for c in self.codes.ravel()[:16]]
        more = ", ..." if self.codes.size > 16 else ""
        return f"FloatArray(codes=[{', '.join(body)}{more}], fmt={self.fmt})"

    def __getitem__(self, idx: Any) -> FloatArray:
        return FloatArray(self.codes[idx], self.fmt)


# ---- encode / decode / cast ------------------------------------------------------------------
#
# Numeric contract shared by the three functions below:
#   * decode is exact: every code of every format here is a float64 value (the format's exponent
#     range must lie inside float64's, checked by ``_check_range``).
#   * encode rounds ONCE, from the exact value of its float64 / float32 / float16 input, under the
#     rounding mode; the rounding is done on the integer significand (round bit + sticky bit, or
#     the stochastic carry), never through a narrower float type.
#   * overflow follows ``fmt.overflow`` and IEEE 754 7.4: a result rounded (with unbounded exponent)
#     above the largest finite value overflows; under ``inf`` / ``nan`` it becomes +-inf / NaN,
#     except that modes rounding toward zero for that sign (``rtz``; ``floor`` for positive values;
#     ``ceil`` for negative ones) give +-max, as IEEE specifies. ``saturate`` always gives +-max.

_U1 = np.uint64(1)
_ABS64 = np.uint64((1 << 63) - 1)
_MAN64 = np.uint64((1 << 52) - 1)


def _fmt(fmt: FloatFormat | str) -> FloatFormat:
    return FloatFormat.parse(fmt)


def _check_range(fmt: FloatFormat) -> None:
    if fmt.emax > 1023 or fmt.emin < -1022:
        raise ValueError(
            f"float format {fmt}: exponent range [{fmt.emin}, {fmt.emax}] is outside float64's "
            f"[-1022, 1023]; encode/decode need every value to be a float64"
        )


def _nan_code(fmt: FloatFormat, sign: np.ndarray | None = None) -> np.uint64 | np.ndarray | None:
    """The NaN code encode produces (sign kept where the format has a signed NaN, as ml_dtypes),
    or None when the format has no NaN code."""
    top = (1 << fmt.exp) - 1
    sbit = np.uint64(1 << (fmt.bits - 1)) if fmt.signed else np.uint64(0)
    if fmt.specials == "ieee":
        if fmt.man == 0:
            return None
        base = np.uint64((top << fmt.man) | (1 << (fmt.man - 1)))  # quiet NaN, payload 0
    elif fmt.specials == "fn":
        base = np.uint64((1 << (fmt.exp + fmt.man)) - 1)
    elif fmt.specials == "fnuz":
        return np.uint64(1 << (fmt.bits - 1))
    else:
        return None
    if sign is None or not fmt.signed:
        return base
    return np.where(sign, base | sbit, base)


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    if mask.ndim == 0:
        return ()
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


# ---- decode -----------------------------------------------------------------------------------
def _decode_arith(codes: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Field-by-field decode of uint64 codes (any width); exact."""
    c = codes.astype(np.uint64)
    man = fmt.man
    mag = c & np.uint64((1 << (fmt.exp + man)) - 1)
    field = (mag >> np.uint64(man)).astype(np.int64)
    mant = (mag & np.uint64((1 << man) - 1)).astype(np.float64)  # < 2^52: exact
    normal = field > 0 if fmt.has_zero else np.ones(field.shape, dtype=bool)
    sub = mant if fmt.subnormals else np.zeros_like(mant)  # ftz: exponent field 0 is zero
    sig = np.where(normal, mant + float(1 << man), sub)  # <= 2^53: exact
    e = np.where(normal, field - fmt.bias - man, fmt.emin - man)
    with np.errstate(over="ignore"):  # only the inf/NaN codes can overflow here; replaced just below
        v = np.ldexp(sig, e.astype(np.int32))
    if fmt.specials == "ieee":
        top = field == (1 << fmt.exp) - 1
        v = np.where(top, np.where(mant == 0, np.inf, np.nan), v)
    elif fmt.specials == "fn":
        v = np.where(mag == np.uint64((1 << (fmt.exp + man)) - 1), np.nan, v)
    elif fmt.specials == "fnuz":
        v = np.where(c == np.uint64(1 << (fmt.bits - 1)), np.nan, v)
    if fmt.signed:
        neg = (c >> np.uint64(fmt.bits - 1)) != 0
        v = np.where(neg, -v, v)
    return v


@cache
def _decode_table(fmt: FloatFormat) -> np.ndarray:
    t = _decode_arith(np.arange(1 << fmt.bits, dtype=np.uint64), fmt)
    t.setflags(write=False)
    return t


def decode(codes: np.ndarray | Iterable[int] | int, fmt: FloatFormat | str) -> np.ndarray:
    """Codes -> float64 values, exactly.

    Numeric contract: input raw codes (any integer dtype, values in ``[0, 2**fmt.bits)``) of
    ``fmt``; output float64 of the same shape. Exact for every code: NaN codes give NaN (sign bit
    copied from the code), inf codes +-inf, the -0 code -0.0. ``ftz`` formats decode exponent field
    0 as +-0. Raises ``ValueError`` naming the first code out of range (and its index), or a
    non-integer dtype.
    Formats up to 16 bits use a cached table of all codes; wider ones decode field by field.

    >>> decode([0x7E, 0xFF, 0x80, 0x01], "e4m3fn").tolist()
    [448.0, nan, -0.0, 0.001953125]
    """
    fmt = _fmt(fmt)
    _check_range(fmt)
    keep = codes.dtype if isinstance(codes, np.ndarray) and codes.dtype.kind in "ui" else fmt.code_dtype
    c = integer_codes(codes, f"decode {fmt}", 0, (1 << fmt.bits) - 1, keep)
    return _decode_codes(c, fmt)


def _decode_codes(c: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """decode() of codes already known to be in range (internal callers that produced them).

    fp32, fp16 and bf16 widen through numpy's float32 / float16 / ml_dtypes bfloat16: a widening
    conversion is exact, keeps -0, inf and subnormals (numpy sets no flush-to-zero), and a NaN is
    then written as the canonical quiet NaN with the code's sign, as :func:`_decode_arith` gives it
    (a widened NaN would keep its payload bits). Other formats: the cached table (<= 16 bits) or
    the field-by-field decode."""
    native = _native_decode().get(fmt)
    if native is not None:
        with np.errstate(invalid="ignore"):  # signalling-NaN codes
            v = np.asarray(c).astype(native[0], copy=False).view(native[1]).astype(np.float64)
        nan = np.isnan(v)
        if nan.any():
            v[nan] = np.copysign(np.nan, v[nan])
        return v
    if fmt.bits <= 16:
        return np.asarray(_decode_table(fmt)[c])
    return np.asarray(_decode_arith(c, fmt))


@cache
def _native_decode() -> dict[FloatFormat, tuple[type, type]]:
    import ml_dtypes

    return {PRESETS["fp32"]: (np.uint32, np.float32), PRESETS["fp16"]: (np.uint16, np.float16),
            PRESETS["bf16"]: (np.uint16, ml_dtypes.bfloat16)}


# ---- encode -----------------------------------------------------------------------------------
def _encode_kernel(
    x: np.ndarray,
    fmt: FloatFormat,
    mode: Rounding,
    rbits: np.ndarray | None = None,
    sr_bits: int = STOCHASTIC_BITS,
    eoff: np.ndarray | None = None,
) -> np.ndarray:
    """float64 array -> uint64 codes of ``fmt`` (the one rounding of the whole module).

    Works on the bit pattern: sig2 = 2 * (significand with hidden bit) is a 54-bit integer and the
    value is ``sig2 * 2**(elog - 53)``; the target's quantum in that binade is
    ``2**(max(elog, emin) - man)``, so ``d2`` low bits of sig2 are discarded (``d2 >= 1``; the
    extra factor 2 makes the half-way point ``1 << (d2 - 1)`` a whole bit). The kept integer ``n``
    plus the rounding increment is added to ``(binade field - 1) << man``: a carry out of the
    mantissa moves to the next binade by itself, and a carry out of the subnormal range gives the
    smallest normal. ``eoff`` (int64, broadcastable) scales the input by ``2**eoff`` exactly, in the
    exponent (used by MX block quantisation). NaN inputs give the format's NaN code, or 0 for
    formats without one (callers reject those first).
    """
    u = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    man, bias, emax, emin = fmt.man, fmt.bias, fmt.emax, fmt.emin
    sign = (u >> np.uint64(63)).astype(bool)
    a = u & _ABS64
    E = (a >> np.uint64(52)).astype(np.int64)
    frac = a & _MAN64
    sig2 = (frac | ((E != 0).astype(np.uint64) << np.uint64(52))) << _U1
    elog = np.maximum(E, 1) - 1023  # floor(log2 |x|) for normal x; an upper bound for subnormals
    if eoff is not None:
        elog = elog + eoff
    big = elog > emax  # >= 2^(emax+1): overflow in every rounding mode (includes inf and NaN)
    ec = np.minimum(elog, emax)
    qe = np.maximum(ec, emin)  # exponent of the target binade holding the result
    d2 = qe - ec + (53 - man)  # discarded low bits of sig2, >= 1
    d2c = np.minimum(d2, 63).astype(np.uint64)
    kept = sig2 >> d2c
    rem = sig2 & ((_U1 << d2c) - _U1)
    if mode is Rounding.RTZ:
        up = None
    elif mode is Rounding.RNE:
        half = _U1 << (d2c - _U1)
        up = (rem > half) | ((rem == half) & ((kept & _U1) != 0))
    elif mode is Rounding.HALF_AWAY:
        up = rem >= (_U1 << (d2c - _U1))
    elif mode is Rounding.HALF_UP:
        half = _U1 << (d2c - _U1)
        up = (rem > half) | ((rem == half) & ~sign)
    elif mode is Rounding.FLOOR:
        up = sign & (rem != 0)
    elif mode is Rounding.CEIL:
        up = ~sign & (rem != 0)
    else:  # stochastic: top sr_bits of the discarded field + sr_bits random bits, carry rounds up
        sh = d2 - sr_bits
        frac_s = np.where(
            sh >= 0,
            rem >> np.clip(sh, 0, 63).astype(np.uint64),
            rem << np.clip(-sh, 0, 63).astype(np.uint64),
        )
        assert rbits is not None
        up = (frac_s + rbits.astype(np.uint64)) >= np.uint64(1 << sr_bits)
    mag = ((qe + (bias - 1)) << man) + kept.astype(np.int64)
    if up is not None:
        mag += up
    maxmag = fmt.max_code_magnitude
    ovf = big | (mag > maxmag)
    if fmt.has_zero:
        if not fmt.subnormals:
            mag = np.where(mag < (1 << man), 0, mag)  # flush subnormal results to zero
    else:
        mag = np.maximum(mag, 0)  # no zero code: what would round to 0 becomes the smallest value
    mag = np.where(ovf, maxmag, mag).astype(np.uint64)

    is_special = E == 2047
    nan_in = is_special & (frac != 0)
    inf_in = is_special & (frac == 0)
    if fmt.overflow == "saturate":
        to_special = np.zeros_like(inf_in)  # saturate: inf in and overflow both give +-max
    else:
        if mode is Rounding.RTZ:
            toward0 = True
        elif mode is Rounding.FLOOR:
            toward0 = ~sign
        elif mode is Rounding.CEIL:
            toward0 = sign
        else:
            toward0 = False
        to_special = (ovf & ~np.asarray(toward0)) | inf_in
    make_nan = nan_in | (to_special if fmt.overflow == "nan" else False)
    make_inf = to_special & ~nan_in if fmt.overflow == "inf" else None
    if not fmt.signed:
        neg = sign & (a != 0)
        if not fmt.has_zero:
            neg = sign | (a == 0)  # e8m0: no zero, no sign: 0, -0 and negatives are NaN
        make_nan = make_nan | neg
        code = mag
    else:
        sgn = sign & (mag != 0) if fmt.specials == "fnuz" else sign
        code = mag | (sgn.astype(np.uint64) << np.uint64(fmt.bits - 1))
    if make_inf is not None:
        inf_code = np.uint64(((1 << fmt.exp) - 1) << man) | (sign.astype(np.uint64) << np.uint64(fmt.bits - 1))
        code = np.where(make_inf, inf_code, code)
    nan_code = _nan_code(fmt, sign)
    code = np.where(make_nan, np.uint64(0) if nan_code is None else nan_code, code)
    return np.asarray(code, dtype=np.uint64)


def _table_ok(fmt: FloatFormat) -> bool:
    """float32 -> fmt by a 2^16-entry table on the top half of the float32 bits, with the low half
    ORed (jammed) into bit 16 (round-to-odd). Valid when every rounding boundary of fmt (its values
    and midpoints) is a float32 whose bits 16..0 are zero: at most 5 mantissa bits (so 1 guard bit
    + mantissa sit above bit 16) and half the smallest subnormal >= 2^-132 (float32 bit 17 in the
    subnormal range)."""
    return fmt.man <= 5 and fmt.emin - fmt.man - 1 >= -132


@cache
def _f32_table(fmt: FloatFormat, mode: Rounding) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # signalling-NaN patterns
        hi = (np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    t = _encode_kernel(hi, fmt, mode).astype(fmt.code_dtype)
    t.setflags(write=False)
    return t


def _round_to_odd_f32(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 bit patterns rounded to ODD: the float32 truncation of x (toward zero)
    with its last bit forced to 1 when x is not a float32. This is not a second rounding of the
    result: an inexact x lands on an odd float32 strictly inside the same gap between consecutive
    2^-16-grid float32 values as x, so every later rounding to a format that passes
    :func:`_table_ok` sees the same round and sticky bits (Boldo & Melquiond's round-to-odd).
    What goes wrong in a float32 *RNE* detour (ml_dtypes) is exactly that x moves onto a tie."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = x.astype(np.float32)  # RNE; +-inf past float32 max (then decremented to +-max below)
        y64 = y.astype(np.float64)
    ax, ay = np.abs(x), np.abs(y64)
    yb = y.view(np.uint32)
    yb -= (ay > ax).view(np.uint8)  # rounded away from zero: step back to the truncation
    yb |= (ay != ax).view(np.uint8)  # inexact (or NaN): force the last bit to 1
    return yb


@overload
def _as_float_input(x: Any, fmt: FloatFormat, mode: Rounding | None = None, sr_bits: int = STOCHASTIC_BITS
                    ) -> np.ndarray: ...
@overload
def _as_float_input(x: Any, fmt: BlockFormat, mode: None = None, sr_bits: int = STOCHASTIC_BITS) -> np.ndarray: ...
def _as_float_input(x: Any, fmt: FloatFormat | BlockFormat, mode: Rounding | None = None,
                    sr_bits: int = STOCHASTIC_BITS) -> np.ndarray:
    """The values to encode as a float64/float32/float16 array whose rounding under ``mode`` gives
    the correctly rounded result of the *exact* input (see :mod:`refmodel.numerics.inputs` for what
    is accepted). Inputs float64 cannot hold (ints beyond 2^53, Fractions, Decimals...) become
    proxies: rounded to odd at float64 precision (the last bit set when inexact), which keeps every
    rounding decision of a format with at least 2 fewer bits (Boldo-Melquiond); for stochastic
    rounding, truncated toward zero, which keeps the top ``sr_bits`` discarded bits when float64
    has that many below the format's LSB. Where neither holds, or ``mode`` is None (a caller that
    rounds float64 values only), such an input raises ``ValueError`` naming it."""
    v = real_values(x, f"encode to {fmt}")
    if not isinstance(v, ExactValues):
        return v if v.dtype in (np.float64, np.float32, np.float16) else v.astype(np.float64)
    if mode is None or not isinstance(fmt, FloatFormat):  # an MX block format: float64 values only
        first, shown = _first_inexact(v)
        raise ValueError(f"encode to {fmt}: input {shown} at index {first} is not a float64 value and this "
                         f"operation rounds float64 values only; convert the input to float64 first")
    return _exact_proxy(v, fmt, mode, sr_bits)


def _first_inexact(v: ExactValues) -> tuple[tuple[int, ...], str]:
    """Index and text (``n`` or ``n/d``) of the first value float64 does not hold."""
    first = _first_index(~v.exact)
    k = int(np.ravel_multi_index(first, v.shape)) if v.shape else 0
    num, den = v.num.reshape(-1), v.den.reshape(-1)
    return first, (str(num[k]) if den[k] == 1 else f"{num[k]}/{den[k]}")


def _exact_proxy(v: ExactValues, fmt: FloatFormat, mode: Rounding, sr_bits: int) -> np.ndarray:
    inexact = ~v.exact
    first, shown = _first_inexact(v)
    num, den = v.num.reshape(-1), v.den.reshape(-1)
    stochastic = mode is Rounding.STOCHASTIC
    guard = int(sr_bits) if stochastic else 2  # bits float64 must hold below the format's LSB
    ok = fmt.man + guard <= 52 and fmt.emin - fmt.man - guard >= -1074
    if stochastic and fmt.emax >= 1023 and np.isinf(v.nearest[inexact]).any():
        ok = False  # a value beyond float64's range has no truncated proxy for such a format
    if not ok:
        raise ValueError(f"encode to {fmt}: input {shown} at index {first} is not a float64 value, and {mode.value} "
                         f"rounding to {fmt} cannot be done exactly from a float64 proxy (it needs {guard} bits "
                         f"below the format's LSB); convert the input to float64 first")
    nearest = v.nearest.reshape(-1)
    idx = np.flatnonzero(inexact.reshape(-1))
    # |nearest| > |exact|: nearest rounded away from zero (or overflowed to inf); step back toward 0
    away = np.array([np.isinf(nearest[i]) or abs(Fraction(float(nearest[i]))) > abs(Fraction(num[i], den[i]))
                     for i in idx], dtype=bool)
    out = nearest.copy()
    out[idx[away]] = np.nextafter(nearest[idx[away]], 0.0)
    if not stochastic:
        bits = out.view(np.uint64)
        bits[idx] |= np.uint64(1)  # round to odd: inexact values land strictly between two neighbours
    return out.reshape(v.shape)


def encode(
    x: np.ndarray | Iterable[float] | float,
    fmt: FloatFormat | str,
    rounding: Rounding | str = Rounding.RNE,
    *,
    seed: int | np.random.Generator | None = None,
    random_bits: np.ndarray | None = None,
    sr_bits: int = STOCHASTIC_BITS,
) -> FloatArray:
    """Real values -> codes of ``fmt``, rounded once.

    Numeric contract:
      * input: float64, float32 or float16 array (or anything ``np.asarray`` makes float64 exactly;
        integers beyond 2**53 raise), each element taken as its exact value;
      * output: :class:`FloatArray` of ``fmt`` (codes in ``fmt.code_dtype``, same shape);
      * rounding: one rounding of the exact input under ``rounding`` (rne, rtz, floor, ceil,
        half_up, half_away, stochastic; see :mod:`refmodel.numerics.rounding`), subnormals
        included; ``ftz`` formats flush subnormal results to +-0 after rounding;
      * overflow: per ``fmt.overflow`` (module docstring and the comment above): rounding that lands
        exactly on max is not overflow; for rne the threshold is max + half an ulp of the top
        binade, where the tie goes to the even neighbour (IEEE formats: up, to overflow; e4m3fn,
        whose max 448 has an even mantissa: down, so 464 -> 448 and anything above -> NaN);
      * specials: NaN -> the format's NaN code (quiet NaN with the input's sign for ieee, ``S.1111.111``
        for fn, ``0x80`` for fnuz: ml_dtypes' choices); formats without NaN (e2m1, e3m2, e2m3)
        raise ``ValueError`` naming the index. +-inf -> +-inf (``inf``), +-max (``saturate``),
        NaN (``nan``). -0.0 keeps its sign except in fnuz, which has no -0 (negative values that
        round to zero give +0).
      * e8m0 (unsigned, no zero): round to nearest *value* (boundary at 1.5 * 2^k, not at
        sqrt(2) * 2^k); with no mantissa bits both neighbours of a tie have significand 1, and the
        tie goes up to the larger power of two (as ml_dtypes float8_e8m0fnu does). Positive values
        below 2^-127 give 2^-127 (there is no zero); 0, -0, negatives and NaN give NaN (0xFF).
        MX block scales are normally computed by :mod:`refmodel.numerics.block` directly.
      * stochastic: sign-magnitude: the discarded magnitude bits, truncated to their top
        ``sr_bits`` bits (default ``STOCHASTIC_BITS`` = 32), plus one ``sr_bits``-bit random integer
        per element; a carry out of the top rounds the magnitude up. The integers come from
        ``random_bits`` (int array in ``[0, 2**sr_bits)``, broadcast to the input shape) or
        ``stochastic_bits(shape, sr_bits, seed)``; RTL fed the same integers gives the same codes.

    float32/float16 inputs to formats with <= 5 mantissa bits use a cached table of the top 16
    float32 bits with the low 16 bits jammed into a sticky bit (exactly equivalent; see
    ``_table_ok``); everything else runs the integer kernel on the float64 bit pattern.

    >>> encode([448.0, 464.0, 465.0, -0.95 * 2**-6], "e4m3fn")
    FloatArray(codes=[0x7e, 0x7e, 0x7f, 0x88], fmt=e4m3fn)
    """
    fmt = _fmt(fmt)
    _check_range(fmt)
    mode = Rounding.parse(rounding)
    arr = _as_float_input(x, fmt, mode, sr_bits)
    shape = arr.shape
    if _nan_code(fmt) is None and arr.size:
        isn = np.isnan(arr)
        if isn.any():
            raise ValueError(f"encode to {fmt}: NaN input at index {_first_index(isn)}, and {fmt} has no NaN code")
    if mode is Rounding.RNE and arr.dtype == np.float64:
        native = _NATIVE_RNE.get(fmt)
        if native is not None:  # IEEE hardware / numpy's direct double->half: the same one rounding
            with np.errstate(over="ignore"):
                return FloatArray(arr.astype(native[0]).view(native[1]), fmt)
        if fmt == PRESETS["bf16"]:
            return FloatArray(_encode_bf16_rne(arr), fmt)
    rbits = None
    if mode is Rounding.STOCHASTIC:
        if not 1 <= int(sr_bits) <= 62:
            raise ValueError(f"encode: sr_bits must be in 1..62, got {sr_bits}")
        rbits = _resolve_random(shape, int(sr_bits), seed, random_bits).reshape(-1)
    elif _table_ok(fmt):
        if arr.dtype == np.float64:
            u = _round_to_odd_f32(arr)
        else:
            u = np.ascontiguousarray(arr, dtype=np.float32).reshape(shape).view(np.uint32)
        t = np.bitwise_and(u, np.uint32(0xFFFF))
        t += np.uint32(0xFFFF)  # carry into bit 16 iff the low half is nonzero
        t |= u
        t >>= np.uint32(16)
        return FloatArray(np.take(_f32_table(fmt, mode), t), fmt)
    with np.errstate(invalid="ignore"):  # float32 signalling NaNs
        x64 = arr.astype(np.float64, copy=False).reshape(-1)
    codes = _encode_kernel(x64, fmt, mode, rbits, int(sr_bits))
    return FloatArray(codes.reshape(shape).astype(fmt.code_dtype), fmt)


def _encode_bf16_rne(x: np.ndarray) -> np.ndarray:
    """float64 -> bf16 codes, round to nearest even, in slices of 2^20 values (the temporaries stay
    small): :func:`_round_to_odd_f32` (float32 truncation with a sticky last bit; beyond float32's
    max it gives max with the sticky bit, so the next step overflows to inf as it must), then the
    float32 -> bf16 rounding on the bit pattern, ``(u + 0x7FFF + bit 16 of u) >> 16``: bf16 is
    the top half of float32 (same exponent, subnormals included), so this is one rounding to
    nearest even at bit 16, ties to even, carrying into the exponent (up to inf) as IEEE does.
    Round to odd at 24 bits followed by this rounding at 8 bits is one correct rounding (Boldo &
    Melquiond). NaN -> the quiet NaN 0x7FC0 with the input's sign (what the integer kernel gives)."""
    flat = x.reshape(-1)
    out = np.empty(flat.shape, np.uint16)
    step = 1 << 20
    for i in range(0, flat.size, step):
        c = flat[i:i + step]
        u = _round_to_odd_f32(c)
        u += np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
        out[i:i + step] = u >> np.uint32(16)
        isn = np.isnan(c)
        if isn.any():
            out[i:i + step][isn] = np.asarray(_nan_code(PRESETS["bf16"], np.signbit(c[isn])), dtype=np.uint16)
    return out.reshape(x.shape)


#: float64 -> fp32 / fp16 under rne: numpy's casts are the correctly rounded IEEE conversion
#: (overflow to inf, subnormals kept), so they equal the integer kernel; tests check both against
#: the Fraction oracle on hard cases (ties, double-rounding traps, overflow and subnormal edges)
_NATIVE_RNE = {PRESETS["fp32"]: (np.float32, np.uint32), PRESETS["fp16"]: (np.float16, np.uint16)}


def cast(
    a: FloatArray,
    fmt: FloatFormat | str,
    rounding: Rounding | str = Rounding.RNE,
    *,
    seed: int | np.random.Generator | None = None,
    random_bits: np.ndarray | None = None,
    sr_bits: int = STOCHASTIC_BITS,
) -> FloatArray:
    """Float format -> float format: exact decode to float64, then :func:`encode` (one rounding).

    Same contract as :func:`encode` with the decoded values as input; widening casts are exact.
    """
    if not isinstance(a, FloatArray):
        raise TypeError(f"cast expects a FloatArray, got {type(a).__name__}")
    return encode(a.to_float(), fmt, rounding, seed=seed, random_bits=random_bits, sr_bits=sr_bits)
