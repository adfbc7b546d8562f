"""Transformer-layer configuration: architecture, dimensions and the choices derived from the arch.

Three architectures, each fixing the structural choices (never mixed and matched):

=======  ========  ==========  ===========  ======  ======  ====  =====================
arch     norm      placement   activation   gated   biases  RoPE  causal (default)
=======  ========  ==========  ===========  ======  ======  ====  =====================
gpt2     layernorm pre-LN      gelu_tanh    no      yes     no    yes
bert     layernorm post-LN     gelu_erf     no      yes     no    no (padding mask)
llama    rmsnorm   pre-norm    silu         SwiGLU  no      yes   yes (GQA optional)
=======  ========  ==========  ===========  ======  ======  ====  =====================

``seq_len`` is the default sequence length (random inputs, golden sets); the forward accepts any
length >= 1 because a layer has no position-dependent weights (RoPE is computed, positions of
GPT-2/BERT are added by the embedding outside the layer).

>>> LayerConfig.from_name("tiny").head_dim
16
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["ARCHS", "LayerConfig", "PRESETS", "preset_names"]

ARCHS = ("gpt2", "bert", "llama")

_DEFAULT_EPS = {"gpt2": 1e-5, "bert": 1e-12, "llama": 1e-5}
_DEFAULT_CAUSAL = {"gpt2": True, "bert": False, "llama": True}
_DEFAULT_ROPE_BASE = 10000.0


@dataclass(frozen=True)
class LayerConfig:
    """One transformer layer's shape. ``None`` fields are resolved from ``arch`` on construction.

    Fields (all validated; a bad one raises ``ValueError`` naming the field):
      * ``arch``: ``gpt2 | bert | llama``.
      * ``d_model``, ``n_heads``, ``d_ff``, ``seq_len``: positive ints, ``d_model % n_heads == 0``.
      * ``n_kv_heads``: key/value heads (grouped-query attention, llama only); default ``n_heads``;
        must divide ``n_heads``.
      * ``eps``: norm epsilon (default gpt2 1e-5, bert 1e-12, llama 1e-5), > 0.
      * ``causal``: causal attention mask (default True for gpt2/llama, False for bert).
      * ``rope_base``: RoPE frequency base (llama only; default 10000); ``None`` for other archs.
    """

    arch: str
    d_model: int
    n_heads: int
    d_ff: int
    seq_len: int
    # None (the default) is resolved from arch in __post_init__: after construction these are set
    n_kv_heads: int = None  # type: ignore[assignment]  # None: n_heads
    eps: float = None  # type: ignore[assignment]  # None: the arch's default
    causal: bool = None  # type: ignore[assignment]  # None: the arch's default
    rope_base: float | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"LayerConfig.arch: unknown arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        for f in ("d_model", "n_heads", "d_ff", "seq_len"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"LayerConfig.{f}: must be a positive int, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"LayerConfig.d_model: {self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        kv = self.n_heads if self.n_kv_heads is None else self.n_kv_heads
        if isinstance(kv, bool) or not isinstance(kv, int) or kv < 1:
            raise ValueError(f"LayerConfig.n_kv_heads: must be a positive int, got {self.n_kv_heads!r}")
        if self.n_heads % kv:
            raise ValueError(
                f"LayerConfig.n_kv_heads: n_heads={self.n_heads} is not divisible by n_kv_heads={kv}"
            )
        if kv != self.n_heads and self.arch != "llama":
            raise ValueError(
                f"LayerConfig.n_kv_heads: grouped-query attention (n_kv_heads={kv} != n_heads="
                f"{self.n_heads}) is only defined for arch 'llama', not {self.arch!r}"
            )
        object.__setattr__(self, "n_kv_heads", kv)
        eps = _DEFAULT_EPS[self.arch] if self.eps is None else self.eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0 or eps != eps or eps == float("inf"):
            raise ValueError(f"LayerConfig.eps: must be a finite float > 0, got {self.eps!r}")
        object.__setattr__(self, "eps", float(eps))
        causal = _DEFAULT_CAUSAL[self.arch] if self.causal is None else self.causal
        if not isinstance(causal, bool):
            raise ValueError(f"LayerConfig.causal: must be a bool, got {self.causal!r}")
        object.__setattr__(self, "causal", causal)
        if self.arch == "llama":
            if self.head_dim % 2:
                raise ValueError(f"LayerConfig.d_model: RoPE needs an even head_dim, got {self.head_dim}")
            base = _DEFAULT_ROPE_BASE if self.rope_base is None else self.rope_base
            if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1 or base == float("inf"):
                raise ValueError(f"LayerConfig.rope_base: must be a finite float > 1, got {self.rope_base!r}")
            object.__setattr__(self, "rope_base", float(base))
        elif self.rope_base is not None:
            raise ValueError(f"LayerConfig.rope_base: only arch 'llama' uses RoPE, got {self.rope_base!r} for {self.arch!r}")

    # ---- derived ------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        """d_model // n_heads."""
        return self.d_model // self.n_heads

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without GQA)."""
        return self.n_heads // self.n_kv_heads

    @property
    def kv_dim(self) -> int:
        """Rows of wk / wv: n_kv_heads * head_dim."""
        return self.n_kv_heads * self.head_dim

    @property
    def norm(self) -> str:
        """``layernorm`` (gpt2, bert) or ``rmsnorm`` (llama)."""
        return "rmsnorm" if self.arch == "llama" else "layernorm"

    @property
    def prenorm(self) -> bool:
        """True for pre-norm (gpt2, llama), False for post-LN (bert)."""
        return self.arch != "bert"

    @property
    def activation(self) -> str:
        """``gelu_tanh`` (gpt2), ``gelu_erf`` (bert), ``silu`` (llama, inside SwiGLU)."""
        return {"gpt2": "gelu_tanh", "bert": "gelu_erf", "llama": "silu"}[self.arch]

    @property
    def gated(self) -> bool:
        """SwiGLU MLP (llama): down(silu(gate(x)) * up(x))."""
        return self.arch == "llama"

    @property
    def biases(self) -> bool:
        """Linear biases and LayerNorm beta present (gpt2, bert); none for llama."""
        return self.arch != "llama"

    @property
    def rope(self) -> bool:
        """Rotary position embedding on q and k (llama)."""
        return self.arch == "llama"

    # ---- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All fields, resolved (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(d, Mapping):
            raise ValueError(f"LayerConfig.from_dict: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"LayerConfig: unknown key(s) {', '.join(map(repr, bad))}; known: {', '.join(sorted(known))}")
        missing = [k for k in ("arch", "d_model", "n_heads", "d_ff", "seq_len") if k not in d]
        if missing:
            raise ValueError(f"LayerConfig: missing key(s) {', '.join(map(repr, missing))}")
        return cls(**dict(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LayerConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_name(cls, name: str) -> LayerConfig:
        """A preset by name (see :data:`PRESETS`); unknown names raise ``ValueError`` listing them."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown layer config {name!r}; presets: {', '.join(PRESETS)}") from None

    def replace(self, **changes: Any) -> LayerConfig:
        """A copy with some fields changed (re-validated; derived defaults re-resolved when the arch changes)."""
        d = self.to_dict()
        if "arch" in changes and changes["arch"] != self.arch:
            for k in ("eps", "causal", "rope_base", "n_kv_heads"):
                d[k] = None
        d.update(changes)
        return LayerConfig.from_dict(d)


#: Named configurations. ``tiny`` is the demo default.
PRESETS: dict[str, LayerConfig] = {
    "tiny": LayerConfig("gpt2", d_model=64, n_heads=4, d_ff=256, seq_len=16),
    "tiny-bert": LayerConfig("bert", d_model=64, n_heads=4, d_ff=256, seq_len=16),
    "tiny-llama": LayerConfig("llama", d_model=64, n_heads=4, d_ff=192, seq_len=16, n_kv_heads=2),
    "d256": LayerConfig("gpt2", d_model=256, n_heads=4, d_ff=1024, seq_len=64),
    "gpt2-small": LayerConfig("gpt2", d_model=768, n_heads=12, d_ff=3072, seq_len=128),
    "minilm": LayerConfig("bert", d_model=384, n_heads=12, d_ff=1536, seq_len=128, eps=1e-12),
    "smollm2": LayerConfig(
        "llama", d_model=576, n_heads=9, d_ff=1536, seq_len=128, n_kv_heads=3, eps=1e-5, rope_base=100000.0
    ),
}


def preset_names() -> list[str]:
    """Names accepted by :meth:`LayerConfig.from_name`."""
    return list(PRESETS)
