"""First-order Lipschitz factors of whole transformer layers, from the weights and the float64
reference stream: the amplification ``A_l`` of the worst-case error recursion

    E_{l+1} <= A_l E_l + delta_l          (norm: max over tokens of the infinity norm)

of the stability analysis (stability.md sections 3.2, 3.3, 3.6, 3.7, 3.9; a reconstruction of the
paper's mechanism, not the paper's stated theorem, which was not available). Every factor is the
infinity-norm bound of the layer's Jacobian at the reference point (first order), built from the
parts:

* LayerNorm at a row x (c = x - mean, r = sqrt(|c|^2/d + eps)): ``max|g| (2 + |c|_inf |c|_1 /
  (d r^2)) / r``; RMSNorm: ``max|g| (1 + |x|_inf |x|_1 / (d r^2)) / r`` with r = sqrt(|x|^2/d +
  eps); the max over rows. The 1/r is where the growth of the residual stream enters: a larger
  stream makes the norm, and so the layer, less sensitive.
* Attention (per head h, kv head of h under GQA, softmax weights s, the reference's q and k after
  RoPE and biases, values in output space vo_j = W_O^h v_j): ``sum_h [ ||W_O^h W_V^h||_inf +
  2 max_j (a_Q ||k_j||_2 + ||q_i||_2 a_K) / sqrt(d_h) * sum_j s_ij ||vo_j - sum_k s_ik vo_k||_inf ]``
  with ``a = || |W^h| 1 ||_2`` (so ``||dq_i||_2 <= a_Q delta``; RoPE is a rotation and keeps it),
  the max over query tokens i (stability.md 3.6: no sum over keys without attention weights,
  so it does not grow with the sequence length).
* MLP: standard ``L_phi ||W_down||_inf ||W_up||_inf`` (``L_phi = 1.1289``, GELU's max slope);
  gated (SwiGLU, local at the reference's gate g and up u): ``||W_down||_inf (max|silu'(g) u|
  ||W_gate||_inf + max|silu(g)| ||W_up||_inf)``.
* Pre-norm layer: ``(1 + L_attn L_N1(x)) (1 + L_mlp L_N2(res1))``; post-LN (bert): ``L_N2(res2)
  (1 + L_mlp) L_N1(res1) (1 + L_attn)``.

These are upper bounds on the first-order growth of an input error, valid at the reference point
(not over a finite ball: the bound on a finite error is first order). They are loose by design
(every matrix norm is a worst case over perturbation directions); the study reports them next to
the measured amplification ``||F(x_q) - F(x)|| / ||x_q - x||``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..layer.config import LayerConfig
from ..layer.forward import attention_mask
from ..layer.weights import LayerWeights

__all__ = ["GELU_SLOPE", "LayerFactors", "norm_factor", "attention_factor", "mlp_factor", "layer_factors"]

#: max |d/dx GELU(x)| (erf and tanh forms agree to 1e-4; stability.md 3.7)
GELU_SLOPE = 1.1289


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _silu_d(x: np.ndarray) -> np.ndarray:
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 + x * (1.0 - s))



def _inf(w: np.ndarray) -> float:
    return float(np.max(np.sum(np.abs(w), axis=-1)))


def norm_factor(x: np.ndarray, gain: np.ndarray, *, kind: str, eps: float) -> float:
    """Infinity-norm Lipschitz factor (first order) of a LayerNorm / RMSNorm at the rows of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[-1]
    c = x - x.mean(axis=-1, keepdims=True) if kind == "layernorm" else x
    r2 = np.mean(c * c, axis=-1) + eps
    lead = 2.0 if kind == "layernorm" else 1.0
    f = (lead + np.max(np.abs(c), axis=-1) * np.sum(np.abs(c), axis=-1) / (d * r2)) / np.sqrt(r2)
    return float(np.max(np.abs(gain)) * np.max(f))


def attention_factor(config: LayerConfig, w: LayerWeights, ref: Mapping[str, np.ndarray]) -> float:
    """Infinity-norm Lipschitz factor (first order) of the attention block (input: the tensor that
    feeds q/k/v, output: ``proj``) at the reference tensors ``ref`` of one layer."""
    c = config
    H, hd, g = c.n_heads, c.head_dim, c.group_size
    q = ref["q_rope"] if c.rope else ref["q"]  # [H, s, hd]
    k = ref["k_rope"] if c.rope else ref["k"]  # [KV, s, hd]
    v, p = ref["v"], ref["probs"]
    s = q.shape[1]
    mask = attention_mask(c, s)
    allowed = np.ones((s, s), dtype=bool) if mask is None else mask
    wq, wk, wv, wo = w["wq"], w["wk"], w["wv"], w["wo"]
    total = np.zeros(s)
    for h in range(H):
        j = h // g
        rows = slice(h * hd, (h + 1) * hd)
        kv_rows = slice(j * hd, (j + 1) * hd)
        wo_h = wo[:, rows]
        ov = _inf(wo_h @ wv[kv_rows])
        a_q = float(np.linalg.norm(np.abs(wq[rows]).sum(axis=1)))
        a_k = float(np.linalg.norm(np.abs(wk[kv_rows]).sum(axis=1)))
        qn = np.linalg.norm(q[h], axis=1)
        kn = np.linalg.norm(k[j], axis=1)
        kmax = np.max(np.where(allowed, kn[None, :], 0.0), axis=1)
        vo = v[j] @ wo_h.T  # [s, d]
        vbar = p[h] @ vo
        spread = np.einsum("ij,ij->i", p[h], np.max(np.abs(vo[None, :, :] - vbar[:, None, :]), axis=-1))
        total += ov + 2.0 * (a_q * kmax + qn * a_k) / math.sqrt(hd) * spread
    return float(np.max(total))


def mlp_factor(config: LayerConfig, w: LayerWeights, ref: Mapping[str, np.ndarray]) -> float:
    """Infinity-norm Lipschitz factor of the MLP (input: its norm output, output: ``down``)."""
    if config.gated:
        gt, up = ref["gate"], ref["up"]
        a = float(np.max(np.abs(_silu_d(gt) * up)))
        b = float(np.max(np.abs(_silu(gt))))
        return _inf(w["w_down"]) * (a * _inf(w["w_gate"]) + b * _inf(w["w_up"]))
    return GELU_SLOPE * _inf(w["w_down"]) * _inf(w["w_up"])


@dataclass(frozen=True)
class LayerFactors:
    """The parts and the product ``total`` (= A_l) for one layer."""

    norm1: float
    attention: float
    norm2: float
    mlp: float
    total: float


def layer_factors(config: LayerConfig, w: LayerWeights, ref: Mapping[str, np.ndarray]) -> LayerFactors:
    """:class:`LayerFactors` of one layer at its float64 reference tensors ``ref``."""
    kind, eps = config.norm, float(config.eps)
    la = attention_factor(config, w, ref)
    lm = mlp_factor(config, w, ref)
    if config.prenorm:
        n1 = norm_factor(ref["x"], w["ln1_g"], kind=kind, eps=eps)
        n2 = norm_factor(ref["res1"], w["ln2_g"], kind=kind, eps=eps)
        total = (1.0 + la * n1) * (1.0 + lm * n2)
    else:
        n1 = norm_factor(ref["res1"], w["ln1_g"], kind=kind, eps=eps)
        n2 = norm_factor(ref["res2"], w["ln2_g"], kind=kind, eps=eps)
        total = n2 * (1.0 + lm) * n1 * (1.0 + la)
    return LayerFactors(n1, la, n2, lm, total)
