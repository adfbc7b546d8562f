"""SLaNC: static per-norm input scales from the weights (Salmani, Trukhanov, Soloveychik, "SLaNC:
Static LayerNorm Calibration", arXiv:2410.10553).

A norm computes ``norm(x / s)`` with ``eps / s^2``, which equals ``norm(x)`` in exact arithmetic,
while the sum of squares inside the norm shrinks by ``s^2`` (no fp16 overflow with outlier
channels). ``s`` depends only on the weights of the sublayer that precedes the norm (the SLaNC
formulas; all biases and norm betas are ignored, as in the authors' code). Notation:
linear weights ``[out, in]``; ``diag(g)`` scales the input columns; ``||.||_F`` Frobenius,
``||.||_2`` spectral norm.

* after attention:        ``s = ||(I + W_O W_V) diag(g_in)||_F``; with GQA the value rows are
  expanded per kv head by repeat-interleave (HF ``repeat_kv``: kv head j serves query heads
  j*g..j*g+g-1), option ``gqa_expand="tile"`` gives the dmx library's tiling for comparison.
* after a standard MLP (``mlp=``): ``dmx`` = ``(||g_in||_1 / d) ||W_1||_2 ||W_2||_2`` (d-Matrix's
  current library) or ``auth`` = ``||(I + W_2 W_1) diag(g_in)||_F`` (co-author's OPT code, with the
  corrected gain: the norm that feeds the MLP).
* after a gated (llama) MLP: ``s = ||W_down W_up diag(g_in)||_F * ||W_gate diag(g_in)||_2``.

``g_in`` is always the gain of the norm that FEEDS the preceding sublayer. Per arch, for one layer:

=====  ===================================================  ===========================================
norm   gpt2 / llama (pre-norm)                              bert (post-LN)
=====  ===================================================  ===========================================
ln1    first-norm rule ``first=`` (below)                   attention formula, g_in = gain of the norm
                                                            that produced x (``input_gain``, or the
                                                            previous layer's ln2_g via ``prev``, else 1)
ln2    attention formula, g_in = this layer's ln1_g         standard-MLP formula, g_in = ln1_g
=====  ===================================================  ===========================================

The first norm of a pre-norm layer has no preceding sublayer inside the layer. ``first=``:
  * ``"none"``: s = 1 (what both SLaNC code bases do for a model's first norm);
  * ``"input"``: s = the largest row L2 norm of the given inputs ``x`` (an exact bound for those
    inputs: the sum of squares of x/s is <= 1 in every row); a float passed as ``first`` is used
    directly (e.g. an embedding-table bound max ||wte_t + wpe_p||);
  * ``"prev"``: the MLP formula of ``prev`` (the previous layer's weights) with its ln2_g.

Fixed-point plans apply ``2^-k`` as a shift with ``k = ceil(log2 s)`` (:func:`pow2_shift`); the
effective divisor ``2^k >= s`` (the safe direction for overflow) and ``eps * 2^-2k`` is exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import LayerConfig
from .weights import LayerWeights

__all__ = [
    "MLP_VARIANTS",
    "FIRST_RULES",
    "expand_kv_rows",
    "spectral_norm",
    "s_attn",
    "s_mlp_standard",
    "s_mlp_gated",
    "s_input",
    "pow2_shift",
    "SlancEntry",
    "SlancScales",
    "compute_slanc",
    "model_slanc",
]

MLP_VARIANTS = ("dmx", "auth")
FIRST_RULES = ("none", "input", "prev")
GQA_EXPANSIONS = ("interleave", "tile")


def _f64(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def spectral_norm(m: np.ndarray) -> float:
    """Largest singular value ``||m||_2`` as sqrt of the largest eigenvalue of the smaller Gram
    matrix (symmetric eigensolver; relative accuracy ~1e-15, much faster than a full SVD)."""
    m = _f64(m)
    g = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    return float(math.sqrt(max(float(np.linalg.eigvalsh(g)[-1]), 0.0)))


def expand_kv_rows(wv: np.ndarray, n_heads: int, n_kv_heads: int, mode: str = "interleave") -> np.ndarray:
    """Value (or key) weight ``[n_kv*hd, d]`` expanded to ``[n_heads*hd, d]``.

    ``interleave`` repeats each kv-head block of rows ``g = n_heads/n_kv`` times in place (the
    matrix an MHA layer would need to equal the GQA layer, HF ``repeat_kv``); ``tile`` repeats the
    whole matrix g times (pairs query head h with kv head h mod n_kv; d-Matrix's code).
    """
    wv = _f64(wv)
    if mode not in GQA_EXPANSIONS:
        raise ValueError(f"unknown GQA expansion {mode!r}; expected one of {', '.join(GQA_EXPANSIONS)}")
    if n_heads % n_kv_heads or wv.shape[0] % n_kv_heads:
        raise ValueError(f"cannot expand {wv.shape[0]} rows of {n_kv_heads} kv heads to {n_heads} heads")
    g = n_heads // n_kv_heads
    if g == 1:
        return wv
    if mode == "tile":
        return np.tile(wv, (g, 1))
    hd = wv.shape[0] // n_kv_heads
    return np.repeat(wv.reshape(n_kv_heads, hd, -1), g, axis=0).reshape(n_heads * hd, -1)


def s_attn(wv: np.ndarray, wo: np.ndarray, gamma: np.ndarray, *, n_heads: int | None = None,
           n_kv_heads: int | None = None, gqa_expand: str = "interleave") -> float:
    """``||(I + W_O W_V) diag(gamma)||_F`` (float64); W_V is expanded for GQA when its row count
    differs from W_O's column count (``n_heads``/``n_kv_heads`` then required)."""
    wv, wo, g = _f64(wv), _f64(wo), _f64(gamma)
    if wv.shape[0] != wo.shape[1]:
        if n_heads is None or n_kv_heads is None:
            raise ValueError("s_attn: W_V has fewer rows than W_O has columns; pass n_heads and n_kv_heads")
        wv = expand_kv_rows(wv, n_heads, n_kv_heads, gqa_expand)
    m = wo @ wv
    m[np.diag_indices_from(m)] += 1.0
    return float(np.linalg.norm(m * g[None, :], "fro"))


def s_mlp_standard(w1: np.ndarray, w2: np.ndarray, gamma: np.ndarray, variant: str = "dmx") -> float:
    """Standard MLP (W_1 = w_up ``[d_ff, d]``, W_2 = w_down ``[d, d_ff]``): ``dmx`` =
    ``(||gamma||_1/d) ||W_1||_2 ||W_2||_2``, ``auth`` = ``||(I + W_2 W_1) diag(gamma)||_F``."""
    w1, w2, g = _f64(w1), _f64(w2), _f64(gamma)
    if variant == "dmx":
        return float(np.abs(g).sum() / g.size * spectral_norm(w1) * spectral_norm(w2))
    if variant == "auth":
        m = w2 @ w1
        m[np.diag_indices_from(m)] += 1.0
        return float(np.linalg.norm(m * g[None, :], "fro"))
    raise ValueError(f"unknown SLaNC MLP variant {variant!r}; expected one of {', '.join(MLP_VARIANTS)}")


def s_mlp_gated(w_gate: np.ndarray, w_up: np.ndarray, w_down: np.ndarray, gamma: np.ndarray) -> float:
    """Gated (llama) MLP: ``||W_down W_up diag(gamma)||_F * ||W_gate diag(gamma)||_2``."""
    g = _f64(gamma)
    a = np.linalg.norm((_f64(w_down) @ _f64(w_up)) * g[None, :], "fro")
    b = spectral_norm(_f64(w_gate) * g[None, :])
    return float(a * b)


def s_input(x: np.ndarray) -> float:
    """Largest row L2 norm of ``x`` ``[..., d]`` (1.0 if every row is zero)."""
    x = _f64(x)
    m = float(np.max(np.linalg.norm(x.reshape(-1, x.shape[-1]), axis=1)))
    return m if m > 0 else 1.0


def pow2_shift(s: float) -> int:
    """``k = ceil(log2 s)`` exactly (no floating log): the shift so that ``2^k >= s > 2^(k-1)``.
    ``s`` must be finite and > 0; k is negative for s < 1/2 (a left shift)."""
    s = float(s)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"pow2_shift: scale must be finite and > 0, got {s!r}")
    m, e = math.frexp(s)  # s = m * 2^e, 0.5 <= m < 1
    return e - 1 if m == 0.5 else e


@dataclass(frozen=True)
class SlancEntry:
    """One norm's scale: ``s`` (float64 divisor), ``k = ceil(log2 s)`` and how it was obtained."""

    s: float
    k: int
    formula: str

    @classmethod
    def make(cls, s: float, formula: str) -> SlancEntry:
        return cls(float(s), pow2_shift(s), formula)


@dataclass(frozen=True)
class SlancScales:
    """SLaNC scales per norm key (``ln1``, ``ln2``). With ``pow2`` the scale used is ``2^k``
    (fixed-point plans: a shift); otherwise ``s`` itself."""

    entries: Mapping[str, SlancEntry]
    pow2: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def scale(self, key: str) -> float:
        """The divisor a norm applies to its input (``2.0**k`` if ``pow2`` else ``s``)."""
        try:
            e = self.entries[key]
        except KeyError:
            raise ValueError(f"SLaNC scales have no entry for norm {key!r}; have {', '.join(self.entries)}") from None
        return 2.0 ** e.k if self.pow2 else e.s

    def shift(self, key: str) -> int:
        """``k`` for norm ``key``: the input is multiplied by ``2^-k``."""
        return self.entries[key].k

    def with_pow2(self, pow2: bool = True) -> SlancScales:
        return SlancScales(dict(self.entries), pow2, dict(self.options))

    def to_dict(self) -> dict[str, Any]:
        return {
            "pow2": self.pow2,
            "options": dict(self.options),
            "scales": {k: {"s": e.s, "k": e.k, "formula": e.formula} for k, e in self.entries.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SlancScales:
        try:
            ents = {k: SlancEntry(float(v["s"]), int(v["k"]), str(v.get("formula", ""))) for k, v in d["scales"].items()}
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad SLaNC scales dict: missing {e}") from None
        for k, ent in ents.items():
            if pow2_shift(ent.s) != ent.k:
                raise ValueError(f"SLaNC scale {k!r}: k={ent.k} is not ceil(log2 s) for s={ent.s}")
        return cls(ents, bool(d.get("pow2", False)), dict(d.get("options", {})))


def _mlp_scale(config: LayerConfig, w: Mapping[str, np.ndarray], gamma: np.ndarray, mlp: str) -> tuple[float, str]:
    if config.gated:
        return s_mlp_gated(w["w_gate"], w["w_up"], w["w_down"], gamma), "gated: ||Wd Wu diag(g)||_F ||Wg diag(g)||_2"
    if mlp == "dmx":
        return s_mlp_standard(w["w_up"], w["w_down"], gamma, "dmx"), "mlp dmx: ||g||_1/d ||W1||_2 ||W2||_2"
    return s_mlp_standard(w["w_up"], w["w_down"], gamma, "auth"), "mlp auth: ||(I + W2 W1) diag(g)||_F"


def compute_slanc(
    config: LayerConfig,
    weights: LayerWeights,
    *,
    mlp: str = "dmx",
    first: str | float = "none",
    x: np.ndarray | None = None,
    prev: LayerWeights | None = None,
    input_gain: np.ndarray | None = None,
    gqa_expand: str = "interleave",
    pow2: bool = False,
) -> SlancScales:
    """SLaNC scales for the two norms of one layer (see the module table for the rules).

    ``mlp``: standard-MLP variant ``dmx`` | ``auth`` (gpt2 ln1 via ``prev``, bert ln2); ``first``:
    ``none`` | ``input`` (needs ``x``) | ``prev`` (needs ``prev``) | a float, for a pre-norm
    layer's ln1; ``input_gain``: for bert, the gain of the norm that produced the layer input
    (default: ``prev["ln2_g"]`` if ``prev`` is given, else ones); ``pow2``: use ``2^k`` as the scale.
    """
    weights.validate(config)
    if prev is not None:
        prev.validate(config)
    if mlp not in MLP_VARIANTS:
        raise ValueError(f"unknown SLaNC MLP variant {mlp!r}; expected one of {', '.join(MLP_VARIANTS)}")
    kw: dict[str, Any] = dict(n_heads=config.n_heads, n_kv_heads=config.n_kv_heads, gqa_expand=gqa_expand)
    w = weights
    ents: dict[str, SlancEntry] = {}
    attn_formula = "attn: ||(I + Wo Wv) diag(g)||_F" + (f" ({gqa_expand})" if config.group_size > 1 else "")
    if config.prenorm:
        if isinstance(first, (int, float)) and not isinstance(first, bool):
            ents["ln1"] = SlancEntry.make(float(first), "given")
        elif first == "none":
            ents["ln1"] = SlancEntry.make(1.0, "first: none")
        elif first == "input":
            if x is None:
                raise ValueError("compute_slanc: first='input' needs the inputs x")
            ents["ln1"] = SlancEntry.make(s_input(x), "first: max row ||x||_2")
        elif first == "prev":
            if prev is None:
                raise ValueError("compute_slanc: first='prev' needs the previous layer's weights (prev=)")
            s, f = _mlp_scale(config, prev, prev["ln2_g"], mlp)
            ents["ln1"] = SlancEntry.make(s, "prev " + f)
        else:
            raise ValueError(f"compute_slanc: unknown first={first!r}; expected one of {', '.join(FIRST_RULES)} or a float")
        ents["ln2"] = SlancEntry.make(s_attn(w["wv"], w["wo"], w["ln1_g"], **kw), attn_formula + ", g=ln1_g")
    else:
        if first != "none":
            raise ValueError("compute_slanc: first= applies to pre-norm archs (gpt2, llama); bert's ln1 follows "
                             "the attention and uses input_gain= or prev=")
        if input_gain is not None:
            g_in, src = _f64(input_gain), "input_gain"
            if g_in.shape != (config.d_model,):
                raise ValueError(f"compute_slanc: input_gain must have shape [{config.d_model}], got {list(g_in.shape)}")
        elif prev is not None:
            g_in, src = prev["ln2_g"], "prev ln2_g"
        else:
            g_in, src = np.ones(config.d_model), "1"
        ents["ln1"] = SlancEntry.make(s_attn(w["wv"], w["wo"], g_in, **kw), f"{attn_formula}, g={src}")
        s, f = _mlp_scale(config, w, w["ln1_g"], mlp)
        ents["ln2"] = SlancEntry.make(s, f + ", g=ln1_g")
    opts = {"mlp": mlp, "first": first if isinstance(first, str) else float(first), "gqa_expand": gqa_expand}
    return SlancScales(ents, pow2, opts)


def model_slanc(
    config: LayerConfig,
    layers: Sequence[LayerWeights],
    *,
    first: str | float = "none",
    x: np.ndarray | None = None,
    input_gain: np.ndarray | None = None,
    **kw: Any,
) -> list[SlancScales]:
    """Scales for a stack of layers: layer 0 uses ``first`` (pre-norm) or ``input_gain`` (bert,
    e.g. the embedding LayerNorm gain); layer l >= 1 uses layer l-1's weights (``prev``)."""
    out = []
    for i, w in enumerate(layers):
        if i == 0:
            if config.prenorm:
                out.append(compute_slanc(config, w, first=first, x=x, **kw))
            else:
                out.append(compute_slanc(config, w, input_gain=input_gain, **kw))
        else:
            f = "prev" if config.prenorm else "none"
            out.append(compute_slanc(config, w, first=f, prev=layers[i - 1], **kw))
    return out
