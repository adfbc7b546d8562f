"""Correctly rounded float64 matrix products and sums, identical on every machine.

A float64 ``a @ b`` from BLAS depends on the kernel (Haswell, SkylakeX, ...), the thread count and
the blocking, because float addition is not associative; ``np.sum`` depends on numpy's SIMD
pairwise order. The functions here return, whatever BLAS and CPU, the float64 nearest (ties to
even) to the exact result.

Numeric contract
----------------
* :func:`matmul` ``(a, b)``: ``a [..., m, K] @ b [..., K, n]`` (batch dims broadcast like
  ``np.matmul``); :func:`dot_rows` ``(a, b, axis)``: ``sum(a * b, axis)``; :func:`fsum`
  ``(a, axis)``: ``sum(a, axis)``. Each element of the result is ``RN(exact value)``, the exact
  real sum of the exact products rounded once to nearest-even float64 (like ``math.fsum``),
  provided every row of ``a`` and every column of ``b`` (every reduction line for ``fsum`` /
  ``dot_rows``) spans at most ``MAX_BITS = 160`` bits from its largest element's leading bit to its
  lowest set bit. A line spanning more has its elements rounded (to nearest) to the grid
  ``2^(E - MAX_BITS)``, ``E`` its largest exponent, before the exact sum: the result then differs
  from the exact one by at most ``K * 2^(E_a + E_b - MAX_BITS)``, far below float64 resolution
  unless the sum cancels by a factor of 2^100. Either way the result is a function of the inputs
  alone.
* Results in the subnormal range are rounded twice (to 53 bits, then by the scaling) and may be
  1 ulp off; overflow gives +-inf. Non-finite inputs give the IEEE result of the exact sum: NaN if
  any product is NaN (NaN operand, ``inf * 0``) or the infinite products have both signs, else
  the infinity.

How (an Ozaki-style scheme)
---------------------------
Each row of ``a`` is scaled by a power of two so that its largest element is below ``2^beta``
and split into slices of integers ``|q| <= 2^beta`` (``a = sum_p q_p 2^(E - p beta)``), likewise
each column of ``b``, with ``beta = floor((53 - ceil(log2 K)) / 2)``. Every slice product
``q_p @ q_r`` sums integers whose every partial sum is at most ``2^53``, so BLAS computes it
exactly in ANY order (this assumes a dgemm made of IEEE float64 multiply/add/FMA, as OpenBLAS,
MKL and Accelerate are, never a Strassen-type algorithm).

* Fast path (:func:`matmul`): the four products of the top two slices of each operand are exact;
  the rest (``a_hi @ b_lo + a_lo @ b``) is one ordinary float64 BLAS product, whose error is at
  most ``gamma_2K`` times the sum of its |terms| in any summation order. The exact part plus the
  rest, as a double-double, +- that bound, decides the rounding of almost every element (the
  bound is ~2^-20 of an ulp); an element it cannot decide is recomputed exactly.
* Exact path (the undecided elements, :func:`fsum`, :func:`dot_rows`, operands beyond 2^+-900):
  as many slices as the data has bits (at most ``ceil(MAX_BITS / beta)``), all slice products
  summed exactly as int64 limbs, and the limb expansion rounded once (a 62-bit window with a
  sticky bit). Operands with few significant bits (decoded fp8, fixed-point codes) take one or
  two slices.

Cost: about six BLAS products of the operand shapes plus some 60 elementwise passes over the
output; a GPT-2-small layer's reference runs 10-15x slower than with plain BLAS
(``benchmarks/bench_golden.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["MAX_BITS", "matmul", "matmul_upper", "dot_rows", "fsum", "mean"]

#: bits of each reduction line represented exactly (see the module docstring)
MAX_BITS = 160
_CHUNK_ELEMS = 1 << 21  # outputs of the slice products per chunk of rows


def _beta(k: int, operands: int) -> int:
    """Slice width: ``operands`` = 2 for products (2 beta + log2 K <= 53), 1 for plain sums."""
    lg = max(0, math.ceil(math.log2(max(k, 1))))
    return (53 - lg) // operands


def _line_exponents(a: np.ndarray, axis: int) -> np.ndarray:
    """Per reduction line (along ``axis``, kept as size 1): the exponent ``E`` with ``max|a| < 2^E``
    (0 for an all-zero line)."""
    _, E = np.frexp(np.max(np.abs(a), axis=axis, keepdims=True))
    return E.astype(np.int64)


def _slices(a: np.ndarray, E: np.ndarray, beta: int, nmax: int) -> list[np.ndarray]:
    """``a = sum_{p=1..n} q_p 2^(E - p beta)``, ``q_p`` integer-valued float64 with ``|q_1| <= 2^beta``
    and ``|q_p| <= 2^(beta-1)`` after; ``n`` is the first count leaving no remainder, at most
    ``nmax`` (then the remainder, below half the last grid step, is dropped: a rounding to nearest)."""
    with np.errstate(under="ignore"):
        s = np.ldexp(a, (beta - E).astype(np.int32))  # exact unless an element is ~2^-1000 below its max
    out = []
    scale = float(2**beta)
    while True:
        q = np.rint(s)
        out.append(q)
        if len(out) == nmax:
            return out
        s -= q  # exact: |s - q| <= 1/2
        if not s.any():
            return out
        s *= scale


def _bit_length(v: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 ``v`` (0 for 0)."""
    _, e = np.frexp(v.astype(np.float64))  # may round up to the next power of two: corrected below
    e = e.astype(np.int64)
    sh = np.maximum(e - 1, 0)
    return np.where(v > 0, e - ((v >> sh) == 0), 0)


def _round_levels(levels: list[np.ndarray], beta: int, exp0: np.ndarray) -> np.ndarray:
    """RN of ``sum_t levels[t] * 2^(exp0 - t beta)`` (int64 levels of one shape, most significant
    first, each ``|level| < 2^60``), as float64 (an exactly-zero sum is +0)."""
    mask = np.int64((1 << beta) - 1)
    sh = np.int64(beta)
    n = len(levels) + 2
    shape = levels[0].shape
    L = np.zeros((n,) + shape, dtype=np.int64)  # limbs, most significant first
    L[2:] = np.stack(levels)

    def normalise() -> None:  # limbs 1.. into [0, 2^beta); limb 0 takes the carry
        for t in range(n - 1, 0, -1):
            L[t - 1] += L[t] >> sh
            L[t] &= mask

    normalise()
    neg = L[0] < 0  # the value is negative iff the leading limb is
    if neg.any():
        np.negative(L, out=L, where=neg)
        normalise()
    # now every limb is in [0, 2^beta): find the first nonzero one, gather a window of up to 62
    # significant bits from it on, and OR everything below into a sticky bit
    nz = L != 0
    first = np.argmax(nz, axis=0)
    below = np.logical_or.accumulate(nz[::-1], axis=0)[::-1]  # below[t]: some limb >= t is nonzero
    below = np.concatenate([below, np.zeros((1,) + shape, dtype=bool)])
    Lp = np.concatenate([L, np.zeros((1,) + shape, dtype=np.int64)])

    def limb(t: np.ndarray) -> np.ndarray:
        return np.take_along_axis(Lp, np.minimum(t, n)[None], axis=0)[0]

    acc = limb(first)
    bl = _bit_length(acc)
    lsb = -first * sh
    t = first + 1
    for _ in range(math.ceil(62 / beta)):
        take = np.minimum(np.int64(62) - bl, sh)  # every limb adds beta bits until the window is full
        nxt = limb(t)
        acc = (acc << take) | (nxt >> (sh - take))
        lsb -= take
        bl = np.where(acc > 0, bl + take, 0)
        sticky_part = (nxt & ((np.int64(1) << (sh - take)) - 1)) != 0
        t = t + 1
        if _ == 0:
            sticky = sticky_part
        else:
            sticky |= sticky_part
    sticky |= np.take_along_axis(below, np.minimum(t, n)[None], axis=0)[0]
    mag = (acc | sticky.astype(np.int64)).astype(np.float64)  # >= 55 bits whenever sticky is set: one RN
    with np.errstate(over="ignore", under="ignore"):
        out = np.ldexp(mag, np.clip(exp0 + 2 * beta + lsb, -2200, 2200).astype(np.int32))
    return np.where(neg, -out, out)


def _levels_from_pairs(prods: dict[tuple[int, int], np.ndarray], na: int, nb: int) -> list[np.ndarray]:
    """Sum the exact slice products by level ``t = p + r`` (as int64)."""
    out = []
    for t in range(na + nb - 1):
        ps = range(max(0, t - nb + 1), min(na, t + 1))  # never empty: 0 <= t <= na + nb - 2
        acc = prods[(ps[0], t - ps[0])].astype(np.int64)
        for p in ps[1:]:
            acc = acc + prods[(p, t - p)].astype(np.int64)
        out.append(acc)
    return out


def _nonfinite_matmul(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask, value) of the outputs that are NaN or infinite by IEEE rules, from exact counts."""
    f = np.float64

    def ind(x: np.ndarray) -> dict[str, np.ndarray]:
        return {"nan": np.isnan(x).astype(f), "pinf": (x == np.inf).astype(f), "ninf": (x == -np.inf).astype(f),
                "zero": (x == 0).astype(f), "pos": (x > 0).astype(f), "neg": (x < 0).astype(f)}

    A, B = ind(a), ind(b)
    nan = (A["nan"].sum(-1)[..., :, None] > 0) | (B["nan"].sum(-2)[..., None, :] > 0)
    nan |= ((A["pinf"] + A["ninf"]) @ B["zero"] + A["zero"] @ (B["pinf"] + B["ninf"])) > 0
    pinf = (A["pinf"] @ B["pos"] + A["ninf"] @ B["neg"] + A["pos"] @ B["pinf"] + A["neg"] @ B["ninf"]) > 0
    ninf = (A["pinf"] @ B["neg"] + A["ninf"] @ B["pos"] + A["pos"] @ B["ninf"] + A["neg"] @ B["pinf"]) > 0
    nan |= pinf & ninf
    val = np.where(nan, np.nan, np.where(pinf, np.inf, -np.inf))
    return nan | pinf | ninf, val


def _matmul_exact_2d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RN(a @ b) for finite 2-D ``a``, ``b`` from all slice products (int64 limbs)."""
    m, K = a.shape
    n = b.shape[1]
    if m == 0 or n == 0 or K == 0:
        return np.zeros((m, n))
    beta = _beta(K, 2)
    smax = math.ceil(MAX_BITS / beta)
    Fb = _line_exponents(b, 0)
    sb = _slices(b, Fb, beta, smax)
    nb = len(sb)
    qb = np.concatenate(sb, axis=1)  # [K, nb * n]
    out = np.empty((m, n))
    rows = max(1, _CHUNK_ELEMS // max(1, n * nb * 4))
    for i0 in range(0, m, rows):
        ac = a[i0:i0 + rows]
        Ea = _line_exponents(ac, 1)
        sa = _slices(ac, Ea, beta, smax)
        na = len(sa)
        qa = np.concatenate(sa, axis=0)  # [na * rows, K]
        P = (qa @ qb).reshape(na, ac.shape[0], nb, n)  # exact: integers below 2^53
        prods = {(p, r): P[p, :, r, :] for p in range(na) for r in range(nb)}
        levels = _levels_from_pairs(prods, na, nb)
        out[i0:i0 + rows] = _round_levels(levels, beta, Ea + Fb - 2 * beta)
    return out


def _pow2(e: np.ndarray) -> np.ndarray:
    """``2.0 ** e`` for integer ``e`` in -1022..1023 (exact, by building the bit pattern)."""
    return ((e.astype(np.int64) + 1023) << 52).view(np.float64)


def _times_pow2(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``x * 2^e`` for integer ``e`` in -2044..2046, as two exact power-of-two factors (one
    rounding only if the result is subnormal, inf if it overflows)."""
    e1 = np.clip(e, -1022, 1023)
    with np.errstate(over="ignore", under="ignore"):
        return (x * _pow2(e1)) * _pow2(np.clip(e - e1, -1022, 1023))


def _split2(a: np.ndarray, E: np.ndarray, beta: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two slices and the remainder: ``a = q0 2^(E-beta) + q1 2^(E-2 beta) + rem`` with ``q0, q1``
    integer-valued, ``|rem| <= 2^(E - 2 beta - 1)``; exact for ``|E| <= 900`` except elements below
    2^-1000 of their line's max or a remainder below 2^-1022 (each off by < 2^-1074: in the bound)."""
    s = a * _pow2(beta - E)
    q0 = np.rint(s)
    s -= q0
    s *= float(2**beta)
    q1 = np.rint(s)
    s -= q1
    with np.errstate(under="ignore"):
        s *= _pow2(E - 2 * beta)
    return q0, q1, s


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


_U = 2.0**-53
_SAFE_EXP = 900


class _BSide:
    """The ``b`` operand ``[..., K, n]`` prepared once for :func:`_matmul_fast`."""

    def __init__(self, b: np.ndarray, beta: int) -> None:
        b = np.ascontiguousarray(b)
        self.b = b
        self.F = _line_exponents(b, -2)
        self.q0, self.q1, self.rem = _split2(b, self.F, beta)
        self.n = b.shape[-1]
        self.max_b = np.max(np.abs(b), axis=-2, keepdims=True)
        self.max_rem = np.max(np.abs(self.rem), axis=-2, keepdims=True)


def _matmul_fast(a: np.ndarray, bs: _BSide) -> tuple[np.ndarray, np.ndarray]:
    """(result, determined mask) for finite operands ``a [..., m, K]`` and prepared ``b`` with line
    exponents in +-900: the exact products of the top two slices of each operand, plus the rest as
    one float64 BLAS product with its worst-case error bound (any summation order, FMA or not).
    Where the double-double value +- that bound provably rounds to one float64, that float64 is
    RN(a @ b); elsewhere the mask is False."""
    a = np.ascontiguousarray(a)
    m, K = a.shape[-2:]
    beta = _beta(K, 2)
    Ea = _line_exponents(a, -1)
    q0a, q1a, rema = _split2(a, Ea, beta)
    qa = np.concatenate([q0a, q1a], axis=-2)
    P0, P1 = qa @ bs.q0, qa @ bs.q1  # exact: integers below 2^53
    lev0 = P0[..., :m, :]
    lev1 = P1[..., :m, :] + P0[..., m:, :]  # exact: each term is below 2^52
    lev2 = P1[..., m:, :]
    ah = a - rema  # exact
    T = ah @ bs.rem + rema @ bs.b  # the rest, rounded: error below gamma_2K sum |terms|
    unit = Ea + bs.F - 2 * beta  # value = units * 2^unit
    tau = _times_pow2(T, -unit)
    s1, e1 = _two_sum(lev0, lev1 * float(2.0**-beta))
    s2, e2 = _two_sum(s1, lev2 * float(2.0**-(2 * beta)))
    s3, e3 = _two_sum(s2, tau)
    lo = (e1 + e2) + e3
    H, L = _two_sum(s3, lo)
    # |exact - (H + L)| in units is at most: the BLAS error of T (gamma_2K times the sum of |terms|,
    # at most K times the line maxima, plus 2K underflows), the split remainders lost below 2^-1022
    # (< K 2^-100 units for exponents in +-900), and the roundings of lo
    mah = np.max(np.abs(ah), axis=-1, keepdims=True)
    mal = np.max(np.abs(rema), axis=-1, keepdims=True)
    g = 2 * K * _U / (1 - 2 * K * _U)
    terms = K * (mah * bs.max_rem + mal * bs.max_b) * g + 2 * K * 2.0**-1074
    err = _times_pow2(terms, -unit) * (1 + 2.0**-40)
    err += 2.0**-51 * (np.abs(e1) + np.abs(e2) + np.abs(e3)) + K * 2.0**-99
    # RN(exact) = H iff exact lies strictly inside H's rounding interval (half the gap to each
    # neighbour; the gap below a power of two is half the gap above)
    mag = np.abs(H)
    dev = np.where(H < 0, -L, L)  # deviation away from zero
    up = (np.nextafter(mag, np.inf) - mag) * (0.5 * (1 - 2.0**-40))
    down = (mag - np.nextafter(mag, 0.0)) * (0.5 * (1 - 2.0**-40))
    ok = (dev + err < up) & (dev - err > -down)
    exact_zero = ~np.any(a != 0, axis=-1, keepdims=True) | ~np.any(bs.b != 0, axis=-2, keepdims=True)
    ok |= exact_zero  # a zero row or column: the product is exactly +0 (H = 0)
    with np.errstate(over="ignore", under="ignore"):
        out = np.ldexp(H, unit.astype(np.int32))
    return out, ok


def _matmul_finite(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RN(a @ b) for finite operands of equal batch shape: the fast path, and the exact one where
    it cannot decide."""
    m, K = a.shape[-2:]
    n = b.shape[-1]
    batch = a.shape[:-2]
    if m == 0 or n == 0 or K == 0 or not a.size:
        return np.zeros(batch + (m, n))
    beta = _beta(K, 2)
    ea, eb = _line_exponents(a, -1), _line_exponents(b, -2)
    if np.abs(eb).max() > _SAFE_EXP or np.abs(ea).max() > _SAFE_EXP or beta < 8:
        out = np.empty(batch + (m, n))
        for idx in np.ndindex(*batch):
            out[idx] = _matmul_exact_2d(a[idx], b[idx])
        return out
    nb = int(np.prod(batch)) if batch else 1
    if nb > 1 and nb * m * n * 6 > _CHUNK_ELEMS:  # big: one batch element at a time
        out = np.empty(batch + (m, n))
        for idx in np.ndindex(*batch):
            out[idx] = _matmul_finite(a[idx], b[idx])
        return out
    bs = _BSide(b, beta)
    out = np.empty(batch + (m, n))
    rows = max(1, _CHUNK_ELEMS // max(1, nb * n * 6))
    for i0 in range(0, m, rows):
        ac = a[..., i0:i0 + rows, :]
        res, ok = _matmul_fast(ac, bs)
        if not ok.all():
            res2 = res.reshape(-1, *res.shape[-2:])
            a2 = ac.reshape(-1, *ac.shape[-2:])
            b2 = b.reshape(-1, K, n)
            bad_b, bad_i, bad_j = np.nonzero(~ok.reshape(res2.shape))
            if bad_i.size * 8 > ok.size:  # many undecided: redo those rows exactly
                for bb in np.unique(bad_b):
                    rows_bad = np.unique(bad_i[bad_b == bb])
                    res2[bb, rows_bad] = _matmul_exact_2d(a2[bb, rows_bad], b2[bb])
            else:
                for j0 in range(0, bad_i.size, 4096):
                    sel = slice(j0, j0 + 4096)
                    rb, ri, rj = bad_b[sel], bad_i[sel], bad_j[sel]
                    res2[rb, ri, rj] = dot_rows(a2[rb, ri], b2[rb, :, rj])
            res = res2.reshape(res.shape)
        out[..., i0:i0 + rows, :] = res
    return out


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` correctly rounded (module docstring); ``np.matmul`` shapes (>= 2-D operands,
    batch dims broadcast)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"f64dot.matmul needs operands of >= 2 dims, got {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"f64dot.matmul: shapes {a.shape} and {b.shape} do not align")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    af = a if finite else np.where(np.isfinite(a), a, 0.0)
    bf = b if finite else np.where(np.isfinite(b), b, 0.0)
    out = _matmul_finite(af, bf)
    if not finite:
        special, val = _nonfinite_matmul(a, b)
        out = np.where(special, val, out)
    return out


def _nonfinite_sum(a: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    nan = np.isnan(a).any(axis=axis)
    pinf = (a == np.inf).any(axis=axis)
    ninf = (a == -np.inf).any(axis=axis)
    nan |= pinf & ninf
    return nan | pinf | ninf, np.where(nan, np.nan, np.where(pinf, np.inf, -np.inf))


def _by_lines(fn: Any, arrays: list[np.ndarray], axis: int, keepdims: bool) -> np.ndarray:
    """Apply ``fn`` (2-D blocks ``[rows, K]`` -> ``[rows]``) to the reduction lines along ``axis``,
    a block of rows at a time (temporaries stay small; lines are independent, so the result does
    not depend on the blocking)."""
    axis = axis % arrays[0].ndim
    moved = [np.moveaxis(x, axis, -1) for x in arrays]
    lead, K = moved[0].shape[:-1], moved[0].shape[-1]
    flat = [x.reshape(-1, K) for x in moved]
    n = flat[0].shape[0]
    out = np.empty(n)
    rows = max(1, _CHUNK_ELEMS // 8 // max(K, 1))
    for i0 in range(0, n, rows):
        out[i0:i0 + rows] = fn(*[np.ascontiguousarray(x[i0:i0 + rows]) for x in flat])
    r = out.reshape(lead)
    return np.expand_dims(r, axis) if keepdims else r


def _fsum_lines(a: np.ndarray) -> np.ndarray:
    K = a.shape[1]
    beta = _beta(K, 1)
    E = _line_exponents(a, 1)
    parts = [np.sum(q, axis=1).astype(np.int64) for q in _slices(a, E, beta, math.ceil(MAX_BITS / beta))]  # exact
    return _round_levels(parts, beta, E[:, 0] - beta)


def _dot_lines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    K = a.shape[1]
    beta = _beta(K, 2)
    smax = math.ceil(MAX_BITS / beta)
    Ea, Eb = _line_exponents(a, 1), _line_exponents(b, 1)
    qa, qb = _slices(a, Ea, beta, smax), _slices(b, Eb, beta, smax)
    na, nb = len(qa), len(qb)
    prods = {(p, r): np.sum(qa[p] * qb[r], axis=1) for p in range(na) for r in range(nb)}  # exact
    return _round_levels(_levels_from_pairs(prods, na, nb), beta, (Ea + Eb)[:, 0] - 2 * beta)


def fsum(a: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``sum(a, axis)`` correctly rounded (module docstring), e.g. a softmax denominator."""
    a = np.asarray(a, dtype=np.float64)
    axis = axis % a.ndim
    if a.shape[axis] == 0:
        out = np.zeros(a.shape[:axis] + a.shape[axis + 1:])
        return np.expand_dims(out, axis) if keepdims else out
    finite = bool(np.isfinite(a).all())
    af = a if finite else np.where(np.isfinite(a), a, 0.0)
    out = _by_lines(_fsum_lines, [af], axis, keepdims=False)
    if not finite:
        special, val = _nonfinite_sum(a, axis)
        out = np.where(special, val, out)
    return np.expand_dims(out, axis) if keepdims else out


def dot_rows(a: np.ndarray, b: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``sum(a * b, axis)`` with exact products, correctly rounded (e.g. a sum of squares)."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    axis = axis % a.ndim
    if a.shape[axis] == 0:
        return fsum(a * b, axis, keepdims)
    if np.isfinite(a).all() and np.isfinite(b).all():
        return _by_lines(_dot_lines, [a, b], axis, keepdims)
    fa, fb = np.isfinite(a), np.isfinite(b)
    out = _by_lines(_dot_lines, [np.where(fa, a, 0.0), np.where(fb, b, 0.0)], axis, keepdims=False)
    with np.errstate(invalid="ignore", over="ignore"):  # the IEEE result where a product is inf/NaN
        special, val = _nonfinite_sum(np.where(fa & fb, 0.0, a * b), axis)
    out = np.where(special, val, out)
    return np.expand_dims(out, axis) if keepdims else out


def mean(a: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``fsum(a, axis) / n``: the correctly rounded sum, then one IEEE division."""
    a = np.asarray(a, dtype=np.float64)
    return fsum(a, axis, keepdims) / a.shape[axis % a.ndim]


def _split_up(a: np.ndarray, E: np.ndarray, beta: int, n: int) -> list[np.ndarray]:
    """Non-negative ``a`` as ``n`` integer slices on the grids ``2^(E - p beta)``, the last one
    rounded UP: ``sum_p q_p 2^(E - p beta) >= a``, each ``0 <= q_p <= 2^beta``."""
    s = a * _pow2(beta - E)
    out = []
    for p in range(n):
        if p + 1 == n:
            out.append(np.ceil(s))
        else:
            q = np.floor(s)
            out.append(q)
            s = (s - q) * float(2**beta)  # exact
    return out


def matmul_upper(a: np.ndarray, b: np.ndarray, slices: int = 1) -> np.ndarray:
    """A deterministic upper bound of ``a @ b`` for NON-NEGATIVE finite operands (e.g. products of
    magnitudes in error bounds): each row of ``a`` / column of ``b`` is rounded up to ``slices``
    slices of ``beta`` bits below its largest element, and the product of the rounded operands
    is computed exactly (integer slice products, any BLAS order) and rounded up. Identical on
    every machine; at most ``K 2^(E_a + E_b) 2^(1 - slices beta)`` above the exact value (beta ~
    20 bits) and never below it. Cost: ``slices^2`` BLAS products. Line exponents must lie in
    +-900 (``ValueError`` otherwise)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul_upper: shapes {a.shape} and {b.shape} do not align")
    if (a.size and (a.min() < 0 or not np.isfinite(a).all())) or (b.size and (b.min() < 0 or not np.isfinite(b).all())):
        raise ValueError("matmul_upper needs non-negative finite operands")
    K = a.shape[-1]
    if K == 0:
        return np.zeros(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]))
    beta = _beta(K, 2)
    Ea, Fb = _line_exponents(a, -1), _line_exponents(b, -2)
    if a.size and b.size and max(np.abs(Ea).max(), np.abs(Fb).max()) > _SAFE_EXP:
        raise ValueError("matmul_upper: operand magnitudes beyond 2^+-900")
    qa, qb = _split_up(a, Ea, beta, slices), _split_up(b, Fb, beta, slices)
    unit = Ea + Fb - 2 * beta
    out = None
    for t in range(2 * slices - 1):  # levels, most significant first; each level sum exact in int64
        pairs = range(max(0, t - slices + 1), min(slices, t + 1))
        lev = sum(((qa[p] @ qb[t - p]).astype(np.int64) for p in pairs[1:]),  # exact: integers <= 2^53
                  (qa[pairs[0]] @ qb[t - pairs[0]]).astype(np.int64))
        term = lev.astype(np.float64)  # a level sum above 2^53 may round down: then one ulp up
        term = np.where(term.astype(np.int64) < lev, np.nextafter(term, np.inf), term)
        term = _times_pow2(term, unit - t * beta)
        out = term if out is None else np.nextafter(out + term, np.inf)  # each sum rounded up
    assert out is not None
    tiny = (out < 2.2250738585072014e-308) & (out >= 0)
    return np.where(tiny & (out > 0), np.nextafter(out, np.inf), out)
