"""Norm stages of the layer walk: LayerNorm and RMSNorm (``ln1``, ``ln2``, bert's ``out``).

End-to-end, rigorous, for ``y = g n(x) + beta`` from ``x_hat`` with ``|x_hat - x| <= E``
(stability.md 3.2 / 3.3 and 5.3 "LayerNorm", "RMSNorm"; derivation in :mod:`refmodel.bounds.norm`),
with ``c = x_hat - mean(x_hat)`` (LayerNorm) or ``x_hat`` (RMSNorm), ``T = mean(c^2) + eps``,
``R = T^-1/2``, ``n = c R``::

    rho      = (2 |c|^T E + sum E^2) / (d T)                                  (< 1 required)
    E_n,i    = (E_i + mean(E)) R (1 - rho)^-1/2 + |n_i| ((1 - rho)^-1/2 - 1)   propagated (RMSNorm: E_i)
    E_y,i    = (|g_i| + E_g,i) E_n,i + |n_i| E_g,i + E_beta,i
             + local_i                                                          the unit's roundings
             + ref64_i                                                          float64's own error

Float plans: the unit first rounds ``x / s`` into the work format (the SLaNC scale ``s``), then
the two-pass steps of :class:`refmodel.bounds.norm.NormSteps` (mean, subtract, sum of squares,
``var + eps``, ``1/sqrt``, ``c r``, gain, bias), each one rounding in the work format; the
mean-subtraction error ``gamma_(d+1) mean|x| / r`` hits every component alike (stability.md 3.4).
Fixed plans: the integer unit's own derived bound (:func:`refmodel.numerics.units.norm.norm_error_bound`:
SLaNC shift and mean roundings, the rsqrt / sqrt(D) error, ``n`` and output roundings) plus the
exact effect of the unit's quantised eps.

Statistical tier: the exact Jacobian of the norm at ``x_hat`` squared on the independent parts,
the second-order remainder as the factor ``(1 - rho)^-1/2`` at the statistical level, the 1/sqrt
error as a row-shared relative error on ``g n`` (:func:`norm_stat`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ...layer.qtensor import store
from ...numerics.rounding import Rounding
from ..model import EXACT, RoundingModel
from ..mx import is_mx_spec
from ..norm import NormSteps, norm_bound
from .models import F64, FUNC, U64, Unsupported, compose, gamma64, internal_sum, plan_model
from .state import StatError, ValueChain, rig_only

if TYPE_CHECKING:
    from ...layer.plan import TensorPrecision
    from ...layer.quantized import OpRecord
    from .walk import LayerWalk

__all__ = ["walk_norm", "norm_stat", "norm_ref64", "fixed_norm_split", "float_norm_steps"]


def norm_ref64(x_ref: np.ndarray, center: bool, eps: float, g: np.ndarray, Eg: Any, b: Any, Eb: Any) -> np.ndarray:
    """The float64 reference's own error of ``norm(x_ref) * g + b`` (``Float64Ops.norm``: mean by
    a numpy sum, ``c = x - mean``, ``var = mean(c^2)``, ``n = c / sqrt(var + eps)``), in closed
    form with u = 2^-53: ``e_mu <= g_(d+1) mean|x|``, ``|dc_i| <= e_mu (1+u) + u|c_i|``, the
    relative error of ``var + eps`` ``<= g_(d+5) + 3 e_mu^2 / T``, then
    ``|dn_i| <= R |dc_i| + |n_i| (rho_t / 2 + 2u)``; padded by 2x for the dropped higher orders."""
    xr = np.asarray(x_ref, dtype=np.float64)
    d = xr.shape[-1]
    mu = np.mean(xr, -1, keepdims=True) if center else 0.0
    c = xr - mu
    T = np.mean(c * c, -1, keepdims=True) + eps
    with np.errstate(divide="ignore"):
        R = np.where(T > 0, 1.0 / np.sqrt(T), np.inf)
    e_mu = gamma64(d + 1) * np.mean(np.abs(xr), -1, keepdims=True) if center else 0.0
    dc = e_mu * (1 + U64) + U64 * np.abs(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho_t = gamma64(d + 5) + np.where(T > 0, 3 * e_mu * e_mu / T, np.inf)
    n = np.abs(c) * R
    e_n = 2.0 * (R * dc + n * (rho_t / 2 + 2 * U64))
    G = np.abs(g) + Eg
    e = G * e_n + U64 * G * (n + e_n)
    if b is not None:
        e = e + U64 * (G * (n + e_n) * (1 + U64) + np.abs(b) + Eb)
    return e


def norm_stat(walk: LayerWalk, Sx: StatError, xs: np.ndarray, center: bool, epsp: float, g: np.ndarray,
              gn: str, bn: str | None) -> StatError:
    """First-order propagation through ``g * norm(xs) + b`` (exact Jacobian at ``xs``; the
    statistical state is in the unit's (scaled) domain) plus the second-order remainder into
    the factor ``f = (1 - rho)^-1/2``."""
    lam = walk.lam
    d = xs.shape[-1]
    c = xs - (np.mean(xs, -1, keepdims=True) if center else 0.0)
    Vv = np.mean(c * c, -1, keepdims=True)
    T = Vv + epsp
    R = np.where(T > 0, 1.0 / np.sqrt(np.where(T > 0, T, 1.0)), np.inf)
    n = c * R
    D = Sx.det

    def jac2(V: np.ndarray) -> np.ndarray:  # sum_j J_ij^2 V_j (J the norm's Jacobian at xs, without the gain)
        sV = np.sum(V, -1, keepdims=True)
        snV = np.sum(n * V, -1, keepdims=True)
        sn2V = np.sum(n * n * V, -1, keepdims=True)
        if center:
            aii = (1 + n * n) / d
            cross = (sV + 2 * n * snV + n * n * sn2V) / d ** 2
        else:
            aii = n * n / d
            cross = n * n * sn2V / d ** 2
        return R * R * np.maximum(V * (1 - 2 * aii) + cross, 0.0)

    if center:
        Dmix = (np.sum(D, -1, keepdims=True) + np.abs(n) * np.sum(np.abs(n) * D, -1, keepdims=True)) / d
    else:
        Dmix = np.abs(n) * np.sum(np.abs(n) * D, -1, keepdims=True) / d
    Vn, Wn = jac2(Sx.indep), jac2(Sx.shared)
    V = Sx.var
    Dn = R * (D + Dmix)
    # beyond first order: the rigorous propagation is the first-order one times at most
    # f = (1 - rho)^-1/2, rho the relative change of the variance; at the statistical level
    # rho = (2 lam sqrt(sum c^2 V) + 2 |c|.D + sum E^2) / (d T)
    Dr = D + Sx.row_part()
    # sum of squared errors: mean sum V, concentrated (sub-exponential) at the lam level
    S2 = (np.sum(V, -1, keepdims=True) + lam * np.sqrt(2 * np.sum(V * V, -1, keepdims=True))
          + np.sum(Dr * Dr, -1, keepdims=True) + 2 * lam * np.sqrt(np.sum(Dr * Dr * V, -1, keepdims=True)))
    rho = (2 * lam * np.sqrt(np.sum(c * c * V, -1, keepdims=True)) + 2 * np.sum(np.abs(c) * Dr, -1, keepdims=True)
           + S2) / (d * T)
    f = np.where(rho < 1, (1 - np.minimum(rho, 1 - 1e-16)) ** -0.5, np.inf)
    Vn, Wn, Dn = Vn * f * f, Wn * f * f, Dn * f
    Egu, Egb = walk.weight_parts(gn)
    G = np.abs(g)
    # a row-relative input error survives the norm only through eps: delta eps/T on g n
    st = StatError(xs.shape, G * G * Vn, G * Dn + np.abs(n) * Egb, Sx.row_rel * epsp / T, g * n,
                   G * G * Wn + n * n * Egu * Egu)
    if bn is not None:
        Ebu, Ebb = walk.weight_parts(bn)
        st.shared = st.shared + Ebu * Ebu
        st.det = st.det + Ebb
    return st


def walk_norm(walk: LayerWalk, rec: OpRecord) -> None:
    """LayerNorm / RMSNorm (module docstring)."""
    xn, gn = rec.inputs[0], rec.inputs[1]
    bn = rec.inputs[2] if len(rec.inputs) > 2 else None
    det = rec.details
    center = det["norm"] == "layernorm"
    eps = float(det["eps"])
    scale = float(det["scale"])
    x = walk.val(xn)
    Ex = walk.err(xn)
    g = walk.val(gn)
    Eg = walk.err(gn)
    b = walk.val(bn) if bn else None
    Eb = walk.err(bn) if bn else None
    Sx = walk.stat_of(xn)
    if walk.fixed:
        ch, st = _walk_fixed_norm(walk, rec, x, Ex, g, Eg, b, Eb, center, eps, Sx, gn, bn)
    else:
        ch, st = _walk_float_norm(walk, rec, x, Ex, g, Eg, b, Eb, center, eps, scale, Sx, gn, bn)
    ch.ref64 = norm_ref64(walk.ref[xn], center, eps, g, Eg, b, Eb)
    walk.finish(rec, ch, st, shared_events=4 * int(np.prod(x.shape[:-1])),
                ref_magnitude=norm_magnitude(x.shape[-1], g, Eg, b, Eb))


def norm_magnitude(d: int, g: np.ndarray, Eg: Any, b: Any, Eb: Any) -> np.ndarray:
    """A priori bound on a norm's output ``|g n + beta|``: ``|n_i| <= sqrt(d)`` for any input
    (``n_i^2 = d c_i^2 / (sum c^2 + d eps) <= d``), so ``(|g| + E_g) sqrt(d) + |beta| + E_beta``."""
    with np.errstate(invalid="ignore", over="ignore"):
        m = (np.abs(g) + Eg) * math.sqrt(d)
        return m if b is None else m + np.abs(b) + Eb


def float_norm_steps(rec: OpRecord, tp: TensorPrecision, center: bool) -> tuple[NormSteps, RoundingModel]:
    """The :class:`NormSteps` of ``QuantOps._float_norm`` for ``rec`` (work format ``W``: every
    internal step one rounding in ``W``; the output composed with the tensor format's rounding
    when it differs), and the model of the first cast ``round_W(x / s)``."""
    W = rec.details["work_format"]
    eps_fmt = rec.details["eps_format"]
    rnd = tp.rounding
    if W != "float64" and is_mx_spec(W):
        raise Unsupported(f"norm work format {W} is an MX format")
    mW = plan_model(W, rnd, tp.overflow)
    acc = internal_sum(tp.acc, W, rnd)
    sq = F64 if W == "float64" else EXACT
    eps_store = F64 if eps_fmt == "float64" else plan_model(eps_fmt, "rne")
    rs = F64.widened(rel=FUNC) if W == "float64" else plan_model(W, rnd, tp.overflow, widen=FUNC)
    mx_out = is_mx_spec(tp.format)
    if center:
        out = mW if (W == tp.format or mx_out) else compose(mW, plan_model(tp.format, rnd, tp.overflow))
    else:
        out = EXACT if (W == tp.format or mx_out) else plan_model(tp.format, rnd, tp.overflow)
    return NormSteps(acc, acc, mW, mW, sq, mW, eps_store, mW, rs, mW, mW, out, False), mW


def float_norm_input(x: np.ndarray, scale: float, W: str, tp: TensorPrecision, mW: RoundingModel,
                     what: str) -> tuple[np.ndarray, np.ndarray]:
    """``xs = round_W(x / s)`` (deterministic replay of the unit's first cast) and the bound on
    ``|xs - x/s|``."""
    xs_exact = x / scale
    xs = store(xs_exact, W, tp.rounding, tp.overflow).values
    if W != "float64" and np.any(np.abs(xs_exact) > mW.max):
        raise Unsupported(f"input {what} / {scale:g} overflows the work format {W}")
    cast = np.where(xs == xs_exact, 0.0, mW.err(np.abs(xs_exact)))
    if math.frexp(scale)[0] != 0.5:  # x / s itself was rounded in float64
        cast = cast + 2.0 ** -52 * np.abs(xs_exact)
    return xs, cast


def _walk_float_norm(walk: LayerWalk, rec: OpRecord, x: np.ndarray, Ex: np.ndarray, g: np.ndarray, Eg: np.ndarray,
                     b: np.ndarray | None, Eb: np.ndarray | None, center: bool, eps: float, scale: float,
                     Sx: StatError, gn: str, bn: str | None) -> tuple[ValueChain, StatError]:
    tp = walk.tp(rec.name)
    rnd = tp.rounding
    steps, mW = float_norm_steps(rec, tp, center)
    W = rec.details["work_format"]
    xs, cast = float_norm_input(x, scale, W, tp, mW, rec.inputs[0])
    B = norm_bound(xs, rig_only(Ex / scale + cast), center=center, eps=eps, steps=steps, g=g, beta=b, E_g=rig_only(Eg),
                   E_beta=None if Eb is None else rig_only(Eb), slanc_scale=scale, alpha=walk.alpha,
                   running=walk.running(x.shape[-1], steps.var_acc))
    ch = ValueChain.from_bound(B)
    # statistical: propagate in the scaled domain, then the unit's own roundings
    Sxs = StatError(x.shape, Sx.indep / scale ** 2, Sx.det / scale, Sx.row_rel, Sx.row_base / scale,
                    Sx.shared / scale ** 2)
    Sxs.add_rounding(cast, mW.unbiased)
    st = norm_stat(walk, Sxs, xs, center, eps / scale ** 2, g, gn, bn)
    p = B.parts
    R, n, c = p["R"], p["n"], p["c"]
    G = np.abs(g)
    rho = np.where(np.isfinite(p["rho_r_stat"]), p["rho_r_stat"], np.inf)
    emu = p["e_mu_stat"]
    sub = steps.sub if center else EXACT
    out = steps.out
    per_elem = [(G * R * sub.step_err(c), sub.unbiased), (G * steps.norm.step_err(n), steps.norm.unbiased),
                (steps.gain.step_err(g * n), steps.gain.unbiased),
                (out.step_err(p["z"]), out.unbiased)]
    for e, unb in per_elem:
        st.add_rounding(e, unb)
    st.add_rounding(G * (1 + np.where(np.isfinite(rho), rho, 0.0)) * R * emu, True)  # shared mean error
    st.row_rel = st.row_rel + rho  # the 1/sqrt error: relative on g n (the base set by the propagation)
    if is_mx_spec(tp.format):
        v0, d0 = ch.local_var.copy(), ch.local_det.copy()
        ch.round_mx(tp.format, rnd, walk.stored_X(rec.name), -1, f"{rec.name} output")
        st.indep = st.indep + (ch.local_var - v0)
        st.det = st.det + (ch.local_det - d0)
    return ch, st


def fixed_norm_eps_effect(x: np.ndarray, g: np.ndarray, b: Any, center: bool, eps: float, prm: Any
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unit normalises with ``eps_real`` (its EPS code) instead of ``eps``: the exact
    difference at ``x_hat`` (``eps_term``), the unit's reference point ``z_u`` (which
    ``norm_error_bound`` compares with, after clamping) and the exact ``z`` with ``eps``."""
    c = x - (np.mean(x, -1, keepdims=True) if center else 0.0)
    V = np.mean(c * c, -1, keepdims=True)
    T, Tu = V + eps, V + prm.eps_real
    rT = np.where(T > 0, 1 / np.sqrt(np.where(T > 0, T, 1.0)), 0.0)
    rTu = np.where(Tu > 0, 1 / np.sqrt(np.where(Tu > 0, Tu, 1.0)), 0.0)
    eps_term = np.abs(g) * np.abs(c) * np.abs(rT - rTu)
    bb = 0.0 if b is None else b
    z_u = g * (c * rTu) + bb
    z = g * c * rT + bb
    return eps_term, z_u, z


def fixed_norm_local(walk: LayerWalk, rec: OpRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
    """The integer norm unit's local error at the run's input codes (in real units): the unit's
    own bound (``norm_error_bound``, against the clamped float64 norm with the unit's eps), and
    the pieces ``eps_term``, ``z_u``, ``z`` of :func:`fixed_norm_eps_effect`; plus the params."""
    from ...numerics.units.norm import norm_error_bound

    prm = rec.details["norm_params"]
    xq, gq = walk.qt(rec.inputs[0]), walk.qt(rec.inputs[1])
    bq = walk.qt(rec.inputs[2]) if len(rec.inputs) > 2 else None
    bc = bq.codes if bq is not None else np.zeros(prm.d, dtype=np.int64)
    lsb = math.ldexp(1.0, -prm.out_fmt.frac)
    unit = norm_error_bound(xq.codes, gq.codes, bc, prm) * lsb
    x = walk.val(rec.inputs[0])
    g = walk.val(rec.inputs[1])
    b = walk.val(rec.inputs[2]) if bq is not None else None
    eps_term, z_u, z = fixed_norm_eps_effect(x, g, b, rec.details["norm"] == "layernorm", float(rec.details["eps"]), prm)
    return unit, eps_term, z_u, z, prm


def _walk_fixed_norm(walk: LayerWalk, rec: OpRecord, x: np.ndarray, Ex: np.ndarray, g: np.ndarray, Eg: np.ndarray,
                     b: np.ndarray | None, Eb: np.ndarray | None, center: bool, eps: float,
                     Sx: StatError, gn: str, bn: str | None) -> tuple[ValueChain, StatError]:
    unit, eps_term, z_u, z, prm = fixed_norm_local(walk, rec)
    clamp = np.abs(np.clip(z_u, prm.out_fmt.min, prm.out_fmt.max) - z_u)
    # propagated: the exact-arithmetic norm's sensitivity to E_x, E_g, E_b (norm_bound, exact steps)
    Bp = norm_bound(x, rig_only(Ex), center=center, eps=eps, steps=NormSteps(), g=g, beta=b, E_g=rig_only(Eg),
                    E_beta=None if Eb is None else rig_only(Eb), alpha=walk.alpha, what=f"{rec.name} (propagation)")
    ch = ValueChain(z, unit + eps_term + clamp, Bp.rig)
    ch.vacuous |= np.broadcast_to(~np.isfinite(Bp.rig), z.shape)
    ch.reasons += Bp.reasons
    sat = clamp > 0
    if np.any(sat):  # the clamp distance is part of the bound (exact at x_hat)
        ch.notes.append(f"{rec.name} output saturates at {prm.out_fmt} (|value| up to "
                        f"{float(np.max(np.abs(z_u[sat]))):.6g} > {prm.out_fmt.max:g}, {int(sat.sum())} element(s))")
    st = norm_stat(walk, Sx, x, center, eps, g, gn, bn)
    # the unit's own error, split as in norm_error_bound's derivation: the SLaNC-shift and mean
    # roundings (Delta, per element), the row's scale change rms(Delta)/s_u and the rsqrt /
    # sqrt(D) error eta (relative, shared by the row), the n and output roundings
    dl, rel, rn = fixed_norm_split(walk.qt(rec.inputs[0]).codes, prm)
    G = np.abs(g)
    st.add_rounding(G * dl, True)
    st.add_rounding(G * rn, True)
    st.add_rounding(np.zeros_like(z) + math.ldexp(0.5, -prm.out_fmt.frac), prm.out_rounding is Rounding.RNE)
    st.row_rel = st.row_rel + rel
    st.det = st.det + eps_term + clamp
    return ch, st


def fixed_norm_split(x_codes: np.ndarray, prm: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Pieces of :func:`refmodel.numerics.units.norm.norm_error_bound` (real units, before the
    gain): ``|Delta| / s_u`` per element, the row-shared relative ``rms(Delta)/s_u + |eta|`` and the
    n rounding ``2^-(N_F+1)``."""
    from ...numerics.units.norm import norm_stats_int

    stt = norm_stats_int(x_codes, prm)
    x = np.ldexp(np.asarray(x_codes, dtype=np.float64), -prm.in_fmt.frac)
    a = x if prm.rms else x - x.mean(axis=-1, keepdims=True)
    u = np.ldexp(stt.y.astype(np.float64), prm.shift - prm.in_fmt.frac - prm.g)
    delta = u - a
    s_u = np.sqrt(np.mean(u * u, axis=-1, keepdims=True) + prm.eps_real)
    rms_d = np.sqrt(np.mean(delta * delta, axis=-1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        dl = np.where(s_u > 0, np.abs(delta) / np.where(s_u > 0, s_u, 1.0), np.inf)
        exact_rs = np.sqrt(float(prm.d)) * np.ldexp(1.0, prm.k_eff) / np.sqrt(stt.a_norm.astype(np.float64))
        eta = np.where(stt.a > 0, stt.rs.astype(np.float64) / np.where(stt.a > 0, exact_rs, 1.0) - 1.0, 0.0)
        rel = np.where(s_u > 0, rms_d / np.where(s_u > 0, s_u, 1.0), np.inf) + np.abs(eta[..., None]) + 1e-12
    return dl, rel, math.ldexp(0.5, -prm.n_f)
