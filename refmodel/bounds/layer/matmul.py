"""Matrix-product stages of the layer walk: ``linear`` (q, k, v, proj, gate, up, down), ``scores``
(``c q k^T``) and ``mix`` (``P V``).

End-to-end, rigorous (stability.md 5.3 "Linear", "QK^T logits", "Attention output"; Higham 2002
eq. (3.5) for the accumulation, :mod:`refmodel.bounds.matmul` for the exact algebra), for
``y = a b (+ bias)`` computed from ``a_hat``, ``b_hat`` with ``|a_hat - a| <= E_a``,
``|b_hat - b| <= E_b``::

    E_y = E_a |b_hat| + (|a_hat| + E_a) E_b + E_bias          propagated (exact algebra)
        + products + accumulation + output                      local (the plan's roundings)
        + gamma_(K+2)(2^-53) (|a_hat| + E_a)(|b_hat| + E_b)      ref64 (the float64 reference's own)

The linear layer's weight error is ``E_w = |w_hat - w|`` (:mod:`.weights`); ``scores`` scales by
the hardware constant ``c_hat`` (``|c_hat - c| |q k|`` joins the propagated part) and rounds
again; ``mix`` works per head on ``[H, s, s] @ [KV, s, hd]`` (grouped-query attention by repeating
the key/value heads). Fixed-point plans use the MAC's exact accumulator (no accumulation error;
the overflow is checked against the data) and one requantising rounding.

Statistical tier (first order): ``StatError`` through ``a b`` (:func:`matmul_stat`): independent
parts add in quadrature through ``a^2, b^2``; deterministic parts add in absolute value; the
token-shared (weight) parts add in quadrature over features but their standard deviations add
over tokens (the ``P V`` reduction runs over tokens).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ...layer.ops import repeat_kv
from ...numerics.fixed import FixedFormat
from ...numerics.formats import parse_format
from ...numerics.rounding import Rounding, round_shift
from ..accum import Accum
from ..matmul import matmul_bound
from ..model import EXACT, RoundingModel
from ..mx import is_mx_spec
from .models import F64, fixed_model, gamma64, matmul_models, plan_model
from .repeats import repeated_keys, row_ids
from .state import StatError, ValueChain, rig_only

if TYPE_CHECKING:
    from ...layer.plan import TensorPrecision
    from ...layer.quantized import OpRecord
    from .walk import LayerWalk

__all__ = ["walk_linear", "walk_scores", "walk_mix", "matmul_stat"]


def matmul_stat(a: np.ndarray, b: np.ndarray, Sa: StatError, Sb: StatError, z: np.ndarray,
                b_row_relative: bool) -> StatError:
    """First-order statistical propagation through ``a @ b`` (errors of both operands).
    ``Sa``'s row factor is relative per row of ``a`` (stays relative on the product); ``Sb``'s per
    row of ``b`` when ``b_row_relative`` (a key / value token: it becomes independent)."""
    # second order (da + Da)(db + Db): the products of independent mean-zero parts are mean-zero
    # with variance Va Vb; the deterministic product stays deterministic
    indep = Sa.indep @ (b * b) + (a * a) @ Sb.indep + Sa.var @ (Sb.var + Sb.det ** 2) + (Sa.det ** 2) @ Sb.var
    det = Sa.det @ np.abs(b) + np.abs(a) @ Sb.det + Sa.det @ Sb.det
    if b_row_relative:  # one relative error per key / value token: independent across tokens
        rb = Sb.row_part()
        indep = indep + (a * a) @ (rb * rb)
    if b_row_relative:  # a sum over tokens: the token-shared parts add their standard deviations
        sw = np.sqrt(Sa.shared) @ np.abs(b) + np.abs(a) @ np.sqrt(Sb.shared)
        shared = sw * sw
    else:  # a sum over features: independent
        shared = Sa.shared @ (b * b) + (a * a) @ Sb.shared
    st = StatError(z.shape, indep, det, 0.0, 0.0, shared)
    if np.any(Sa.row_rel > 0):  # a's row factor stays relative: its base goes through the product
        st.row_rel = np.broadcast_to(Sa.row_rel, st.row_rel.shape).copy()
        st.row_base = Sa.row_base @ b
    return st


def fixed_bias(walk: LayerWalk, name: str, bn: str, pf: int, mac: Any, Eb: Any) -> tuple[np.ndarray, Any, list[str]]:
    """The bias a fixed-point MAC preloads (``QuantOps._fixed_matmul``: rounded offline to the
    accumulator LSB when finer, clipped to ``mac.b_w`` bits), its error bound against the
    reference bias (``Eb`` plus the exact difference from the stored bias) and notes."""
    bq = walk.qt(bn)
    codes = bq.codes.astype(np.int64)
    bfrac = bq.fmt.frac
    notes: list[str] = []
    if bfrac > pf:
        codes = round_shift(codes, bfrac - pf, Rounding.RNE)
        bfrac = pf
    lim = (1 << (mac.b_w - 1)) - 1
    clip = (codes > lim) | (codes < -lim - 1)
    if np.any(clip):
        notes.append(f"bias {bn} of {name} clipped to {mac.b_w} bits in {int(clip.sum())} element(s); the bound "
                     f"carries the exact difference")
    bias = np.ldexp(np.clip(codes, -lim - 1, lim).astype(np.float64), -bfrac)
    # the preloaded bias differs from the stored one by a known amount (offline rounding, clip)
    return bias, Eb + np.abs(bias - np.asarray(bq.values, dtype=np.float64)), notes


def walk_linear(walk: LayerWalk, rec: OpRecord) -> None:
    """``y = x W^T (+ b)`` (module docstring)."""
    name = rec.name
    xn, wn = rec.inputs[0], rec.inputs[1]
    bn = rec.inputs[2] if len(rec.inputs) > 2 else None
    tp = walk.tp(name)
    x = walk.val(xn)
    w = walk.val(wn)
    Ex = walk.err(xn)
    Ew = walk.err(wn)
    K = x.shape[-1]
    Wt = w.T
    Ewt = Ew.T
    out_t = walk.run.tensors[name]
    heads = out_t.values.ndim == 3
    b = walk.val(bn) if bn else None
    Eb = walk.err(bn) if bn else 0.0
    reasons: list[str] = []
    Eb_tot: Any = Eb
    scaled = "weight_scale_values" in rec.details  # a weight scale applied in an epilogue
    if scaled:
        ch, Eb_tot = _scaled_epilogue(walk, rec, x, Ex, b, Eb)
    elif walk.fixed:
        mac = rec.details["mac"]
        xq, wq = walk.qt(xn), walk.qt(wn)
        pf = xq.fmt.frac + wq.fmt.frac
        accum = Accum.fixed(FixedFormat(mac.acc_w, pf, True), mac.acc_overflow.value)
        out = fixed_model(parse_format(tp.format), mac.rounding)
        bias = None
        notes: list[str] = []
        if bn is not None:
            bias, Eb_tot, notes = fixed_bias(walk, name, bn, pf, mac, Eb)
        Ebv = np.broadcast_to(Eb_tot, (w.shape[0],)) + 0.0
        B = matmul_bound(x, Wt, E_a=rig_only(Ex), bias=bias, E_bias=None if bias is None else rig_only(Ebv),
                         accum=accum, bias_in_acc=bias is not None, out=out, what=f"{name} ({tp.format})")
        ch = ValueChain.from_bound(B)
        ch.notes += notes
    else:
        mx_out = is_mx_spec(tp.format)
        accum, outm, prod = matmul_models(tp.acc, "fp32" if mx_out else tp.format, tp.rounding)
        B = matmul_bound(x, Wt, E_a=rig_only(Ex), accum=accum, products=prod, out=outm,
                         what=f"{name} ({tp.format}, {tp.acc})", stat_mode="hm" if prod is F64 else "partial_sums",
                         running=walk.running(K, accum, outm))
        ch = ValueChain.from_bound(B)
        axis = 0 if name == "v" else -1
        if mx_out:
            X = None if b is not None else walk.stored_X(name)
            ch.round_mx(tp.format, tp.rounding, X, axis, f"{name} output")
        if b is not None:
            ch.add_const(b, Eb)
            if mx_out:
                ch.round_mx(tp.format, tp.rounding, walk.stored_X(name), axis, f"{name} + bias")
            else:
                ch.round(plan_model(tp.format, tp.rounding, tp.overflow), f"{name} + bias")
    # weight quantisation: rigorous (|x| + E_x) E_w; statistical through the shared part
    absx = np.abs(x)
    exact_in = not (np.any(Ex) or np.any(Ewt)) and not scaled
    if exact_in:  # local mode: |x| |W| is the op bound's own sum_abs
        Pext = B.parts["sum_abs"]
    else:
        ch.propagated = ch.propagated + (absx + Ex) @ Ewt
        Pext = (absx + walk.mag(xn)) @ (np.abs(Wt) + Ewt)
    # the float64 reference's own error: x @ w.T (+ b), any summation order
    ch.ref64 = gamma64(K + 2) * (Pext + (0.0 if b is None else np.abs(b) + Eb))
    # statistical tier
    Sx = walk.stat_of(xn)
    Ewu, Ewb = walk.weight_parts(wn)
    Sw = StatError(Wt.shape, 0.0, Ewb.T, 0.0, 0.0, (Ewu * Ewu).T)
    st = StatError(ch.z.shape) if walk.local else matmul_stat(x, Wt, Sx, Sw, ch.z, False)
    if bn is not None:
        Ebu, Ebb = walk.weight_parts(bn)
        st.shared = st.shared + Ebu * Ebu  # a bias error is shared by every token
        st.det = st.det + Ebb + (np.asarray(Eb_tot) - Eb if walk.fixed else 0.0)  # bias requantised in the MAC
    st.indep = st.indep + ch.local_var
    st.det = st.det + ch.local_det
    with np.errstate(invalid="ignore", over="ignore"):
        ref_mag = (Pext if exact_in else (absx + Ex) @ (np.abs(Wt) + Ewt)) + (0.0 if b is None else np.abs(b) + Eb_tot)
    if heads:
        H = out_t.values.shape[0]
        s = x.shape[0]
        split = lambda a: a.reshape(s, H, -1).transpose(1, 0, 2)  # noqa: E731
        ch.map(split)
        st.map(split, lambda r: np.broadcast_to(r[None], (H,) + r.shape).copy())
        ref_mag = split(ref_mag)
    walk.finish(rec, ch, st, extra_reasons=reasons, ref_magnitude=ref_mag)


def _scaled_epilogue(walk: LayerWalk, rec: OpRecord, x: np.ndarray, Ex: np.ndarray, b: Any,
                     Eb: Any) -> tuple[ValueChain, Any]:
    """A linear layer whose weight is element codes ``q`` times a per-channel (or float) scale
    ``s`` applied after the accumulation (``QuantOps._float_scale_epilogue`` /
    ``_fixed_matmul_requant``; docs/plans.md). ``x (q s)^T = (x q^T) s`` exactly, so the chain is
    the product with the element values, then the scale as a per-column constant:

    * float: ``a = acc(x q^T)`` rounded into the work format ``E``, then ``round_F(a s)`` (the
      product is exact in float64), then the bias as usual;
    * fixed: ``acc = x q^T + b_acc 2^-pf`` exact (``b_acc = round_rne(b 2^pf / s)``, the bias in
      accumulator units), then the requantiser's ``M_c 2^(pf - SHIFT - OUT_F)`` against ``s_c``
      (the multiplier's approximation joins the propagated part, as a scale error), one rounding,
      saturation; the bias's offline rounding ``|s b_acc 2^-pf - b|`` is exact per channel.

    Returns the chain and the bias error bound (``Eb`` plus the offline rounding)."""
    name = rec.name
    xn, wn = rec.inputs[0], rec.inputs[1]
    tp = walk.tp(name)
    wq = walk.qt(wn)
    s = np.asarray(rec.details["weight_scale_values"], dtype=np.float64).reshape(-1)
    N = wq.values.shape[0]
    sv = np.broadcast_to(s, (N,))
    qv = np.asarray(wq.unscaled().values, dtype=np.float64)  # the element values (codes)
    if walk.fixed:
        from ...layer.quantized import _bias_in_acc_units

        mac, rq = rec.details["mac"], rec.details["requant"]
        M = np.broadcast_to(np.asarray(rec.details["multipliers"], dtype=np.float64), (N,))
        pf = walk.qt(xn).fmt.frac + wq.fmt.frac
        out_fmt = FixedFormat.parse(tp.format)  # a fixed-point plan
        bias = None
        Eb_tot: Any = Eb
        if b is not None:
            bias = np.ldexp(_bias_in_acc_units(walk.qt(rec.inputs[2]), sv, pf).astype(np.float64), -pf)
            Eb_tot = Eb + np.abs(sv * bias - b) * (1 + 2.0 ** -50)  # the offline rounding, exact per channel
        B = matmul_bound(x, qv.T, E_a=rig_only(Ex), bias=bias,
                         accum=Accum.fixed(FixedFormat(mac.acc_w, pf, True), mac.acc_overflow.value),
                         bias_in_acc=bias is not None, out=EXACT, what=f"{name} ({tp.format}) accumulator")
        ch = ValueChain.from_bound(B)
        c_hat = np.ldexp(M, pf - rq.shift - out_fmt.frac)
        ch.scale(c_hat, sv)  # the requantiser's multiplier against the exact scale
        ch.round(fixed_model(out_fmt, rq.rounding), f"{name} requant")
        ch.propagated = ch.propagated + (0.0 if b is None else Eb_tot)
        return ch, Eb_tot
    E = rec.details["weight_scale"].get("acc_format", "fp32")
    mx_out = is_mx_spec(tp.format)
    accum, outm, prod = matmul_models(tp.acc, E, tp.rounding)
    K = x.shape[-1]
    B = matmul_bound(x, qv.T, E_a=rig_only(Ex), accum=accum, products=prod, out=outm,
                     what=f"{name} ({E}, {tp.acc}) accumulator",
                     stat_mode="hm" if prod is F64 else "partial_sums", running=walk.running(K, accum, outm))
    ch = ValueChain.from_bound(B)
    ch.scale(sv, sv)  # exact in float64
    axis = 0 if name == "v" else -1
    if mx_out:
        ch.round_mx(tp.format, tp.rounding, None if b is not None else walk.stored_X(name), axis, f"{name} scaled")
    else:
        ch.round(plan_model(tp.format, tp.rounding, tp.overflow), f"{name} scaled")
    if b is not None:
        ch.add_const(b, Eb)
        if mx_out:
            ch.round_mx(tp.format, tp.rounding, walk.stored_X(name), axis, f"{name} + bias")
        else:
            ch.round(plan_model(tp.format, tp.rounding, tp.overflow), f"{name} + bias")
    return ch, Eb


def scale_model(tp: TensorPrecision, pow2: bool) -> RoundingModel:
    """The rounding of the logit scaling ``c * (q k^T)`` into the scores format."""
    if tp.format == "float64":
        return EXACT if pow2 else F64
    m = plan_model(tp.format, tp.rounding, tp.overflow)
    if pow2:  # an exact power-of-two scale rounds only where the result is subnormal
        return replace(m, rel=0.0)
    return m


def repeated_kv(walk: LayerWalk, name: str, H: int) -> tuple[np.ndarray, np.ndarray, StatError]:
    """Value, rigorous bound and statistical state of a key/value tensor repeated to H heads."""
    v = repeat_kv(walk.val(name), H)
    E = repeat_kv(walk.err(name), H)
    s = walk.stat_of(name)
    s.map(lambda a: repeat_kv(a, H))
    return v, E, s


def attention_allowed(rec: OpRecord, H: int, sq: int, sk: int) -> np.ndarray:
    """The ``[H, sq, sk]`` allowed mask of a scores / softmax record."""
    mask = rec.details.get("mask")
    return np.ones((H, sq, sk), bool) if mask is None else np.broadcast_to(mask, (H, sq, sk))


def walk_scores(walk: LayerWalk, rec: OpRecord) -> None:
    """``c q k^T`` (module docstring); masked entries are exactly 0 in both."""
    name = rec.name
    qn, kn = rec.inputs
    tp = walk.tp(name)
    q = walk.val(qn)
    H = q.shape[0]
    Eq = walk.err(qn)
    kr, Ekr, Sk = repeated_kv(walk, kn, H)
    kT = np.swapaxes(kr, -1, -2)
    EkT = np.swapaxes(Ekr, -1, -2)
    c = float(rec.details["scale"])
    hd = q.shape[-1]
    allowed = attention_allowed(rec, H, q.shape[1], kr.shape[1])
    if walk.fixed:
        mac = rec.details["mac"]
        rq = rec.details["requant"]
        M = int(rec.details["multiplier"])
        pf = walk.qt(qn).fmt.frac + walk.qt(kn).fmt.frac
        out_fmt = FixedFormat.parse(tp.format)  # a fixed-point plan
        B = matmul_bound(q, kT, E_a=rig_only(Eq), E_b=rig_only(EkT), accum=Accum.fixed(FixedFormat(mac.acc_w, pf, True),
                         mac.acc_overflow.value), out=EXACT, what=f"{name} q.k")
        ch = ValueChain.from_bound(B)
        c_hat = math.ldexp(float(M), pf - rq.shift - out_fmt.frac)
        z_qk = ch.z.copy()
        ch.scale(c_hat, c)
        ch.round(fixed_model(out_fmt, rq.rounding), f"{name} requant")
    else:
        mx_out = is_mx_spec(tp.format)
        accum, outm, prod = matmul_models(tp.acc, "fp32" if mx_out else tp.format, tp.rounding)
        B = matmul_bound(q, kT, E_a=rig_only(Eq), E_b=rig_only(EkT), accum=accum, products=prod, out=outm,
                         what=f"{name} q.k ({tp.format}, {tp.acc})", stat_mode="hm" if prod is F64 else "partial_sums",
                         running=walk.running(hd, accum, outm))
        ch = ValueChain.from_bound(B)
        z_qk = ch.z.copy()
        c_hat = c
        ch.scale(c, c)
        pow2 = math.frexp(c)[0] == 0.5
        if mx_out:
            ch.round_mx(tp.format, tp.rounding, walk.stored_X(name), -1, f"{name} scaled")
        else:
            ch.round(scale_model(tp, pow2), f"{name} scaled")
    Pext = (np.abs(q) + walk.mag(qn)) @ (np.abs(kT) + np.swapaxes(repeat_kv(walk.mag(kn), H), -1, -2))
    ch.ref64 = gamma64(hd + 3) * abs(c) * Pext
    # statistical: q and k errors (k's row-relative part is per key: independent)
    Sq = walk.stat_of(qn)
    SkT = StatError(kT.shape, np.swapaxes(Sk.indep, -1, -2), np.swapaxes(Sk.det, -1, -2), 0.0, 0.0,
                    np.swapaxes(Sk.shared, -1, -2))
    st = StatError(z_qk.shape) if walk.local else matmul_stat(q, kT, Sq, SkT, z_qk, False)
    # k's row factor is per key token: delta_j (q_i . B_k,j), independent across keys
    rk = np.swapaxes(Sk.row_rel, -1, -2) * np.abs(q @ np.swapaxes(Sk.row_base, -1, -2))
    st.indep = st.indep + rk * rk
    st.absorb_row()  # q's row factor: a logit "temperature" change, not relative downstream
    a = abs(c_hat)
    st.indep = a * a * st.indep + ch.local_var
    st.shared = a * a * st.shared
    st.det = a * st.det + abs(c_hat - c) * np.abs(z_qk) + ch.local_det
    keep = allowed
    ch.map(lambda arr: np.where(keep, arr, False if arr.dtype == bool else 0.0))
    st.map(lambda arr: np.where(keep, arr, 0.0), lambda r: r)
    with np.errstate(invalid="ignore", over="ignore"):
        ref_mag = np.where(keep, abs(c) * ((np.abs(q) + Eq) @ (np.abs(kT) + EkT)), 0.0)
    walk.finish(rec, ch, st, ref_magnitude=ref_mag)


def walk_mix(walk: LayerWalk, rec: OpRecord) -> None:
    """``P V`` per head, heads concatenated (module docstring)."""
    name = rec.name
    pn, vn = rec.inputs
    tp = walk.tp(name)
    p = walk.val(pn)
    H = p.shape[0]
    Ep = walk.err(pn)
    vr, Evr, Sv = repeated_kv(walk, vn, H)
    n = p.shape[-1]
    if walk.fixed:
        mac = rec.details["mac"]
        pf = walk.qt(pn).fmt.frac + walk.qt(vn).fmt.frac
        B = matmul_bound(p, vr, E_a=rig_only(Ep), E_b=rig_only(Evr),
                         accum=Accum.fixed(FixedFormat(mac.acc_w, pf, True), mac.acc_overflow.value),
                         out=fixed_model(parse_format(tp.format), mac.rounding), what=f"{name} ({tp.format})")
        ch = ValueChain.from_bound(B)
        mx_out = False
    else:
        mx_out = is_mx_spec(tp.format)
        accum, outm, prod = matmul_models(tp.acc, "fp32" if mx_out else tp.format, tp.rounding)
        # repeated tokens: identical p v terms in a row add identical rounding errors
        rep = repeated_keys(p, p != 0, row_ids(vr)[:, None, :]) if accum.needs_partial_sums else None
        B = matmul_bound(p, vr, E_a=rig_only(Ep), E_b=rig_only(Evr), accum=accum, products=prod, out=outm,
                         what=f"{name} ({tp.format}, {tp.acc})", stat_mode="hm" if prod is F64 else "partial_sums",
                         running=walk.running(n, accum, outm), coherent=rep)
        ch = ValueChain.from_bound(B)
    Pext = (np.abs(p) + walk.mag(pn)) @ (np.abs(vr) + repeat_kv(walk.mag(vn), H))
    ch.ref64 = gamma64(n + 2) * Pext
    with np.errstate(invalid="ignore", over="ignore"):
        ref_mag = (np.abs(p) + Ep) @ (np.abs(vr) + Evr)
    Sp = walk.stat_of(pn)
    st = StatError(ch.z.shape) if walk.local else matmul_stat(p, vr, Sp, Sv, ch.z, True)
    st.absorb_row()  # a per-(head, query) factor: not shared by the concatenated row
    st.indep = st.indep + ch.local_var
    st.det = st.det + ch.local_det
    h, s, hd = ch.z.shape
    cat = lambda a: a.transpose(1, 0, 2).reshape(s, h * hd)  # noqa: E731
    ch.map(cat)
    st.map(cat, lambda r: np.zeros((s, 1)))
    ref_mag = cat(ref_mag)
    if mx_out:
        v0, d0 = ch.local_var.copy(), ch.local_det.copy()
        ch.round_mx(tp.format, tp.rounding, walk.stored_X(name), -1, f"{name} output")
        st.indep = st.indep + (ch.local_var - v0)
        st.det = st.det + (ch.local_det - d0)
    walk.finish(rec, ch, st, ref_magnitude=ref_mag)
