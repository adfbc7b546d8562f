"""Error bounds of LayerNorm and RMSNorm (float and fixed-point units), with SLaNC scaling.

Computation model (two-pass; one row of ``d`` along the last axis; every step is one rounding
with its own :class:`~refmodel.bounds.model.RoundingModel` in :class:`NormSteps`):

    LayerNorm                                     RMSNorm (center=False)
    S1  = acc_mean(x_1..x_d)                      (no mean)
    mu  = fl_mean_div(S1 / d)
    c_i = fl_sub(x_i - mu)                        c_i = x_i
    q_i = fl_sq(c_i * c_i)                        q_i = fl_sq(x_i * x_i)
    S2  = acc_var(q_1..q_d)
    v   = fl_var_div(S2 / d);  t = fl_eps_add(v + eps_hat),  eps_hat = fl_eps_store(eps')
    r   = rsqrt unit(t)        |r - t^-1/2| <= rsqrt.rel t^-1/2 + rsqrt.abs
    n_i = fl_norm(c_i * r)
    y_i = fl_out(fl_gain(g_i n_i) + beta_i)       (fma: y_i = fl_out(g_i n_i + beta_i))

A fixed-point integer unit is the same chain with absolute quanta: exact wide accumulators
(:meth:`Accum.fixed`), ``mean_div``/``var_div``/``norm``/``out`` = q/2 narrowings, exact
subtract/square/add, and the measured rsqrt error (``RoundingModel.measured``).

SLaNC: the unit receives ``x_hat`` already divided by the static scale ``s`` (folded into the
preceding op) and uses ``eps' = eps / s^2``; then LN(x/s; eps/s^2) = LN(x; eps) exactly, so only
``eps'`` changes. ``x_hat`` and ``E_x`` are in the unit's (scaled) domain.

Rigorous bound (all quantities computed from ``x_hat`` in float64; mu, c, T = mean(c^2) + eps',
R = T^-1/2, n = c R exact on ``x_hat``):

    e_mu  = (1 + u_md) acc_mean.error / d + u_md |mu| + a_md
    C_i   = |c_i| + e_mu;   e_c,i = e_mu + u_sub C_i + a_sub
    e_S2  = d e_mu^2 + sum (u_sub C + a_sub)((2 + u_sub) C + a_sub) + squares + acc_var.error
            (the mean error enters the variance only at second order: sum c_i = 0)
    e_v   = (1 + u_vd) e_S2 / d + u_vd V + a_vd
    rho_t = ((e_v + eps_store.err(eps'))(1 + u_ea) + u_ea T + a_ea) / T           (< 1 required)
    rho_r = ((1 - rho_t)^-1/2 - 1)(1 + u_f) + u_f + a_f sqrt(T)
    e_n,i = (1 + rho_r) R e_c,i + |n_i| rho_r + u_n (|c_i| + e_c,i) R (1 + rho_r) + a_n
    e_y,i = |g_i| e_n,i + |n_i| E_g + E_beta + gain/out roundings

The first term of e_n, ``R e_mu ~ gamma_d mean|x| / r``, is the mean-subtraction error: the same
absolute size for every component, so in the outlier regime it dominates the (tiny) background
outputs; the bound carries it exactly. Propagated input error (|x - x_hat| <= E, exact algebra):

    eps_c,i = E_i + mean(E) (LayerNorm) or E_i (RMSNorm)
    rho     = (2 |c|^T E + sum E^2) / (d T)                                          (< 1 required)
    |n_i(x) - n_i(x_hat)| <= eps_c,i R (1 - rho)^-1/2 + |n_i| ((1 - rho)^-1/2 - 1)
    times (|g_hat| + E_g) for the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..numerics.fixed import FixedFormat
from .accum import Accum, LastAxisTerms, PartialSums, running_error
from .model import (
    DEFAULT_ALPHA,
    EXACT,
    Bound,
    RoundingModel,
    as_tiers,
    lambda_azuma,
    output_rounding,
    range_mask,
    range_reason,
    rounding_model,
)

__all__ = ["NormSteps", "layernorm_bound", "rmsnorm_bound", "norm_bound"]


@dataclass(frozen=True)
class NormSteps:
    """The rounding of each step of a norm unit (see the module docstring)."""

    mean_acc: Accum = field(default_factory=Accum.exact)
    var_acc: Accum = field(default_factory=Accum.exact)
    mean_div: RoundingModel = EXACT
    sub: RoundingModel = EXACT
    sq: RoundingModel = EXACT
    var_div: RoundingModel = EXACT
    eps_store: RoundingModel = EXACT
    eps_add: RoundingModel = EXACT
    rsqrt: RoundingModel = EXACT
    norm: RoundingModel = EXACT
    gain: RoundingModel = EXACT
    out: RoundingModel = EXACT
    fma: bool = False

    @classmethod
    def floating(cls, fmt: Any, *, acc: Accum | None = None, out: Any = None, rsqrt: RoundingModel | None = None,
                 rounding: str = "rne", square_rounded: bool = False, fma: bool = False) -> NormSteps:
        """Float unit computing every step in ``fmt`` (e.g. fp32 inside an fp16 layer): sums with
        ``acc`` (default sequential in ``fmt``), squares exact into the accumulator (FMA) unless
        ``square_rounded``, rsqrt with relative error ``rsqrt`` (default: correctly rounded in
        ``fmt``), output rounded into ``out`` (default ``fmt``)."""
        m = rounding_model(fmt, rounding)
        acc = acc or Accum.sequential(fmt, rounding)
        o = m if out is None else rounding_model(out, rounding)
        return cls(acc, acc, m, m, m if square_rounded else EXACT, m, m, m, rsqrt or m, m, m, o, fma)

    @classmethod
    def fixed(cls, *, acc: FixedFormat | str, mean_fmt: Any, var_fmt: Any, rsqrt: RoundingModel, norm_fmt: Any,
              out_fmt: Any, rounding: str = "rne", acc_overflow: str = "saturate") -> NormSteps:
        """Fixed-point integer unit: exact accumulation in ``acc`` (overflow checked), mean and
        variance narrowed into ``mean_fmt``/``var_fmt`` (eps' stored in ``var_fmt``), exact
        subtract/square/add, the measured ``rsqrt`` unit, ``c * r`` narrowed into ``norm_fmt``,
        ``g n + beta`` computed exactly and narrowed into ``out_fmt`` (fma)."""
        a = Accum.fixed(acc, acc_overflow)
        vm = rounding_model(var_fmt, rounding)
        return cls(a, a, rounding_model(mean_fmt, rounding), EXACT, EXACT, vm, vm, EXACT, rsqrt,
                   rounding_model(norm_fmt, rounding), EXACT, rounding_model(out_fmt, rounding), True)


def _abs_sum(x: np.ndarray) -> np.ndarray:
    return np.sum(np.abs(x), axis=-1, keepdims=True)


def norm_bound(x_hat: Any, E_x: Any = None, *, center: bool, eps: float, steps: NormSteps, g: Any = None,
               beta: Any = None, E_g: Any = None, E_beta: Any = None, slanc_scale: float = 1.0,
               alpha: float = DEFAULT_ALPHA, what: str | None = None, running: bool = False) -> Bound:
    """LayerNorm (``center=True``) or RMSNorm bound; see :func:`layernorm_bound`. ``running``: also
    bound the mean and sum-of-squares accumulations a posteriori from their partial sums
    (:func:`refmodel.bounds.accum.running_error`) and keep the smaller bound."""
    # inf (no guarantee) propagates through the chain; inf * 0 gives NaN, which Bound maps to inf
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _norm_bound(x_hat, E_x, center, eps, steps, g, beta, E_g, E_beta, slanc_scale, alpha, what, running)


def _norm_bound(x_hat: Any, E_x: Any, center: bool, eps: float, steps: NormSteps, g: Any, beta: Any, E_g: Any,
                E_beta: Any, slanc_scale: float, alpha: float, what: str | None, running: bool) -> Bound:
    what = what or ("layernorm" if center else "rmsnorm")
    x = np.asarray(x_hat, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{what}: x_hat needs a last axis of length d >= 1, got shape {x.shape}")
    if not (eps >= 0 and slanc_scale > 0):
        raise ValueError(f"{what}: need eps >= 0 and slanc_scale > 0, got eps={eps!r}, slanc_scale={slanc_scale!r}")
    d = x.shape[-1]
    st = steps
    epsp = float(eps) / float(slanc_scale) ** 2
    Er, Es = as_tiers(E_x, x.shape)
    reasons: list[str] = []
    notes: list[str] = []
    lam = lambda_azuma(alpha)
    nog = np.zeros(x.shape[:-1] + (1,), dtype=bool)  # per row: overflow (both tiers void)
    vac = np.zeros(x.shape[:-1] + (1,), dtype=bool)  # per row: rigorous tier vacuous only

    def chk(name: str, lo: Any, hi: Any, m: RoundingModel) -> None:
        nonlocal nog
        if not (math.isfinite(m.max) or math.isfinite(m.min)):
            return
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        # an unbounded (vacuous) error says nothing about range; the vacuity flag voids the rigorous tier
        mask = range_mask(lo, hi, m) & np.isfinite(lo) & np.isfinite(hi)
        r = range_reason(f"{what} {name}", mask, lo, hi, m)
        if r is not None:  # some entry of mask is set
            reasons.append(r)
            nog = nog | np.any(mask, axis=-1, keepdims=True)

    # ---- mean -----------------------------------------------------------------------------
    if center:
        mu = np.mean(x, axis=-1, keepdims=True)
        A1 = _abs_sum(x)
        ps1 = PartialSums(x.shape[:-1] + (1,), st.mean_acc)
        if st.mean_acc.needs_partial_sums or st.mean_acc.kind == "fixed":
            ps1.feed(x[..., None, :])
        a1r, a1s, rs = st.mean_acc.error(d, A1, ss_outer=ps1.ss_outer, ss_inner=ps1.ss_inner, alpha=alpha)
        range1 = A1
        got = running_error(LastAxisTerms(x), st.mean_acc, A=A1) if running else None
        if got is not None:
            a1r = np.minimum(a1r, got.error)
            a1s = np.minimum(a1s, a1r)
            range1 = got.peak
            rs = []
        reasons += rs
        m1, rs = st.mean_acc.range_reasons(f"{what} mean", range1, a1r, final=np.abs(mu) * d, max_partial=ps1.max_abs)
        reasons += rs
        nog = nog | m1
        md = st.mean_div
        e_mu_r = (1 + md.rel) * a1r / d + md.rel * np.abs(mu) + md.abs
        e_mu_s = (1 + md.rel) * a1s / d + md.rel * np.abs(mu) + md.abs
        chk("mean", mu - e_mu_r, mu + e_mu_r, md)
    else:
        mu = np.zeros(x.shape[:-1] + (1,))
        e_mu_r = e_mu_s = np.zeros_like(mu)
    c = x - mu
    sub = st.sub if center else EXACT
    ac = np.abs(c)

    def variance_chain(e_mu: np.ndarray, acc_err_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
                       stat: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        C = ac + e_mu
        e_c = e_mu + sub.rel * C + sub.abs
        Cc = (1 + sub.rel) * C + sub.abs
        if stat and sub.unbiased and sub.rel > 0:
            D2 = lam * np.sqrt(np.sum((sub.rel * C * (2 + sub.rel) * C) ** 2, axis=-1, keepdims=True)) \
                + np.sum(sub.abs * ((2 + sub.rel) * C + sub.abs), axis=-1, keepdims=True)
        else:
            D2 = np.sum((sub.rel * C + sub.abs) * ((2 + sub.rel) * C + sub.abs), axis=-1, keepdims=True)
        sq = st.sq
        if stat and sq.unbiased and sq.rel > 0:
            sq_err = lam * sq.rel * np.sqrt(np.sum(Cc ** 4, axis=-1, keepdims=True)) + d * sq.abs
        else:
            sq_err = np.sum(sq.rel * Cc * Cc + sq.abs, axis=-1, keepdims=True)
        A2 = np.sum(Cc * Cc * (1 + sq.rel) + sq.abs, axis=-1, keepdims=True)
        acc2 = acc_err_fn(A2, Cc * Cc * (1 + sq.rel) + sq.abs)
        e_S2 = d * e_mu * e_mu + D2 + sq_err + acc2
        return e_c, Cc, A2, acc2, e_S2

    ps2 = PartialSums(x.shape[:-1] + (1,), st.var_acc)
    if st.var_acc.needs_partial_sums or st.var_acc.kind == "fixed":
        ps2.feed((c * c)[..., None, :])
    acc2_cache: dict[str, Any] = {}

    def acc2_fn(tier: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def f(A2: np.ndarray, terms_top: np.ndarray) -> np.ndarray:
            r, s, rs = st.var_acc.error(d, A2, ss_outer=ps2.ss_outer, ss_inner=ps2.ss_inner, alpha=alpha)
            # the squares are >= 0: the partial sums of upper bounds on them bound the partial sums
            got = running_error(LastAxisTerms(terms_top), st.var_acc, A=A2) if running and tier == "rig" else None
            if got is not None:
                r = np.minimum(r, got.error)
                s = np.minimum(s, r)
                rs = []
                acc2_cache["range"] = got.peak
            acc2_cache[tier] = (r, s, rs)
            return r if tier == "rig" else s
        return f

    e_c_r, Cc_r, A2, acc2_r, e_S2_r = variance_chain(e_mu_r, acc2_fn("rig"), False)
    reasons += acc2_cache["rig"][2]
    e_c_s, _, _, _, e_S2_s = variance_chain(e_mu_s, acc2_fn("stat"), True)
    m2, rs = st.var_acc.range_reasons(f"{what} sum of squares", acc2_cache.get("range", A2), acc2_r,
                                      final=np.sum(c * c, -1, keepdims=True),
                                      max_partial=ps2.max_abs + (A2 - np.sum(c * c, -1, keepdims=True)))
    reasons += rs
    nog = nog | m2
    if center:
        chk("centred values", -np.max(Cc_r, -1, keepdims=True), np.max(Cc_r, -1, keepdims=True), sub)
    chk("squares", 0 * A2, np.max(Cc_r, -1, keepdims=True) ** 2 * (1 + st.sq.rel) + st.sq.abs, st.sq)

    V = np.mean(c * c, axis=-1, keepdims=True)
    T = V + epsp
    with np.errstate(divide="ignore"):
        R = np.where(T > 0, 1.0 / np.sqrt(T), np.inf)
    n = c * R
    vd, ea, rq = st.var_div, st.eps_add, st.rsqrt
    e_eps = st.eps_store.err(epsp)

    def rho_chain(e_S2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e_v = (1 + vd.rel) * e_S2 / d + vd.rel * V + vd.abs
        e_t = (e_v + e_eps) * (1 + ea.rel) + ea.rel * T + ea.abs
        with np.errstate(divide="ignore", invalid="ignore"):
            rho_t = np.where(T > 0, e_t / T, np.inf)
            bad = ~(rho_t < 1)
            rt = np.where(bad, 0.0, rho_t)
            rho_r = ((1 - rt) ** -0.5 - 1) * (1 + rq.rel) + rq.rel + rq.abs * np.sqrt(T)
        return e_v, np.where(bad, np.inf, rho_r), bad

    e_v_r, rho_r_r, bad_r = rho_chain(e_S2_r)
    _, rho_r_s, _ = rho_chain(e_S2_s)
    if np.any(bad_r):
        reasons.append(f"no guarantee: {what} variance error bound >= variance + eps' ({int(bad_r.sum())} row(s)); "
                       f"rsqrt argument not bounded away from 0")
        vac = vac | bad_r
    chk("variance", V - e_v_r, V + e_v_r, vd)
    chk("variance + eps", T - e_v_r, T + e_v_r + e_eps, ea)
    chk("rsqrt", np.zeros_like(R), R * (1 + np.where(bad_r, 0, rho_r_r)), rq)

    nm = st.norm

    def e_n_fn(e_c: np.ndarray, rho_r: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return (1 + rho_r) * R * e_c + ac * R * rho_r + nm.rel * (ac + e_c) * R * (1 + rho_r) + nm.abs

    e_n_r = e_n_fn(e_c_r, rho_r_r)
    e_n_s = e_n_fn(e_c_s, rho_r_s)
    an = np.abs(n)
    chk("normalised", -(an + np.where(np.isfinite(e_n_r), e_n_r, 0)), an + np.where(np.isfinite(e_n_r), e_n_r, 0), nm)

    # ---- gain and bias ----------------------------------------------------------------------
    if g is None and beta is None:
        if not (st.gain.exact and st.out.exact):
            notes.append(f"{what}: no gain/bias given; the gain/out roundings are not applied")
        loc_r, loc_s = e_n_r, e_n_s
        gh = np.ones_like(x)
        Egr = np.zeros_like(x)
        z = n
    else:
        gh = np.broadcast_to(np.asarray(1.0 if g is None else g, dtype=np.float64), x.shape)
        bh = np.broadcast_to(np.asarray(0.0 if beta is None else beta, dtype=np.float64), x.shape)
        Egr, Egs = as_tiers(E_g, x.shape)
        Ebr, Ebs = as_tiers(E_beta, x.shape)
        ag, ab = np.abs(gh), np.abs(bh)
        z = gh * n + bh

        def gain_out(e_n: np.ndarray, Eg: np.ndarray, Eb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with np.errstate(invalid="ignore"):
                Nn = an + e_n
                base = ag * e_n + an * Eg + Eb
                if st.fma:
                    pre = base
                    mag = ag * Nn + ab
                else:
                    gr = st.gain.rel * ag * Nn + st.gain.abs
                    pre = base + gr
                    mag = ag * Nn * (1 + st.gain.rel) + st.gain.abs + ab
            return pre, mag

        pre_r, mag_r = gain_out(e_n_r, Egr, Ebr)
        pre_s, mag_s = gain_out(e_n_s, Egs, Ebs)
        if not st.fma:
            chk("gain product", -(ag * (an + e_n_r)), ag * (an + e_n_r), st.gain)
        fin = np.isfinite(pre_r)
        out_r, out_s, onog, rs, ns = output_rounding(z, np.where(fin, pre_r, 0.0), np.where(fin, pre_s, 0.0),
                                                     st.out, f"{what} output")
        reasons += rs
        notes += ns
        loc_r = pre_r + out_r
        loc_s = pre_s + out_s
        nog = nog | onog

    # ---- propagated input error --------------------------------------------------------------
    def prop(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eps_c = E + (np.mean(E, axis=-1, keepdims=True) if center else 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = (2 * np.sum(ac * E, -1, keepdims=True) + np.sum(E * E, -1, keepdims=True)) / (d * T)
            bad = ~(rho < 1)
            f = np.where(bad, np.inf, (1 - np.where(bad, 0, rho)) ** -0.5)
            pn = eps_c * R * f + an * (f - 1)
        pn = np.where(E.sum(-1, keepdims=True) == 0, 0.0, pn)
        return pn, bad

    pn_r, badp = prop(Er)
    pn_s, _ = prop(Es)
    if np.any(badp & (Er.sum(-1, keepdims=True) > 0)):
        reasons.append(f"no guarantee: {what} input error too large for the variance (|c|.E / d T >= 1)")
        vac = vac | badp
    gprop = np.abs(gh) + Egr
    prop_r = gprop * pn_r
    prop_s = (np.abs(gh) + (as_tiers(E_g, x.shape)[1] if g is not None else 0.0)) * pn_s
    rig = prop_r + loc_r
    stat = prop_s + loc_s
    rig = np.where(np.broadcast_to(nog | vac, rig.shape), np.inf, rig)
    stat = np.where(np.broadcast_to(nog, stat.shape), np.inf, stat)
    parts = {"propagated": prop_r, "local": loc_r, "propagated_stat": prop_s, "local_stat": loc_s,
             "rho_r_stat": rho_r_s, "e_mu_stat": e_mu_s, "c": c, "T": T, "mean_subtraction": (1 + rho_r_r) * R * e_mu_r * np.ones_like(x),
             "normalised": e_n_r, "rho_r": rho_r_r, "R": R, "n": n, "z": z,
             "outlier_ratio": np.mean(np.abs(x), -1, keepdims=True) / np.maximum(np.min(ac, -1, keepdims=True), 1e-300)}
    return Bound(rig, stat, list(dict.fromkeys(reasons)), notes, parts)


def layernorm_bound(x_hat: Any, E_x: Any = None, *, eps: float, steps: NormSteps, g: Any = None, beta: Any = None,
                    E_g: Any = None, E_beta: Any = None, slanc_scale: float = 1.0, alpha: float = DEFAULT_ALPHA) -> Bound:
    """LayerNorm ``y = g (x - mean)/sqrt(var + eps) + beta`` over the last axis.

    ``x_hat``: what the unit receives (already divided by ``slanc_scale``, see module doc);
    ``E_x``: bound on ``|x_hat - x/s|``; ``eps``: the model's epsilon (the unit uses
    ``eps/s^2``); ``g``, ``beta``: the hardware's gain/bias (``E_g``/``E_beta`` their
    quantisation errors when the reference uses the float values); ``steps``: per-step rounding
    (:meth:`NormSteps.floating` / :meth:`NormSteps.fixed`). Assumes the two-pass algorithm of the
    module docstring, no overflow (checked per row: ``inf`` + reason), float64 as exact reference.
    """
    return norm_bound(x_hat, E_x, center=True, eps=eps, steps=steps, g=g, beta=beta, E_g=E_g, E_beta=E_beta,
                      slanc_scale=slanc_scale, alpha=alpha, what="layernorm")


def rmsnorm_bound(x_hat: Any, E_x: Any = None, *, eps: float, steps: NormSteps, g: Any = None, E_g: Any = None,
                  slanc_scale: float = 1.0, alpha: float = DEFAULT_ALPHA) -> Bound:
    """RMSNorm ``y = g x / sqrt(mean(x^2) + eps)``; arguments as :func:`layernorm_bound` (no mean,
    no bias; ``steps.mean_acc``/``mean_div``/``sub`` are unused)."""
    return norm_bound(x_hat, E_x, center=False, eps=eps, steps=steps, g=g, E_g=E_g, slanc_scale=slanc_scale,
                      alpha=alpha, what="rmsnorm")
