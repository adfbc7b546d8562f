"""Self-attention Lipschitz factors (refmodel.bounds.attention): definitions, the analytic
Jacobian, rigour of the finite-delta bound, and non-growth with the sequence length."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refmodel.bounds.attention import (
    attention_factor_table,
    attention_forward,
    attention_jacobian,
    attention_jacobian_lipschitz,
    attention_lipschitz,
    omega_kq,
    omega_ov,
)


def _weights(rng, d, gain=1.0):
    return [gain * rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(2)] + \
        [rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(2)]


def test_omegas_match_definitions():
    rng = np.random.default_rng(0)
    d, H = 12, 3
    WQ, WK, WV, WO = _weights(rng, d)
    dh = d // H
    ov = max(np.abs(WO).sum(1)) * max(max(np.abs(WV[h * dh:(h + 1) * dh]).sum(1)) for h in range(H))
    assert omega_ov(WV, WO, H) == pytest.approx(ov)
    kq = max(2 / math.sqrt(dh) * np.linalg.norm(np.abs(WK[h * dh:(h + 1) * dh]).sum(1))
             * np.linalg.norm(np.abs(WQ[h * dh:(h + 1) * dh]).sum(1)) for h in range(H))
    assert omega_kq(WQ, WK, H) == pytest.approx(kq)
    with pytest.raises(ValueError, match="heads"):
        omega_ov(WV[:10], WO, 3)


@pytest.mark.parametrize("causal", [False, True])
def test_jacobian_matches_finite_differences(causal):
    rng = np.random.default_rng(1)
    n, d, H, i = 6, 8, 2, 3
    W = _weights(rng, d, 1.5)
    X = rng.standard_normal((n, d))
    G = attention_jacobian(X, *W, H, i, causal=causal)
    h = 1e-6
    Gn = np.zeros_like(G)
    for j in range(n):
        for c in range(d):
            Xp, Xm = X.copy(), X.copy()
            Xp[j, c] += h
            Xm[j, c] -= h
            Gn[:, j, c] = (attention_forward(Xp, *W, H, causal=causal, rows=[i])[0]
                           - attention_forward(Xm, *W, H, causal=causal, rows=[i])[0]) / (2 * h)
    assert np.max(np.abs(G - Gn)) < 1e-7 * max(1.0, np.max(np.abs(G)))
    if causal:
        assert not np.any(G[:, i + 1:, :])  # later tokens cannot influence query i


@pytest.mark.parametrize("delta", [1e-4, 1e-2, 0.2])
@pytest.mark.parametrize("causal", [False, True])
def test_rigorous_bound_holds_for_finite_perturbations(delta, causal):
    """||dY_i||_inf <= bound_i for random and worst-direction perturbations with
    max_j ||dX_j||_inf <= delta, including large delta (the e^{2M} - 1 form is not first order);
    and the first-order factors dominate the exact local Lipschitz constant."""
    rng = np.random.default_rng(2)
    n, d, H = 40, 16, 2
    W = _weights(rng, d, 2.0)
    X = rng.standard_normal((n, d))
    info = attention_lipschitz(X, *W, H, delta=delta, causal=causal)
    assert np.all(info["factor_tight"] <= info["factor"])
    assert np.all(info["factor"] <= info["worst_case"])
    Y = attention_forward(X, *W, H, causal=causal)
    for _ in range(10):
        D = delta * rng.uniform(-1, 1, X.shape)
        D[rng.random(X.shape) < 0.5] = delta * np.sign(D[rng.random(X.shape) < 0.5].sum() or 1.0)
        dY = np.max(np.abs(attention_forward(X + D, *W, H, causal=causal) - Y), axis=1)
        assert np.all(dY <= info["bound"] * (1 + 1e-9))
    for i in (0, n // 2, n - 1):
        L, Dw = attention_jacobian_lipschitz(X, *W, H, i, causal=causal)
        assert info["factor_tight"][i] >= L * (1 - 1e-9)
        dY = np.max(np.abs(attention_forward(X + delta * Dw, *W, H, causal=causal, rows=[i])
                           - attention_forward(X, *W, H, causal=causal, rows=[i])))
        assert dY <= info["bound"][i] * (1 + 1e-9)


@pytest.mark.parametrize("sink", [False, True])
def test_factors_do_not_grow_with_sequence_length(sink):
    rows = attention_factor_table((16, 64, 256, 1024, 2048), sink=sink, n_queries=16, n_exact=1)
    assert all(r["violations"] == 0 for r in rows)
    wc = [r["worst_case"] for r in rows]
    assert max(wc) == pytest.approx(min(wc), rel=1e-12)  # ||x_j||_inf = R for every n
    # n grows 128x; the data-dependent factors move only with the attention pattern (in the sink
    # construction the sink's share falls as more keys compete), far below any power of n
    lim = 2.0 if sink else 1.5
    short = max(r["tight_max"] for r in rows if r["n"] <= 64)
    long_ = max(r["tight_max"] for r in rows if r["n"] >= 1024)
    assert long_ <= lim * short
    short_f = max(r["factor_max"] for r in rows if r["n"] <= 64)
    assert max(r["factor_max"] for r in rows if r["n"] >= 1024) <= lim * short_f
    assert all(r["tight_max"] <= r["factor_max"] <= r["worst_case"] for r in rows)
    if sink:
        assert min(r["sink_mass"] for r in rows) > 0.5  # token 0 really takes most of the weight
