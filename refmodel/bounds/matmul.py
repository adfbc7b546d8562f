"""Error bounds of matrix products: linear layers, Q K^T logits, the attention mix P V.

Model of the computation ``y = a @ b (+ bias)`` (``a`` is ``(..., M, K)``, ``b`` ``(..., K, N)``,
numpy broadcasting of the batch dimensions):

1. products ``p_k = a_k b_k`` are exact (``products=EXACT``) or rounded once (``products``);
2. they are reduced under an :class:`~refmodel.bounds.accum.Accum` policy; the bias enters the
   accumulator as its initial value (``bias_in_acc=True``) or is added by the output stage;
3. one final rounding ``out`` (exact when the accumulator is the output).

The reference is float64 on the EXACT inputs ``a = a_hat - da``, ``b = b_hat - db`` with
``|da| <= E_a``, ``|db| <= E_b`` (for a linear layer whose float64 reference uses the
unquantised weights, ``E_w = |W_hat - W|``). Rigorous bound, componentwise:

    propagated = E_a |b_hat| + |a_hat| E_b + E_a E_b + E_bias             (exact, no first order)
    products   = rel_p |a_hat||b_hat| + K abs_p
    accumulate = Accum.error(K, A)  with  A = (1 + rel_p)|a_hat||b_hat| + K abs_p (+ |bias|)
    output     = rel_o (|z| + products + accumulate) + abs_o,   z = a_hat b_hat (+ bias)
    E          = propagated + products + accumulate + output

Statistical tier: the same with the accumulation (and product) rounding errors summed as
mean-independent random variables over the actual partial sums (see ``accum``), failure
probability ``alpha`` per output component per rounding class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .accum import Accum, MatmulTerms, PartialSums, matmul_coherent, running_error
from .model import DEFAULT_ALPHA, EXACT, Bound, RoundingModel, as_tiers, lambda_azuma, output_rounding

__all__ = ["matmul_bound", "linear_bound", "attention_mix_bound", "logits_bound"]

#: the default accumulation policy of :func:`matmul_bound` (``Accum`` is frozen, so one instance is shared)
_EXACT_ACCUM = Accum.exact()

_CHUNK_ELEMS = 1 << 22


def _partial_sums(a: np.ndarray, b: np.ndarray, out_shape: tuple[int, ...], acc: Accum, init: Any,
                  coherent: np.ndarray | None = None) -> PartialSums:
    K = a.shape[-1]
    M, N = a.shape[-2], b.shape[-1]
    per_k = max(1, int(np.prod(out_shape)))
    c = max(1, _CHUNK_ELEMS // per_k)
    blk = acc.block if acc.kind == "blocked" else 1
    c = max(blk, (c // blk) * blk)
    ps = PartialSums(out_shape, acc, init)
    for k0 in range(0, K, c):
        k1 = min(K, k0 + c)
        ak = a[..., :, None, k0:k1]  # (..., M, 1, c)
        bk = np.swapaxes(b[..., k0:k1, :], -1, -2)[..., None, :, :]  # (..., 1, N, c)
        ck = None if coherent is None else coherent[..., :, None, k0:k1]
        ps.feed(np.broadcast_to(ak * bk, out_shape + (k1 - k0,)) if (M and N) else ak * bk, ck)
    return ps


def matmul_bound(
    a_hat: Any,
    b_hat: Any,
    *,
    E_a: Any = None,
    E_b: Any = None,
    bias: Any = None,
    E_bias: Any = None,
    accum: Accum = _EXACT_ACCUM,
    products: RoundingModel = EXACT,
    out: RoundingModel = EXACT,
    bias_in_acc: bool = False,
    alpha: float = DEFAULT_ALPHA,
    stat_mode: str = "partial_sums",
    running: bool = False,
    coherent: Any = None,
    what: str = "matmul",
) -> Bound:
    """Bound on ``|y_hat - (a @ b + bias)|`` for ``y_hat`` computed from ``a_hat``, ``b_hat``.

    Inputs: ``a_hat`` ``(..., M, K)`` and ``b_hat`` ``(..., K, N)`` are the values the hardware
    multiplies (already in their storage formats); ``E_a``, ``E_b``, ``E_bias``: bounds on their
    distance to the exact inputs (arrays or :class:`Bound`; None = exact); ``bias`` (the
    hardware's bias, broadcast to the output). ``accum``: accumulation policy; ``products``:
    rounding of each product (EXACT when the products fit the adder, e.g. fp16 x fp16 into fp32);
    ``out``: final rounding into the output format (also used for the output range check).
    ``stat_mode``: ``partial_sums`` (Azuma over the actual partial sums; costs one pass over K
    with M*N work per step) or ``hm`` (``gamma_tilde`` times ``sum |terms|``, no pass).
    ``running``: also bound a float accumulation a posteriori from the data's exact partial sums
    (:func:`refmodel.bounds.accum.running_error`, exact products only) and keep the smaller bound;
    finite where ``gamma_n`` is vacuous, about ``sqrt(K)`` tighter on mean-zero data.
    ``coherent``: a bool mask broadcastable to ``a``'s shape ``(..., M, K)`` marking terms that
    repeat within their sum (repeated tokens): the statistical tier sums their rounding errors
    linearly (:class:`~refmodel.bounds.accum.PartialSums`).
    Assumes: no overflow (checked: accumulator and output, componentwise; ``inf`` + reason where it
    may happen), float64 as exact reference.
    """
    a = np.asarray(a_hat, dtype=np.float64)
    b = np.asarray(b_hat, dtype=np.float64)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"{what}: need a (..., M, K) and b (..., K, N); got {a.shape} and {b.shape}")
    if stat_mode not in ("partial_sums", "hm"):
        raise ValueError(f"{what}: stat_mode must be 'partial_sums' or 'hm', got {stat_mode!r}")
    K = a.shape[-1]
    absa, absb = np.abs(a), np.abs(b)
    P = absa @ absb
    z = a @ b
    shape = z.shape
    Era, Esa = as_tiers(E_a, a.shape)
    Erb, Esb = as_tiers(E_b, b.shape)
    if np.any(Era) or np.any(Erb) or np.any(Esa) or np.any(Esb):
        prop_r = Era @ absb + absa @ Erb + Era @ Erb
        prop_s = Esa @ absb + absa @ Esb + Esa @ Esb
    else:  # exact inputs (e.g. a stage checked on its own inputs): nothing propagates
        prop_r = np.zeros(shape)
        prop_s = np.zeros(shape)
    bvec = None
    if bias is not None:
        bvec = np.broadcast_to(np.asarray(bias, dtype=np.float64), shape)
        z = z + bvec
        Ebr, Ebs = as_tiers(E_bias, shape)
        prop_r = prop_r + Ebr
        prop_s = prop_s + Ebs
    elif E_bias is not None:
        raise ValueError(f"{what}: E_bias given without bias")
    init = bias_in_acc and bvec is not None
    # products
    prod_r = products.rel * P + K * products.abs
    terms_abs = P + prod_r
    if init and bvec is not None:
        terms_abs = terms_abs + np.abs(bvec)
    lam = lambda_azuma(alpha)
    if products.exact:
        prod_s = np.zeros(shape)
    elif products.unbiased:
        prod_s = lam * products.rel * np.sqrt((a * a) @ (b * b)) + K * products.abs
    else:
        prod_s = prod_r
    reasons: list[str] = []
    notes: list[str] = []
    # partial sums: statistical tier and saturating-accumulator overflow check
    coh = None if coherent is None else np.broadcast_to(np.asarray(coherent, dtype=bool), a.shape)
    got = None
    if running and products.exact:  # one pass: the running bound and the statistical partial sums
        got = running_error(MatmulTerms(a, b), accum, init=bvec if init else None, A=terms_abs,
                            coherent=None if coh is None else matmul_coherent(coh))
    ss_o = ss_i = None
    if got is not None:
        ss_o, ss_i = got.ss_outer, got.ss_inner
    elif stat_mode == "partial_sums" and accum.needs_partial_sums:
        ps0 = _partial_sums(a, b, shape, accum, bvec if init else None, coh)
        ss_o, ss_i = ps0.ss_outer, ps0.ss_inner
    acc_r, acc_s, rs = accum.error(K, terms_abs, init=init, ss_outer=ss_o, ss_inner=ss_i, alpha=alpha)
    range_A = terms_abs
    if got is not None:
        acc_r = np.minimum(acc_r, got.error)
        acc_s = np.minimum(acc_s, acc_r)
        range_A = got.peak  # the largest partial sum actually met, not sum |terms|
        rs = []  # a vacuous gamma_n is replaced by the finite running bound
    reasons += rs
    acc_V, acc_D = accum.proxy(K, terms_abs, init=init, ss_outer=ss_o, ss_inner=ss_i)
    ps = None
    acc_r = np.broadcast_to(acc_r, shape)
    # accumulator overflow
    max_partial = None
    if accum.kind == "fixed" and np.any(terms_abs + acc_r > accum.model.max) and accum.model.overflow != "wrap":
        if ps is None:
            ps = _partial_sums(a, b, shape, Accum("exact"), bvec if init else None)
        max_partial = ps.max_abs + prod_r
    final = (z if init or bvec is None else z - bvec)
    acc_mask, rs = accum.range_reasons(what, range_A, acc_r, final=np.abs(final) + prod_r,
                                       max_partial=max_partial)
    reasons += rs
    if not products.exact and math.isfinite(products.max):
        top = (float(np.max(absa)) * float(np.max(absb))) if a.size and b.size else 0.0
        if top * (1 + products.rel) + products.abs > products.max:
            reasons.append(f"no guarantee: {what} products may reach {top:.6g} > max {products.max:.6g} "
                           f"of {products.label}")
            acc_mask = np.ones(shape, bool)
    L_r = prod_r + acc_r
    L_s = prod_s + acc_s
    out_r, out_s, out_mask, rs, ns = output_rounding(z, L_r, L_s, out, f"{what} output")
    reasons += rs
    notes += ns
    local_r = L_r + out_r
    local_s = L_s + out_s
    # first-order split of the local error for a propagation's statistical tier (independent
    # mean-zero part as a variance proxy V, the rest as a deterministic D)
    if products.exact:
        prod_V, prod_D = np.zeros(shape), np.zeros(shape)
    elif products.unbiased:
        prod_V, prod_D = (products.rel ** 2) * ((a * a) @ (b * b)) + np.zeros(shape), K * products.abs + np.zeros(shape)
    else:
        prod_V, prod_D = np.zeros(shape), prod_r + np.zeros(shape)
    out_1 = out.step_err(z) + np.zeros(shape)  # first order: the half-ulp of the value's binade
    out_V, out_D = (out_1 ** 2, np.zeros(shape)) if out.unbiased else (np.zeros(shape), out_1)
    with np.errstate(invalid="ignore", over="ignore"):
        over = out_r - out.err(np.abs(z) + np.where(np.isfinite(L_r), L_r, 0.0))  # a saturating output's overshoot
    out_D = out_D + np.where(over > 0, over, 0.0)
    rig = prop_r + local_r
    stat = prop_s + local_s
    nog_range = np.broadcast_to(acc_mask | out_mask, shape)
    nog = nog_range | (not np.all(np.isfinite(acc_r)))
    rig = np.where(nog | ~np.isfinite(acc_r), np.inf, rig)
    stat = np.where(nog_range, np.inf, stat)
    parts = {"propagated": prop_r, "products": prod_r, "accumulation": acc_r, "output": out_r,
             "local": local_r, "sum_abs": P, "z": z, "local_stat": local_s, "propagated_stat": prop_s,
             "nog_range": nog_range, "local_V": np.broadcast_to(acc_V, shape) + prod_V + out_V,
             "local_D": np.broadcast_to(acc_D, shape) + prod_D + out_D}
    return Bound(rig, stat, reasons, notes, parts)


def linear_bound(x_hat: Any, w_hat: Any, b_hat: Any = None, *, E_x: Any = None, E_w: Any = None,
                 E_b: Any = None, **kw: Any) -> Bound:
    """Linear layer ``y = x W^T + b`` (``W`` is ``(out, in)`` as in torch). ``E_w`` bounds
    ``|W_hat - W|`` when the float64 reference uses the unquantised weights (None when it uses the
    same quantised weights). Other keywords as :func:`matmul_bound`."""
    w = np.asarray(w_hat, dtype=np.float64)
    Ew = None
    if E_w is not None:
        r, s = as_tiers(E_w, w.shape)
        Ew = Bound(np.swapaxes(r, -1, -2), np.swapaxes(s, -1, -2))
    kw.setdefault("what", "linear")
    return matmul_bound(x_hat, np.swapaxes(w, -1, -2), E_a=E_x, E_b=Ew, bias=b_hat, E_bias=E_b, **kw)


def attention_mix_bound(p_hat: Any, v_hat: Any, *, E_p: Any = None, E_v: Any = None, **kw: Any) -> Bound:
    """Attention output ``o = P V`` (P: ``(..., S_q, S_k)`` probabilities, V: ``(..., S_k, d_h)``).
    ``E_p`` typically comes from :func:`~refmodel.bounds.softmax.softmax_bound`. Keywords as
    :func:`matmul_bound`."""
    kw.setdefault("what", "attention P@V")
    return matmul_bound(p_hat, v_hat, E_a=E_p, E_b=E_v, **kw)


def logits_bound(q_hat: Any, k_hat: Any, *, E_q: Any = None, E_k: Any = None, scale: float = 1.0,
                 scale_hat: float | None = None, scale_out: RoundingModel = EXACT, **kw: Any) -> Bound:
    """Attention logits ``l = c q k^T`` computed as ``fl(c_hat * (q_hat k_hat^T))``.

    ``q_hat`` ``(..., S_q, d_h)``, ``k_hat`` ``(..., S_k, d_h)``; ``scale`` is the reference
    ``c`` (e.g. ``1/sqrt(d_h)``), ``scale_hat`` the hardware constant (default ``c``; a power of
    two is exact), ``scale_out`` the rounding of the scaled result. Keywords as
    :func:`matmul_bound` for the product (use ``out`` for the product's own rounding).
    """
    from .elementwise import scale_bound

    kw.setdefault("what", "logits q@k^T")
    k = np.asarray(k_hat, dtype=np.float64)
    Ek = None
    if E_k is not None:
        r, s = as_tiers(E_k, k.shape)
        Ek = Bound(np.swapaxes(r, -1, -2), np.swapaxes(s, -1, -2))
    qk = matmul_bound(q_hat, np.swapaxes(k, -1, -2), E_a=E_q, E_b=Ek, **kw)
    z = qk.parts["z"]
    # the product's computed value is within its local bound of z; scale_bound needs the value
    # the hardware scales: use z (exact on the computed inputs) with the local error as E
    sb = scale_bound(z, E_x=qk, c=scale, c_hat=scale_hat, out=scale_out, x_mag=np.abs(z) + qk.parts["local"],
                     what=kw["what"] + " scaled")
    sb.reasons = qk.reasons + sb.reasons
    sb.notes = qk.notes + sb.notes
    sb.parts["product"] = qk.parts
    return sb
