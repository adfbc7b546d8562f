"""Compiled kernels for sequential float accumulation (internal; used by :mod:`accumulate`).

The contract is the one of ``Sequential(F)`` in :mod:`refmodel.numerics.accumulate`: for every
output element, in index order k = 0..K-1,

    acc_0 = round_F(p_0),   acc_k = round_F(acc_{k-1} + p_k),   p_k = a[i, k] * b[k, j] (exact),

each ``round_F`` ONE rounding to nearest, ties to even, of the exact value into the format F. The
slow, obviously-correct statement of it is the numpy loop in :mod:`accumulate` (float64 TwoSum,
round to odd, :func:`minifloat.encode`); these kernels must give the same bits and are tested
against it. Two kernels, each a loop over k per output row, vectorised over the row by LLVM:

``fma32`` -- F = fp32 (IEEE, subnormals, overflow to inf) and both operands' values fp32 numbers:
    ``acc = fma(a, b, acc)`` in float32. A fused multiply-add rounds ``a * b + acc`` exactly once
    (IEEE 754 fusedMultiplyAdd; LLVM's ``llvm.fma`` intrinsic, never split into two roundings), so
    each step IS round_fp32(acc + p) with the exact product. Starting from acc = -0.0 makes step 0
    round_fp32(p_0 + -0) = round_fp32(p_0) with p_0's own sign of zero.

``round_to`` -- any F with ``man <= P - 3`` (P = 24 in float32, 53 in float64 arithmetic ``T``),
    round to nearest even, subnormals kept, when every product is exact in T (the caller checks):
      1. s = fl_T(acc + p), and TwoSum's err = (acc + p) - s, exact (Knuth; T has no overflow here).
      2. round to odd at P bits: if err != 0 and s's last bit is even, step s one ulp toward the
         exact value. s_odd is then the truncation of acc + p with a sticky last bit.
      3. round s_odd to F's grid: quantum 2^qe with qe = max(E - man, emin_F - man), E the exponent
         of s_odd (clamped to emax_F + 1), by ``(s_odd + c) - c`` with c = 1.5 * 2^(qe + P - 1):
         |s_odd| < 2^(qe + man + 1) <= c / 3 keeps s_odd + c inside c's binade, whose ulp is 2^qe,
         so the addition rounds s_odd to the nearest multiple of 2^qe, ties to the even multiple
         (c / 2^qe = 3 * 2^(P - 2) is even, so the parity of the sum's last bit is the multiple's),
         and the subtraction is exact. The sign of a zero result is s_odd's (IEEE: a nonzero
         value rounding to zero keeps its sign).
      Why it is ONE correct rounding: round-to-odd at P bits followed by round-to-nearest at
      q = man + 1 <= P - 2 bits equals round-to-nearest of the exact value (Boldo & Melquiond,
      "Emulation of FMA and correctly rounded sums: proved algorithms using rounding to odd",
      IEEE TC 2008), provided F's smallest quantum is at least 4x T's (checked: 2 spare bits also
      in the subnormal range).
      4. overflow: |y| > max_F -> +-inf (IEEE formats) or +-max (saturating formats); the grid
         rounding of step 3 is unbounded, so this is exactly :func:`minifloat.encode`'s rule (a
         result rounded above max overflows, rne's tie at max + ulp/2 goes to the even neighbour).
      A non-finite sum (only after an overflow to inf) passes through unchanged (inf + finite =
      inf); a NaN (inf - inf, or formats whose overflow is NaN) is reported and the caller reruns
      the numpy loop, which owns the NaN-code rules.

``blocked`` -- Blocked(F, k) (:func:`blocked`): per block, the exact block sum in float64 (a
    plain sum where a per-segment bound proves it exact, else two TwoSum chains), rounded once
    into F (RO53 of the TwoSum pair, then F's rounding: a float32 cast for fp32, step 3 above
    otherwise), then acc <- round_F(acc + r) by one of the kernels above with the product r * 1.
    Rows whose block sums escape the two chains, and NaN rows, are left to the numpy loop.

The kernels release the GIL; :func:`sequential` splits the output rows over a few threads. They
are compiled by numba on first use and cached on disk (numba's cache next to this file, or its
user-wide cache directory when that is not writable). Importing this module imports numba (~0.5 s):
:mod:`accumulate` imports it only when a sequential float accumulation runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .minifloat import PRESETS, FloatFormat

__all__ = ["blocked", "blocked_plan", "plan", "sequential"]

#: below this many multiply-adds a call runs on the calling thread only
_PARALLEL_MIN = 1 << 20
#: threads for the row split: the CPUs this process may run on (taskset / cgroups), at most 8
_THREADS = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> tuple[Any, Callable[..., Any]] | None:
    """a * b + c rounded once (llvm.fma), float32 or float64."""
    if a not in (types.float32, types.float64) or not a == b == c:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return a(a, b, c), codegen


@intrinsic
def _bits(typingctx: Any, x: Any) -> tuple[Any, Callable[..., Any]] | None:
    """The IEEE bit pattern of a float32 / float64 as int32 / int64."""
    ity = {types.float32: types.int32, types.float64: types.int64}.get(x)
    if ity is None:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(ity.bitwidth))

    return ity(x), codegen


@intrinsic
def _from_bits(typingctx: Any, i: Any, like: Any) -> tuple[Any, Callable[..., Any]] | None:
    """The float of ``like``'s type (float32 / float64) with bit pattern ``i`` (low bits used)."""
    if like not in (types.float32, types.float64) or not isinstance(i, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fty = ir.FloatType() if like == types.float32 else ir.DoubleType()
        iv = args[0]
        if like.bitwidth < i.bitwidth:
            iv = builder.trunc(iv, ir.IntType(like.bitwidth))
        elif like.bitwidth > i.bitwidth:
            iv = builder.sext(iv, ir.IntType(like.bitwidth))
        return builder.bitcast(iv, fty)

    return like(i, like), codegen


@intrinsic
def _round_half(typingctx: Any, x: Any) -> tuple[Any, Callable[..., Any]] | None:
    """float32 -> the nearest fp16 (IEEE conversion, ties to even, overflow to inf) -> float32
    (F16C's vcvtps2ph / vcvtph2ps). Typed for float64 too, as the identity: that instance is dead
    code in the float64 kernels (HALF runs in float32 only)."""
    if x not in (types.float32, types.float64):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        if x == types.float64:
            return args[0]
        return builder.fpext(builder.fptrunc(args[0], ir.HalfType()), ir.FloatType())

    return x(x), codegen


FMA32, HALF, ROUND = 0, 1, 2


@njit(inline="always")
def _step(kind: int, a: Any, b: Any, acc: Any, prm: tuple[Any, ...]) -> Any:
    """One accumulation step acc <- round_F(acc + a * b) of kernel ``kind`` (module docstring).
    ``prm`` (all in T or T's integer type): inf, fmax, big (what an overflow gives: inf, fmax or
    NaN), 1, P, bias, exponent-field mask of T; F's man, smallest quantum exponent, emax + 1."""
    if kind == FMA32:
        return _fma(a, b, acc)
    inf, fmax, big, ione, P, bias, emask, man, qmin, emax1 = prm
    izero = ione - ione
    p = a * b
    s = acc + p
    bb = s - acc
    err = (acc - (s - bb)) + (p - bb)  # TwoSum: acc + p = s + err exactly (s finite)
    sb = _bits(s)
    fin = abs(s) < inf
    # round to odd: an inexact s with an even last bit moves one ulp toward the exact value (up in
    # magnitude iff err has s's sign; s != 0 when err != 0)
    up = ione if (err > 0) == (s > 0) else -ione
    sb = sb + up if fin & (err != 0) & ((sb & ione) == izero) else sb
    if kind == HALF:
        return _round_half(_from_bits(sb, a))  # s itself when not finite: inf stays inf
    e = min(max(((sb >> (P - ione)) & emask) - bias, ione - bias), emax1)
    qe = max(e - man, qmin)
    c = _from_bits(((qe + P - ione + bias) << (P - ione)) | (ione << (P - ione - ione)), a)
    y = abs((_from_bits(sb, a) + c) - c)  # the nearest multiple of 2^qe, ties to even
    y = -y if sb < izero else y
    y = y if fin else s  # +-inf after an overflow: inf + finite stays inf
    return y if abs(y) <= fmax else (-big if y < 0 else big)


#: output columns per pass (the B panel, K x _NC values, stays in the core's L2 cache)
_NC = 256


@njit(inline="always")
def _seq_rows(kind: int, A: np.ndarray, B: np.ndarray, out: np.ndarray, i0: int, i1: int,
              prm: tuple[Any, ...]) -> None:
    """Kernel ``kind`` on output rows i0..i1-1: out (M, N) holds acc_{-1} and receives acc_{K-1};
    A (M, K), B (K, N) in T. Columns go in panels of _NC, rows four at a time (each B value loaded
    once for four rows); the loop over a panel's columns is the one LLVM vectorises. Rows of B
    are read through slices (``br[j]``, j from ``range``): numba then knows the index is not
    negative, and LLVM emits contiguous vector loads instead of gathers (about 6x faster)."""
    K = A.shape[1]
    N = B.shape[1]
    for jc in range(0, N, _NC):
        je = min(jc + _NC, N)
        n = je - jc
        i = i0
        while i + 4 <= i1:
            o0 = out[i, jc:je]
            o1 = out[i + 1, jc:je]
            o2 = out[i + 2, jc:je]
            o3 = out[i + 3, jc:je]
            for k in range(K):
                a0 = A[i, k]
                a1 = A[i + 1, k]
                a2 = A[i + 2, k]
                a3 = A[i + 3, k]
                br = B[k, jc:je]
                for j in range(n):
                    bj = br[j]
                    o0[j] = _step(kind, a0, bj, o0[j], prm)
                    o1[j] = _step(kind, a1, bj, o1[j], prm)
                    o2[j] = _step(kind, a2, bj, o2[j], prm)
                    o3[j] = _step(kind, a3, bj, o3[j], prm)
            i += 4
        while i < i1:
            o = out[i, jc:je]
            for k in range(K):
                a = A[i, k]
                br = B[k, jc:je]
                for j in range(n):
                    o[j] = _step(kind, a, br[j], o[j], prm)
            i += 1


@intrinsic
def _cast(typingctx: Any, x: Any, like: Any) -> tuple[Any, Callable[..., Any]] | None:
    """float64 ``x`` in ``like``'s type: rounded to nearest even into float32 (LLVM fptrunc: one
    IEEE conversion, subnormals kept, overflow to inf), unchanged for float64."""
    if x != types.float64 or like not in (types.float32, types.float64):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fptrunc(args[0], ir.FloatType()) if like == types.float32 else args[0]

    return like(x, like), codegen


@njit(inline="always")
def _two_sum(x: Any, y: Any) -> tuple[Any, Any]:
    """(s, e): s = fl(x + y) and x + y = s + e exactly (Knuth's TwoSum; no overflow)."""
    s = x + y
    bb = s - x
    return s, (x - (s - bb)) + (y - bb)


@njit(inline="always")
def _ro(h: Any, lo: Any) -> Any:
    """h + lo rounded to odd at 53 bits, for a TwoSum pair (h = fl(h + lo), h finite): an inexact h
    with an even last bit moves one ulp toward the exact value."""
    hb = _bits(h)
    one = hb - hb + 1
    up = one if (lo > 0) == (h > 0) else -one
    return _from_bits(hb + up, h) if (lo != 0) & ((hb & one) == 0) else h


@njit(inline="always")
def _blk_exact(A: np.ndarray, B: np.ndarray, s: np.ndarray, i: int, k0: int, k1: int, jc: int, n: int) -> None:
    """s[:n] += A[i, k] * B[k, jc + j] for k in k0..k1-1 (fused multiply-adds), for a block whose
    partial sums are known to be float64 numbers: then every step is exact."""
    for k in range(k0, k1):
        a = A[i, k]
        br = B[k, jc:jc + n]
        for j in range(n):
            s[j] = _fma(a, br[j], s[j])


@njit(inline="always")
def _blk_twosum(A: np.ndarray, B: np.ndarray, s: np.ndarray, c: np.ndarray, g: np.ndarray, i: int, k0: int, k1: int,
                jc: int, n: int) -> None:
    """The two TwoSum chains of one row's block (see :func:`_blk_rows`)."""
    for k in range(k0, k1):
        a = A[i, k]
        br = B[k, jc:jc + n]
        for j in range(n):
            s1, e = _two_sum(s[j], a * br[j])
            c1, e2 = _two_sum(c[j], e)
            s[j] = s1
            c[j] = c1
            g[j] += abs(e2)


@njit(inline="always")
def _blk_rows(kind: int, A: np.ndarray, B: np.ndarray, ra: np.ndarray, rb: np.ndarray, lim: float, out: np.ndarray,
              bad: np.ndarray, i0: int, i1: int, kb: int, prm: tuple[Any, ...], gprm: tuple[Any, ...]) -> None:
    """Blocked(F, kb) on output rows i0..i1-1 (see :func:`blocked`): A (M, K), B (K, N) float64
    (products exact), out (M, N) in T holds acc_{-1} = -0 and receives the result; bad[i] is set
    when row i needs the numpy loop.

    Block sums: when ra[i, blk] * rb[blk, j] < lim (the segments' exactness bound, :func:`blocked`)
    the plain float64 sum is exact (rows four at a time when all four qualify: each B value loaded
    once for four rows). Otherwise two TwoSum chains: s gets the products, c gets s's rounding
    errors, g sums |c's errors|, so that g == 0 proves S = s + c exactly. g also counts the NaN
    sums acc + r (inf - inf, or r = NaN from a format that overflows to NaN), which the step
    function would turn into +-big."""
    K = A.shape[1]
    N = B.shape[1]
    oneT = _cast(1.0, out[0, 0])
    s = np.empty((4, _NC))
    c = np.empty((4, _NC))
    g = np.empty((4, _NC))
    fast = np.empty(4, dtype=np.bool_)
    for jc in range(0, N, _NC):
        je = min(jc + _NC, N)
        n = je - jc
        for i in range(i0, i1, 4):
            m = min(4, i1 - i)
            g[:, :n] = 0.0
            for k0 in range(0, K, kb):
                k1 = min(k0 + kb, K)
                blk = k0 // kb
                s[:, :n] = 0.0  # +0: an exactly zero block sum is +0
                c[:, :n] = 0.0
                all4 = m == 4
                for r in range(m):
                    x = ra[i + r, blk]
                    rbr = rb[blk, jc:je]
                    f = True
                    for j in range(n):
                        f = f & (x * rbr[j] < lim)
                    fast[r] = f
                    all4 = all4 & f
                if all4:
                    s0 = s[0]
                    s1 = s[1]
                    s2 = s[2]
                    s3 = s[3]
                    for k in range(k0, k1):
                        a0 = A[i, k]
                        a1 = A[i + 1, k]
                        a2 = A[i + 2, k]
                        a3 = A[i + 3, k]
                        br = B[k, jc:je]
                        for j in range(n):
                            bj = br[j]
                            s0[j] = _fma(a0, bj, s0[j])
                            s1[j] = _fma(a1, bj, s1[j])
                            s2[j] = _fma(a2, bj, s2[j])
                            s3[j] = _fma(a3, bj, s3[j])
                else:
                    for r in range(m):
                        if fast[r]:
                            _blk_exact(A, B, s[r], i + r, k0, k1, jc, n)
                        else:
                            _blk_twosum(A, B, s[r], c[r], g[r], i + r, k0, k1, jc, n)
                for r in range(m):
                    o = out[i + r, jc:je]
                    sr = s[r]
                    cr = c[r]
                    gr = g[r]
                    for j in range(n):
                        h, lo = _two_sum(sr[j], cr[j])
                        if kind == FMA32:
                            v = _cast(_ro(h, lo), oneT)  # RN24(RO53(S)) = RN24(S)
                        else:
                            v = _cast(_step(ROUND, lo, 1.0, h, gprm), oneT)  # round_F(h + lo), exact in T
                        x = o[j] + v
                        gr[j] += 1.0 if x != x else 0.0
                        o[j] = _step(kind, v, oneT, o[j], prm)
            for r in range(m):
                for j in range(n):
                    if g[r, j] != 0:
                        bad[i + r] = True


# One compiled function per kernel kind: with ``kind`` a constant, LLVM drops the other kinds'
# branches from the vectorised loops (a runtime ``kind`` leaves all of them in, about 3x slower).
@njit(nogil=True, cache=True)
def _seq_fma32(A: np.ndarray, B: np.ndarray, out: np.ndarray, i0: int, i1: int, prm: tuple[Any, ...]) -> None:
    _seq_rows(FMA32, A, B, out, i0, i1, prm)


@njit(nogil=True, cache=True)
def _seq_half(A: np.ndarray, B: np.ndarray, out: np.ndarray, i0: int, i1: int, prm: tuple[Any, ...]) -> None:
    _seq_rows(HALF, A, B, out, i0, i1, prm)


@njit(nogil=True, cache=True)
def _seq_round(A: np.ndarray, B: np.ndarray, out: np.ndarray, i0: int, i1: int, prm: tuple[Any, ...]) -> None:
    _seq_rows(ROUND, A, B, out, i0, i1, prm)


@njit(nogil=True, cache=True)
def _blk_fma32(A: np.ndarray, B: np.ndarray, ra: np.ndarray, rb: np.ndarray, lim: float, out: np.ndarray, bad: np.ndarray,
              i0: int, i1: int, kb: int, prm: tuple[Any, ...], gprm: tuple[Any, ...]) -> None:
    _blk_rows(FMA32, A, B, ra, rb, lim, out, bad, i0, i1, kb, prm, gprm)


@njit(nogil=True, cache=True)
def _blk_half(A: np.ndarray, B: np.ndarray, ra: np.ndarray, rb: np.ndarray, lim: float, out: np.ndarray, bad: np.ndarray,
             i0: int, i1: int, kb: int, prm: tuple[Any, ...], gprm: tuple[Any, ...]) -> None:
    _blk_rows(HALF, A, B, ra, rb, lim, out, bad, i0, i1, kb, prm, gprm)


@njit(nogil=True, cache=True)
def _blk_round(A: np.ndarray, B: np.ndarray, ra: np.ndarray, rb: np.ndarray, lim: float, out: np.ndarray, bad: np.ndarray,
              i0: int, i1: int, kb: int, prm: tuple[Any, ...], gprm: tuple[Any, ...]) -> None:
    _blk_rows(ROUND, A, B, ra, rb, lim, out, bad, i0, i1, kb, prm, gprm)


_SEQ = {FMA32: _seq_fma32, HALF: _seq_half, ROUND: _seq_round}
_BLK = {FMA32: _blk_fma32, HALF: _blk_half, ROUND: _blk_round}


# ---- dispatch ------------------------------------------------------------------------------------
_FP32 = PRESETS["fp32"]
_FP16 = PRESETS["fp16"]
#: (P, bias, smallest quantum exponent, largest exponent, exponent-field mask) of the arithmetic types
_T: dict[Any, tuple[int, int, int, int, int]] = {np.float32: (24, 127, -149, 127, 0xFF), np.float64: (53, 1023, -1074, 1023, 0x7FF)}


def _fits(span: int, lo: int, hi: int, t: Any) -> bool:
    """Values with at most ``span`` significant bits, integer multiples of 2^lo, below 2^hi in
    magnitude are members of float type ``t``."""
    P, _, qmin, emax, _ = _T[t]
    return span <= P and lo >= qmin and hi <= emax + 1


@cache
def _has_f16c() -> bool:
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("f16c", False))


def plan(fmt: FloatFormat, rounding: str, ops: tuple[tuple[int, int, int], tuple[int, int, int]]) -> tuple[int, Any] | None:
    """The kernel for ``Sequential(fmt)`` under ``rounding`` with operands described by ``ops``
    (per operand (S, L, H): at most S significant bits, integer multiples of 2^L, |v| < 2^H;
    bounds, not necessarily tight): ``(kind, T)``, or None when no kernel applies (the numpy loop
    runs). Conditions (module docstring): FMA32 needs F = fp32 and both operands fp32 numbers;
    HALF / ROUND need man_F <= P_T - 3, F's smallest quantum >= 4x T's, the exponent of the
    rounding constant inside T's range, and every operand and product a member of T (so the
    products and TwoSum are exact)."""
    if (rounding != "rne" or not fmt.subnormals or not fmt.signed or not fmt.has_zero
            or fmt.specials not in ("ieee", "fn", "none")):
        return None
    (sa, la, ha), (sb, lb, hb) = ops
    if fmt == _FP32 and _fits(sa, la, ha, np.float32) and _fits(sb, lb, hb, np.float32):
        return FMA32, np.float32
    for t in (np.float32, np.float64):
        P, _, qmin_t, emax_t, _ = _T[t]
        if (fmt.man <= P - 3 and fmt.emin - fmt.man >= qmin_t + 2 and fmt.emax + 1 - fmt.man + P <= emax_t
                and _fits(sa + sb, la + lb, ha + hb, t) and _fits(sa, la, ha, t) and _fits(sb, lb, hb, t)):
            return (HALF if fmt == _FP16 and t is np.float32 and _has_f16c() else ROUND), t
    return None


def _params(fmt: FloatFormat, t: Any) -> tuple[Any, ...]:
    """The ``prm`` tuple of :func:`_step` for format ``fmt`` in arithmetic type ``t``."""
    P, bias, _, _, emask = _T[t]
    it = np.int64 if t is np.float64 else np.int32
    big = {"inf": np.inf, "saturate": fmt.max, "nan": np.nan}[fmt.overflow]
    with np.errstate(over="ignore"):  # fmax of a format beyond T's range is never used (plan())
        return (t(np.inf), t(fmt.max), t(big),
                *(it(v) for v in (1, P, bias, emask, fmt.man, fmt.emin - fmt.man, fmt.emax + 1)))


def blocked_plan(fmt: FloatFormat, rounding: str, ops: tuple[tuple[int, int, int], tuple[int, int, int]],
                 k: int) -> tuple[int, Any] | None:
    """The kernel for ``Blocked(fmt, k)`` (operands described by ``ops`` as in :func:`plan`):
    ``(kind, T)`` of the accumulator step acc <- round_F(acc + r), or None (the numpy loop runs).
    Needs every product exact in float64 and every partial block sum far from float64's overflow
    (so TwoSum is exact), F's grid rounding in float64 (module docstring, step 3, with P = 53),
    and a :func:`plan` kernel for adding F's own values into F."""
    (sa, la, ha), (sb, lb, hb) = ops
    if not _fits(sa + sb, la + lb, ha + hb + k.bit_length() + 1, np.float64):
        return None
    if not (fmt.man <= 50 and fmt.emin - fmt.man >= -1074 + 2 and fmt.emax + 1 - fmt.man + 53 <= 1023):
        return None
    return plan(fmt, rounding, ((fmt.man + 1, fmt.emin - fmt.man, fmt.emax + 1), (1, 0, 1)))


def _segment_ratio(v: np.ndarray, k: int, axis: int) -> np.ndarray:
    """For float64 ``v`` (2-D) cut into segments of ``k`` along ``axis`` (the last may be
    shorter): max |v| / 2^L per segment, L the lowest set bit of the segment's nonzero values
    (every value is an integer multiple of 2^L and below this ratio times 2^L in magnitude); 0 for
    an all-zero segment, inf when the ratio overflows. Shape (ceil(K / k), other axis). Works on
    slices of about 2^20 values along the other axis, so its temporaries stay small."""
    from .accumulate import _float_bits

    w = np.asarray(v, dtype=np.float64)
    if axis == 1:
        w = w.T
    K, N = w.shape
    starts = np.arange(0, K, k)
    out = np.empty((len(starts), N))
    step = max(1, (1 << 20) // max(K, 1))
    for j0 in range(0, N, step):
        c = w[:, j0:j0 + step]
        nz = c != 0
        _, L = _float_bits(np.where(nz, c, 1.0))
        L = np.minimum.reduceat(np.where(nz, L, 1 << 16), starts, axis=0)
        mx = np.maximum.reduceat(np.abs(c), starts, axis=0)
        with np.errstate(over="ignore"):
            out[:, j0:j0 + step] = np.where(mx > 0, np.ldexp(mx, -L), 0.0)
    return out


def blocked(va: np.ndarray, vb: np.ndarray, fmt: FloatFormat, k: int, how: tuple[int, Any],
            b_cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``Blocked(fmt, k)`` of float64 values ``va`` (M, K) @ ``vb`` (K, N) with the kernel ``how``
    from :func:`blocked_plan`: (values, bad). values (M, N): the accumulator (members of ``fmt``)
    as float64; bad (M,): rows the caller must recompute with the numpy loop (a block whose exact
    sum did not fit two float64 TwoSum levels -- dynamic range beyond ~100 bits -- or a NaN).

    Per block B_j (exact, float64 products p): s = TwoSum chain of the p, c = TwoSum chain of s's
    errors; when c's own errors are all zero, B_j = s + c exactly, and TwoSum(s, c) = (h, l) gives
    h + l = B_j with h = fl(B_j); round_F(B_j) is then round_F of h rounded to odd with l's sign
    (one correct rounding, as in :func:`plan`'s ROUND kernel). acc_j = round_F(acc_{j-1} +
    round_F(B_j)) is the step of kernel ``how`` with the product r * 1, starting from acc = -0.

    Most blocks skip the TwoSum chains: with ra = max |a| / 2^La over a's segment of the block
    (La its lowest set bit) and rb the same for b's segment, every product is a multiple of
    2^(La + Lb) and every partial sum is below k * ra * rb * 2^(La + Lb); when k * ra * rb <
    2^53 (with a 2^-20 margin for the float64 evaluation of the bound) every partial sum is a
    float64 and the plain sum is exact. ``b_cache``: a dict kept with a constant ``vb`` (a weight)
    holding its contiguous copy and segment ratios."""
    kind, t = how
    M, K = va.shape
    N = vb.shape[1]
    A = np.ascontiguousarray(va, dtype=np.float64)
    B = None if b_cache is None else b_cache.get(("blocked", k))
    if B is None:
        B = (np.ascontiguousarray(vb, dtype=np.float64), _segment_ratio(vb, k, 0))
        if b_cache is not None:
            b_cache[("blocked", k)] = B
    B, rb = B
    ra = np.ascontiguousarray(_segment_ratio(A, k, 1).T)
    lim = 2.0**53 * (1.0 - 2.0**-20) / k
    out: np.ndarray = np.full((M, N), -0.0, dtype=t)
    bad = np.zeros(M, dtype=np.bool_)
    if M and N and K:
        prm, gprm = _params(fmt, t), _params(fmt, np.float64)
        _split_rows(lambda i0, i1: _BLK[kind](A, B, ra, rb, lim, out, bad, i0, i1, k, prm, gprm), M, M * N * K)
    if K == 0:
        return np.zeros((M, N)), bad
    return out.astype(np.float64), bad


def sequential(va: np.ndarray, vb: np.ndarray, fmt: FloatFormat, how: tuple[int, Any],
               b_cache: dict | None = None) -> np.ndarray | None:
    """The Sequential(fmt) accumulation of float64 values ``va`` (M, K) @ ``vb`` (K, N) with the
    kernel ``how`` from :func:`plan`: the accumulator values (members of ``fmt``) as float64, or
    None when a NaN appeared (the caller reruns the numpy loop, which owns the NaN-code rules).
    ``b_cache``: a dict that lives as long as ``vb`` does (a weight's), keeping vb's converted copy."""
    kind, t = how
    M, K = va.shape
    N = vb.shape[1]
    A: np.ndarray = np.ascontiguousarray(va, dtype=t)  # exact: plan() checked that every value is a member of t
    B = None if b_cache is None else b_cache.get(t)
    if B is None:
        B = np.ascontiguousarray(vb, dtype=t)
        if b_cache is not None:
            b_cache[t] = B
    out: np.ndarray = np.full((M, N), -0.0, dtype=t)  # acc_{-1} = -0: step 0 gives round(p_0), p_0's sign of zero kept
    prm = _params(fmt, t)
    _split_rows(lambda i0, i1: _SEQ[kind](A, B, out, i0, i1, prm), M, M * N * K)
    if K == 0:
        return np.zeros((M, N))  # the empty sum is +0
    if kind != FMA32 and np.isnan(out).any():
        return None
    return out.astype(np.float64)


def _split_rows(run: Callable[[int, int], None], M: int, work: int) -> None:
    """run(i0, i1) over row ranges, on up to _THREADS threads when the work is large enough."""
    nthreads = min(_THREADS, M) if work >= _PARALLEL_MIN else 1
    if nthreads <= 1:
        run(0, M)
        return
    step = -(-M // nthreads)
    step += -step % 4  # whole 4-row groups per thread
    list(_pool().map(lambda i0: run(i0, min(i0 + step, M)), range(0, M, step)))


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="refmodel-seqacc")
