"""Rounding model of an MX block format (OCP MX v1.0): per-block power-of-two scale, element
rounding relative to the block maximum.

:func:`refmodel.numerics.block.mx_quantize` rounds a block ``v_1..v_B`` (along one axis) as

    X   = clamp(floor(log2 max_i |v_i|) - emax_elem, -127, 127)        (E8M0 scale 2^X)
    P_i = round_elem(v_i / 2^X)   saturating at +-elmax                  (element format)
    v_hat_i = 2^X P_i

so the element grid is the element format scaled by ``2^X``. With the element format's rounding
model ``(u, eta)`` (``rounding_model(element, mode)``; mxint8: the s8.6 grid, u = 0) one element
with ``|v_i| <= V_i`` obeys, rigorously,

    |v_hat_i - v_i| <= max(u V_i + eta 2^X,  V_i - elmax 2^X)                              (1)

(the first branch is an in-range rounding, the second the saturation of the block's top elements,
which the scale choice makes unavoidable: ``|v| < 2^(X + emax + 1)`` while the largest element is
``elmax < 2^(emax + 1)``; for e4m3 values in ``[448, 512) 2^X`` clamp to ``448 2^X``, at most 12.5 %).
This is part of the MX contract, not an overflow: it is bounded by (1) and does not void the bound.
Only a scale beyond the E8M0 range (``X > 127``) does.

When the block scale is known (the stored tensor's own scales: the final rounding of a tensor),
(1) uses it. For an intermediate MX rounding whose scales are not recorded, ``X`` is only known to
lie in ``[X_lo, X_hi]`` from bounds on the block maximum (``max(|z| - L, 0) <= |v| <= |z| + L``);
(1) then uses ``2^X_hi`` in the first branch and ``2^X_lo`` in the second.

Weights: an element that was not clamped satisfies ``|w - w_hat| <= (u |w_hat| + eta 2^X)/(1 - u)``;
a clamped (or rounded-up-to) top element ``|w_hat| = elmax 2^X`` came from ``|w| < 2^(X+emax+1)``,
so ``|w - w_hat| <= 2^(X + emax + 1) - elmax 2^X`` there (:func:`mx_weight_error`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..numerics.block import BlockFormat, MXArray
from .model import rounding_model

__all__ = ["MXElementModel", "mx_element_model", "mx_scale_exponents", "mx_round_error", "mx_weight_error",
           "mx_blocks_max", "is_mx_spec"]


def is_mx_spec(spec: Any) -> bool:
    """True when ``spec`` names an MX block format (``mxfp8_e4m3``, ``mxint8``, ...)."""
    if isinstance(spec, BlockFormat):
        return True
    if not isinstance(spec, str) or spec == "float64":
        return False
    return _is_mx_str(spec)


@functools.lru_cache(maxsize=256)
def _is_mx_str(spec: str) -> bool:
    try:
        BlockFormat.parse(spec)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class MXElementModel:
    """Element rounding of an MX format, in units of the block scale ``2^X``: relative ``u``,
    absolute ``eta`` (half the smallest element step for nearest rounding), the largest element
    ``elmax`` and the element exponent ``emax`` (``X = floor(log2 amax) - emax``)."""

    fmt: BlockFormat
    u: float
    eta: float
    elmax: float
    emax: int
    label: str


@functools.lru_cache(maxsize=64)
def mx_element_model(fmt: BlockFormat | str, rounding: str = "rne") -> MXElementModel:
    """The element model of ``fmt`` under ``rounding`` (see module docstring)."""
    f = BlockFormat.parse(fmt)
    if f.is_int:
        m = rounding_model("s8.6", rounding)
        u, eta = 0.0, m.abs
    else:
        m = rounding_model(f.element, rounding)
        u, eta = m.rel, m.abs
    return MXElementModel(f, u, eta, float(f.element_max), int(f.emax_elem), f"{f}/{rounding}")


def mx_scale_exponents(mx: MXArray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Per-element block exponent ``X`` (float64; NaN for a poisoned block) of a quantised MX
    tensor, in the MXArray's own layout, or reshaped into ``shape`` when the tensor was split into
    heads afterwards (``[s, H*hd] -> [H, s, hd]``, the quantized layer's head split)."""
    sv = mx.scale_values()
    with np.errstate(divide="ignore", invalid="ignore"):
        X = np.log2(sv)
    X = np.repeat(X, mx.fmt.block, axis=mx.axis)
    X = np.take(X, np.arange(mx.shape[mx.axis]), axis=mx.axis)
    if shape is not None and tuple(shape) != tuple(X.shape):
        if len(shape) == 3 and X.ndim == 2 and X.shape == (shape[1], shape[0] * shape[2]):
            X = X.reshape(shape[1], shape[0], shape[2]).transpose(1, 0, 2)
        else:
            raise ValueError(f"MX scales of shape {X.shape} cannot be laid out as {shape}")
    return X


def mx_blocks_max(a: np.ndarray, axis: int, block: int) -> np.ndarray:
    """Per-element maximum of ``a`` over its MX block along ``axis`` (same shape as ``a``)."""
    a = np.asarray(a, dtype=np.float64)
    axis = axis % a.ndim
    m = np.moveaxis(a, axis, -1)
    n = m.shape[-1]
    nb = max(1, -(-n // block))
    pad = nb * block - n
    if pad:
        m = np.concatenate([m, np.zeros(m.shape[:-1] + (pad,))], axis=-1)
    bm = np.max(m.reshape(m.shape[:-1] + (nb, block)), axis=-1)
    full = np.repeat(bm, block, axis=-1)[..., :n]
    return np.moveaxis(full, -1, axis)


def _floor_log2(v: np.ndarray) -> np.ndarray:
    """floor(log2 v) for v > 0 (exact, from the float64 exponent); -inf for v = 0, +inf for inf."""
    v = np.asarray(v, dtype=np.float64)
    fin = np.isfinite(v) & (v > 0)
    _, e = np.frexp(np.where(fin, v, 1.0))
    out = np.where(fin, e.astype(np.float64) - 1.0, np.where(v > 0, np.inf, -np.inf))
    return out


def mx_round_error(z: Any, L: Any, m: MXElementModel, *, X: Any = None, axis: int = -1
                   ) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Bound (1) on the error of MX-rounding values ``v`` with ``|v - z| <= L`` (componentwise).

    ``X``: the known per-element block exponent (from :func:`mx_scale_exponents`), or None: derived
    from the block maxima of ``|z| + L`` and ``max(|z| - L, 0)`` along ``axis`` (blocks of
    ``m.fmt.block``). Returns ``(err, nog, reason)``: ``nog`` marks components whose scale may
    leave the E8M0 range (or is NaN), where there is no guarantee.
    """
    z = np.abs(np.asarray(z, dtype=np.float64))
    L = np.asarray(L, dtype=np.float64)
    V = z + L
    if X is None:
        X_hi = _floor_log2(mx_blocks_max(V, axis, m.fmt.block)) - m.emax
        X_lo = _floor_log2(mx_blocks_max(np.maximum(z - L, 0.0), axis, m.fmt.block)) - m.emax
    else:
        X_hi = X_lo = np.asarray(X, dtype=np.float64)
    emin, emax = m.fmt.scale_emin, m.fmt.scale_emax
    nog = ~(X_hi <= emax) | np.isnan(X_hi) | np.isnan(X_lo)
    Xh = np.clip(np.where(np.isfinite(X_hi), X_hi, emin), emin, emax)
    Xl = np.clip(np.where(np.isfinite(X_lo), X_lo, emin), emin, emax)
    with np.errstate(over="ignore", invalid="ignore"):
        inr = m.u * V + m.eta * np.exp2(Xh)
        sat = V - m.elmax * np.exp2(Xl)
        err = np.maximum(inr, sat)
    err = np.where(nog, np.inf, err)
    reason = None
    if np.any(nog):
        reason = (f"no guarantee: MX block scale of {m.label} may leave the E8M0 range "
                  f"[2^{emin}, 2^{emax}] ({int(nog.sum())} component(s))")
    return err, nog, reason


def mx_weight_error(t: Any, rounding: str = "rne") -> tuple[np.ndarray, str | None]:
    """``|w - w_hat|`` bound of an MX-quantised weight QTensor (module docstring), from its
    values and stored scales alone. Returns ``(E, reason)``; ``E`` is inf (with a reason) for
    poisoned (NaN) blocks."""
    mx: MXArray = t.mx
    m = mx_element_model(mx.fmt, rounding)
    X = mx_scale_exponents(mx, t.values.shape)
    w = np.abs(np.asarray(t.values, dtype=np.float64))
    bad = ~np.isfinite(X) | ~np.isfinite(w)
    Xs = np.where(bad, 0.0, X)
    sc = np.exp2(Xs)
    inr = (m.u * w + m.eta * sc) / (1.0 - m.u)
    top = w >= m.elmax * sc * (1 - 1e-15)
    sat = np.exp2(Xs + m.emax + 1) - m.elmax * sc
    E = np.where(top, np.maximum(inr, sat), inr)
    reason = None
    if np.any(bad):
        E = np.where(bad, np.inf, E)
        reason = f"no guarantee: MX weight has {int(bad.sum())} poisoned (NaN-scale) element(s)"
    return E, reason


def mx_round_parts(z: Any, m: MXElementModel, *, X: Any = None, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """First-order split of (1) at ``v = z`` for the statistical tier: the in-range rounding
    bound ``u|z| + eta 2^X`` (mean-zero) and the top-of-block clamp ``max(|z| - elmax 2^X, 0)``
    (a bias). ``X``: the known block exponents, else those of the blocks of ``|z|``."""
    az = np.abs(np.asarray(z, dtype=np.float64))
    if X is None:
        X = _floor_log2(mx_blocks_max(az, axis, m.fmt.block)) - m.emax
    X = np.asarray(X, dtype=np.float64)
    Xc = np.clip(np.where(np.isfinite(X), X, m.fmt.scale_emin), m.fmt.scale_emin, m.fmt.scale_emax)
    sc = np.exp2(Xc)
    sat = np.maximum(az - m.elmax * sc, 0.0)
    fin = np.isfinite(az) & (az > 0)
    _, e = np.frexp(np.where(fin, az, 1.0))
    binade = np.where(fin, np.ldexp(1.0, (e - 1).astype(np.int64)), 0.0)  # first order: the value's binade
    inr = np.where(sat > 0, 0.0, m.u * binade + m.eta * sc)
    return inr, sat
