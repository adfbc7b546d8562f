"""Compiled kernel of :func:`refmodel.bounds.accum.running_error` for matrix products with a
sequential float accumulator (internal).

The same float64 operations in the same order as the numpy loop of ``running_error`` (which stays
the oracle, and the path for every other case), per output element ``(i, j)``::

    S += a[i, k] * b[k, j]                                      (k = 0 .. K-1)
    E  = h(|S| + slack)                       at k = 0
    E += h(|S| + E + slack)  if the term is not 0, else unchanged
    peak = max(peak, |S|);  so += S^2, or co += |S| for a coherent term

with ``h(m) = rel 2^floor(log2 m) + abs`` (0 + abs at m = 0), so the results are bit-identical
(numba does not contract ``a * b + c`` into an FMA without fastmath). Compiled by numba on first
use and cached on disk; importing this module imports numba.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["sequential_running"]


@njit(cache=True, nogil=True)
def _hulp(m: float, rel: float, absv: float) -> float:  # pragma: no cover - compiled
    if m > 0.0:
        _, e = math.frexp(m)
        return math.ldexp(rel, e - 1) + absv
    return absv


@njit(cache=True, nogil=True)
def _kernel(a: np.ndarray, b: np.ndarray, rel: float, absv: float, slack: np.ndarray, coh: np.ndarray, use_coh: bool,
            E: np.ndarray, peak: np.ndarray, so: np.ndarray, co: np.ndarray) -> None:  # pragma: no cover - compiled
    M, K = a.shape
    N = b.shape[1]
    for i in range(M):
        for j in range(N):
            s = 0.0
            e = 0.0
            pk = 0.0
            sq = 0.0
            cl = 0.0
            sl = slack[i, j]
            for k in range(K):
                t = a[i, k] * b[k, j]
                s = s + t
                asv = abs(s)
                if asv > pk:
                    pk = asv
                if k == 0:
                    e = _hulp(asv + sl, rel, absv)
                elif t != 0.0:
                    e = e + _hulp(asv + e + sl, rel, absv)
                if use_coh and coh[i, k]:
                    cl = cl + asv
                else:
                    sq = sq + s * s
            E[i, j] = e
            peak[i, j] = pk
            so[i, j] = sq
            co[i, j] = cl


def sequential_running(a: np.ndarray, b: np.ndarray, rel: float, absv: float, slack: np.ndarray,
                       coherent: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(E, peak, ss_outer)`` of ``a @ b`` (``(..., M, K) @ (..., K, N)``, batch dims broadcast)
    under a sequential accumulator with rounding model ``(rel, absv)``; ``slack`` per output;
    ``coherent``: ``(..., M, K)`` bool or None."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    A = np.ascontiguousarray(np.broadcast_to(a, lead + (M, K))).reshape(-1, M, K)
    B = np.ascontiguousarray(np.broadcast_to(b, lead + (K, N))).reshape(-1, K, N)
    sl = np.ascontiguousarray(np.broadcast_to(slack, lead + (M, N))).reshape(-1, M, N)
    use = coherent is not None
    if coherent is not None:
        C = np.ascontiguousarray(np.broadcast_to(coherent, lead + (M, K))).reshape(-1, M, K)
    else:
        C = np.zeros((A.shape[0], 1, 1), dtype=np.bool_)
    out = [np.empty((A.shape[0], M, N)) for _ in range(4)]
    for h in range(A.shape[0]):
        _kernel(A[h], B[h], float(rel), float(absv), sl[h], C[h], use, out[0][h], out[1][h], out[2][h], out[3][h])
    E, peak, so, co = (o.reshape(lead + (M, N)) for o in out)
    return E, peak, np.sqrt(so + co * co)
