"""The generic layer forward, written once against :class:`refmodel.layer.ops.LayerOps`.

Stable tensor names (shared by reference, quantized layer, bounds, golden files, RTL tests), in
forward order, with shapes (s = seq, d = d_model, H = n_heads, KV = n_kv_heads, hd = head_dim):

* gpt2 (pre-LN):  x, ln1, q, k, v, scores, probs, attn, proj, res1, ln2, up, act, down, out
* bert (post-LN): x, q, k, v, scores, probs, attn, proj, res1, ln1, up, act, down, res2, out
  (``out`` is the second LayerNorm, ``LN2(res2)``)
* llama:          x, ln1, q, k, v, q_rope, k_rope, scores, probs, attn, proj, res1, ln2, gate, up,
  act, mul, down, out

==========================  ==================  ==============================================
name                        shape               definition
==========================  ==================  ==============================================
x                           [s, d]              layer input (residual stream)
ln1 / ln2                   [s, d]              norms (see :func:`norm_sites` for inputs)
q                           [H, s, hd]          linear(ln1 | x, wq, bq) split by head
k, v                        [KV, s, hd]         linear(.., wk|wv, bk|bv) split by kv head
q_rope, k_rope              as q, k             RoPE (llama)
scores                      [H, s, s]           q k^T / sqrt(hd); masked entries 0
probs                       [H, s, s]           softmax over allowed keys; masked entries 0
attn                        [s, d]              probs @ v, heads concatenated
proj                        [s, d]              linear(attn, wo, bo)
res1                        [s, d]              x + proj
gate (llama), up            [s, d_ff]           linear(ln2 | ln1, w_gate | w_up, b_up)
act                         [s, d_ff]           gelu_tanh(up) | gelu_erf(up) | silu(gate)
mul (llama)                 [s, d_ff]           act * up
down                        [s, d]              linear(act | mul, w_down, b_down)
res2 (bert)                 [s, d]              ln1 + down
out                         [s, d]              res1 + down (gpt2, llama) | LN2(res2) (bert)
==========================  ==================  ==============================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .config import LayerConfig
from .ops import LayerOps
from .weights import LayerWeights

__all__ = ["tensor_names", "tensor_shapes", "norm_sites", "NormSite", "attention_mask", "layer_forward",
           "check_input"]

_NAMES = {
    "gpt2": ["x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down", "out"],
    "bert": ["x", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln1", "up", "act", "down", "res2", "out"],
    "llama": ["x", "ln1", "q", "k", "v", "q_rope", "k_rope", "scores", "probs", "attn", "proj", "res1", "ln2",
              "gate", "up", "act", "mul", "down", "out"],
}


def tensor_names(config: LayerConfig) -> list[str]:
    """The tensor names of ``config``'s arch, in forward order (the one place they are listed)."""
    return list(_NAMES[config.arch])


def tensor_shapes(config: LayerConfig, seq_len: int | None = None) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor for a sequence of ``seq_len`` (default ``config.seq_len``)."""
    s = config.seq_len if seq_len is None else int(seq_len)
    d, f, h, kv, hd = config.d_model, config.d_ff, config.n_heads, config.n_kv_heads, config.head_dim
    shape = {
        "q": (h, s, hd), "q_rope": (h, s, hd), "k": (kv, s, hd), "k_rope": (kv, s, hd), "v": (kv, s, hd),
        "scores": (h, s, s), "probs": (h, s, s), "gate": (s, f), "up": (s, f), "act": (s, f), "mul": (s, f),
    }
    return {n: shape.get(n, (s, d)) for n in tensor_names(config)}


@dataclass(frozen=True)
class NormSite:
    """One norm of the layer: its weight prefix ``key`` (``ln1``/``ln2``; SLaNC scales are keyed by
    it), the tensor it normalises (``input``) and the tensor it produces (``output``)."""

    key: str
    input: str
    output: str


def norm_sites(config: LayerConfig) -> list[NormSite]:
    """The two norms of the layer, in forward order."""
    if config.prenorm:
        return [NormSite("ln1", "x", "ln1"), NormSite("ln2", "res1", "ln2")]
    return [NormSite("ln1", "res1", "ln1"), NormSite("ln2", "res2", "out")]


def attention_mask(config: LayerConfig, seq_len: int, pad_mask: np.ndarray | None = None) -> np.ndarray | None:
    """Bool ``[s, s]`` (query i, key j; True = may attend) from the causal flag and an optional key
    padding mask ``[s]`` (True = real token); None when everything is allowed."""
    mask = None
    if config.causal:
        mask = np.tril(np.ones((seq_len, seq_len), dtype=bool))
    if pad_mask is not None:
        pm = np.asarray(pad_mask)
        if pm.dtype != bool or pm.shape != (seq_len,):
            raise ValueError(f"pad_mask must be a bool array of shape [{seq_len}], got {pm.dtype} {list(pm.shape)}")
        if not pm.any():
            raise ValueError("pad_mask: every token is padding")
        mask = (np.ones((seq_len, seq_len), dtype=bool) if mask is None else mask) & pm[None, :]
        if not mask.any(axis=1).all():
            bad = int(np.argmin(mask.any(axis=1)))
            raise ValueError(f"pad_mask with causal attention leaves query {bad} with no key to attend to")
    return mask


def check_input(config: LayerConfig, x: Any) -> np.ndarray:
    """``x`` as float64 ``[s, d_model]`` (s >= 1, all finite) or ``ValueError`` naming the problem."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != config.d_model or a.shape[0] < 1:
        raise ValueError(f"input x must have shape [seq, {config.d_model}], got {list(a.shape)}")
    if not np.isfinite(a).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValueError(f"input x has a non-finite value {float(a[idx])} at index {list(idx)}")
    return a


class _ScaleSource(Protocol):
    def scale(self, key: str) -> float: ...


def _slanc_scale(slanc: _ScaleSource | Mapping[str, float] | None, key: str) -> float:
    if slanc is None:
        return 1.0
    if hasattr(slanc, "scale"):
        return float(slanc.scale(key))
    try:
        return float(slanc[key])
    except KeyError:
        raise ValueError(f"SLaNC scales have no entry for norm {key!r}") from None


def layer_forward(
    ops: LayerOps,
    config: LayerConfig,
    weights: LayerWeights,
    x: np.ndarray,
    *,
    pad_mask: np.ndarray | None = None,
    slanc: _ScaleSource | Mapping[str, float] | None = None,
    softmax_shifted: bool = True,
    positions: np.ndarray | None = None,
) -> dict[str, Any]:
    """Run one layer on backend ``ops``; return ``ops.tensors`` (name -> backend tensor).

    ``weights`` are validated against ``config`` first, then ``x`` (float64 ``[s, d_model]``).
    ``pad_mask`` (``[s]`` bool, True = real token) masks padded keys. ``slanc`` gives a scale per
    norm key (``ln1``, ``ln2``): an object with ``scale(key)`` (e.g. :class:`SlancScales`) or a
    mapping; None = no scaling. ``positions`` are the RoPE positions (default ``0..s-1``).
    """
    weights.validate(config)
    xa = check_input(config, x)
    s = xa.shape[0]
    mask = attention_mask(config, s, pad_mask)
    c = config
    wt = {n: ops.weight(n, weights[n]) for n in weights}
    b = wt.get  # biases/betas are absent for llama -> None
    kind, eps = c.norm, c.eps

    X = ops.input("x", xa)
    if c.prenorm:
        h = ops.norm("ln1", X, wt["ln1_g"], b("ln1_b"), kind=kind, eps=eps, scale=_slanc_scale(slanc, "ln1"))
    else:
        h = X
    q = ops.linear("q", h, wt["wq"], b("bq"), heads=c.n_heads)
    k = ops.linear("k", h, wt["wk"], b("bk"), heads=c.n_kv_heads)
    v = ops.linear("v", h, wt["wv"], b("bv"), heads=c.n_kv_heads)
    if c.rope:
        pos = np.arange(s) if positions is None else np.asarray(positions)
        if pos.shape != (s,):
            raise ValueError(f"positions must have shape [{s}], got {list(pos.shape)}")
        assert c.rope_base is not None  # set for the RoPE arch (llama)
        q = ops.rope("q_rope", q, pos, base=c.rope_base)
        k = ops.rope("k_rope", k, pos, base=c.rope_base)
    sc = ops.scores("scores", q, k, scale=1.0 / math.sqrt(c.head_dim), mask=mask)
    p = ops.softmax("probs", sc, mask=mask, shifted=softmax_shifted)
    a = ops.mix("attn", p, v)
    o = ops.linear("proj", a, wt["wo"], b("bo"))
    r1 = ops.add("res1", X, o)
    if c.prenorm:
        h2 = ops.norm("ln2", r1, wt["ln2_g"], b("ln2_b"), kind=kind, eps=eps, scale=_slanc_scale(slanc, "ln2"))
    else:
        h2 = ops.norm("ln1", r1, wt["ln1_g"], b("ln1_b"), kind=kind, eps=eps, scale=_slanc_scale(slanc, "ln1"))
    if c.gated:
        g = ops.linear("gate", h2, wt["w_gate"], None)
        u = ops.linear("up", h2, wt["w_up"], None)
        ac = ops.act("act", g, kind=c.activation)
        m = ops.mul("mul", ac, u)
        dn = ops.linear("down", m, wt["w_down"], None)
    else:
        u = ops.linear("up", h2, wt["w_up"], b("b_up"))
        ac = ops.act("act", u, kind=c.activation)
        dn = ops.linear("down", ac, wt["w_down"], b("b_down"))
    if c.prenorm:
        ops.add("out", r1, dn)
    else:
        r2 = ops.add("res2", h2, dn)
        ops.norm("out", r2, wt["ln2_g"], b("ln2_b"), kind=kind, eps=eps, scale=_slanc_scale(slanc, "ln2"))
    return ops.tensors
