"""Dot products and matrix products with an explicit accumulation policy.

``matmul(a, b, policy, out_fmt, rounding, overflow)`` multiplies ``a`` (M, K) by ``b`` (K, N);
``dot`` does the same for two length-K vectors. Operands are :class:`FixedArray` or
:class:`FloatArray`, in any mix of formats. Every product ``p_k = a_k * b_k`` is exact. The policy
fixes where the sum is rounded, in which order, and what overflow does (accumulation order is part
of the numeric contract, because the RTL must produce the same bits):

==========================  ====================================================================
policy (spec string)        accumulation, for each output element
==========================  ====================================================================
``Exact()``                 S = p_0 + ... + p_{K-1} exactly (no intermediate rounding, any
``exact``                   width), then ONE rounding of S into ``out_fmt``.
``Sequential(fmt)``         acc_0 = round(p_0), acc_k = round(acc_{k-1} + p_k) for k = 1..K-1,
``sequential:fp16``         in index order; ``round`` rounds the exact value into ``fmt`` (fixed:
                            ``rounding`` then ``overflow``; float: ``rounding`` then
                            ``fmt.overflow``).
``Blocked(fmt, k)``         B_j = the exact sum of products j*k .. j*k+k-1 (the last block may be
``blocked:fp32:32``         shorter); acc_0 = round(B_0), acc_j = round(acc_{j-1} + round(B_j)):
                            a k-wide exact dot-product unit whose result is rounded into ``fmt``
                            and added into a ``fmt`` accumulator.
``FixedAccumulator(w, f,    a w-bit fixed-point register with ``f`` fractional bits (default: the
overflow)``                 products' fraction, fa + fb for fixed operands, the formats' finest
``acc:s48.24:sat``          grid for float ones, e.g. 18 for e4m3fn x e4m3fn, so products enter
``acc:s40:wrap``            exactly); each product is rounded to ``f`` bits (``rounding``) if
                            finer, then acc_k = ovf(acc_{k-1} + p_k) with ``ovf`` = wrap /
                            saturate / error applied at EVERY add, as hardware does (acc_{-1} = 0).
==========================  ====================================================================

Spec grammar (``parse_policy``; ``str(policy)`` gives the canonical form back)::

    exact
    sequential:<fmt>                  e.g. sequential:fp16, sequential:s32.16, sequential:e4m3fn:sat
    blocked:<fmt>:<k>                 e.g. blocked:fp32:32 (k >= 1 products per block)
    acc:<s|u><width>[.<frac>]:<ovf>   ovf in wrap | sat | error; e.g. acc:s48.24:sat, acc:s40:wrap
                                      (a bare width, acc:40:wrap, means signed)

After accumulation the result is converted to ``out_fmt`` with ``rounding`` / ``overflow`` (one
more rounding unless ``out_fmt`` is the accumulator format, the default). For ``Exact`` the
default ``out_fmt`` of fixed operands is the exact word-growth format
``s(wa + wb + ceil(log2 K)).(fa + fb)`` (unsigned if both operands are); float operands need an
explicit ``out_fmt``. A sum that is exactly zero is +0 (the exact sum has no signed zero).

How it is computed (all results are exact or rounded exactly once where the contract says so):

* Exact sums run on float64 BLAS when they provably cannot round: every operand is an integer
  multiple of ``2**q`` (fixed: the code; float: the format's smallest quantum ``2**(emin - man)``,
  or the data's lowest set bit), so every partial sum, in whatever order BLAS adds, is a multiple of
  ``2**(qa + qb)`` bounded by ``sum_k |a_k| |b_k|``; if that bound is below ``2**53 * 2**(qa+qb)``
  every intermediate is a float64 and the result is exact. The bound is tried from the formats
  (e4m3fn x e4m3fn: ``K * 448**2 < 2**53 * 2**-18``, i.e. K < 2**17.4), then from the data's
  max |value|, then from row/column sums of |a| and |b|. When it fails, operands are turned into
  int64 integers and split into hi/lo limbs (``a = a_hi * 2**s + a_lo``) so that every limb
  product matmul is exact, and the limb products are combined in int64 (exact when the result is
  below 2**62, or modulo 2**64 for a wrapping accumulator) or, beyond that, in Python ints (an
  object-array path: correct and vectorised, but clearly slower). Float operands whose dynamic
  range exceeds 62 bits are first split into exponent bands. (This assumes the BLAS dgemm adds
  products with IEEE float64 operations, FMA included, as OpenBLAS does: no Strassen-type
  algorithm.)
* An exact sum is rounded into a float format from float64 when it is one; otherwise it is first
  rounded to odd at 53 bits (sticky bit), which preserves the final rounding of every mode for
  formats with at most 50 mantissa bits (Boldo & Melquiond), then :func:`minifloat.encode` rounds
  once. Sequential/blocked float accumulators add with TwoSum and round the exact sum to odd the
  same way, so each step is one correct rounding into ``fmt``.
* A wrapping accumulator whose products enter exactly (frac >= the products' fraction) equals the
  exact sum modulo 2**width (modular arithmetic), so it uses the exact path (in int64 modulo
  2**64). Saturating / erroring accumulators loop over K, vectorised over all M*N outputs, unless
  a bound shows that no partial sum can leave the range (then they equal the exact sum).
  Sequential policies loop over K, blocked policies over the blocks.
* Sequential float accumulators run on compiled kernels (:mod:`._seqkernels`, numba) when the
  accumulator rounds to nearest even and every operand and product is a member of float32 (or
  float64): an fp32 accumulator with fp32-representable operands is a chain of fused multiply-adds
  (one rounding each, by IEEE definition); other formats add with TwoSum, round to odd and round
  once to the format's grid (proofs in that module). The numpy loop of :func:`_seq_float_loop`
  states the contract plainly and is what the kernels are tested against; it runs when no kernel
  applies, or when an overflow made a NaN.
* Blocked float accumulators (round to nearest even, products exact in float64) run on a compiled
  kernel too (:func:`._seqkernels.blocked`): each block sum is exact -- a plain float64 sum where
  a per-segment bound proves every partial sum is a float64, else two TwoSum chains whose second
  one must be exact -- and is rounded once into the format, then added with one rounding. Rows
  it cannot settle (a block's dynamic range beyond the two chains, a NaN) are recomputed by
  :func:`_blocked_loop`, the plain statement of the contract the kernel is tested against.
* These loops run on int64 while the aligned accumulator plus a product provably fits; wider cases
  run the same loop on Python ints (object arrays: exact, slower).

Restrictions (each a ``ValueError`` naming the shapes / formats): operands must be finite; stochastic
rounding is not supported here; float accumulator / output formats need <= 50 mantissa bits
(round-to-odd headroom); float-accumulator products must be exact in float64 (<= 53 significant
bits, e.g. not s40 x s40).

>>> from refmodel.numerics.fixed import FixedArray, FixedFormat
>>> ones = FixedArray([1] * 10, FixedFormat.parse("s8.0"))
>>> dot(ones, ones)
FixedArray(codes=10, fmt=s20.0)
>>> dot(ones, ones, "acc:s3.0:sat")
FixedArray(codes=3, fmt=s3.0)
>>> dot(ones, ones, "acc:s3.0:wrap")
FixedArray(codes=2, fmt=s3.0)
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import fixed as _fx
from . import minifloat as _mf
from .fixed import FixedArray, FixedFormat
from .minifloat import FloatArray, FloatFormat
from .rounding import Overflow, Rounding, round_shift

__all__ = [
    "Exact",
    "Sequential",
    "Blocked",
    "FixedAccumulator",
    "Policy",
    "parse_policy",
    "parse_format",
    "dot",
    "matmul",
]

Format = FixedFormat | FloatFormat
Operand = FixedArray | FloatArray

#: bounds computed with float64 sums are compared against 2^53 with this safety margin (the
#: relative error of a float64 sum of K <= 2^30 non-negative terms is far below 2^-20)
_LIM53 = 2.0**53 * (1.0 - 2.0**-20)
_MAX_FLOAT_MAN = 50  # round-to-odd at 53 bits needs 2 guard bits below the target's last bit

_FIXED_SPEC = re.compile(r"^\s*[su]-?\d+(\.-?\d+)?\s*$", re.IGNORECASE)


# Reused per-thread float64 scratch buffers for the BLAS operands and product of fixed-point
# matmuls: converting int64 codes into fresh arrays costs more in page faults than the 256^3 BLAS
# call itself. Buffers never escape this module (results are always fresh arrays); arrays above
# _SCRATCH_MAX elements are allocated normally, so at most 3 * 16 MiB per thread stay cached.
_SCRATCH_MAX = 1 << 21
_tls = threading.local()


def _scratch(role: str, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    if n > _SCRATCH_MAX:
        return np.empty(shape)
    bufs = _tls.__dict__.setdefault("bufs", {})
    buf = bufs.get(role)
    if buf is None or buf.size < n:
        buf = bufs[role] = np.empty(n)
    return buf[:n].reshape(shape)


def _f64(codes: np.ndarray, role: str) -> np.ndarray:
    """int64 codes as float64 (exact for |code| < 2^53) in a scratch buffer."""
    out = _scratch(role, codes.shape)
    np.copyto(out, codes, casting="unsafe")
    return out


def _blas(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """xa @ xb into the scratch product buffer (valid until the next call in this thread)."""
    return np.matmul(xa, xb, out=_scratch("r", (xa.shape[0], xb.shape[1])))


# ==== formats and policies ====================================================================
def parse_format(spec: Format | str) -> Format:
    """A :class:`FixedFormat` (``s16.12``, ``u8.8``) or :class:`FloatFormat` (``fp16``,
    ``e4m3fn:sat``, ``e5m2``...) from its spec string; format objects pass through."""
    if isinstance(spec, (FixedFormat, FloatFormat)):
        return spec
    text = str(spec)
    if _FIXED_SPEC.match(text):
        return FixedFormat.parse(text)
    return FloatFormat.parse(text)


def _check_float_acc(fmt: Format, what: str) -> None:
    if isinstance(fmt, FloatFormat) and fmt.man > _MAX_FLOAT_MAN:
        raise ValueError(
            f"{what} {fmt} has {fmt.man} mantissa bits; at most {_MAX_FLOAT_MAN} are supported "
            f"(correct rounding of a sum goes through float64 round-to-odd)"
        )


@dataclass(frozen=True)
class Exact:
    """Exact sum of the exact products, then one rounding into ``out_fmt``."""

    def __str__(self) -> str:
        return "exact"


@dataclass(frozen=True)
class Sequential:
    """acc_0 = round(p_0), acc_k = round(acc_{k-1} + p_k), k = 1..K-1, each rounding into ``fmt``."""

    fmt: Format

    def __post_init__(self) -> None:
        object.__setattr__(self, "fmt", parse_format(self.fmt))
        _check_float_acc(self.fmt, "Sequential accumulator")

    def __str__(self) -> str:
        return f"sequential:{self.fmt}"


@dataclass(frozen=True)
class Blocked:
    """Exact sums of ``k`` consecutive products, each rounded into ``fmt`` and added into a
    ``fmt`` accumulator with one rounding: acc_0 = round(B_0), acc_j = round(acc_{j-1} + round(B_j))."""

    fmt: Format
    k: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "fmt", parse_format(self.fmt))
        _check_float_acc(self.fmt, "Blocked accumulator")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"Blocked: block size k must be an int >= 1, got {self.k!r}")
        object.__setattr__(self, "k", int(self.k))

    def __str__(self) -> str:
        return f"blocked:{self.fmt}:{self.k}"


_OVF_SUFFIX = {Overflow.WRAP: "wrap", Overflow.SATURATE: "sat", Overflow.ERROR: "error"}


@dataclass(frozen=True)
class FixedAccumulator:
    """A ``width``-bit fixed-point accumulator register with ``frac`` fractional bits (None: the
    products' fraction) and ``overflow`` (wrap / saturate / error) applied at every add."""

    width: int
    frac: int | None = None
    overflow: Overflow = Overflow.WRAP  # a name ("sat") is parsed in __post_init__
    signed: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, (int, np.integer)):
            raise ValueError(f"FixedAccumulator width must be an int, got {self.width!r}")
        if not 1 <= self.width <= _fx.MAX_WIDTH:
            raise ValueError(f"FixedAccumulator width must be in 1..{_fx.MAX_WIDTH} (int64 codes), got {self.width}")
        if self.frac is not None:
            FixedFormat(int(self.width), int(self.frac), bool(self.signed))  # validates frac
            object.__setattr__(self, "frac", int(self.frac))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "overflow", Overflow.parse(self.overflow))

    def format_for(self, product_frac: int | None) -> FixedFormat:
        """The accumulator's :class:`FixedFormat`: ``frac`` if set, else ``product_frac`` (the
        products' fractional bits)."""
        frac = self.frac if self.frac is not None else product_frac
        if frac is None:
            raise ValueError(f"FixedAccumulator {self}: no frac given and no product fraction to default to")
        return FixedFormat(self.width, frac, self.signed)

    def __str__(self) -> str:
        body = f"{'s' if self.signed else 'u'}{self.width}" + ("" if self.frac is None else f".{self.frac}")
        return f"acc:{body}:{_OVF_SUFFIX[self.overflow]}"


Policy = Exact | Sequential | Blocked | FixedAccumulator

_POLICY_HELP = "exact | sequential:<fmt> | blocked:<fmt>:<k> | acc:<s|u><width>[.<frac>]:<wrap|sat|error>"


def parse_policy(spec: Policy | str) -> Policy:
    """Policy from its spec string (grammar in the module docstring); policy objects pass through."""
    if isinstance(spec, (Exact, Sequential, Blocked, FixedAccumulator)):
        return spec
    text = str(spec).strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    try:
        if kind == "exact" and not rest:
            return Exact()
        if kind == "sequential" and rest:
            return Sequential(parse_format(rest))
        if kind == "blocked" and rest:
            fmt_s, _, k_s = rest.rpartition(":")
            if fmt_s and re.fullmatch(r"\s*\d+\s*", k_s):
                return Blocked(parse_format(fmt_s), int(k_s))
            raise ValueError("expected blocked:<fmt>:<k> with an integer k")
        if kind == "acc" and rest:
            body, _, ov = rest.rpartition(":")
            m = re.fullmatch(r"\s*([su]?)(\d+)(?:\.(-?\d+))?\s*", body, re.IGNORECASE)
            ovs = {"wrap": Overflow.WRAP, "sat": Overflow.SATURATE, "saturate": Overflow.SATURATE,
                   "error": Overflow.ERROR}
            if m is None or ov.strip().lower() not in ovs:
                raise ValueError("expected acc:<s|u><width>[.<frac>]:<wrap|sat|error>")
            return FixedAccumulator(
                int(m.group(2)),
                None if m.group(3) is None else int(m.group(3)),
                ovs[ov.strip().lower()],
                m.group(1).lower() != "u",
            )
    except ValueError as e:
        raise ValueError(f"bad accumulation policy {spec!r}: {e}") from None
    raise ValueError(f"unknown accumulation policy {spec!r}; expected {_POLICY_HELP}")


# ==== operands =================================================================================
def _float_bits(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For float64 ``v``: (H, L) per element with |v| < 2^H and v an integer multiple of 2^L
    (L is the exponent of the lowest set bit). Meaningless for zeros (callers mask them)."""
    u = np.ascontiguousarray(v, dtype=np.float64).view(np.uint64)
    ef = ((u >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    sig = (u & np.uint64((1 << 52) - 1)).astype(np.int64) | np.where(ef > 0, np.int64(1 << 52), np.int64(0))
    low = sig & -sig  # lowest set bit (a power of two < 2^53: exact as float64)
    tz = np.frexp(low.astype(np.float64))[1] - 1
    L = np.maximum(ef, 1) - 1075 + tz
    H = np.frexp(v)[1]
    return H, L


class _Op:
    """One matmul operand, normalised: X (float64 or int64 matrix) with value = X * 2^scale."""

    def __init__(self, arr: Operand, name: str) -> None:
        self.name = name
        self.arr: Operand | None = arr
        self.fmt: Format = arr.fmt
        if isinstance(arr, FixedArray):
            self.is_fixed = True
            self.codes = arr.codes
            self.scale = -arr.fmt.frac
            self.mat = self.codes
        else:
            self.is_fixed = False
            v = arr.to_float()
            with np.errstate(over="ignore", invalid="ignore"):
                total = np.add.reduce(v.ravel()) if v.size else 0.0
            if not np.isfinite(total):  # one pass; the element check runs only on failure
                bad = ~np.isfinite(v)
                if bad.any():
                    i = tuple(int(t) for t in np.unravel_index(int(np.argmax(bad)), bad.shape))
                    raise ValueError(
                        f"matmul: operand {name} ({arr.fmt}) has the non-finite value {float(v[i])} at index {i}; "
                        f"accumulation needs finite operands"
                    )
            self.vals = v
            self.mat = v
            self.scale = 0
        self._parts: list[tuple[np.ndarray, int]] | None = None
        self._span: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mat.shape

    def slice(self, rows: slice | np.ndarray = slice(None), cols: slice | np.ndarray = slice(None)) -> _Op:
        new = object.__new__(_Op)
        new.name, new.fmt, new.is_fixed, new.scale = self.name, self.fmt, self.is_fixed, self.scale
        if self.is_fixed:
            new.codes = self.codes[rows, cols]
            new.mat = new.codes
        else:
            new.vals = self.vals[rows, cols]
            new.mat = new.vals
        new.arr = None
        new._parts = None
        new._span = None
        return new

    # -- bounds in units of X (the float64 matrix BLAS sees) ----------------------------------
    def fmt_bound(self) -> tuple[float, int]:
        """(max |X|, q): every X is an integer multiple of 2^q with |X| <= max, from the format."""
        f = self.fmt
        if isinstance(f, FixedFormat):  # is_fixed
            return float(max(-f.min_code, f.max_code)), 0
        return f.max, f.emin - f.man

    def fmt_scale(self) -> int | None:
        """Scale 2^e of the format's integer grid (fixed: -frac; float: the smallest quantum
        emin - man), or None when a float format's grid needs more than 62 bits."""
        f = self.fmt
        if isinstance(f, FixedFormat):  # is_fixed
            return self.scale
        q = f.emin - f.man
        return q if math.log2(f.max) - q < 62 else None

    def data_bound(self) -> tuple[float, int]:
        """(max |X|, q) from the data (tighter than the format's)."""
        if self.is_fixed:
            c = self.codes
            if c.size == 0:
                return 0.0, 0
            return float(max(-int(c.min()), int(c.max()), 0)), 0
        v = self.vals
        nz = v[v != 0]
        if nz.size == 0:
            return 0.0, 0
        _, L = _float_bits(nz)
        return float(np.max(np.abs(nz))), int(L.min())

    def x(self) -> np.ndarray:
        """float64 matrix X (exact: fixed codes need |code| < 2^53, checked by the callers' bounds)."""
        return _f64(self.codes, self.name) if self.is_fixed else self.vals

    def exact_values(self) -> np.ndarray | None:
        """Exact float64 values, or None when some fixed code does not fit 53 bits."""
        if not isinstance(self.fmt, FixedFormat):  # not is_fixed
            return self.vals
        if self.fmt.width > 53 and self.codes.size and max(-int(self.codes.min()), int(self.codes.max())) >= (1 << 53):
            return None
        return np.ldexp(self.codes.astype(np.float64), self.scale)

    def fmt_span(self) -> int:
        """An upper bound on :meth:`span` from the format alone (fixed: the code width; float: the
        significand bits, man + 1), free of any pass over the data."""
        return self.fmt.width if isinstance(self.fmt, FixedFormat) else self.fmt.man + 1

    def bits_desc(self) -> tuple[int, int, int]:
        """(S, L, H): every value has at most S significant bits, is an integer multiple of 2^L and
        below 2^H in magnitude. From the format when it is at most 24 bits wide (a minifloat's
        significand, smallest quantum and 2^(emax + 1)), else from the data."""
        f = self.fmt
        if isinstance(f, FloatFormat) and f.man <= 23:  # not is_fixed
            return f.man + 1, f.emin - f.man, f.emax + 1
        if self.is_fixed:
            c = self.codes
            m = max(-int(c.min()), int(c.max()), 0) if c.size else 0
            return m.bit_length(), self.scale, m.bit_length() + self.scale
        mx, lo = self.data_bound()
        return self.span(), lo, (math.frexp(mx)[1] if mx > 0 else lo)

    def span(self) -> int:
        """Significant bits of the widest element (values exact in float64 need <= 53)."""
        if self._span is None:
            if self.is_fixed:
                m = max(-int(self.codes.min()), int(self.codes.max()), 0) if self.codes.size else 0
                self._span = m.bit_length()
            else:
                nz = self.vals[self.vals != 0]
                if nz.size == 0:
                    self._span = 0
                else:
                    H, L = _float_bits(nz)
                    self._span = int((H - L).max())
        return self._span

    def int_parts(self) -> list[tuple[np.ndarray, int]]:
        """[(N, e)]: int64 matrices with |N| < 2^62 and values = sum of N * 2^e (one part unless a
        float operand's dynamic range exceeds 62 bits: then exponent bands)."""
        if self._parts is not None:
            return self._parts
        if self.is_fixed:
            self._parts = [(self.codes, self.scale)]
            return self._parts
        v = self.vals
        nzm = v != 0
        if not nzm.any():
            self._parts = [(np.zeros(v.shape, np.int64), 0)]
            return self._parts
        H, L = _float_bits(np.where(nzm, v, 1.0))
        Lmin, Hmax = int(L[nzm].min()), int(H[nzm].max())
        if Hmax - Lmin <= 62:
            self._parts = [(np.ldexp(v, -Lmin).astype(np.int64), Lmin)]
            return self._parts
        # bands of top exponents [h, h + W): inside a band max H - min L <= W + span <= 62
        span = int((H - L)[nzm].max())
        W = 62 - span
        parts = []
        h = int(H[nzm].min())
        while h <= Hmax:
            band = nzm & (H >= h) & (H < h + W)
            if band.any():
                Lb = int(L[band].min())
                parts.append((np.where(band, np.ldexp(v, -Lb), 0.0).astype(np.int64), Lb))
            h += W
        self._parts = parts
        return parts

    def single_int(self, why: str) -> tuple[np.ndarray, int]:
        parts = self.int_parts()
        if len(parts) != 1:
            raise ValueError(
                f"{why}: operand {self.name} ({self.fmt}) spans more than 62 bits of dynamic range; "
                f"it cannot be held as int64 codes with one scale"
            )
        return parts[0]


def _as_op(x: object, name: str) -> _Op:
    if not isinstance(x, (FixedArray, FloatArray)):
        raise TypeError(f"matmul: operand {name} must be a FixedArray or FloatArray, got {type(x).__name__}")
    return _Op(x, name)


# ==== exact sums ===============================================================================
@dataclass
class _Sum:
    """An exact sum: either ``f64`` (the exact values, as float64; possibly the thread's scratch
    product buffer, so it must be consumed before the next BLAS call) or ``ints`` (int64 with
    |ints| <= bound < 2^62, or an object array of Python ints), value = ints * 2^exp."""

    f64: np.ndarray | None = None
    ints: np.ndarray | None = None
    exp: int = 0
    bound: int | None = None  # upper bound on |ints| (None: unknown)


def _blas_ok(K: int, ma: float, qa: int, mb: float, qb: int) -> bool:
    return K * ma * mb < math.ldexp(_LIM53, qa + qb)


def _rowsum_bound(xa: np.ndarray, xb: np.ndarray, ma: float, mb: float) -> float:
    rs = float(np.abs(xa).sum(axis=1).max()) if xa.size else 0.0
    cs = float(np.abs(xb).sum(axis=0).max()) if xb.size else 0.0
    return min(rs * mb, ma * cs)


def _limb_plan(ba: int, bb: int, K: int) -> tuple[int, int, int, int]:
    """Limb counts and sizes (na, la, nb, lb) with la + lb + bitlen(K) <= 53, fewest matmuls."""
    kbits = K.bit_length()
    if kbits + 2 > 53:
        raise ValueError(f"matmul: K = {K} is too long for exact float64 limb products")
    best = None
    for na in range(1, max(ba, 1) + 1):
        la = -(-ba // na) if ba else 1
        for nb in range(1, max(bb, 1) + 1):
            lb = -(-bb // nb) if bb else 1
            if la + lb + kbits <= 53:
                if best is None or na * nb < best[0] * best[2]:
                    best = (na, la, nb, lb)
                break
    assert best is not None
    return best


def _limbs(N: np.ndarray, n: int, width: int) -> list[tuple[np.ndarray, int]]:
    """N = sum of limb * 2^shift: low limbs in [0, 2^width), the top limb carries the sign."""
    out = []
    for i in range(n):
        s = i * width
        if i == n - 1:
            limb = N >> np.int64(s)
        else:
            limb = (N >> np.int64(s)) & np.int64((1 << width) - 1)
        out.append((limb.astype(np.float64), s))
    return out


def _int_matmul(Na: np.ndarray, Nb: np.ndarray, *, modular: bool = False) -> tuple[np.ndarray, int]:
    """Exact Na @ Nb for int64 matrices with |entries| < 2^62. Returns (S, bound): S is int64
    when the result is provably below 2^62 in magnitude (or, with ``modular``, the exact result
    modulo 2^64 as int64), else an object array of Python ints; bound >= max |S|."""
    M, K = Na.shape
    N = Nb.shape[1]
    if K == 0 or M == 0 or N == 0:
        return np.zeros((M, N), np.int64), 0
    ma = max(-int(Na.min()), int(Na.max()), 0)
    mb = max(-int(Nb.min()), int(Nb.max()), 0)
    bound = K * ma * mb
    if bound == 0:
        return np.zeros((M, N), np.int64), 0
    fa, fb = _f64(Na, "a"), _f64(Nb, "b")
    if bound < (1 << 53) or _rowsum_bound(fa, fb, ma, mb) < _LIM53:
        return _blas(fa, fb).astype(np.int64), min(bound, 1 << 53)
    na, la, nb, lb = _limb_plan(ma.bit_length(), mb.bit_length(), K)
    la_parts, lb_parts = _limbs(Na, na, la), _limbs(Nb, nb, lb)
    if modular or bound < (1 << 62):
        total = np.zeros((M, N), np.int64)
        for A, sa in la_parts:
            for B, sb in lb_parts:
                if sa + sb < 64:
                    total += (A @ B).astype(np.int64) << np.int64(sa + sb)  # wraps mod 2^64: exact mod 2^64
        return total, bound
    total = np.zeros((M, N), dtype=object)
    for A, sb_a in la_parts:
        for B, sb_b in lb_parts:
            total = total + (A @ B).astype(np.int64).astype(object) * (1 << (sb_a + sb_b))
    return total, bound


def _exact_sum(a: _Op, b: _Op) -> _Sum:
    """The exact value of a @ b (2-D operands)."""
    M, K = a.shape
    N = b.shape[1]
    if K == 0 or M == 0 or N == 0:
        return _Sum(ints=np.zeros((M, N), np.int64), exp=a.scale + b.scale, bound=0)
    both_fixed = a.is_fixed and b.is_fixed
    ma, qa = a.fmt_bound()
    mb, qb = b.fmt_bound()
    ok = _blas_ok(K, ma, qa, mb, qb)
    if not ok:
        ma, qa = a.data_bound()
        mb, qb = b.data_bound()
        ok = ma == 0 or mb == 0 or _blas_ok(K, ma, qa, mb, qb)
        if not ok and ma < 2.0**53 and mb < 2.0**53:
            xa, xb = a.x(), b.x()
            ok = _rowsum_bound(xa, xb, ma, mb) < math.ldexp(_LIM53, qa + qb)
    if ok:
        e = a.scale + b.scale
        if both_fixed:
            R = _blas(a.x(), b.x())  # exact: see the module docstring
            return _Sum(ints=R.astype(np.int64), exp=e, bound=min(K * int(ma) * int(mb), 1 << 53))
        R = _blas(a.x(), b.x())  # exact; a scratch buffer: every caller rounds it at once (_sum_to)
        return _Sum(f64=np.ldexp(R, e) if e else R)
    # integer path: limbs (and exponent bands for very wide float operands)
    results = []
    for Na, ea in a.int_parts():
        for Nb, eb in b.int_parts():
            S, bnd = _int_matmul(Na, Nb)
            results.append((S, ea + eb, bnd))
    if len(results) == 1:
        S, e, bnd = results[0]
        return _Sum(ints=S, exp=e, bound=bnd)
    e0 = min(e for _, e, _ in results)
    total = np.zeros((M, N), dtype=object)
    bound = 0
    for S, e, bnd in results:
        total = total + S.astype(object) * (1 << (e - e0))
        bound += bnd << (e - e0)
    if bound < (1 << 62):
        return _Sum(ints=total.astype(np.int64), exp=e0, bound=bound)
    return _Sum(ints=total, exp=e0, bound=bound)


# ==== rounding an exact sum into a format ======================================================
def _round_shift_obj(S: np.ndarray, sh: int, mode: Rounding) -> np.ndarray:
    """round(S / 2^sh) on an object array of Python ints (sh >= 1); same definitions as round_shift."""
    fl = S >> sh
    rem = S - (fl << sh)
    half = 1 << (sh - 1)
    if mode is Rounding.FLOOR:
        up = np.zeros(S.shape, bool)
    elif mode is Rounding.CEIL:
        up = (rem != 0).astype(bool)
    elif mode is Rounding.RTZ:
        up = (rem != 0).astype(bool) & (S < 0).astype(bool)
    elif mode is Rounding.HALF_UP:
        up = (rem >= half).astype(bool)
    elif mode is Rounding.HALF_AWAY:
        up = (rem > half).astype(bool) | ((rem == half).astype(bool) & (S >= 0).astype(bool))
    else:  # rne
        up = (rem > half).astype(bool) | ((rem == half).astype(bool) & ((fl & 1) == 1).astype(bool))
    return fl + up.astype(np.int64).astype(object)


def _ints_to_fixed(S: np.ndarray, exp: int, bound: int | None, fmt: FixedFormat, rounding: Rounding,
                   overflow: Overflow, what: str) -> FixedArray:
    """One rounding of S * 2^exp into ``fmt``, then ``overflow``."""
    if S.dtype != object and -1000 <= -exp <= 1000:
        if -exp == fmt.frac and bound is not None and bound <= min(-fmt.min_code, fmt.max_code):
            return FixedArray(S, fmt)  # provably in range, nothing to round
        sh = -exp - fmt.frac
        if sh >= 0:
            c = round_shift(S, sh, rounding) if sh else S
            return FixedArray(_fx.apply_overflow(c, fmt, overflow, what=what), fmt)
        return _fx.cast(FixedArray(S, FixedFormat(63, -exp, True)), fmt, rounding, overflow)
    S = S.astype(object)
    sh = -(exp + fmt.frac)
    c = S * (1 << -sh) if sh <= 0 else _round_shift_obj(S, sh, rounding)
    return FixedArray(_overflow_obj(c, fmt, overflow, what).astype(np.int64), fmt)


def _overflow_obj(c: np.ndarray, fmt: FixedFormat, overflow: Overflow, what: str) -> np.ndarray:
    """apply_overflow on an object array of Python ints (any magnitude); returns Python ints."""
    lo, hi = fmt.min_code, fmt.max_code
    bad = (c < lo).astype(bool) | (c > hi).astype(bool)
    if bad.any():
        if overflow is Overflow.ERROR:
            i = tuple(int(t) for t in np.unravel_index(int(np.argmax(bad)), bad.shape))
            raise OverflowError(f"{what} overflows {fmt} (codes {lo}..{hi}): code {c[i]} at index {i}")
        if overflow is Overflow.SATURATE:
            c = np.where((c > hi).astype(bool), hi, np.where((c < lo).astype(bool), lo, c))
        else:
            c = (c - lo) % (1 << fmt.width) + lo
    return c


def _ints_to_f64_ro(S: np.ndarray, exp: int, fmt: FloatFormat) -> np.ndarray:
    """S * 2^exp as float64: exact when it fits 53 bits, else rounded to odd at 53 bits."""
    if S.size == 0:
        return np.zeros(S.shape)
    neg = (S < 0).astype(bool)
    a = np.abs(S)
    af = a.astype(np.float64)
    if S.dtype != object and float(af.max()) < 2.0**53:
        q, k = a, np.zeros(S.shape, np.int64)
        inexact = False
    else:
        k = np.maximum(np.frexp(af)[1] - 53, 0)  # |S| < 2^(53 + k): 52 or 53 bits kept
        if S.dtype == object:
            ko = k.astype(object)
            q = a >> ko
            sticky = ((a - (q << ko)) != 0).astype(bool)
            q = q.astype(np.int64)
        else:
            q = a >> k
            sticky = (a & ((np.int64(1) << k) - 1)) != 0
        inexact = bool(sticky.any())
        q = q | sticky
    if inexact and fmt.man > _MAX_FLOAT_MAN:
        raise ValueError(f"output format {fmt} has {fmt.man} mantissa bits; an inexact float64 sum supports at most {_MAX_FLOAT_MAN}")
    lo_e = exp + int(k.min()) if k.size else exp
    if lo_e < -1074 or exp + int(k.max()) + 53 > 1023:
        raise ValueError(f"exact sum with scale 2^{exp} is outside float64's exponent range")
    v = np.ldexp(q.astype(np.float64), (k + exp).astype(np.int32))
    return np.where(neg, -v, v)


def _sum_to(s: _Sum, fmt: Format, rounding: Rounding, overflow: Overflow, what: str) -> Operand:
    """Round an exact sum once into ``fmt``."""
    if isinstance(fmt, FixedFormat):
        if s.ints is None:  # exact float64 values: quantize rounds them once
            assert s.f64 is not None  # a _Sum holds f64 or ints
            return _fx.quantize(s.f64, fmt, rounding, overflow)
        return _ints_to_fixed(s.ints, s.exp, s.bound, fmt, rounding, overflow, what)
    v = s.f64 if s.ints is None else _ints_to_f64_ro(s.ints, s.exp, fmt)
    assert v is not None  # a _Sum holds f64 or ints
    return _encode(v, fmt, rounding)


def _encode(v: np.ndarray, fmt: FloatFormat, rounding: Rounding) -> FloatArray:
    """minifloat.encode of exact float64 values (fp32 / fp16 rne take numpy's correctly rounded
    casts inside encode)."""
    return _mf.encode(np.asarray(v, dtype=np.float64), fmt, rounding)


def _add_ro(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x + y in float64 rounded to odd (exact when representable): TwoSum gives the exact error;
    an inexact sum whose last bit is even moves one ulp toward the exact value."""
    with np.errstate(invalid="ignore", over="ignore"):
        s = x + y
        bb = s - x
        err = (x - (s - bb)) + (y - bb)
    s = np.ascontiguousarray(s)
    fix = np.isfinite(s) & (err != 0) & ((s.view(np.int64) & 1) == 0)
    if fix.any():
        s[fix] = np.nextafter(s[fix], np.where(err[fix] > 0, np.inf, -np.inf))
    return s


# ==== conversions between accumulator and output formats =====================================
def _convert(acc: Operand, out: Format, rounding: Rounding, overflow: Overflow) -> Operand:
    if acc.fmt == out:
        return acc
    if isinstance(acc, FixedArray):
        if isinstance(out, FixedFormat):
            return _fx.cast(acc, out, rounding, overflow)
        return _encode(_ints_to_f64_ro(acc.codes, -acc.fmt.frac, out), out, rounding)
    v = acc.to_float()
    if isinstance(out, FixedFormat):
        return _fx.quantize(v, out, rounding, overflow)
    return _encode(v, out, rounding)


# ==== policies ===================================================================================
def _products_f64(a: _Op, b: _Op, why: str) -> tuple[np.ndarray, np.ndarray]:
    va, vb = a.exact_values(), b.exact_values()
    if va is None or vb is None or (a.fmt_span() + b.fmt_span() > 53 and a.span() + b.span() > 53):
        raise ValueError(
            f"{why}: products of {a.fmt} x {b.fmt} need {a.span() + b.span()} significant bits, "
            f"not exact in float64 (at most 53); use a fixed-point accumulator or narrower operands"
        )
    return va, vb


def _seq_fixed(a: _Op, b: _Op, fmt: FixedFormat, rounding: Rounding, overflow: Overflow,
               what: str) -> FixedArray:
    """acc_k = ovf(round(acc_{k-1} + p_k)) in ``fmt``; int64 products at the products' fraction."""
    Na, ea = a.single_int(what)
    Nb, eb = b.single_int(what)
    M, K = Na.shape
    N = Nb.shape[1]
    Fp = -(ea + eb)
    ma = max(-int(Na.min()), int(Na.max()), 0) if Na.size else 0
    mb = max(-int(Nb.min()), int(Nb.max()), 0) if Nb.size else 0
    pbits = (ma * mb).bit_length()
    d = Fp - fmt.frac  # > 0: the sum has d bits below the accumulator's LSB
    need = max(fmt.width - 1 + max(d, 0), pbits + max(-d, 0)) + 1  # magnitude bits of acc + p
    if need > 62:  # beyond int64: the same loop on Python ints (exact, slower)
        return _loop_obj(Na, Nb, d, fmt, rounding, overflow, what, sequential=True)
    acc = np.zeros((M, N), np.int64)
    for k in range(K):
        p = Na[:, k, None] * Nb[None, k, :]
        if d > 0:
            acc = round_shift((acc << np.int64(d)) + p, d, rounding)
        else:
            acc = acc + (p << np.int64(-d))
        acc = _fx.apply_overflow(acc, fmt, overflow, what=f"{what} at k={k}")
    return FixedArray(acc, fmt)


def _seq_float_loop(va: np.ndarray, vb: np.ndarray, fmt: FloatFormat, rounding: Rounding) -> FloatArray:
    """Sequential(fmt) on float64 values whose products are exact: acc_0 = round(p_0),
    acc_k = round(acc_{k-1} + p_k). Each step adds in float64 with TwoSum, rounds the exact sum to
    odd at 53 bits (:func:`_add_ro`) and encodes once, which is one correct rounding into ``fmt``
    (<= 50 mantissa bits). The plain statement of the contract, vectorised over the M*N outputs
    only: the compiled kernels of :mod:`._seqkernels` must match it bit for bit."""
    M, K = va.shape
    vals = np.zeros((M, vb.shape[1]))
    codes = _encode(vals, fmt, rounding)
    for k in range(K):
        p = va[:, k, None] * vb[None, k, :]
        s = p if k == 0 else _add_ro(vals, p)
        codes = _encode(s, fmt, rounding)
        vals = codes.to_float()
    return codes


def _seq_float(va: np.ndarray, vb: np.ndarray, fmt: FloatFormat, rounding: Rounding,
               desc: tuple[tuple[int, int, int], tuple[int, int, int]], b_cache: dict | None = None) -> FloatArray:
    """Sequential(fmt) on float64 values whose products are exact (``desc``: the operands'
    :meth:`_Op.bits_desc`): a compiled kernel when one applies (:mod:`._seqkernels`, same bits),
    else :func:`_seq_float_loop`. ``b_cache``: a dict kept with a constant ``vb`` (a weight) where
    the kernel keeps its converted copy of it."""
    if va.size and vb.size:
        try:
            from . import _seqkernels
        except ImportError:  # numba missing: the numpy loop is exact, only slower
            _seqkernels = None  # type: ignore[assignment]
        how = None if _seqkernels is None else _seqkernels.plan(fmt, rounding.value, desc)
        if how is not None:
            vals = _seqkernels.sequential(va, vb, fmt, how, b_cache)
            if vals is not None:
                return _encode(vals, fmt, Rounding.RNE)  # members of fmt: exact
    return _seq_float_loop(va, vb, fmt, rounding)


def _check_rounding(rounding: Rounding) -> None:
    if rounding is Rounding.STOCHASTIC:
        raise ValueError("matmul: stochastic rounding is not supported by accumulation policies; use a deterministic mode")


def _exact_fixed_fmt(a: _Op, b: _Op, K: int) -> FixedFormat:
    fa, fb = a.fmt, b.fmt
    assert isinstance(fa, FixedFormat) and isinstance(fb, FixedFormat)  # callers: a.is_fixed and b.is_fixed
    grow = max(K - 1, 0).bit_length()  # ceil(log2 K)
    width = fa.width + fb.width + grow
    if width > _fx.MAX_WIDTH:
        raise ValueError(
            f"matmul: the exact sum of {fa} x {fb} over K={K} needs {width} bits (wa + wb + ceil(log2 K)), "
            f"above {_fx.MAX_WIDTH}; pass out_fmt"
        )
    return FixedFormat(width, fa.frac + fb.frac, fa.signed or fb.signed)


def _run(a: _Op, b: _Op, policy: Policy, out_fmt: Format | None, rounding: Rounding, overflow: Overflow) -> Operand:
    K = a.shape[1]
    fmt: Format
    acc: Operand | None
    if isinstance(policy, Exact):
        if out_fmt is None:
            if not (a.is_fixed and b.is_fixed):
                raise ValueError(f"matmul: policy exact with float operands ({a.fmt} x {b.fmt}) needs an out_fmt")
            out_fmt = _exact_fixed_fmt(a, b, K)
        return _sum_to(_exact_sum(a, b), out_fmt, rounding, overflow, "exact matmul")

    if isinstance(policy, FixedAccumulator):
        what = f"accumulator {policy}"
        sa, sb = a.fmt_scale(), b.fmt_scale()
        if policy.frac is None and (sa is None or sb is None):
            raise ValueError(
                f"{what}: the products of {a.fmt} x {b.fmt} have no fixed fraction that fits 62 bits; "
                f"give the accumulator an explicit frac (acc:s<width>.<frac>:...)"
            )
        fmt = policy.format_for(None if policy.frac is not None or sa is None or sb is None else -(sa + sb))
        Na, ea = a.single_int(what)
        Nb, eb = b.single_int(what)
        d = -(ea + eb) - fmt.frac  # > 0: products have d bits below the accumulator's LSB
        acc = None
        if d <= 0 and (policy.overflow is Overflow.WRAP or K == 0):
            S, _ = _int_matmul(Na, Nb, modular=True)  # exact sum mod 2^64 == wrapping at every add
            acc = FixedArray(_fx.apply_overflow(S << np.int64(-d) if -d < 64 else np.zeros_like(S), fmt, "wrap"), fmt)
        elif d <= 0 and fmt.signed:
            ma = max(-int(Na.min()), int(Na.max()), 0) if Na.size else 0
            mb = max(-int(Nb.min()), int(Nb.max()), 0) if Nb.size else 0
            if (K * ma * mb) << -d <= min(-fmt.min_code, fmt.max_code):
                # no partial sum can leave the range: saturation never acts, the result is exact
                S, _ = _int_matmul(Na, Nb)
                acc = FixedArray(S << np.int64(-d), fmt)
        if acc is None:
            acc = _acc_loop(Na, Nb, d, fmt, policy.overflow, rounding, what, a, b)
        return _convert(acc, out_fmt or fmt, rounding, overflow)

    fmt = policy.fmt
    what = f"{policy} accumulator"
    if isinstance(policy, Sequential):
        if isinstance(fmt, FixedFormat):
            acc = _seq_fixed(a, b, fmt, rounding, overflow, what)
        else:
            va, vb = _products_f64(a, b, what)
            acc = _seq_float(va, vb, fmt, rounding, (a.bits_desc(), b.bits_desc()))
        return _convert(acc, out_fmt or fmt, rounding, overflow)

    blk: Operand
    if isinstance(fmt, FloatFormat):
        blk = _blocked_float(a, b, fmt, policy.k, rounding, overflow, what)
    else:
        blk = _blocked_loop(a, b, fmt, policy.k, rounding, overflow, what)
    return _convert(blk, out_fmt or fmt, rounding, overflow)


def _blocked_float(a: _Op, b: _Op, fmt: FloatFormat, kb: int, rounding: Rounding, overflow: Overflow,
                   what: str) -> FloatArray:
    """Blocked(fmt, kb) into a float accumulator: the compiled kernel when one applies
    (:func:`_blocked_kernel`, same bits), else :func:`_blocked_loop`."""
    res: Operand | None = None
    if a.shape[0] and a.shape[1] and b.shape[1] and rounding is Rounding.RNE:
        va, vb = a.exact_values(), b.exact_values()
        if va is not None and vb is not None:
            res = _blocked_kernel(va, vb, fmt, kb, (a.bits_desc(), b.bits_desc()),
                                  lambda rows: _blocked_loop(a.slice(rows=rows), b, fmt, kb, rounding, overflow, what))
    if res is None:
        res = _blocked_loop(a, b, fmt, kb, rounding, overflow, what)
    return res  # type: ignore[return-value]


def _blocked_kernel(va: np.ndarray, vb: np.ndarray, fmt: FloatFormat, kb: int,
                    desc: tuple[tuple[int, int, int], tuple[int, int, int]],
                    rows_loop: Callable[[np.ndarray], Operand], b_cache: dict | None = None) -> FloatArray | None:
    """Blocked(fmt, kb) with round to nearest even on float64 values ``va`` (M, K) @ ``vb``
    (K, N) whose products are exact (``desc``: the operands' :meth:`_Op.bits_desc`), by the
    compiled kernel of :func:`._seqkernels.blocked`; the rows it cannot settle (a block sum beyond
    two float64 TwoSum levels, a NaN) come from ``rows_loop(rows)``, which must run
    :func:`_blocked_loop` on those rows of ``va``. None when no kernel applies (numba missing, or
    :func:`._seqkernels.blocked_plan` declines). ``b_cache``: a dict kept with a constant ``vb``
    (a weight) where the kernel keeps its prepared copy of it."""
    try:
        from . import _seqkernels
    except ImportError:  # numba missing: the numpy loop is exact, only slower
        return None
    how = _seqkernels.blocked_plan(fmt, Rounding.RNE.value, desc, kb)
    if how is None:
        return None
    vals, bad = _seqkernels.blocked(va, vb, fmt, kb, how, b_cache)
    res = _encode(vals, fmt, Rounding.RNE)  # members of fmt: exact
    if bad.any():
        rows = np.flatnonzero(bad)
        res.codes[rows] = rows_loop(rows).codes
    return res


def _blocked_loop(a: _Op, b: _Op, fmt: Format, kb: int, rounding: Rounding, overflow: Overflow, what: str) -> Operand:
    """Blocked(fmt, kb): exact block sums (:func:`_exact_sum`), each rounded into ``fmt``, added
    into the ``fmt`` accumulator with one rounding (float: :func:`_add_ro` then encode) -- the
    plain statement of the contract, looping over the blocks."""
    M, K = a.shape
    N = b.shape[1]
    acc: Operand | None = None
    vals = np.zeros(0)
    for j0 in range(0, K, kb):
        sl = slice(j0, min(j0 + kb, K))
        r = _sum_to(_exact_sum(a.slice(cols=sl), b.slice(rows=sl)), fmt, rounding, overflow, f"{what} block at k={j0}")
        if acc is None:
            acc = r
            vals = vals if isinstance(fmt, FixedFormat) else r.to_float()
        elif isinstance(fmt, FixedFormat):
            acc = FixedArray(_fx.apply_overflow(acc.codes + r.codes, fmt, overflow, what=f"{what} at k={j0}"), fmt)
        else:
            assert vals is not None  # set with the first block of a float accumulator
            acc = _encode(_add_ro(vals, r.to_float()), fmt, rounding)
            vals = acc.to_float()
    if acc is None:  # K == 0
        acc = FixedArray(np.zeros((M, N), np.int64), fmt) if isinstance(fmt, FixedFormat) else _encode(np.zeros((M, N)), fmt, rounding)
    return acc


def _acc_loop(Na: np.ndarray, Nb: np.ndarray, d: int, fmt: FixedFormat, ovf: Overflow, rounding: Rounding, what: str,
              a: _Op, b: _Op) -> FixedArray:
    """Fixed accumulator loop over K: product (rounded to the accumulator LSB when finer), add,
    overflow policy, at every step."""
    M, K = Na.shape
    N = Nb.shape[1]
    ma = max(-int(Na.min()), int(Na.max()), 0) if Na.size else 0
    mb = max(-int(Nb.min()), int(Nb.max()), 0) if Nb.size else 0
    pbits = (ma * mb).bit_length() + max(-d, 0)  # |aligned product| < 2^pbits
    if pbits > 62:  # acc + p could leave int64: the same loop on Python ints (exact, slower)
        return _loop_obj(Na, Nb, d, fmt, rounding, ovf, what, sequential=False)
    acc = np.zeros((M, N), np.int64)
    for k in range(K):
        p = Na[:, k, None] * Nb[None, k, :]
        p = round_shift(p, d, rounding) if d > 0 else p << np.int64(-d)
        acc = acc + p  # |acc| <= 2^62 and |p| < 2^62: no int64 overflow
        if ovf is Overflow.WRAP:
            acc = _fx.apply_overflow(acc, fmt, "wrap")
        else:
            acc = _fx.apply_overflow(acc, fmt, ovf, what=f"{what} at k={k}")
    return FixedArray(acc, fmt)


def _loop_obj(Na: np.ndarray, Nb: np.ndarray, d: int, fmt: FixedFormat, rounding: Rounding, ovf: Overflow, what: str,
              sequential: bool) -> FixedArray:
    """The K loop of :func:`_seq_fixed` (``sequential``: acc = ovf(round(acc + p))) or of
    :func:`_acc_loop` (acc = ovf(acc + round(p))) on object arrays of Python ints: exact for any
    operand widths, vectorised over M*N, but much slower than int64."""
    M, K = Na.shape
    N = Nb.shape[1]
    A, B = Na.astype(object), Nb.astype(object)
    acc = np.zeros((M, N), dtype=object)
    for k in range(K):
        p = A[:, k, None] * B[None, k, :]
        if sequential:
            t = acc * (1 << d) + p if d > 0 else acc + p * (1 << -d)
            acc = _round_shift_obj(t, d, rounding) if d > 0 else t
        else:
            acc = acc + (_round_shift_obj(p, d, rounding) if d > 0 else p * (1 << -d))
        acc = _overflow_obj(acc, fmt, ovf, f"{what} at k={k}")
    return FixedArray(acc.astype(np.int64), fmt)


# ==== public API ===================================================================================
def matmul(
    a: Operand,
    b: Operand,
    policy: Policy | str = "exact",
    out_fmt: Format | str | None = None,
    rounding: Rounding | str = Rounding.RNE,
    overflow: Overflow | str = Overflow.SATURATE,
) -> Operand:
    """Matrix product ``a @ b`` under an accumulation ``policy``.

    Numeric contract:
      * inputs: ``a`` (M, K) and ``b`` (K, N) :class:`FixedArray` / :class:`FloatArray` of any
        formats (mixed allowed); 1-D operands follow ``np.matmul`` (a vector is promoted, then the
        added axis is removed). Operands must be finite.
      * products: exact.
      * accumulation: per ``policy`` (table in the module docstring), in index order k = 0..K-1.
      * output: ``out_fmt`` (:class:`FixedFormat` / :class:`FloatFormat` / spec string); default
        the accumulator's format (``Exact``: ``s(wa+wb+ceil(log2 K)).(fa+fb)`` for fixed
        operands, required for float operands). Converting the accumulator into ``out_fmt``
        rounds once more unless the formats are equal.
      * rounding: ``rounding`` (deterministic modes) for every rounding step; fixed-point steps then
        apply ``overflow`` (wrap / saturate / error: ``OverflowError``); float steps apply the
        float format's own overflow policy. ``FixedAccumulator`` applies its own overflow at each add.
      * errors: ``ValueError`` naming shapes / formats for misaligned shapes, non-finite operands,
        widths above int64, unsupported rounding; ``TypeError`` for non-array operands.
    """
    policy = parse_policy(policy)
    rounding = Rounding.parse(rounding)
    overflow = Overflow.parse(overflow)
    _check_rounding(rounding)
    out = None if out_fmt is None else parse_format(out_fmt)
    oa, ob = _as_op(a, "a"), _as_op(b, "b")
    if a.codes.ndim not in (1, 2) or b.codes.ndim not in (1, 2):
        raise ValueError(f"matmul: operands must be 1-D or 2-D, got shapes {a.shape} and {b.shape}")
    squeeze = []
    if a.codes.ndim == 1:
        oa = _as_op(a[None, :], "a")
        squeeze.append(0)
    if b.codes.ndim == 1:
        ob = _as_op(b[:, None], "b")
        squeeze.append(1)
    if oa.shape[1] != ob.shape[0]:
        raise ValueError(
            f"matmul: shapes {a.shape} ({a.fmt}) and {b.shape} ({b.fmt}) do not align: "
            f"K = {oa.shape[1]} vs {ob.shape[0]}"
        )
    res = _run(oa, ob, policy, out, rounding, overflow)
    if squeeze:
        shape = tuple(n for i, n in enumerate(res.codes.shape) if i not in squeeze)
        if isinstance(res, FixedArray):
            res = FixedArray(res.codes.reshape(shape), res.fmt)
        else:
            res = FloatArray(res.codes.reshape(shape), res.fmt)
    return res


def dot(
    a: Operand,
    b: Operand,
    policy: Policy | str = "exact",
    out_fmt: Format | str | None = None,
    rounding: Rounding | str = Rounding.RNE,
    overflow: Overflow | str = Overflow.SATURATE,
) -> Operand:
    """Dot product of two length-K vectors under ``policy``; a 0-d result. Same contract as
    :func:`matmul`."""
    for name, x in (("a", a), ("b", b)):
        if isinstance(x, (FixedArray, FloatArray)) and x.codes.ndim != 1:
            raise ValueError(f"dot: operand {name} must be 1-D, got shape {x.shape}")
    return matmul(a, b, policy, out_fmt, rounding, overflow)
