"""Error bounds of elementwise ops: activations (GELU erf/tanh, SiLU), product (SwiGLU),
residual add, requantisation / cast, scaling by a constant.

Every function takes the computed inputs (``x_hat``), their error bounds (``E_x``: array or
:class:`~refmodel.bounds.model.Bound`, None = exact) and the op's rounding model, and returns a
:class:`~refmodel.bounds.model.Bound` whose rigorous tier is exact algebra (no first-order
terms) except where stated:

=============  ==============================================  ===================================
op             propagated (rigorous)                           local rounding
=============  ==============================================  ===================================
add / sub      E_a + E_b                                       out.err(|a_hat +- b_hat|)
mul            |a_hat| E_b + |b_hat| E_a + E_a E_b             out.err(|a_hat b_hat|)
cast           E_x                                             out.err(|x_hat|) (+ saturation)
scale c        |c_hat| E_x + |c_hat - c| (|x_hat| + E_x)       out.err(|c_hat| |x|)
activation     min(L E, |phi'(x_hat)| E + M2 E^2 / 2)          unit.err(|phi(x_hat)|)
=============  ==============================================  ===================================

``L = max |phi'|`` and ``M2 = max |phi''|`` are computed by :func:`activation_constants` on a grid
with a rigorous margin (the sup between grid points is bounded by monotone factors), not copied.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .model import EXACT, Bound, RoundingModel, as_tiers, output_rounding

__all__ = [
    "ACTIVATIONS",
    "ActivationConstants",
    "activation_constants",
    "activation",
    "activation_derivative",
    "activation_bound",
    "add_bound",
    "mul_bound",
    "cast_bound",
    "scale_bound",
    "rope_angles",
    "rope_bound",
]

_K = math.sqrt(2.0 / math.pi)
_C = 0.044715
#: a float or a float64 array (the tanh-GELU helpers take either)
_X = TypeVar("_X", float, np.ndarray)
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _Phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)))


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _g(x: _X) -> _X:
    return _K * (x + _C * x ** 3)


def _gp(x: _X) -> _X:
    return _K * (1 + 3 * _C * x * x)


_FUNCS: dict[str, tuple[Callable, Callable]] = {
    "gelu_erf": (lambda x: x * _Phi(x), lambda x: _Phi(x) + x * _phi(x)),
    "gelu_tanh": (lambda x: 0.5 * x * (1 + np.tanh(_g(x))),
                  lambda x: 0.5 * (1 + np.tanh(_g(x))) + 0.5 * x * (1 - np.tanh(_g(x)) ** 2) * _gp(x)),
    "silu": (lambda x: x * _sigmoid(x), lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))),
}
ACTIVATIONS = tuple(_FUNCS)

# |phi''(x)| <= S(|x|) * B(|x|) with S non-increasing and B non-decreasing in |x| >= 0:
#   gelu_erf : phi'' = pdf(x) (2 - x^2)                         S = pdf,       B = 2 + x^2
#   gelu_tanh: phi'' = sech^2(g) [g' - x tanh(g) g'^2 + x g''/2]  S = sech^2(g), B = g' + x g'^2 + x g''/2
#   silu     : phi'' = s(1-s) (2 + x (1 - 2 s))                  S = s(1-s),    B = 2 + x
_SB: dict[str, tuple[Callable, Callable]] = {
    "gelu_erf": (_phi, lambda x: 2 + x * x),
    "gelu_tanh": (lambda x: 1 - np.tanh(_g(x)) ** 2, lambda x: _gp(x) + x * _gp(x) ** 2 + 0.5 * x * 6 * _K * _C * x),
    "silu": (lambda x: _sigmoid(x) * (1 - _sigmoid(x)), lambda x: 2 + x),
}


def activation(name: str, x: Any) -> np.ndarray:
    """phi(x) in float64 (reference). ``name`` in :data:`ACTIVATIONS`."""
    return _FUNCS[_check(name)][0](np.asarray(x, dtype=np.float64))


def activation_derivative(name: str, x: Any) -> np.ndarray:
    """phi'(x) in float64."""
    return _FUNCS[_check(name)][1](np.asarray(x, dtype=np.float64))


def _check(name: str) -> str:
    if name not in _FUNCS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(_FUNCS)}")
    return name


@dataclass(frozen=True)
class ActivationConstants:
    """``L``: rigorous upper bound of max|phi'| (grid max + margin); ``L_grid``: the grid max and
    ``argmax``; ``min_d1``: min phi' on the grid; ``M2``: rigorous upper bound of max|phi''|."""

    name: str
    L: float
    L_grid: float
    argmax: float
    min_d1: float
    M2: float
    h: float
    R: float


@functools.cache
def activation_constants(name: str, h: float = 1e-4, R: float = 10.0) -> ActivationConstants:
    """Lipschitz constants of ``name`` computed on a grid of step ``h`` over ``[-R, R]``.

    Margin argument: ``|phi''| <= S(|x|) B(|x|)`` with ``S`` non-increasing and ``B``
    non-decreasing on ``[0, inf)`` (factors in the source), so on ``[x_k, x_k+1]`` the sup of
    ``|phi''|`` is at most ``S(x_k) B(x_k+1)``; ``M2`` is the max of these and of the tail
    ``x >= R`` (where ``S B`` is decreasing: ``pdf (2+x^2)`` has derivative ``-x^3 pdf``;
    ``4 e^{-2g} B`` and ``e^{-x}(2+x)`` have negative log-derivative for x >= 10). Then
    ``max|phi'| <= max_grid|phi'| + (h/2) M2`` on ``[-R, R]``; beyond ``R``, ``|phi'| <= 1 + R S(R) B(R)``
    (much smaller than the grid max for R = 10). Float64 evaluation error (~1e-15) is covered by
    adding 1e-12.
    """
    _check(name)
    if R < 10:
        raise ValueError(f"activation_constants: the tail argument needs R >= 10, got {R}")
    S, B = _SB[name]
    xs = np.arange(0.0, R + h, h)
    m2_grid = float(np.max(S(xs[:-1]) * B(xs[1:])))
    # tail x >= R: S B is decreasing there; bound it by its value at R (sech^2 <= 4 e^{-2g},
    # s(1-s) <= e^{-x} for the tanh and SiLU factors)
    if name == "gelu_erf":
        m2_tail = float(S(np.array(R)) * B(np.array(R)))
    elif name == "gelu_tanh":
        m2_tail = float(4 * np.exp(-2 * _g(R)) * B(np.array(R)))
    else:
        m2_tail = float(np.exp(-R) * (2 + R))
    M2 = max(m2_grid, m2_tail) + 1e-12
    xg = np.arange(-R, R + h, h)
    d1 = activation_derivative(name, xg)
    i = int(np.argmax(np.abs(d1)))
    L_grid = float(abs(d1[i]))
    tail = 1.0 + R * max(m2_tail, 1e-300)
    L = max(L_grid + 0.5 * h * M2, tail) + 1e-12
    return ActivationConstants(name, L, L_grid, float(xg[i]), float(np.min(d1)), M2, h, R)


def _finish(prop_r: np.ndarray, prop_s: np.ndarray, z: np.ndarray, out: RoundingModel, what: str,
            parts: dict[str, Any], slack: Any = 0.0) -> Bound:
    # ``slack``: the value rounded is within ``slack`` of ``z`` (magnitude / range only)
    slack = np.zeros_like(z) + slack
    out_r, out_s, nog, reasons, notes = output_rounding(z, slack, slack, out, what)
    rig = prop_r + out_r
    stat = prop_s + out_s
    rig = np.where(nog, np.inf, rig)
    stat = np.where(nog, np.inf, stat)  # an overflow voids both tiers
    parts = dict(parts, propagated=prop_r, local=out_r, z=z, propagated_stat=prop_s, local_stat=out_s)
    return Bound(rig, stat, reasons, notes, parts)


def activation_bound(x_hat: Any, E_x: Any = None, *, fn: str = "gelu_erf", unit: RoundingModel = EXACT,
                     what: str | None = None) -> Bound:
    """Bound on ``|phi_hat(x_hat) - phi(x)|``, ``|x_hat - x| <= E_x``.

    ``unit``: error model of the hardware evaluation including its output rounding,
    ``|phi_hat(t) - phi(t)| <= unit.rel |phi(t)| + unit.abs`` (a correctly rounded unit is
    ``rounding_model(fmt)``; a LUT unit is ``RoundingModel.measured(lsb, fmt)``). The reference must
    use the same variant (``gelu_erf`` vs ``gelu_tanh`` differ by up to 4.7e-4).
    """
    x = np.asarray(x_hat, dtype=np.float64)
    Er, Es = as_tiers(E_x, x.shape)
    c = activation_constants(_check(fn))
    d1 = np.abs(activation_derivative(fn, x))
    prop_r = np.minimum(c.L * Er, d1 * Er + 0.5 * c.M2 * Er * Er)
    prop_s = np.minimum(c.L * Es, d1 * Es + 0.5 * c.M2 * Es * Es)
    z = activation(fn, x)
    return _finish(prop_r, prop_s, z, unit, what or fn, {"L": c.L, "M2": c.M2})


def add_bound(a_hat: Any, b_hat: Any, *, E_a: Any = None, E_b: Any = None, out: RoundingModel = EXACT,
              subtract: bool = False, what: str = "add") -> Bound:
    """``a + b`` (or ``a - b``) rounded once by ``out`` (residual add: ``out`` of the stream)."""
    a = np.asarray(a_hat, dtype=np.float64)
    b = np.asarray(b_hat, dtype=np.float64)
    z = a - b if subtract else a + b
    Ear, Eas = as_tiers(E_a, a.shape)
    Ebr, Ebs = as_tiers(E_b, b.shape)
    zero = np.zeros_like(z)
    return _finish(Ear + Ebr + zero, Eas + Ebs + zero, z, out, what, {})


def mul_bound(a_hat: Any, b_hat: Any, *, E_a: Any = None, E_b: Any = None, out: RoundingModel = EXACT,
              what: str = "mul") -> Bound:
    """Elementwise ``a * b`` (e.g. SwiGLU ``silu(g) * u``) rounded once by ``out``."""
    a = np.asarray(a_hat, dtype=np.float64)
    b = np.asarray(b_hat, dtype=np.float64)
    z = a * b
    Ear, Eas = as_tiers(E_a, a.shape)
    Ebr, Ebs = as_tiers(E_b, b.shape)
    pr = np.abs(a) * Ebr + np.abs(b) * Ear + Ear * Ebr
    ps = np.abs(a) * Ebs + np.abs(b) * Eas + Eas * Ebs
    return _finish(pr, ps, z, out, what, {})


def cast_bound(x_hat: Any, E_x: Any = None, *, out: RoundingModel, what: str = "cast") -> Bound:
    """Requantisation ``fl_out(x_hat)``: ``E_x + out.err(|x_hat|)``; a saturating target adds the
    overshoot, other overflow policies give no guarantee where the value may leave the range."""
    x = np.asarray(x_hat, dtype=np.float64)
    Er, Es = as_tiers(E_x, x.shape)
    zero = np.zeros_like(x)
    return _finish(Er + zero, Es + zero, x, out, what, {})


def scale_bound(x_hat: Any, E_x: Any = None, *, c: float, c_hat: float | None = None, out: RoundingModel = EXACT,
                x_mag: Any = None, what: str = "scale") -> Bound:
    """``c * x`` computed as ``fl_out(c_hat * x_hat)``; ``c_hat`` is the hardware constant
    (default ``c``). ``x_mag``: bound on the magnitude of the value actually scaled when it is not
    ``|x_hat|`` (used by :func:`~refmodel.bounds.matmul.logits_bound`)."""
    x = np.asarray(x_hat, dtype=np.float64)
    ch = float(c if c_hat is None else c_hat)
    dc = abs(ch - float(c))
    Er, Es = as_tiers(E_x, x.shape)
    pr = abs(ch) * Er + dc * (np.abs(x) + Er)
    ps = abs(ch) * Es + dc * (np.abs(x) + Es)
    z = ch * x
    slack = np.zeros_like(z) if x_mag is None else abs(ch) * np.maximum(np.asarray(x_mag) - np.abs(x), 0.0)
    return _finish(pr, ps, z, out, what, {}, slack)


def rope_angles(positions: Any, head_dim: int, base: float) -> np.ndarray:
    """``[s, head_dim/2]`` angles ``pos * base^(-2i/head_dim)`` (float64, as the reference layer)."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    pos = np.asarray(positions, dtype=np.float64)
    inv = float(base) ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    return pos[:, None] * inv[None, :]


def rope_bound(x_hat: Any, E_x: Any = None, *, positions: Any, base: float, out: RoundingModel = EXACT,
               layout: str = "half", const: RoundingModel = EXACT, what: str = "rope") -> Bound:
    """Rotary embedding of ``x_hat`` (``[..., s, hd]``): each pair ``(a, b)`` rotated by its angle,
    ``(a c - b s, b c + a s)``, computed exactly from the stored ``c_hat = fl_const(cos)``,
    ``s_hat = fl_const(sin)`` (``const`` EXACT: float64 tables) and rounded once by ``out``.
    ``layout``: ``half`` (pairs ``i, i + hd/2``, HF rotate_half) or ``pairs`` (``2i, 2i+1``).

    Rigorous: ``|c_hat| E_a + |s_hat| E_b + (|a_hat| + E_a) dc + (|b_hat| + E_b) ds + out.err``
    with ``dc = const.err(|cos|)``, ``ds = const.err(|sin|)`` (exact algebra)."""
    x = np.asarray(x_hat, dtype=np.float64)
    hd = x.shape[-1]
    ang = rope_angles(positions, hd, base)
    c, s = np.cos(ang), np.sin(ang)
    dc, ds = const.err(np.abs(c)), const.err(np.abs(s))
    ch, sh = np.abs(c) + dc, np.abs(s) + ds  # bounds on the stored constants
    Er, Es = as_tiers(E_x, x.shape)
    if layout == "half":
        ia, ib = np.arange(hd // 2), np.arange(hd // 2, hd)
    elif layout == "pairs":
        ia, ib = np.arange(0, hd, 2), np.arange(1, hd, 2)
    else:
        raise ValueError(f"rope layout must be 'half' or 'pairs', got {layout!r}")
    a, b = x[..., ia], x[..., ib]
    z = np.empty_like(x)
    z[..., ia] = a * c - b * s
    z[..., ib] = b * c + a * s

    def prop(E: np.ndarray) -> np.ndarray:
        Ea, Eb = E[..., ia], E[..., ib]
        p = np.empty_like(x)
        p[..., ia] = ch * Ea + sh * Eb + (np.abs(a) + Ea) * dc + (np.abs(b) + Eb) * ds
        p[..., ib] = ch * Eb + sh * Ea + (np.abs(b) + Eb) * dc + (np.abs(a) + Ea) * ds
        return p

    # the value rounded is within |a| dc + |b| ds of z (stored constants)
    slack = np.empty_like(x)
    slack[..., ia] = np.abs(a) * dc + np.abs(b) * ds
    slack[..., ib] = np.abs(b) * dc + np.abs(a) * ds
    return _finish(prop(Er), prop(Es), z, out, what, {}, slack)
