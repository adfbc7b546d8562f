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

__all__ = ["plan", "sequential"]

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


@njit(nogil=True, cache=True)
def _seq_rows(kind: int, A: np.ndarray, B: np.ndarray, out: np.ndarray, i0: int, i1: int,
              prm: tuple[Any, ...]) -> None:
    """Kernel ``kind`` on output rows i0..i1-1: out (M, N) holds acc_{-1} and receives acc_{K-1};
    A (M, K), B (K, N) in T. Columns go in panels of _NC, rows four at a time (each B value loaded
    once for four rows); the loop over a panel's columns is the one LLVM vectorises."""
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
                for j in range(n):
                    bj = B[k, jc + j]
                    o0[j] = _step(kind, a0, bj, o0[j], prm)
                    o1[j] = _step(kind, a1, bj, o1[j], prm)
                    o2[j] = _step(kind, a2, bj, o2[j], prm)
                    o3[j] = _step(kind, a3, bj, o3[j], prm)
            i += 4
        while i < i1:
            o = out[i, jc:je]
            for k in range(K):
                a = A[i, k]
                for j in range(n):
                    o[j] = _step(kind, a, B[k, jc + j], o[j], prm)
            i += 1


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
    P, bias, _, _, emask = _T[t]
    it = np.int64 if t is np.float64 else np.int32
    big = {"inf": np.inf, "saturate": fmt.max, "nan": np.nan}[fmt.overflow]
    with np.errstate(over="ignore"):  # fmax of a format beyond T's range is never used (plan())
        prm = (t(np.inf), t(fmt.max), t(big),
               *(it(v) for v in (1, P, bias, emask, fmt.man, fmt.emin - fmt.man, fmt.emax + 1)))
    _split_rows(lambda i0, i1: _seq_rows(kind, A, B, out, i0, i1, prm), M, M * N * K)
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
