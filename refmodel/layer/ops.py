"""The op interface a transformer layer is written against, and its float64 backend.

The layer forward (:mod:`refmodel.layer.forward`) is written ONCE as a sequence of named ops on a
backend; a backend decides the arithmetic. :class:`Float64Ops` is the float64 reference; the
quantized layer implements the same :class:`LayerOps` under a precision plan, so both produce the
same tensor names with the same shapes.

Backend contract (every method; ``T`` is the backend's activation type, ``W`` its weight type):

=================================================  ==============================================
op                                                  meaning (shapes: s = seq, d = d_model)
=================================================  ==============================================
``input(name, x)``                                  layer input, float64 ``[s, d]`` -> T (recorded)
``weight(name, w)``                                 float64 weight -> W (kept in ``.weights``)
``linear(name, x, w, b, heads=None)``               ``x[..., in] @ w.T + b`` (b may be None);
                                                    with ``heads=n`` the output ``[s, n*hd]`` is
                                                    returned split as ``[n, s, hd]``
``norm(name, x, gamma, beta, kind, eps, scale)``    ``kind`` layernorm | rmsnorm over the last axis,
                                                    computed as norm(x / scale) with eps/scale^2
                                                    (== norm(x) in exact arithmetic; SLaNC);
                                                    beta may be None
``rope(name, x, positions, base)``                  rotary embedding of ``[n, s, hd]``, half-split
                                                    ("rotate_half", HF) pairing (i, i + hd/2)
``scores(name, q, k, scale, mask)``                 ``q [H,s,hd]``, ``k [KV,s,hd]`` ->
                                                    ``scale * q k^T`` as ``[H,s,s]``; kv head j
                                                    serves query heads j*g .. j*g+g-1 (HF
                                                    repeat_kv); entries where ``mask`` is False
                                                    are exactly 0 (never computed in hardware)
``softmax(name, s, mask, shifted=True)``            row softmax over allowed keys; masked
                                                    probabilities are exactly 0. ``shifted``
                                                    subtracts the row max of allowed entries
``mix(name, p, v)``                                 ``p [H,s,s] @ v [KV,s,hd]`` (GQA as above),
                                                    heads concatenated -> ``[s, H*hd]``
``act(name, h, kind)``                              gelu_tanh | gelu_erf | silu, elementwise
``mul(name, a, b)``                                 elementwise product (SwiGLU)
``add(name, a, b)``                                 elementwise sum (residual)
``to_float(t)``                                     decode a T (or W) to a float64 array
=================================================  ==============================================

``mask`` is a bool array broadcastable to ``[s, s]`` (query i, key j; True = may attend) or None.
Every op that produces a tensor records it under ``name`` in ``self.tensors`` (a name may be used
once per forward); :meth:`LayerOps.results` decodes them all to float64.

**The float64 reference gives the same bits on every machine.** :class:`Float64Ops` and the module
functions here (the only code that may compute a golden set's float64 reference) never call BLAS
or numpy's SIMD math directly: every matrix product, dot product and sum is correctly rounded
(:mod:`refmodel.numerics.f64dot`: the exact value rounded once, whatever BLAS kernel, thread count
or CPU), and ``exp``, ``erf``/``erfc``, ``sin``/``cos`` and RoPE's ``base^(-2i/hd)`` come from
:mod:`refmodel.numerics.f64math` (IEEE basic operations only, within 1-3 ulp). Everything else is
elementwise IEEE arithmetic (+ - * / sqrt), correctly rounded by definition. Use the re-exported
``matmul``, ``fsum``, ``dot_rows``, ``mean``, ``exp``, ``expm1``, ``tanh``, ``erf``, ``erfc``,
``sin``, ``cos`` for any other float64 value that must be reproducible (e.g. a local reference),
and ``matmul_upper`` (a reproducible upper bound of a product of magnitudes: one exact BLAS
product) for error bounds that go into a golden set.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import numpy as np

from ..numerics.f64dot import dot_rows, fsum, matmul, matmul_upper, mean
from ..numerics.f64math import cos, erf, erfc, exp, expm1, pow_const, sin, sincos, tanh

__all__ = [
    "LayerOps",
    "Float64Ops",
    "ACTIVATIONS",
    "NORMS",
    "matmul",
    "matmul_upper",
    "fsum",
    "dot_rows",
    "mean",
    "exp",
    "expm1",
    "tanh",
    "sin",
    "cos",
    "erf",
    "erfc",
    "gelu_erf",
    "gelu_tanh",
    "silu",
    "activation",
    "rope_angles",
    "rope_half",
    "rope_pairs",
    "repeat_kv",
]

T = TypeVar("T")
W = TypeVar("W")

ACTIVATIONS = ("gelu_tanh", "gelu_erf", "silu")
NORMS = ("layernorm", "rmsnorm")


class LayerOps(ABC, Generic[T, W]):
    """Abstract backend. Subclasses implement the ops; :meth:`record` stores each result by name."""

    def __init__(self) -> None:
        self.tensors: dict[str, T] = {}
        self.weights: dict[str, W] = {}

    # ---- bookkeeping ---------------------------------------------------------------------
    def record(self, name: str, t: T) -> T:
        """Store ``t`` under ``name``; a name can be recorded only once per forward."""
        if name in self.tensors:
            raise ValueError(f"tensor {name!r} recorded twice in one forward")
        self.tensors[name] = t
        return t

    def results(self) -> dict[str, np.ndarray]:
        """Every recorded tensor decoded to float64, in recording order."""
        return {n: self.to_float(t) for n, t in self.tensors.items()}

    # ---- ops -----------------------------------------------------------------------------
    @abstractmethod
    def input(self, name: str, x: np.ndarray) -> T: ...

    @abstractmethod
    def weight(self, name: str, w: np.ndarray) -> W: ...

    @abstractmethod
    def linear(self, name: str, x: T, w: W, b: W | None, *, heads: int | None = None) -> T: ...

    @abstractmethod
    def norm(self, name: str, x: T, gamma: W, beta: W | None, *, kind: str, eps: float, scale: float = 1.0) -> T: ...

    @abstractmethod
    def rope(self, name: str, x: T, positions: np.ndarray, *, base: float) -> T: ...

    @abstractmethod
    def scores(self, name: str, q: T, k: T, *, scale: float, mask: np.ndarray | None) -> T: ...

    @abstractmethod
    def softmax(self, name: str, s: T, *, mask: np.ndarray | None, shifted: bool = True) -> T: ...

    @abstractmethod
    def mix(self, name: str, p: T, v: T) -> T: ...

    @abstractmethod
    def act(self, name: str, h: T, *, kind: str) -> T: ...

    @abstractmethod
    def mul(self, name: str, a: T, b: T) -> T: ...

    @abstractmethod
    def add(self, name: str, a: T, b: T) -> T: ...

    @abstractmethod
    def to_float(self, t: Any) -> np.ndarray: ...


# =========================================================================================
# float64 activations (vectorised; reproducible: see the module docstring)
# =========================================================================================
def gelu_erf(x: np.ndarray | float) -> np.ndarray:
    """Exact GELU ``x * Phi(x) = 0.5 x erfc(-x / sqrt 2)`` (BERT), float64; the erfc form keeps
    relative accuracy for negative x."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * erfc(-x / math.sqrt(2.0))


def gelu_tanh(x: np.ndarray | float) -> np.ndarray:
    """Tanh-approximate GELU (GPT-2) ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, float64,
    evaluated as the identical ``x / (1 + exp(-2u))`` to keep relative accuracy for negative x."""
    x = np.asarray(x, dtype=np.float64)
    u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
    return x / (1.0 + exp(-2.0 * u))


def silu(x: np.ndarray | float) -> np.ndarray:
    """SiLU / swish ``x * sigmoid(x) = x / (1 + exp(-x))`` (llama), float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / (1.0 + exp(-x))


_ACT_FN = {"gelu_tanh": gelu_tanh, "gelu_erf": gelu_erf, "silu": silu}


def activation(kind: str, x: np.ndarray | float) -> np.ndarray:
    """Apply activation ``kind`` (one of :data:`ACTIVATIONS`) in float64."""
    try:
        fn = _ACT_FN[kind]
    except KeyError:
        raise ValueError(f"unknown activation {kind!r}; expected one of {', '.join(ACTIVATIONS)}") from None
    return fn(x)


# =========================================================================================
# RoPE (float64)
# =========================================================================================
def rope_angles(positions: np.ndarray, head_dim: int, base: float) -> np.ndarray:
    """Angles ``[s, head_dim/2]``: ``pos * base^(-2i/head_dim)``, float64 (HF computes the
    frequencies in float32; the float64 reference is the exact definition: each frequency
    correctly rounded, times the position, one rounding)."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    pos = np.asarray(positions, dtype=np.float64)
    inv_freq = pow_const(base, -np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    return pos[:, None] * inv_freq[None, :]


def rope_half(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """Half-split RoPE (HF ``rotate_half``): rotates the pair ``(x[i], x[i + hd/2])`` by angle i.
    ``x`` is ``[..., s, hd]``; float64."""
    hd = x.shape[-1]
    s, c = sincos(rope_angles(positions, hd, base))
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def rope_pairs(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """Adjacent-pair RoPE (original Meta / llama.cpp): rotates ``(x[2i], x[2i+1])`` by angle i.
    ``x`` is ``[..., s, hd]``; float64."""
    hd = x.shape[-1]
    s, c = sincos(rope_angles(positions, hd, base))
    xe, xo = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x, dtype=np.float64)
    out[..., 0::2] = xe * c - xo * s
    out[..., 1::2] = xo * c + xe * s
    return out


# =========================================================================================
# float64 backend
# =========================================================================================
def repeat_kv(t: np.ndarray, n_heads: int) -> np.ndarray:
    """``[KV, ...]`` -> ``[n_heads, ...]``: kv head j is repeated for query heads j*g .. j*g+g-1
    (HF ``repeat_kv``, i.e. ``np.repeat`` along axis 0, not tiling)."""
    kv = t.shape[0]
    if n_heads % kv:
        raise ValueError(f"{n_heads} query heads cannot share {kv} key/value heads")
    return t if kv == n_heads else np.repeat(t, n_heads // kv, axis=0)


_repeat_kv = repeat_kv  # old private name (used by refmodel.layer.quantized)


class Float64Ops(LayerOps[np.ndarray, np.ndarray]):
    """The float64 reference backend: every op in IEEE double; products and sums correctly rounded
    (one rounding of the exact value), elementary functions within 1-5 ulp, all of it identical on
    every machine (module docstring). Tensors are plain float64 arrays.

    The kernels are class attributes (``_matmul``, ``_mean``, ``_dot_rows``, ``_fsum``, ``_exp``)
    so that a benchmark can run the same layer on plain numpy for comparison."""

    _matmul = staticmethod(matmul)
    _mean = staticmethod(mean)
    _dot_rows = staticmethod(dot_rows)
    _fsum = staticmethod(fsum)
    _exp = staticmethod(exp)

    def input(self, name: str, x: np.ndarray) -> np.ndarray:
        return self.record(name, np.array(x, dtype=np.float64))

    def weight(self, name: str, w: np.ndarray) -> np.ndarray:
        a = np.asarray(w, dtype=np.float64)
        self.weights[name] = a
        return a

    def linear(self, name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, heads: int | None = None) -> np.ndarray:
        y = self._matmul(x, w.T)
        if b is not None:
            y = y + b
        if heads is not None:
            s, n = y.shape
            y = y.reshape(s, heads, n // heads).transpose(1, 0, 2).copy()
        return self.record(name, y)

    def norm(self, name: str, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None, *, kind: str, eps: float,
             scale: float = 1.0) -> np.ndarray:
        if kind not in NORMS:
            raise ValueError(f"unknown norm kind {kind!r}; expected one of {', '.join(NORMS)}")
        if not scale > 0:
            raise ValueError(f"norm {name!r}: SLaNC scale must be > 0, got {scale!r}")
        xs = x / scale if scale != 1.0 else x
        eps_s = eps / (scale * scale)
        d = xs.shape[-1]
        if kind == "layernorm":
            c = xs - self._mean(xs, axis=-1, keepdims=True)
            var = self._dot_rows(c, c, axis=-1, keepdims=True) / d
            n = c / np.sqrt(var + eps_s)
        else:
            ms = self._dot_rows(xs, xs, axis=-1, keepdims=True) / d
            n = xs / np.sqrt(ms + eps_s)
        y = n * gamma
        if beta is not None:
            y = y + beta
        return self.record(name, y)

    def rope(self, name: str, x: np.ndarray, positions: np.ndarray, *, base: float) -> np.ndarray:
        return self.record(name, rope_half(x, positions, base))

    def scores(self, name: str, q: np.ndarray, k: np.ndarray, *, scale: float, mask: np.ndarray | None) -> np.ndarray:
        kr = _repeat_kv(k, q.shape[0])
        s = self._matmul(q, kr.transpose(0, 2, 1)) * scale
        if mask is not None:
            s = np.where(mask, s, 0.0)
        return self.record(name, s)

    def softmax(self, name: str, s: np.ndarray, *, mask: np.ndarray | None, shifted: bool = True) -> np.ndarray:
        allowed = np.ones(s.shape, dtype=bool) if mask is None else np.broadcast_to(mask, s.shape)
        if not allowed.any(axis=-1).all():
            raise ValueError(f"softmax {name!r}: a row has no allowed key (fully masked)")
        if shifted:
            m = np.max(np.where(allowed, s, -np.inf), axis=-1, keepdims=True)
            e = np.where(allowed, self._exp(np.where(allowed, s - m, 0.0)), 0.0)
        else:  # the unshifted form exists to show what it breaks: overflow gives inf/nan
            e = np.where(allowed, self._exp(np.where(allowed, s, 0.0)), 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            p = e / self._fsum(e, axis=-1, keepdims=True)
        return self.record(name, p)

    def mix(self, name: str, p: np.ndarray, v: np.ndarray) -> np.ndarray:
        vr = _repeat_kv(v, p.shape[0])
        o = self._matmul(p, vr)  # [H, s, hd]
        h, s, hd = o.shape
        return self.record(name, o.transpose(1, 0, 2).reshape(s, h * hd))

    def act(self, name: str, h: np.ndarray, *, kind: str) -> np.ndarray:
        return self.record(name, activation(kind, h))

    def mul(self, name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.record(name, a * b)

    def add(self, name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.record(name, a + b)

    def to_float(self, t: Any) -> np.ndarray:
        return np.asarray(t, dtype=np.float64)
