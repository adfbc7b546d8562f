"""Integer model of ``rtl/fp8_mac.v``: an FP8 dot-product unit (OCP ``e4m3fn`` or ``e5m2``, chosen
by a parameter) with exact products, an exact wide fixed-point ("Kulisch") accumulator and ONE
round-to-nearest-even conversion to ``fp32`` at the end of each dot product.

Numeric contract
----------------
* inputs: raw 8-bit codes of ``e4m3fn`` (bias 7, max 448, no inf, NaN = ``S.1111.111``) or
  ``e5m2`` (bias 15, max 57344, IEEE inf/NaN). Subnormal inputs are exact (no flush to zero).
* decoding is integer only: ``value = (-1)**s * sig * 2**e`` with ``sig`` the significand
  including the hidden bit (``man+1`` bits) and ``e = max(expfield, 1) - bias - man``.
* products are exact: ``(sig_a*sig_b) << (e_a + e_b + ACC_FRAC)`` in accumulator units, where
  ``ACC_FRAC = 2*(bias + man - 1)`` makes the smallest product (smallest subnormal squared) one
  unit: ``e4m3fn`` 18, ``e5m2`` 32 fraction bits.
* the accumulator is a signed fixed-point register ``s{ACC_W}.{ACC_FRAC}`` with
  ``ACC_W = 1 + PROD_W + clog2(K_MAX)`` (``PROD_W`` = magnitude bits of the largest product:
  ``e4m3fn`` 36 since 448**2 < 2**18, ``e5m2`` 64 since 57344**2 < 2**32): ``s49.18`` and
  ``s77.32`` for ``K_MAX = 4096``. Every sum of up to ``K_MAX`` products is exact, so the result
  does not depend on the accumulation order or on ``LANES``. Longer dot products wrap modulo
  ``2**ACC_W`` (the RTL does the same; no flag).
* output: ``fp32`` code after one RNE rounding of the exact sum (integer leading-one detection,
  round bit + sticky bit); gradual underflow to fp32 subnormals (unreachable for these two
  formats, kept general) and overflow to +-inf per IEEE (also unreachable for K <= K_MAX).
  An exactly-zero sum returns ``+0`` (``0x00000000``): the accumulator has no signed zero.
* specials: any NaN input, ``inf * 0`` or ``+inf`` and ``-inf`` products in one dot product give
  the canonical NaN ``0x7fc00000``; otherwise an infinite product gives ``+-inf`` (sign of the
  product) whatever the finite part. e4m3fn has no inf.

Python representation of the accumulator: two int64 limbs ``value = hi * 2**32 + lo`` with
``0 <= lo < 2**32`` (the e5m2 accumulator exceeds 64 bits), vectorised over the leading axes.
:func:`dot_fp8` builds int64 arrays of shape ``(..., K)`` (a few per input element);
:func:`matmul_fp8` is the fast path for ``(M, K) @ (K, N)`` using provably exact float64 BLAS
products on split operands.

RTL latency: the fp32 result is presented one clock after the last beat of a dot product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from refmodel.numerics.fixed import FixedFormat, apply_overflow
from refmodel.numerics.minifloat import PRESETS, FloatFormat
from refmodel.numerics.rounding import Overflow

__all__ = [
    "FP8_FORMATS",
    "FP32_NAN",
    "Fp8MacParams",
    "Fp8Fields",
    "Fp8Acc",
    "decode_fields",
    "dot_fp8_acc",
    "acc_to_fp32",
    "dot_fp8",
    "matmul_fp8",
]

#: FORMAT parameter value of each supported input format.
FP8_FORMATS = {"e4m3fn": 0, "e5m2": 1}
#: canonical fp32 quiet NaN returned for every NaN result.
FP32_NAN = 0x7FC00000
FP32_PINF = 0x7F800000
FP32_NINF = 0xFF800000
_M32 = np.int64(0xFFFFFFFF)


def _clog2(n: int) -> int:
    return max(0, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class Fp8MacParams:
    """Parameters of ``fp8_mac``: ``format`` (``e4m3fn`` | ``e5m2``), ``k_max`` (longest exact dot
    product, sets the guard bits, 1..2**20), ``lanes`` (products per beat, >= 1)."""

    format: str = "e4m3fn"
    k_max: int = 4096
    lanes: int = 1

    def __post_init__(self) -> None:
        name = self.format.name if isinstance(self.format, FloatFormat) else str(self.format).lower()
        if name not in FP8_FORMATS:
            raise ValueError(f"Fp8MacParams.format must be one of {list(FP8_FORMATS)}, got {self.format!r}")
        object.__setattr__(self, "format", name)
        if not (isinstance(self.k_max, (int, np.integer)) and 1 <= self.k_max <= 1 << 20):
            raise ValueError(f"Fp8MacParams.k_max must be an int in 1..2**20, got {self.k_max!r}")
        if not (isinstance(self.lanes, (int, np.integer)) and 1 <= self.lanes <= 64):
            raise ValueError(f"Fp8MacParams.lanes must be an int in 1..64, got {self.lanes!r}")

    @property
    def fmt(self) -> FloatFormat:
        return PRESETS[self.format]

    @property
    def acc_frac(self) -> int:
        """Fraction bits of the accumulator: 2*(bias + man - 1) (smallest subnormal squared)."""
        f = self.fmt
        return 2 * (f.bias + f.man - 1)

    @property
    def prod_w(self) -> int:
        """Magnitude bits of the largest product in accumulator units."""
        f = self.fmt
        mag = f.max_code_magnitude
        ef, mf = mag >> f.man, mag & ((1 << f.man) - 1)
        sig = mf | (1 << f.man)
        shift = 2 * (ef - f.bias - f.man) + self.acc_frac
        return (sig * sig).bit_length() + shift

    @property
    def acc_w(self) -> int:
        """Accumulator width 1 + PROD_W + clog2(K_MAX)."""
        return 1 + self.prod_w + _clog2(self.k_max)

    @property
    def acc_format(self) -> FixedFormat | str:
        """Accumulator format spec ``s{ACC_W}.{ACC_FRAC}`` (a string when wider than 63 bits)."""
        if self.acc_w <= 63:
            return FixedFormat(self.acc_w, self.acc_frac, True)
        return f"s{self.acc_w}.{self.acc_frac}"

    def to_hdl(self) -> dict[str, int]:
        """Verilog parameters of ``fp8_mac`` (FORMAT 0 = e4m3fn, 1 = e5m2)."""
        return {"FORMAT": FP8_FORMATS[self.format], "K_MAX": int(self.k_max), "LANES": int(self.lanes)}


class Fp8Fields(NamedTuple):
    """Integer fields of fp8 codes: value = (-1)**sign * sig * 2**exp for finite codes."""

    sign: np.ndarray  # int64 0/1
    sig: np.ndarray  # int64, hidden bit included (0 for zero; 0 for NaN/inf too)
    exp: np.ndarray  # int64, exponent of the significand LSB
    nan: np.ndarray  # bool
    inf: np.ndarray  # bool


class Fp8Acc(NamedTuple):
    """Accumulator state ``hi * 2**32 + lo`` (``0 <= lo < 2**32``, wrapped to ACC_W bits) and the
    special-value flags of a dot product."""

    hi: np.ndarray
    lo: np.ndarray
    nan: np.ndarray
    pinf: np.ndarray
    ninf: np.ndarray

    def to_int(self) -> list[int]:
        """The accumulator values as Python ints, flattened (for tests and hex files)."""
        return [(int(h) << 32) + int(lo) for h, lo in zip(self.hi.ravel().tolist(), self.lo.ravel().tolist(), strict=True)]


def _params(p: Fp8MacParams | str) -> Fp8MacParams:
    return p if isinstance(p, Fp8MacParams) else Fp8MacParams(str(p))


def _codes8(x: npt.ArrayLike, what: str) -> np.ndarray:
    c = np.asarray(x)
    if c.dtype.kind not in "iub":
        raise ValueError(f"{what}: expected integer fp8 codes, got dtype {c.dtype}")
    c = c.astype(np.int64)
    if c.size and (int(c.min()) < 0 or int(c.max()) > 255):
        bad = (c < 0) | (c > 255)
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), c.shape))
        raise ValueError(f"{what}: code {int(c[idx])} at index {idx} is not an 8-bit code (0..255)")
    return c


def decode_fields(codes: npt.ArrayLike, p: Fp8MacParams | str) -> Fp8Fields:
    """Split fp8 codes (0..255) into integer fields without floats (see module contract).

    NaN and inf codes get ``sig = 0`` and ``exp = 0`` (their value is carried by the flags).
    """
    p = _params(p)
    f = p.fmt
    c = _codes8(codes, "decode_fields")
    sign = c >> 7
    ef = (c >> f.man) & ((1 << f.exp) - 1)
    mf = c & ((1 << f.man) - 1)
    top = ef == (1 << f.exp) - 1
    if f.specials == "fn":
        nan = top & (mf == (1 << f.man) - 1)
        inf = np.zeros_like(nan)
    else:  # ieee
        nan = top & (mf != 0)
        inf = top & (mf == 0)
    special = nan | inf
    sig = np.where(ef != 0, mf | (1 << f.man), mf)
    exp = np.maximum(ef, 1) - f.bias - f.man
    return Fp8Fields(sign, np.where(special, 0, sig), np.where(special, 0, exp), nan, inf)


def _wrap_acc(hi: np.ndarray, lo: np.ndarray, p: Fp8MacParams) -> tuple[np.ndarray, np.ndarray]:
    """Carry lo into hi (lo -> [0, 2**32)) and wrap the value to ACC_W bits."""
    hi = hi + (lo >> np.int64(32))
    lo = lo & _M32
    hi = apply_overflow(hi, FixedFormat(p.acc_w - 32, 0, True), Overflow.WRAP)
    return hi, lo


def _flags(fa: Fp8Fields, fb: Fp8Fields) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    zero_a = (fa.sig == 0) & ~fa.nan & ~fa.inf
    zero_b = (fb.sig == 0) & ~fb.nan & ~fb.inf
    nan = fa.nan | fb.nan | (fa.inf & zero_b) | (zero_a & fb.inf)
    inf = (fa.inf | fb.inf) & ~nan
    neg = (fa.sign ^ fb.sign) == 1
    return nan, inf & ~neg, inf & neg


def dot_fp8_acc(a_codes: npt.ArrayLike, b_codes: npt.ArrayLike, p: Fp8MacParams | str) -> Fp8Acc:
    """Exact Kulisch accumulator (``s{ACC_W}.{ACC_FRAC}``, wrapped to ACC_W bits) and special
    flags of the dot products over the last axis of broadcastable ``(..., K)`` code arrays.

    Each product ``(sig_a*sig_b) << shift`` (shift = e_a + e_b + ACC_FRAC, 0..58) is split into
    32-bit limbs before summing, so no int64 overflows for K < 2**31.
    """
    p = _params(p)
    a = _codes8(a_codes, "dot_fp8: a")
    b = _codes8(b_codes, "dot_fp8: b")
    a, b = np.broadcast_arrays(a, b)
    if a.ndim == 0 or a.shape[-1] < 1:
        raise ValueError(f"dot_fp8: need at least one product on the last axis, got shape {a.shape}")
    fa, fb = decode_fields(a, p), decode_fields(b, p)
    nan, pinf, ninf = _flags(fa, fb)
    sp = fa.sig * fb.sig  # NaN/inf lanes have sig 0 -> contribute nothing
    shift = fa.exp + fb.exp + p.acc_frac
    shift = np.where(sp == 0, 0, shift)
    small = shift < 32
    full = sp << np.minimum(shift, 31)
    lo = np.where(small, full & _M32, 0)
    hi = np.where(small, full >> np.int64(32), sp << np.maximum(shift - 32, 0))
    neg = (fa.sign ^ fb.sign) == 1
    lo = np.where(neg, -lo, lo).sum(axis=-1, dtype=np.int64)
    hi = np.where(neg, -hi, hi).sum(axis=-1, dtype=np.int64)
    hi, lo = _wrap_acc(hi, lo, p)
    return Fp8Acc(hi, lo, np.asarray(nan.any(axis=-1)), np.asarray(pinf.any(axis=-1)), np.asarray(ninf.any(axis=-1)))


# ---- the final normaliser + RNE to fp32 ----------------------------------------------------------


def _bitlen(x: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values by binary search (integer leading-one detection)."""
    y = x.copy()
    n = np.zeros_like(y)
    for s in (32, 16, 8, 4, 2, 1):
        big = y >= (np.int64(1) << np.int64(s))
        n += np.where(big, s, 0)
        y = np.where(big, y >> np.int64(s), y)
    return n + (y > 0)


def _shr(mh: np.ndarray, ml: np.ndarray, t: np.ndarray) -> np.ndarray:
    """floor((mh*2**32 + ml) / 2**t) for t >= 0, assuming the result is below 2**62."""
    big = t >= 32
    hi_part = mh >> np.minimum(np.maximum(t - 32, 0), 63)
    ts = np.minimum(t, 32)
    small = (mh << (32 - ts)) | (ml >> np.minimum(ts, 31))
    small = np.where(ts == 32, mh, small)
    return np.where(big, hi_part, small)


def _low_nonzero(mh: np.ndarray, ml: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(mh*2**32 + ml) mod 2**u != 0, for u >= 0."""
    u_lo = np.minimum(u, 32)
    lo_nz = (ml & ((np.int64(1) << u_lo) - 1)) != 0
    u_hi = np.clip(u - 32, 0, 62)
    hi_nz = np.where(u - 32 > 62, mh != 0, (mh & ((np.int64(1) << u_hi) - 1)) != 0)
    return lo_nz | ((u > 32) & hi_nz)


def acc_to_fp32(hi: npt.ArrayLike, lo: npt.ArrayLike, acc_frac: int, nan: npt.ArrayLike | None = None,
                pinf: npt.ArrayLike | None = None, ninf: npt.ArrayLike | None = None) -> np.ndarray:
    """fp32 codes (uint32) of the fixed-point values ``(hi*2**32 + lo) * 2**-acc_frac`` with ONE
    round-to-nearest-even; this is the model of ``rtl/fp8_acc_to_fp32.v``.

    ``hi`` int64 (signed), ``lo`` int64 in ``[0, 2**32)``; ``acc_frac`` any int. Normal results:
    24-bit significand, round bit + sticky bit; results below 2**-126 are rounded to the fp32
    subnormal grid 2**-149 (tiny values may round to a signed zero); results that round to
    2**128 or more give +-inf. An exactly-zero value gives +0. Flags (bool arrays or None):
    ``nan`` or (``pinf`` and ``ninf``) -> 0x7fc00000, else ``pinf`` -> +inf, ``ninf`` -> -inf.
    """
    h = np.asarray(hi, dtype=np.int64)
    lo = np.asarray(lo, dtype=np.int64)
    h, lo = np.broadcast_arrays(h, lo)
    if lo.size and (int(lo.min()) < 0 or int(lo.max()) > 0xFFFFFFFF):
        raise ValueError("acc_to_fp32: lo limb must lie in [0, 2**32)")
    if h.size and (int(h.min()) < -(1 << 61) or int(h.max()) >= 1 << 61):
        raise ValueError("acc_to_fp32: hi limb must lie in [-2**61, 2**61)")
    neg = h < 0
    mh = np.where(neg, -h - (lo != 0), h)
    ml = np.where(neg, (-lo) & _M32, lo)
    zero = (mh == 0) & (ml == 0)
    m = np.where(mh > 0, 32 + _bitlen(mh), _bitlen(ml)) - 1  # msb index (-1 for zero)
    f = int(acc_frac)
    lsb = np.maximum(m - 23, f - 149)
    t = np.maximum(lsb, 0)
    q_right = _shr(mh, ml, t)
    rb = np.where(t > 0, _shr(mh, ml, np.maximum(t - 1, 0)) & 1, 0)
    st = np.where(t > 0, _low_nonzero(mh, ml, np.maximum(t - 1, 0)), False)
    q_left = ml << np.minimum(np.maximum(-lsb, 0), 40)  # lsb <= 0 only when m <= 23: exact
    q = np.where(lsb > 0, q_right, q_left)
    q = q + (rb & (st | (q & 1)).astype(np.int64))
    normal = (m - f) >= -126
    e = (m - f) + (q >> np.int64(24))  # carry out of the rounding: q == 2**24
    q = np.where(q >> np.int64(24) == 1, q >> np.int64(1), q)
    biased = e + 127
    sign = neg.astype(np.int64) << np.int64(31)
    norm_code = sign | (np.clip(biased, 0, 255) << np.int64(23)) | (q & ((1 << 23) - 1))
    norm_code = np.where(biased >= 255, sign | FP32_PINF, norm_code)
    sub_code = sign | q  # q <= 2**23; q == 2**23 is the smallest normal, exponent field 1
    code = np.where(normal, norm_code, sub_code)
    code = np.where(zero, 0, code)
    shape = code.shape
    fl = [np.zeros(shape, bool) if x is None else np.broadcast_to(np.asarray(x, bool), shape) for x in (nan, pinf, ninf)]
    is_nan = fl[0] | (fl[1] & fl[2])
    code = np.where(fl[1], FP32_PINF, code)
    code = np.where(fl[2], FP32_NINF, code)
    code = np.where(is_nan, FP32_NAN, code)
    return code.astype(np.uint32)


def dot_fp8(a_codes: npt.ArrayLike, b_codes: npt.ArrayLike, p: Fp8MacParams | str) -> np.ndarray:
    """fp32 codes (uint32) of the fp8 dot products over the last axis: exact products, exact
    accumulation (``s{ACC_W}.{ACC_FRAC}``), one RNE rounding, specials per the module contract.

    >>> import numpy as np
    >>> [hex(int(c)) for c in dot_fp8([[0x38, 0x38], [0x7F, 0x00]], [[0x38, 0xB8], [0x38, 0x38]], "e4m3fn")]
    ['0x0', '0x7fc00000']
    """
    p = _params(p)
    acc = dot_fp8_acc(a_codes, b_codes, p)
    return acc_to_fp32(acc.hi, acc.lo, p.acc_frac, acc.nan, acc.pinf, acc.ninf)


# ---- fast matrix path -------------------------------------------------------------------------


def _values(fields: Fp8Fields) -> np.ndarray:
    v = np.ldexp(fields.sig.astype(np.float64), fields.exp.astype(np.int32))  # exact
    return np.where(fields.sign == 1, -v, v)


def _to_limbs(x: np.ndarray, acc_frac: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 multiple of 2**-acc_frac -> (hi, lo) limbs of x * 2**acc_frac."""
    y = np.ldexp(x, acc_frac - 32)  # power-of-two scaling: exact
    h = np.floor(y)
    return h.astype(np.int64), np.ldexp(y - h, 32).astype(np.int64)


def matmul_fp8(a_codes: npt.ArrayLike, b_codes: npt.ArrayLike, p: Fp8MacParams | str) -> np.ndarray:
    """fp32 codes of ``a @ b`` under the :func:`dot_fp8` contract, bit-identical to it:
    ``(..., M, K) @ (K, N) -> (..., M, N)`` uint32, for K <= 2**17.

    Exactness: operands are decoded exactly to float64 and, for e5m2, split into a part below 1
    (multiples of 2**-16) and a part at or above 1 (multiples of 2**-2, < 2**16). Every partial
    matmul then sums products that are multiples of 2**-32 .. 2**-4 and spans at most 36 bits,
    so with K <= 2**17 every BLAS partial sum is an integer multiple below 2**53: exact in any
    order. e4m3fn needs no split (products are multiples of 2**-18 below 2**18). Specials come
    from matmuls of 0/1 indicator matrices (exact counts).
    """
    p = _params(p)
    a = _codes8(a_codes, "matmul_fp8: a")
    b = _codes8(b_codes, "matmul_fp8: b")
    if a.ndim < 2 or b.ndim != 2 or a.shape[-1] != b.shape[0] or b.shape[0] < 1:
        raise ValueError(f"matmul_fp8: shapes {a.shape} @ {b.shape} do not form (..., M, K) @ (K, N)")
    k = b.shape[0]
    if k > 1 << 17:
        raise ValueError(f"matmul_fp8: K={k} > 2**17 breaks the float64 exactness proof; use dot_fp8")
    fa, fb = decode_fields(a, p), decode_fields(b, p)
    va, vb = _values(fa), _values(fb)
    if p.format == "e4m3fn":
        parts = [va @ vb]
    else:
        a_hi = np.where(np.abs(va) >= 1.0, va, 0.0)
        b_hi = np.where(np.abs(vb) >= 1.0, vb, 0.0)
        a_lo, b_lo = va - a_hi, vb - b_hi
        parts = [a_hi @ b_hi, a_hi @ b_lo, a_lo @ b_hi, a_lo @ b_lo]
    hi, lo = _to_limbs(parts[0], p.acc_frac)
    for part in parts[1:]:
        h, l_ = _to_limbs(part, p.acc_frac)
        hi = hi + h
        lo = lo + l_
    hi, lo = _wrap_acc(hi, lo, p)
    # specials
    fl = lambda m: m.astype(np.float64)  # noqa: E731
    zero_a = fl((fa.sig == 0) & ~fa.nan & ~fa.inf)
    zero_b = fl((fb.sig == 0) & ~fb.nan & ~fb.inf)
    nan = (fl(fa.nan).sum(axis=-1)[..., None] > 0) | (fl(fb.nan).sum(axis=0)[None, :] > 0)
    if p.fmt.has_inf:
        ia, ib = fl(fa.inf), fl(fb.inf)
        nan = nan | ((ia @ zero_b + zero_a @ ib) > 0)
        pos_a, neg_a = fl(fa.sign == 0), fl(fa.sign == 1)
        pos_b, neg_b = fl(fb.sign == 0), fl(fb.sign == 1)
        nz_a, nz_b = 1.0 - zero_a, 1.0 - zero_b
        # an infinite product needs an inf operand and a nonzero other operand; sign = sa ^ sb
        pinf = ((ia * pos_a) @ (pos_b * nz_b) + (ia * neg_a) @ (neg_b * nz_b)
                + (pos_a * nz_a) @ (ib * pos_b) + (neg_a * nz_a) @ (ib * neg_b)) > 0
        ninf = ((ia * pos_a) @ (neg_b * nz_b) + (ia * neg_a) @ (pos_b * nz_b)
                + (pos_a * nz_a) @ (ib * neg_b) + (neg_a * nz_a) @ (ib * pos_b)) > 0
    else:
        pinf = ninf = None
    return acc_to_fp32(hi, lo, p.acc_frac, nan, pinf, ninf)
