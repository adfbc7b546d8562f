"""Error bounds of softmax over the last axis: shifted (max-subtracted) and unshifted, float and
fixed-point (LUT exp / reciprocal units with measured errors, output in UQ0.F).

Computation model (one row ``l_1..l_n``; :class:`SoftmaxSteps` gives each step's rounding):

    m   = max_j l_j                                  (exact)
    d_j = fl_sub(l_j - m)    (shifted)  or  d_j = l_j  (unshifted)
    e_j = exp unit(d_j) = exp(d_j (1 + th_j)) (1 + f_j) + h_j,   |th| <= exp_arg_rel,
                                                                |f| <= exp.rel, |h| <= exp.abs
    S   = acc(e_1..e_n)
    s_j = fl_out(e_j / S)                           (normalize="divide")
    s_j = fl_out(e_j * r),  r = recip unit(S),  |r - 1/S| <= recip.rel / S + recip.abs   ("reciprocal")

``exp_arg_rel`` models argument reduction (``x log2 e`` rounded); it is what makes the unshifted
evaluation lose ``u |l_j|``. Rigorous local bound, with exact ``w_j = exp(l_j - m)`` (or
``exp(l_j)``), ``W = sum w``, ``s = w / W`` on the computed logits, gaps ``a_j = m - l_j``:

    Delta_j = (u_sub a_j + a_sub)(1 + arg) + arg a_j          (unshifted: arg |l_j|)
    rho_j   = e^{Delta_j} (1 + u_f) - 1                       |e_j - w_j| <= rho_j w_j + a_f
    rho_S   = (sum_j (rho_j w_j + a_f) + acc.error) / W       (< 1 required)
    D_j     = (s_j rho_j + a_f / W + s_j rho_S) / (1 - rho_S)     = |e_j/S - s_j| bound
    divide:      E_loc = D_j + out.rel (s_j + D_j) + out.abs
    reciprocal:  D'_j = D_j + (w_j (1 + rho_j) + a_f)(recip.rel / (W (1 - rho_S)) + recip.abs)

``rho_S ~ sum_k s_k rho_k + gamma_n`` carries the attention-weighted gap ``s^T a`` rather than the
largest gap: the attention-sink tightening (a sink with ``s_c ~ 1`` at the max has ``a_c = 0``).

Propagated logit error ``|l - l_hat| <= E`` (``M = max E``), rigorous (exact algebra: Jensen for
the upper side, the chord of exp on [0, M] for the lower side):

    |s_j(l) - s_j(l_hat)| <= s_j max(exp(E_j + s^T E) - 1, 1 - e^{-E_j} / (1 + s^T E (e^M - 1)/M))

which is ``s_j (E_j + s^T E)`` to first order and never exceeds the coarse ``s_j (e^{2M} - 1)``.
Since ``0 <= s_j(l) <= 1`` the upper side is also capped at ``1 - s_j`` (large ``E``: the bound stays
a probability instead of growing like ``e^{2M}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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

__all__ = ["SoftmaxSteps", "softmax_bound", "softmax_propagation"]


@dataclass(frozen=True)
class SoftmaxSteps:
    """Rounding of each softmax step (module docstring)."""

    sub: RoundingModel = EXACT
    exp_arg_rel: float = 0.0
    exp: RoundingModel = EXACT
    acc: Accum = field(default_factory=Accum.exact)
    normalize: str = "divide"
    recip: RoundingModel = EXACT
    out: RoundingModel = EXACT

    def __post_init__(self) -> None:
        if self.normalize not in ("divide", "reciprocal"):
            raise ValueError(f"SoftmaxSteps.normalize must be 'divide' or 'reciprocal', got {self.normalize!r}")
        if not 0 <= self.exp_arg_rel < 1:
            raise ValueError(f"SoftmaxSteps.exp_arg_rel must be in [0, 1), got {self.exp_arg_rel!r}")

    @classmethod
    def floating(cls, fmt: Any, *, acc: Accum | None = None, out: Any = None, exp: RoundingModel | None = None,
                 exp_arg_rel: float = 0.0, rounding: str = "rne", normalize: str = "divide",
                 recip: RoundingModel | None = None) -> SoftmaxSteps:
        """Float unit working in ``fmt``: subtract and exp output rounded into ``fmt`` (exp
        correctly rounded unless ``exp`` says otherwise), sum with ``acc`` (default sequential
        ``fmt``), output rounded into ``out`` (default ``fmt``)."""
        m = rounding_model(fmt, rounding)
        o = m if out is None else rounding_model(out, rounding)
        return cls(m, exp_arg_rel, exp or m, acc or Accum.sequential(fmt, rounding), normalize,
                   recip or (m if normalize == "reciprocal" else EXACT), o)

    @classmethod
    def fixed(cls, *, exp: RoundingModel, acc: Any, recip: RoundingModel, out_fmt: Any,
              rounding: str = "rne", acc_overflow: str = "saturate") -> SoftmaxSteps:
        """Fixed-point unit: exact subtract, a LUT exp with measured error (``exp`` =
        ``RoundingModel.measured``), exact accumulation in ``acc``, a reciprocal unit with measured
        error, ``e * r`` rounded once into ``out_fmt`` (e.g. ``u16.16`` = UQ0.16, saturating)."""
        return cls(EXACT, 0.0, exp, Accum.fixed(acc, acc_overflow), "reciprocal", recip,
                   rounding_model(out_fmt, rounding))


def softmax_propagation(s: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigorous ``|s(l) - s(l_hat)|`` bound (module docstring) and the coarse ``s (e^{2M} - 1)``."""
    M = np.max(E, axis=-1, keepdims=True)
    sE = np.sum(s * E, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        chord = np.where(M > 0, np.expm1(M) / np.where(M > 0, M, 1.0), 1.0)
        up = np.expm1(E + sE)
        down = -np.expm1(-E) / (1 + sE * chord) + (1 - 1 / (1 + sE * chord))
        # s_j(l) <= 1: the upper side never exceeds 1 - s_j (the lower side is <= s_j already).
        # An overflowing exp (E > 709) leaves only the cap: 0 * inf must not become NaN
        s_up = np.where(np.isfinite(up), s * up, np.inf)
        fine = np.maximum(np.minimum(s_up, 1.0 - s), s * down)
        e2 = np.expm1(2 * M)
        coarse = np.maximum(np.minimum(np.where(np.isfinite(e2), s * e2, np.inf), 1.0 - s), -s * np.expm1(-2 * M))
    fine = np.where(M == 0, 0.0, fine)
    return np.minimum(fine, coarse), coarse


def softmax_bound(l_hat: Any, E_l: Any = None, *, steps: SoftmaxSteps, shifted: bool = True, mask: Any = None,
                  alpha: float = DEFAULT_ALPHA, what: str = "softmax", running: bool = False) -> Bound:
    """Bound on ``|s_hat - softmax(l)|`` over the last axis.

    ``l_hat``: the logits the unit receives (``-inf`` or ``mask == False`` entries are excluded:
    their output is exactly 0 in both); ``E_l``: bound on ``|l_hat - l|``; ``steps``: see
    :class:`SoftmaxSteps`; ``shifted``: subtract the row max before exp. Assumes no overflow
    (checked: exp output, accumulator, reciprocal and output ranges), float64 as exact reference.
    ``parts`` holds ``weighted_gap`` (``s^T a``), ``max_gap``, ``generic_local`` (the local bound
    with the largest gap in place of the attention-weighted one, for comparison) and the
    propagated part in three forms: ``propagated`` (rigorous, used), ``propagated_coarse``
    (``s (e^{2M} - 1)``) and ``propagated_first_order`` (``s (E + s^T E)``, not rigorous).
    ``running``: also bound the denominator's accumulation a posteriori from its partial sums
    (:func:`refmodel.bounds.accum.running_error`; the exps are >= 0, so the partial sums of their
    upper bounds bound them) and keep the smaller bound.
    """
    logits = np.asarray(l_hat, dtype=np.float64)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"{what}: logits need a last axis of length >= 1, got shape {logits.shape}")
    keep = np.isfinite(logits) if mask is None else (np.asarray(mask, bool) & np.isfinite(logits))
    if np.any(np.isnan(logits)) or np.any(np.isposinf(logits)):
        raise ValueError(f"{what}: logits contain NaN or +inf")
    if not np.all(np.any(keep, axis=-1)):
        raise ValueError(f"{what}: a row has every entry masked")
    st = steps
    n = int(np.max(np.sum(keep, axis=-1)))
    lk = np.where(keep, logits, -np.inf)
    m = np.max(lk, axis=-1, keepdims=True)
    a = np.where(keep, m - logits, 0.0)
    if shifted:
        w = np.where(keep, np.exp(-a), 0.0)
        ref_arg = a
        Delta = (st.sub.rel * a + st.sub.abs) * (1 + st.exp_arg_rel) + st.exp_arg_rel * a
    else:
        with np.errstate(over="ignore"):
            w = np.where(keep, np.exp(np.where(keep, logits, 0.0)), 0.0)
        ref_arg = np.abs(np.where(keep, logits, 0.0))
        Delta = st.exp_arg_rel * ref_arg
    Delta = np.where(keep, Delta, 0.0)
    reasons: list[str] = []
    notes: list[str] = []
    nog = np.zeros(logits.shape[:-1] + (1,), dtype=bool)  # overflow: both tiers void
    vac = np.zeros(logits.shape[:-1] + (1,), dtype=bool)  # rigorous tier vacuous only
    W = np.sum(w, axis=-1, keepdims=True)
    ws = np.exp(lk - m)  # shift-invariant: the exact probabilities even when exp(l) overflows
    s = np.where(keep, ws / np.sum(ws, axis=-1, keepdims=True), 0.0)
    with np.errstate(over="ignore"):
        rho = np.expm1(Delta) * (1 + st.exp.rel) + st.exp.rel
    af = st.exp.abs
    e_exp = np.where(keep, rho * w + af, 0.0)
    ew_top = np.where(keep, w * (1 + rho) + af, 0.0)
    # exp output range (the unshifted exp overflows)
    if math.isfinite(st.exp.max):
        mk = range_mask(0 * ew_top, ew_top, st.exp) & keep
        if np.any(mk) or not np.all(np.isfinite(ew_top)):
            mk = mk | ~np.isfinite(ew_top)
            reasons.append(range_reason(f"{what} exp output", mk, 0 * ew_top, ew_top, st.exp) or
                           f"no guarantee: {what} exp output overflows")
            nog = nog | np.any(mk, -1, keepdims=True)
    elif not np.all(np.isfinite(ew_top)):
        reasons.append(f"no guarantee: {what} exp(l) overflows float64 (unshifted)")
        nog = nog | ~np.all(np.isfinite(ew_top), -1, keepdims=True)
    A = np.sum(ew_top, axis=-1, keepdims=True)
    lam = lambda_azuma(alpha)
    ps = PartialSums(logits.shape[:-1] + (1,), st.acc)
    if st.acc.needs_partial_sums or st.acc.kind == "fixed":
        ps.feed(w[..., None, :])
    acc_r, acc_s, rs = st.acc.error(n, A, ss_outer=ps.ss_outer, ss_inner=ps.ss_inner, alpha=alpha)
    got = running_error(LastAxisTerms(ew_top), st.acc, A=A) if running else None
    range_A = A
    if got is not None:
        acc_r = np.minimum(acc_r, got.error)
        acc_s = np.minimum(acc_s, acc_r)
        range_A = got.peak
        rs = []
    reasons += rs
    am, rs = st.acc.range_reasons(f"{what} sum", range_A, acc_r, final=W + np.sum(e_exp, -1, keepdims=True),
                                  max_partial=range_A)
    reasons += rs
    nog = nog | am
    sum_e_r = np.sum(e_exp, axis=-1, keepdims=True)
    if st.exp.unbiased:
        sum_e_s = lam * np.sqrt(np.sum((rho * w) ** 2, axis=-1, keepdims=True)) + n * af
    else:
        sum_e_s = sum_e_r
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rS_r = (sum_e_r + acc_r) / W
        rS_s = (sum_e_s + acc_s) / W

    def D_of(rS: np.ndarray, rho_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            bad = ~(rS < 1)
            r_ = np.where(bad, 0.0, rS)
            D = (s * rho_ + af / W + s * r_) / (1 - r_)
            if st.normalize == "reciprocal":
                D = D + (w * (1 + rho_) + af) / W * (st.recip.rel / (1 - r_)) + (w * (1 + rho_) + af) * st.recip.abs
        return np.where(keep, np.where(bad, np.inf, D), 0.0), bad

    D_r, bad = D_of(rS_r, rho)
    D_s, _ = D_of(rS_s, rho)
    if np.any(bad):
        reasons.append(f"no guarantee: {what} denominator error bound >= denominator ({int(bad.sum())} row(s))")
        vac = vac | bad
    if st.normalize == "reciprocal" and math.isfinite(st.recip.max):
        with np.errstate(invalid="ignore", divide="ignore"):
            rtop = (1 + st.recip.rel) / (W * (1 - np.where(bad, 0, rS_r))) + st.recip.abs
        mk = range_mask(0 * rtop, rtop, st.recip)
        r = range_reason(f"{what} reciprocal", mk, 0 * rtop, rtop, st.recip)
        if r is not None:  # some entry of mk is set
            reasons.append(r)
            nog = nog | mk
    fin = np.isfinite(D_r)
    out_r, out_s, onog, rs, ns = output_rounding(s, np.where(fin, D_r, 0.0), np.where(fin, D_s, 0.0), st.out,
                                                 f"{what} output")
    reasons += rs
    notes += ns
    out_r = np.where(keep, out_r, 0.0)
    out_s = np.where(keep, out_s, 0.0)
    loc_r = D_r + out_r
    loc_s = D_s + out_s
    # propagated
    Er, Es = as_tiers(E_l, logits.shape)
    Er = np.where(keep, Er, 0.0)
    Es = np.where(keep, Es, 0.0)
    prop_r, coarse = softmax_propagation(s, Er)
    prop_s, _ = softmax_propagation(s, Es)
    rig = np.where(keep, prop_r + loc_r, 0.0)
    stat = np.where(keep, prop_s + loc_s, 0.0)
    rig = np.where(np.broadcast_to(nog | onog | vac, rig.shape) & keep, np.inf, rig)
    stat = np.where(np.broadcast_to(nog | onog, stat.shape) & keep, np.inf, stat)
    # generic (max-gap) local bound for comparison: rho_S with the largest rho instead of the weighted one
    rmax = np.max(np.where(keep, rho, 0.0), -1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rS_g = rmax + (n * af + acc_r) / W
    D_g, _ = D_of(rS_g, np.where(keep, rmax, 0.0))
    first = s * (Er + np.sum(s * Er, axis=-1, keepdims=True))  # first order, NOT rigorous (report only)
    parts = {"propagated": prop_r, "propagated_stat": prop_s, "local_stat": loc_s, "propagated_coarse": coarse, "propagated_first_order": first, "local": loc_r,
             "s": s, "z": s,
             "weighted_gap": np.sum(s * (a if shifted else ref_arg), -1, keepdims=True),
             "max_gap": np.max(np.where(keep, ref_arg, 0.0), -1, keepdims=True),
             "rho_S": rS_r, "generic_local": D_g + out_r}
    return Bound(rig, stat, list(dict.fromkeys(r for r in reasons if r)), notes, parts)
