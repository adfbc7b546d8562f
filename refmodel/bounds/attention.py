"""Local Lipschitz bounds of multi-head self-attention that do not depend on the sequence length
(stability.md section 3.6), per query token, in the infinity norm of each token.

Weights follow torch's ``(out, in)`` convention: ``W_Q, W_K, W_V`` are ``(d, d)`` with head ``h``
owning rows ``h d_h .. (h+1) d_h - 1``; ``W_O`` is ``(d, d)`` acting on the concatenated heads.
``||W||_inf`` is the max absolute row sum of an ``(out, in)`` matrix.

    omega_OV = ||W_O||_inf max_h ||W_V^h||_inf
    omega_KQ = (2 / sqrt(d_h)) max_h || |W_K^h| 1 ||_2 || |W_Q^h| 1 ||_2
    a_Q^h    = || |W_Q^h| 1 ||_2   (so ||dq_i||_2 <= a_Q delta when ||dx_i||_inf <= delta)

Perturbation ``max_j ||dX_j||_inf <= delta``; logits ``l_ij = q_i . k_j / sqrt(d_h)``; per head
``s = softmax(l)``, ``v_j = W_V^h x_j``, ``vbar_i = sum_j s_ij v_j``, attention-weighted spread
``sp_i = sum_j s_ij ||v_j - vbar_i||_inf``. Then (exact algebra: ``sum_j ds_ij = 0``, convex
combination, and the rigorous softmax perturbation ``|ds_j| <= s_j (e^{2M} - 1)``):

    M_i  = max_j (delta a_Q ||k_j|| + ||q_i|| delta a_K + delta^2 a_Q a_K) / sqrt(d_h)
    ||dY_i||_inf <= ||W_O||_inf max_h [ ||W_V^h||_inf delta + (e^{2 M_i} - 1) sp_i ]     (rigorous)
    F_i  = ||W_O||_inf max_h [ ||W_V^h||_inf + 2 max_j (a_Q ||k_j|| + ||q_i|| a_K)/sqrt(d_h) sp_i ]
           (first-order local Lipschitz factor, delta -> 0)
    F_i <= omega_OV (1 + 4 omega_KQ R^2),  R = max_j ||x_j||_inf                       (worst case)

A tighter form of the same argument sums heads in output space and takes the exact sup of the
linear logit change over the infinity ball (``|dq_i . k_j| <= delta ||W_Q^T k_j||_1``):

    F'_i = sum_h [ ||W_O^h W_V^h||_inf + 2 max_j (||W_Q^hT k_j||_1 + ||W_K^hT q_i||_1)/sqrt(d_h) sp'_i ],
    sp'_i = sum_j s_ij ||W_O^h (v_j - vbar_i)||_inf

(rigorous at delta with ``M'_i = (delta(...) + delta^2 a_Q a_K)/sqrt(d_h)``); both are valid, the
bound reported is their minimum.

No term sums over keys without the attention weights, so nothing grows with the sequence length:
``sp_i <= 2 max_j ||v_j||_inf`` and ``||k_j|| <= a_K R``. The spread shrinks when attention
concentrates (attention sinks). The *rounding* error of attention does grow with n (the P V and
softmax-denominator accumulations); only this propagation factor is length-independent.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["omega_ov", "omega_kq", "attention_lipschitz", "attention_forward", "attention_factor_table", "table_markdown",
           "attention_jacobian_lipschitz", "attention_jacobian"]


def _inf(W: np.ndarray) -> float:
    return float(np.max(np.sum(np.abs(W), axis=-1)))


def _heads(W: np.ndarray, n_heads: int) -> list[np.ndarray]:
    W = np.asarray(W, dtype=np.float64)
    if W.shape[0] % n_heads:
        raise ValueError(f"weight with {W.shape[0]} output rows cannot be split into {n_heads} heads")
    dh = W.shape[0] // n_heads
    return [W[h * dh:(h + 1) * dh] for h in range(n_heads)]


def omega_ov(W_V: Any, W_O: Any, n_heads: int) -> float:
    """``||W_O||_inf * max_h ||W_V^h||_inf`` (the authors' omega_OV)."""
    return _inf(np.asarray(W_O, dtype=np.float64)) * max(_inf(w) for w in _heads(W_V, n_heads))


def omega_kq(W_Q: Any, W_K: Any, n_heads: int) -> float:
    """``(2/sqrt(d_h)) max_h || |W_K^h| 1 ||_2 || |W_Q^h| 1 ||_2`` (the authors' omega_KQ)."""
    qs, ks = _heads(W_Q, n_heads), _heads(W_K, n_heads)
    dh = qs[0].shape[0]
    return 2.0 / math.sqrt(dh) * max(float(np.linalg.norm(np.abs(k).sum(1)) * np.linalg.norm(np.abs(q).sum(1)))
                                     for q, k in zip(qs, ks, strict=True))


def _softmax(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    m = np.max(logits, axis=-1, keepdims=True)
    w = np.exp(logits - m)
    return w / np.sum(w, axis=-1, keepdims=True)


def attention_forward(X: Any, W_Q: Any, W_K: Any, W_V: Any, W_O: Any, n_heads: int, *, causal: bool = False,
                      rows: Any = None) -> np.ndarray:
    """float64 multi-head self-attention ``Y = concat_h(softmax(q k^T/sqrt d_h) v) W_O^T`` (no biases),
    for the query positions ``rows`` (default all)."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[-2]
    ri = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    mask = (np.arange(n)[None, :] <= ri[:, None]) if causal else None
    outs = []
    for wq, wk, wv in zip(_heads(W_Q, n_heads), _heads(W_K, n_heads), _heads(W_V, n_heads), strict=True):
        q, k, v = X[ri] @ wq.T, X @ wk.T, X @ wv.T
        s = _softmax(q @ k.T / math.sqrt(wq.shape[0]), mask)
        outs.append(s @ v)
    return np.concatenate(outs, axis=-1) @ np.asarray(W_O, dtype=np.float64).T


def attention_lipschitz(X: Any, W_Q: Any, W_K: Any, W_V: Any, W_O: Any, n_heads: int, *, delta: float | None = None,
                        causal: bool = False, queries: Any = None, chunk: int = 128) -> dict[str, Any]:
    """Per-query local Lipschitz factors of self-attention at ``X`` (``(n, d)``, one sequence),
    for the query positions ``queries`` (default all).

    Returns ``factor`` (first-order data-dependent ``F_i``, authors' omega form),
    ``factor_tight`` (``F'_i``, per-head output-space form, see module doc; ``<= F_i``), ``bound``
    (rigorous bound on ``||dY_i||_inf`` for ``max_j ||dX_j||_inf <= delta``, the min of both forms,
    when ``delta`` is given),
    ``worst_case`` (``omega_OV (1 + 4 omega_KQ R^2)``), ``omega_ov``, ``omega_kq``, ``R``,
    ``spread`` (max over heads of the attention-weighted spread per query), ``sink_mass``
    (per query: the largest attention weight, averaged over heads).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"attention_lipschitz: X must be (n, d), got shape {X.shape}")
    n = X.shape[0]
    qi = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    nq = qi.size
    WO = np.asarray(W_O, dtype=np.float64)
    wo = _inf(WO)
    R = float(np.max(np.abs(X)))
    om_ov = omega_ov(W_V, W_O, n_heads)
    om_kq = omega_kq(W_Q, W_K, n_heads)
    factor = np.zeros(nq)
    bound = np.zeros(nq) if delta is not None else None
    tight = np.zeros(nq)
    bound_t = np.zeros(nq) if delta is not None else None
    spread_max = np.zeros(nq)
    sink = np.zeros(nq)
    for h, (wq, wk, wv) in enumerate(zip(_heads(W_Q, n_heads), _heads(W_K, n_heads), _heads(W_V, n_heads), strict=True)):
        dh = wq.shape[0]
        WOh = WO[:, h * dh:(h + 1) * dh]
        ov_h = _inf(WOh @ wv)
        q, k, v = X @ wq.T, X @ wk.T, X @ wv.T
        aQ = float(np.linalg.norm(np.abs(wq).sum(1)))
        aK = float(np.linalg.norm(np.abs(wk).sum(1)))
        wv_inf = _inf(wv)
        kn = np.linalg.norm(k, axis=1)
        qn = np.linalg.norm(q, axis=1)
        kq1 = np.sum(np.abs(k @ wq), axis=1)  # ||W_Q^T k_j||_1: exact sup of |dq_i . k_j| / delta
        qk1 = np.sum(np.abs(q @ wk), axis=1)  # ||W_K^T q_i||_1
        vo = v @ WOh.T  # values in output space
        for i0 in range(0, nq, chunk):
            i1 = min(nq, i0 + chunk)
            rows = qi[i0:i1]
            logits = q[rows] @ k.T / math.sqrt(dh)
            mask = (np.arange(n)[None, :] <= rows[:, None]) if causal else None
            s = _softmax(logits, mask)
            vbar = s @ v
            sp = np.einsum("ij,ij->i", s, np.max(np.abs(v[None, :, :] - vbar[:, None, :]), axis=-1))
            if mask is not None:
                kmax = np.max(np.where(mask, kn[None, :], 0.0), axis=1)
            else:
                kmax = np.full(i1 - i0, float(kn.max()))
            dl1 = (aQ * kmax + qn[rows] * aK) / math.sqrt(dh)
            factor[i0:i1] = np.maximum(factor[i0:i1], wo * (wv_inf + 2 * dl1 * sp))
            if bound is not None and delta is not None:
                M = (delta * aQ * kmax + qn[rows] * delta * aK + delta * delta * aQ * aK) / math.sqrt(dh)
                bound[i0:i1] = np.maximum(bound[i0:i1], wo * (wv_inf * delta + np.expm1(2 * M) * sp))
            vobar = s @ vo
            spo = np.einsum("ij,ij->i", s, np.max(np.abs(vo[None, :, :] - vobar[:, None, :]), axis=-1))
            kq = np.max(np.where(mask, kq1[None, :], 0.0), axis=1) if mask is not None else np.full(i1 - i0, kq1.max())
            dlt = (kq + qk1[rows]) / math.sqrt(dh)
            tight[i0:i1] += ov_h + 2 * dlt * spo
            if bound_t is not None and delta is not None:
                Mt = (delta * (kq + qk1[rows]) + delta * delta * aQ * aK) / math.sqrt(dh)
                bound_t[i0:i1] += ov_h * delta + np.expm1(2 * Mt) * spo
            spread_max[i0:i1] = np.maximum(spread_max[i0:i1], sp)
            sink[i0:i1] += np.max(s, axis=1) / n_heads
    if bound is not None and bound_t is not None:
        bound = np.minimum(bound, bound_t)
    return {"queries": qi, "factor": factor, "factor_tight": np.minimum(tight, factor), "bound": bound,
            "worst_case": om_ov * (1 + 4 * om_kq * R * R),
            "omega_ov": om_ov, "omega_kq": om_kq, "R": R, "spread": spread_max, "sink_mass": sink}


def attention_jacobian_lipschitz(X: Any, W_Q: Any, W_K: Any, W_V: Any, W_O: Any, n_heads: int, query: int, *,
                                 causal: bool = False) -> tuple[float, np.ndarray]:
    """The exact first-order local Lipschitz constant of ``Y_query`` in the per-token infinity
    norm, ``max_r sum_j ||dY_{query,r}/dx_j||_1`` (analytic Jacobian), and the worst perturbation
    direction ``sign(dY_{query,r*}/dX)`` (``(n, d)``, entries in {-1, 0, 1})."""
    G = attention_jacobian(X, W_Q, W_K, W_V, W_O, n_heads, query, causal=causal)
    L = np.sum(np.abs(G), axis=(1, 2))
    r = int(np.argmax(L))
    return float(L[r]), np.sign(G[r])


def attention_jacobian(X: Any, W_Q: Any, W_K: Any, W_V: Any, W_O: Any, n_heads: int, query: int, *,
                       causal: bool = False) -> np.ndarray:
    """``dY_{query, r} / dX_{j, c}`` as a ``(d_out, n, d)`` array (analytic, float64)."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    WO = np.asarray(W_O, dtype=np.float64)
    i = int(query)
    S, A, C, U, Gq = [], [], [], [], np.zeros((WO.shape[0], d))
    for h, (wq, wk, wv) in enumerate(zip(_heads(W_Q, n_heads), _heads(W_K, n_heads), _heads(W_V, n_heads), strict=True)):
        dh = wq.shape[0]
        q, k, v = X @ wq.T, X @ wk.T, X @ wv.T
        mask = (np.arange(n) <= i)[None, :] if causal else None
        s = _softmax((q[i] @ k.T / math.sqrt(dh))[None, :], mask)[0]
        o = s @ v
        Wh = WO[:, h * dh:(h + 1) * dh]  # (d_out, dh)
        c = s[None, :] * (Wh @ v.T - (Wh @ o)[:, None])  # (d_out, n): dY_r / dl_ij
        S.append(s)
        A.append(Wh @ wv)  # (d_out, d): through v_j, weight s_j
        C.append(c)
        U.append(wk.T @ q[i] / math.sqrt(dh))  # (d,): through k_j, weight c_rj
        Gq += (c @ k) @ wq / math.sqrt(dh)  # through q_i (token i only)
    S_ = np.stack(S, axis=1)  # (n, H)
    A_ = np.stack(A, axis=0)  # (H, d_out, d)
    C_ = np.stack(C, axis=2)  # (d_out, n, H)
    U_ = np.stack(U, axis=0)  # (H, d)
    H, dout = len(S), WO.shape[0]
    G = (S_ @ A_.reshape(H, dout * d)).reshape(n, dout, d).transpose(1, 0, 2)  # (d_out, n, d)
    G = G + C_ @ U_
    G[:, i, :] += Gq
    return G


def _random_heads(rng: np.random.Generator, d: int, gain_qk: float = 1.0) -> tuple[np.ndarray, ...]:
    s = 1.0 / math.sqrt(d)
    return (gain_qk * s * rng.standard_normal((d, d)), gain_qk * s * rng.standard_normal((d, d)),
            s * rng.standard_normal((d, d)), s * rng.standard_normal((d, d)))


def _tokens(rng: np.random.Generator, n: int, d: int, R: float) -> np.ndarray:
    X = rng.standard_normal((n, d))
    return X * (R / np.max(np.abs(X), axis=1, keepdims=True))  # every token has ||x_j||_inf = R exactly


def attention_factor_table(seq_lens: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048), *, d: int = 64,
                           n_heads: int = 4, R: float = 3.0, sink: bool = False, delta: float = 1e-5,
                           n_queries: int = 32, n_exact: int = 4, seed: int = 0,
                           causal: bool = False) -> list[dict[str, float]]:
    """Lipschitz factors of one random multi-head attention layer for several sequence lengths.

    Tokens have ``||x_j||_inf = R`` exactly (so the worst-case factor is the same for every n).
    ``sink``: token 0 is built to be an attention sink (``x_0 = R sign(sum_i W_K^T q_i)`` with
    doubled Q/K gains). For each n, over ``n_queries`` evenly spaced query positions: max and
    mean of the first-order factor ``F_i``, max of the tight form ``F'_i``, the worst-case factor,
    the mean sink mass and spread; for ``n_exact`` of them the exact local Lipschitz constant
    ``L_i`` (analytic Jacobian) with ``F'_i / L_i`` (``F'_i >= L_i`` must hold), and the actual
    change ``||dY_i||_inf`` for a
    perturbation of size ``delta`` along the worst direction, checked against the rigorous bound
    (``violations`` counts both kinds of failure).
    """
    rng = np.random.default_rng(seed)
    WQ, WK, WV, WO = _random_heads(rng, d, 2.0 if sink else 1.0)
    rows = []
    for n in seq_lens:
        X = _tokens(rng, n, d, R)
        if sink:
            g = np.zeros(d)
            for wq, wk in zip(_heads(WQ, n_heads), _heads(WK, n_heads), strict=True):
                g += wk.T @ (X @ wq.T).sum(0)
            X[0] = R * np.sign(g)
        qs = np.unique(np.linspace(0, n - 1, min(n, n_queries)).astype(np.int64))
        info = attention_lipschitz(X, WQ, WK, WV, WO, n_heads, delta=delta, causal=causal, queries=qs)
        sel = np.unique(np.linspace(0, qs.size - 1, min(qs.size, n_exact)).astype(np.int64))
        L = np.zeros(sel.size)
        moved = np.zeros(sel.size)
        for t, jq in enumerate(sel):
            i = int(qs[jq])
            L[t], D = attention_jacobian_lipschitz(X, WQ, WK, WV, WO, n_heads, i, causal=causal)
            Y1 = attention_forward(X, WQ, WK, WV, WO, n_heads, causal=causal, rows=[i])
            Y2 = attention_forward(X + delta * D, WQ, WK, WV, WO, n_heads, causal=causal, rows=[i])
            moved[t] = float(np.max(np.abs(Y2 - Y1)))
        F = info["factor_tight"][sel]
        rows.append({
            "n": n, "factor_max": float(info["factor"].max()), "factor_mean": float(info["factor"].mean()),
            "tight_max": float(info["factor_tight"].max()),
            "worst_case": info["worst_case"], "sink_mass": float(info["sink_mass"].mean()),
            "spread_mean": float(info["spread"].mean()), "lipschitz_max": float(L.max()),
            "tight_over_lipschitz_min": float(np.min(F / L)), "tight_over_lipschitz_max": float(np.max(F / L)),
            "moved_over_bound_max": float(np.max(moved / info["bound"][sel])),
            "violations": int(np.sum(moved > info["bound"][sel] * (1 + 1e-9))) + int(np.sum(F < L * (1 - 1e-9))),
        })
    return rows


def table_markdown(rows: list[dict[str, float]]) -> str:
    """Markdown rendering of :func:`attention_factor_table` rows."""
    out = ["| n | F max (omega form) | F' max (tight form) | worst case | sink mass | spread mean | exact L max | "
           "F'/L range | max moved/bound | viol |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['n']} | {r['factor_max']:.3g} | {r['tight_max']:.3g} | {r['worst_case']:.3g} | "
                   f"{r['sink_mass']:.3f} | {r['spread_mean']:.3g} | {r['lipschitz_max']:.3g} | "
                   f"{r['tight_over_lipschitz_min']:.3g}-{r['tight_over_lipschitz_max']:.3g} | "
                   f"{r['moved_over_bound_max']:.3g} | {r['violations']} |")
    return "\n".join(out)
