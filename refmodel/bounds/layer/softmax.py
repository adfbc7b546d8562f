"""Softmax stage of the layer walk (``probs``): row softmax over the allowed keys.

End-to-end, rigorous (stability.md 3.5 and 5.3 "Softmax, shifted"; derivation in
:mod:`refmodel.bounds.softmax`), for logits ``l_hat`` within ``E`` of the reference, ``s`` the
exact softmax of ``l_hat``, gaps ``a_j = max l_hat - l_hat_j``, ``M = max_j E_j``::

    propagated_j = s_j max(exp(E_j + s^T E) - 1, 1 - e^{-E_j} / (1 + s^T E (e^M - 1)/M)),  <= 1 - s_j
    local_j      = D_j + out(s_j + D_j),   D_j = (s_j rho_j + a_f/W + s_j rho_S) / (1 - rho_S)
                   rho_j = e^{Delta_j}(1 + u_f) - 1,  Delta_j = u_sub a_j (1 + arg) + arg a_j,
                   rho_S = (sum_j (rho_j w_j + a_f) + acc) / W                     (attention-sink form)
    ref64_j      = 2 s_j (1.01 u a_j + 2u + s^T(...) + gamma_(n+1))                 (the reference's own)

Float plans: subtract, exp, sum and divide in the work format, stored once into the tensor format.
Fixed plans: the integer unit (:mod:`refmodel.numerics.units.softmax`: exp2 LUT, exact sum,
floor reciprocal, half-up output) with its own derived bound ``softmax_error_bound`` (or the
generic per-element bound where smaller).

Statistical tier: per-element relative exp errors, the denominator's accumulation error as a
row-shared relative error on ``s``, the output rounding; the input's statistical state through
the softmax Jacobian ``diag(s) - s s^T`` with the factor ``expm1(x)/x`` for the second order.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ...numerics.fixed import FixedFormat
from ..accum import Accum, PartialSums
from ..model import EXACT, RoundingModel
from ..mx import is_mx_spec
from ..softmax import SoftmaxSteps, softmax_bound, softmax_propagation
from .models import F64, FUNC, U64, fixed_model, gamma64, internal_sum, plan_model, row_shape
from .repeats import repeated_keys
from .state import StatError, ValueChain, rig_only

if TYPE_CHECKING:
    from ...layer.plan import TensorPrecision
    from ...layer.quantized import OpRecord
    from .walk import LayerWalk

__all__ = ["walk_softmax", "softmax_ref64", "float_softmax_steps", "fixed_softmax_steps", "softmax_unit_bound",
           "exp2_prefloor"]


def float_softmax_steps(rec: OpRecord, tp: TensorPrecision, shifted: bool) -> SoftmaxSteps:
    """The :class:`SoftmaxSteps` of ``QuantOps._float_softmax``: subtract and exp rounded into the
    work format ``W`` (exp correctly rounded in float64 first), the sum under the tensor's
    accumulation policy in ``W``, one division, the output stored into the tensor format."""
    W = rec.details["work_format"]
    rnd = tp.rounding
    if W == "float64":
        mW = F64
        ex = F64.widened(rel=FUNC)
    else:
        mW = plan_model(W, rnd, tp.overflow)
        ex = plan_model(W, rnd, tp.overflow, widen=FUNC)
    if is_mx_spec(tp.format):
        out = EXACT
    elif W == tp.format:
        out = mW
    else:
        out = plan_model(tp.format, rnd, tp.overflow)
    sub = mW if shifted else EXACT
    acc = internal_sum(tp.acc, W, rnd)
    return SoftmaxSteps(sub, 0.0, ex, acc, "divide", EXACT, out)


def fixed_softmax_steps(p: Any) -> SoftmaxSteps:
    """The generic :class:`SoftmaxSteps` model of the integer softmax unit ``p``: exp with the
    LUT's exhaustive relative error plus the floor of ``e``, exact sum, floor reciprocal (1 LSB),
    half-up output."""
    ew = p.e_w
    fe = FixedFormat(ew, ew - 1, signed=False)
    fr = FixedFormat(p.k + 2, p.k - (ew - 1), signed=False)
    out_fmt = FixedFormat(p.out_w, p.out_f, signed=False)
    exp_m = RoundingModel(exp2_prefloor(p.exp2), fe.lsb, fe.max, 0.0, "saturate", False, "exp2 LUT rel+floor")
    return SoftmaxSteps(EXACT, 0.0, exp_m, Accum.fixed(FixedFormat(p.s_w + 1, ew - 1, False), "saturate"),
                        "reciprocal", RoundingModel.measured(1.0, fr), fixed_model(out_fmt, "half_up"))


def fixed_softmax_local(logits: np.ndarray, allowed: np.ndarray, p: Any, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The integer softmax unit's local bound at the logits ``l`` (per element, real units): the
    smaller of the unit's own row bound ``softmax_error_bound`` and the generic per-element bound;
    also the exact softmax ``s`` of ``l`` and the generic bound's reasons."""
    B = softmax_bound(logits, None, steps=fixed_softmax_steps(p), shifted=True, mask=allowed, what=what)
    n_row = np.sum(allowed, axis=-1, keepdims=True)
    unit = np.zeros(n_row.shape)
    for n in np.unique(n_row):
        unit = np.where(n_row == n, softmax_unit_bound(p, int(n)) * math.ldexp(1.0, -p.out_f), unit)
    gen = np.where(np.isfinite(B.rig), B.parts["local"], np.inf)
    return np.where(allowed, np.minimum(gen, unit), 0.0), B.parts["s"], B.reasons


def walk_softmax(walk: LayerWalk, rec: OpRecord) -> None:
    """Row softmax (module docstring)."""
    name = rec.name
    sn = rec.inputs[0]
    tp = walk.tp(name)
    logits = walk.val(sn)
    Er = walk.err(sn)
    mask = rec.details.get("mask")
    allowed = np.ones(logits.shape, bool) if mask is None else np.broadcast_to(mask, logits.shape)
    shifted = bool(rec.details.get("shifted", True))
    Sl = walk.stat_of(sn)
    Tl = np.where(allowed, Sl.bound(walk.lam), 0.0)
    if walk.fixed:
        p = rec.details["softmax"]
        loc, s, reasons = fixed_softmax_local(logits, allowed, p, f"{name} unit")
        Pr, _ = softmax_propagation(s, np.where(allowed, Er, 0.0))
        ch = ValueChain(s, loc, Pr)
        if not np.all(np.isfinite(loc)):
            ch.reasons += reasons
        st = fixed_softmax_stat(logits, s, allowed, p)
    else:
        steps = float_softmax_steps(rec, tp, shifted)
        B = softmax_bound(logits, rig_only(Er), steps=steps, shifted=shifted, mask=allowed, alpha=walk.alpha,
                          what=f"{name} ({rec.details['work_format']})",
                          running=walk.running(logits.shape[-1], steps.acc))
        ch = ValueChain.from_bound(B)
        s = B.parts["s"]
        st = float_softmax_stat(walk.lam, logits, s, allowed, shifted, steps, repeated_keys(logits, allowed))
        if is_mx_spec(tp.format):
            v0, d0 = ch.local_var.copy(), ch.local_det.copy()
            ch.round_mx(tp.format, tp.rounding, walk.stored_X(name), -1, f"{name} output")
            st.indep = st.indep + (ch.local_var - v0)
            st.det = st.det + (ch.local_det - d0)
    # propagation of the input's statistical state (first order) + second-order remainder
    s2 = s * s
    V = np.where(allowed, Sl.indep, 0.0)
    D = np.where(allowed, Sl.det + Sl.row_part(), 0.0)
    # beyond first order: expm1(x) <= x expm1(2M)/(2M) for x <= 2M (M the row's largest
    # statistical logit error): the first-order propagation times kappa
    xk = Tl + np.sum(s * Tl, -1, keepdims=True)
    M = np.max(Tl, -1, keepdims=True)
    chord = np.where(M > 0, np.expm1(np.minimum(M, 700.0)) / np.where(M > 0, M, 1.0), 1.0)
    kap = np.maximum(np.where(xk > 0, np.expm1(np.minimum(xk, 700.0)) / np.where(xk > 0, xk, 1.0), 1.0), chord)
    sum_s2V = np.sum(s2 * V, -1, keepdims=True)
    st.indep = st.indep + kap * kap * s2 * np.maximum((1 - s) ** 2 * V + sum_s2V - s2 * V, 0.0)
    st.det = st.det + kap * s * (D + np.sum(s * D, -1, keepdims=True))
    # the token-shared part of the logit errors (weight errors of W_K) is correlated across keys
    sw = np.sqrt(np.where(allowed, Sl.shared, 0.0))
    sws = kap * s * (sw + np.sum(s * sw, -1, keepdims=True))
    st.shared = st.shared + sws * sws
    # a probability is in [0, 1]: an error bound beyond max(s, 1 - s) says nothing more
    sh = walk.val(name)
    cap = np.maximum(np.abs(sh), np.abs(1 - sh))
    big = st.bound(walk.lam) > cap
    st.indep = np.where(big, 0.0, st.indep)
    st.shared = np.where(big, 0.0, st.shared)
    st.det = np.where(big, cap + 2.0 ** -20, st.det)
    st.row_rel = np.where(np.any(big, -1, keepdims=True), 0.0, st.row_rel)
    # the reference: shifted float64 softmax of the reference scores
    ch.ref64 = softmax_ref64(np.asarray(walk.ref[sn], dtype=np.float64), allowed)
    ch.map(lambda a: np.where(allowed, a, False if a.dtype == bool else 0.0))
    st.map(lambda a: np.where(allowed, a, 0.0), lambda r: r)
    # a probability is in [0, 1]: |s_hat - s| <= |s_hat| + 1 whatever the logit errors
    walk.finish(rec, ch, st, shared_events=2 * int(np.prod(logits.shape[:-1])),
                ref_magnitude=np.where(allowed, 1.0, 0.0))


def softmax_ref64(lr: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The float64 reference's own error (``Float64Ops.softmax``, shifted), closed form with
    u = 2^-53: relative exp-argument error ``u a_j`` and ``exp`` within 2u, ``eps_j = 1.01 u a_j +
    2u``; ``|ds_j| <= s_j (eps_j + s.eps + g_(n+1))``, padded by 2x."""
    if not np.all(np.isfinite(np.where(allowed, lr, 0.0))):
        return np.where(allowed, np.inf, 0.0)
    lk = np.where(allowed, lr, -np.inf)
    m = np.max(lk, -1, keepdims=True)
    a = np.where(allowed, m - lr, 0.0)
    w = np.where(allowed, np.exp(-a), 0.0)
    s = w / np.sum(w, -1, keepdims=True)
    n = int(np.max(np.sum(allowed, -1)))
    eps = 1.01 * U64 * a + 2 * U64
    return np.where(allowed, 2.0 * s * (eps + np.sum(s * eps, -1, keepdims=True) + gamma64(n + 1)), 0.0)


def float_softmax_stat(lam: float, logits: np.ndarray, s: np.ndarray, allowed: np.ndarray, shifted: bool,
                       steps: SoftmaxSteps, repeated: np.ndarray | None = None) -> StatError:
    """Local roundings of a float softmax, first order: per-element relative exp errors
    (argument and result rounding: independent, except for ``repeated`` logits, whose identical
    exps have identical errors: one coherent group ``D``), the denominator's accumulation error (a
    relative error shared by the row; repeated terms coherent too), the output rounding.

    With relative exp errors ``c_k xi_k`` (``|xi| <= 1``), ``ds_j / s_j = c_j xi_j - sum_k s_k c_k
    xi_k``; with ``C_D = sum_(k in D) s_k c_k`` and ``U = sum_(k not in D) s_k^2 c_k^2`` its
    variance proxy is ``(c_j - C_D)^2 + U`` for ``j`` in ``D`` and ``(1 - s_j)^2 c_j^2 + C_D^2 + U
    - s_j^2 c_j^2`` otherwise."""
    keep = allowed
    lk = np.where(keep, logits, -np.inf)
    m = np.max(lk, -1, keepdims=True)
    a = np.where(keep, m - logits, 0.0)
    w = np.where(keep, np.exp(np.where(keep, logits - m, 0.0)), 0.0) if shifted else \
        np.where(keep, np.exp(np.where(keep, logits, 0.0)), 0.0)
    Wsum = np.sum(w, -1, keepdims=True)
    sub, ex = steps.sub, steps.exp
    c = np.where(keep, (sub.rel * a + sub.abs if shifted else 0.0) + ex.rel, 0.0)
    s2 = s * s
    unb = sub.unbiased and ex.unbiased
    rep = np.zeros(logits.shape, bool) if repeated is None else np.asarray(repeated, bool) & keep
    C_D = np.sum(np.where(rep, s * c, 0.0), -1, keepdims=True)
    U = np.sum(np.where(rep, 0.0, s2 * c * c), -1, keepdims=True)
    rel_part = s2 * np.where(rep, (c - C_D) ** 2 + U, np.maximum((1 - s) ** 2 * c * c + C_D * C_D + U - s2 * c * c, 0.0))
    st = StatError(logits.shape)
    if unb:
        st.indep = st.indep + rel_part
    else:
        st.det = st.det + s * (c + np.sum(s * c, -1, keepdims=True))
    n = np.sum(keep, -1, keepdims=True)
    st.det = st.det + np.where(keep, ex.abs * (1 + n * s) / Wsum, 0.0)
    # the denominator: accumulation error relative to the sum, shared by the row
    ps = PartialSums(row_shape(logits), steps.acc)
    ps.feed(w[..., None, :], None if repeated is None else rep[..., None, :])
    A = np.sum(w * (1 + ex.rel), -1, keepdims=True) + n * ex.abs
    accV, accD = steps.acc.proxy(int(np.max(n)), A, ss_outer=ps.ss_outer, ss_inner=ps.ss_inner)
    st.set_row((lam * np.sqrt(accV) + accD) / Wsum, s)
    st.add_rounding(np.where(keep, steps.out.err(s), 0.0), steps.out.unbiased)
    return st


def fixed_softmax_stat(logits: np.ndarray, s: np.ndarray, allowed: np.ndarray, p: Any) -> StatError:
    """First-order local roundings of the fixed softmax unit (``units.softmax``), for the
    statistical tier: the exp2 LUT's relative error (index and table roundings: pseudo-random per
    element, ``prefloor_rel_error`` as the bound) in ``indep``; the log2(e) constant's error (a
    coherent relative error ``a_j |eps|``) and the floors of ``e`` in ``det``; the truncated
    reciprocal as a row-shared relative error; the half-up output rounding in ``indep``."""
    keep = allowed
    lk = np.where(keep, logits, -np.inf)
    m = np.max(lk, -1, keepdims=True)
    a = np.where(keep, m - logits, 0.0)
    w = np.where(keep, np.exp(-a), 0.0)
    W = np.sum(w, -1, keepdims=True)
    n = np.sum(keep, -1, keepdims=True)
    rho = exp2_prefloor(p.exp2)
    eps_c = abs(p.exp2.log2e / 2.0 ** p.log2e_f / math.log2(math.e) - 1.0)
    s2 = s * s
    c2 = np.where(keep, rho * rho, 0.0)
    st = StatError(logits.shape)
    st.indep = s2 * np.maximum((1 - s) ** 2 * c2 + np.sum(s2 * c2, -1, keepdims=True) - s2 * c2, 0.0)
    coh = np.where(keep, a * eps_c, 0.0)
    lsb_e = math.ldexp(1.0, -(p.e_w - 1))
    st.det = s * (coh + np.sum(s * coh, -1, keepdims=True)) + np.where(keep, lsb_e * (1 + n * s) / W, 0.0)
    st.set_row(W * math.ldexp(1.0, p.e_w - 1 - p.k) * (1 + 1e-12), s)
    half = math.ldexp(0.5, -p.out_f)
    st.indep = st.indep + np.where(keep, half * half, 0.0)
    return st


@functools.lru_cache(maxsize=64)
def exp2_prefloor(p: Any) -> float:
    """``units.exp2.prefloor_rel_error`` (exhaustive over the input codes), cached per unit."""
    from ...numerics.units.exp2 import prefloor_rel_error

    return prefloor_rel_error(p)


@functools.lru_cache(maxsize=4096)
def softmax_unit_bound(p: Any, n: int) -> float:
    """``units.softmax.softmax_error_bound`` (LSB), cached per unit and row length."""
    from ...numerics.units.softmax import softmax_error_bound

    return softmax_error_bound(p, n)
