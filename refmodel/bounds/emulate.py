"""Bit-exact emulators of the computation models the bounds assume (validation only).

Every step rounds the EXACT result of the operation on its (representable) operands once, with
the step's :class:`~refmodel.bounds.model.RoundingModel` (its ``fmt`` and ``mode``):

* float targets: :func:`refmodel.numerics.minifloat.encode` / ``decode`` applied to the
  round-to-odd (at 53 bits) of the exact value, which preserves the final rounding for targets of
  <= 50 mantissa bits (Boldo & Melquiond); the exact value of a sum / product / quotient is carried
  as a float64 pair (TwoSum, Dekker's TwoProduct, exact remainder);
* fixed targets: :func:`refmodel.numerics.fixed.quantize` of the round-to-odd value (exact: the
  quantum is far above the 53-bit sticky position for the widths used here);
* exact steps (``fmt`` None): the value is kept as a float64 pair (exact sums use double-double
  accumulation; fixed-point data is exact in float64).

Special functions (exp, rsqrt, reciprocal, activations) are evaluated in float64 (error below
2^-51 relative, glibc) and rounded once; the bounds are given ``rel + 2^-50`` for them
(:data:`F64_FUNC_REL`). Hardware units with measured errors are passed in as callables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..numerics.fixed import FixedFormat, quantize
from ..numerics.minifloat import FloatFormat, decode, encode
from ..numerics.rounding import Rounding
from .accum import Accum
from .model import RoundingModel
from .norm import NormSteps
from .softmax import SoftmaxSteps

__all__ = [
    "F64_FUNC_REL",
    "func_model",
    "two_sum",
    "two_prod",
    "rnd",
    "add_rnd",
    "mul_rnd",
    "div_rnd",
    "accumulate",
    "emu_matmul",
    "emu_norm",
    "emu_softmax",
]

#: extra relative error of a special function evaluated in float64 then rounded once
F64_FUNC_REL = 2.0 ** -50

_SPLIT = 134217729.0  # 2^27 + 1


def func_model(m: RoundingModel) -> RoundingModel:
    """Model of 'float64 function value rounded by m' (what the emulators do for exp/rsqrt/...)."""
    return m.widened(rel=F64_FUNC_REL, label=m.label + "+f64")


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s + e == a + b exactly, s = fl64(a + b) (Knuth)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p + e == a * b exactly (Dekker; no overflow / underflow assumed)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _round_to_odd(x: np.ndarray, st: np.ndarray | None) -> np.ndarray:
    """Round-to-odd at 53 bits of the exact value x + st (x = fl64(x + st), |st| <= ulp(x)/2)."""
    if st is None:
        return x
    st = np.broadcast_to(np.asarray(st, dtype=np.float64), x.shape)
    if not np.any(st):
        return x
    up = np.nextafter(x, np.inf)
    dn = np.nextafter(x, -np.inf)
    lo = np.where(st > 0, x, dn)
    hi = np.where(st > 0, up, x)
    lo_odd = (np.ascontiguousarray(lo).view(np.int64) & 1) == 1
    return np.where(st == 0, x, np.where(lo_odd, lo, hi))


def rnd(m: RoundingModel, x: Any, st: Any = None, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """One rounding of the exact value ``x + st`` by step ``m`` (identity when ``m.fmt`` is None)."""
    x = np.asarray(x, dtype=np.float64)
    if m.fmt is None:
        return x if st is None else x + np.asarray(st)
    v = _round_to_odd(x, None if st is None else np.asarray(st, dtype=np.float64))
    mode = Rounding.parse(m.mode)
    if isinstance(m.fmt, FloatFormat):
        if mode is Rounding.STOCHASTIC:
            return decode(encode(v, m.fmt, mode, seed=rng).codes, m.fmt)
        return decode(encode(v, m.fmt, mode).codes, m.fmt)
    if isinstance(m.fmt, FixedFormat):
        ov = m.overflow if m.overflow in ("wrap", "saturate", "error") else "saturate"
        if mode is Rounding.STOCHASTIC:
            return quantize(v, m.fmt, mode, ov, seed=rng).to_float()
        return quantize(v, m.fmt, mode, ov).to_float()
    raise ValueError(f"rnd: unsupported format {m.fmt!r}")


def add_rnd(m: RoundingModel, a: Any, b: Any, st: Any = None, **kw: Any) -> np.ndarray:
    """fl(a + b (+ st))."""
    s, e = two_sum(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    if st is not None:
        e = e + st
    return rnd(m, s, e, **kw)


def mul_rnd(m: RoundingModel, a: Any, b: Any, **kw: Any) -> np.ndarray:
    """fl(a * b)."""
    p, e = two_prod(a, b)
    return rnd(m, p, e, **kw)


def div_rnd(m: RoundingModel, a: Any, b: Any, a_lo: Any = None, b_lo: Any = None, **kw: Any) -> np.ndarray:
    """fl((a + a_lo) / (b + b_lo)) with the remainder deciding the sticky bit."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    q = a / b
    p, pe = two_prod(q, b)
    r = (a - p) - pe
    if a_lo is not None:
        r = r + a_lo
    if b_lo is not None:
        r = r - q * b_lo
    with np.errstate(invalid="ignore", divide="ignore"):
        st = np.where(b != 0, r / b, 0.0)
    return rnd(m, q, st, **kw)


def _fixed_add(acc: np.ndarray, t: np.ndarray, a: Accum) -> np.ndarray:
    s = acc + t
    fmt: FixedFormat = a.fmt
    ov = a.model.overflow
    if ov == "saturate":
        return np.clip(s, fmt.min, fmt.max)
    if ov == "wrap":
        span = 2.0 ** (fmt.width - fmt.frac)
        return np.mod(s - fmt.min, span) + fmt.min
    if np.any((s > fmt.max) | (s < fmt.min)):
        raise OverflowError(f"fixed accumulator {fmt} overflows")
    return s


def accumulate(terms_fn: Callable[[int], np.ndarray], K: int, acc: Accum, init: Any = None, *,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reduce ``terms_fn(0..K-1)`` (each an array of the output shape, exact values) under
    ``acc``; returns ``(value, sticky)`` (sticky is the exact remainder of an exact sum, else 0)."""
    first = np.asarray(terms_fn(0), dtype=np.float64)
    shape = first.shape
    hi = np.zeros(shape)
    lo = np.zeros(shape)

    def dd_add(h: np.ndarray, lo_: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, e = two_sum(h, t)
        return s, lo_ + e

    if acc.kind == "exact":
        if init is not None:
            hi, lo = dd_add(hi, lo, np.broadcast_to(init, shape))
        for k in range(K):
            hi, lo = dd_add(hi, lo, first if k == 0 else terms_fn(k))
        s, e = two_sum(hi, lo)
        return s, e
    if acc.kind == "fixed":
        a = np.zeros(shape) if init is None else np.broadcast_to(np.asarray(init, dtype=np.float64), shape).copy()
        for k in range(K):
            t = first if k == 0 else terms_fn(k)
            if not acc.term.exact:
                t = rnd(acc.term, t, rng=rng)
            a = _fixed_add(a, t, acc)
        return a, np.zeros(shape)
    m = acc.model
    a = np.zeros(shape)
    if init is not None:
        a = rnd(m, np.broadcast_to(np.asarray(init, dtype=np.float64), shape), rng=rng)
    if acc.kind == "sequential":
        for k in range(K):
            a = add_rnd(m, a, first if k == 0 else terms_fn(k), rng=rng)
        return a, np.zeros(shape)
    b = acc.block
    for k0 in range(0, K, b):
        if acc.inner is not None:
            bacc = np.zeros(shape)
            for k in range(k0, min(K, k0 + b)):
                bacc = add_rnd(acc.inner, bacc, first if k == 0 else terms_fn(k), rng=rng)
            a = add_rnd(m, a, bacc, rng=rng)
            continue
        bh = np.zeros(shape)
        bl = np.zeros(shape)
        for k in range(k0, min(K, k0 + b)):
            bh, bl = dd_add(bh, bl, first if k == 0 else terms_fn(k))
        if acc.round_block:
            a = add_rnd(m, a, rnd(m, bh, bl, rng=rng), rng=rng)
        else:
            s, e = two_sum(a, bh)
            a = rnd(m, s, e + bl, rng=rng)
    return a, np.zeros(shape)


def emu_matmul(a: Any, b: Any, *, accum: Accum, products: RoundingModel, out: RoundingModel, bias: Any = None,
               bias_in_acc: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
    """``fl_out(acc(fl_p(a_k b_k)) (+ bias))`` exactly as :func:`~refmodel.bounds.matmul.matmul_bound` models it."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    K = a.shape[-1]

    def term(k: int) -> np.ndarray:
        p, e = two_prod(a[..., :, k, None], b[..., None, k, :])
        if products.exact:
            if np.any(e):
                raise ValueError("emu_matmul: products declared exact are not exact in float64")
            return p
        return rnd(products, p, e, rng=rng)

    init = bias if (bias_in_acc and bias is not None) else None
    v, st = accumulate(term, K, accum, init, rng=rng)
    if bias is not None and not bias_in_acc:
        s, e = two_sum(v, np.broadcast_to(np.asarray(bias, dtype=np.float64), v.shape))
        v, st = s, e + st
    return rnd(out, v, st, rng=rng)


def emu_norm(x: Any, *, center: bool, eps: float, steps: NormSteps, g: Any = None, beta: Any = None,
             slanc_scale: float = 1.0, rsqrt_fn: Callable[[np.ndarray], np.ndarray] | None = None,
             rng: np.random.Generator | None = None) -> np.ndarray:
    """The norm chain of :mod:`refmodel.bounds.norm` step by step. ``rsqrt_fn``: the hardware
    rsqrt unit (default: float64 ``1/sqrt`` rounded by ``steps.rsqrt``)."""
    st = steps
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[-1]
    epsp = float(eps) / float(slanc_scale) ** 2
    if center:
        S1, s1 = accumulate(lambda k: x[..., k], d, st.mean_acc, rng=rng)
        mu = div_rnd(st.mean_div, S1, np.float64(d), s1, rng=rng)
        c = add_rnd(st.sub, x, -mu[..., None], rng=rng)
    else:
        c = x
    q = mul_rnd(st.sq, c, c, rng=rng)
    S2, s2 = accumulate(lambda k: q[..., k], d, st.var_acc, rng=rng)
    v = div_rnd(st.var_div, S2, np.float64(d), s2, rng=rng)
    eh = rnd(st.eps_store, np.float64(epsp))
    t = add_rnd(st.eps_add, v, eh, rng=rng)
    if rsqrt_fn is None:
        with np.errstate(divide="ignore"):
            r = rnd(st.rsqrt, 1.0 / np.sqrt(t), rng=rng)
    else:
        r = rsqrt_fn(t)
    n = mul_rnd(st.norm, c, r[..., None], rng=rng)
    if g is None and beta is None:
        return n
    gg = np.broadcast_to(np.asarray(1.0 if g is None else g, dtype=np.float64), x.shape)
    bb = np.broadcast_to(np.asarray(0.0 if beta is None else beta, dtype=np.float64), x.shape)
    if st.fma:
        p, pe = two_prod(gg, n)
        s, e = two_sum(p, bb)
        return rnd(st.out, s, e + pe, rng=rng)
    p = mul_rnd(st.gain, gg, n, rng=rng)
    return add_rnd(st.out, p, bb, rng=rng)


def emu_softmax(logits: Any, *, steps: SoftmaxSteps, shifted: bool = True, mask: Any = None,
                exp_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                recip_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                arg_model: RoundingModel | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """The softmax chain of :mod:`refmodel.bounds.softmax`. ``arg_model``: when given, the exp
    argument is reduced as ``t = fl(d * fl(log2 e))`` and ``exp = 2^t`` (so
    ``exp_arg_rel = (1 + u)^2 - 1``); ``exp_fn`` / ``recip_fn`` replace the float64 units."""
    st = steps
    logits = np.asarray(logits, dtype=np.float64)
    keep = np.isfinite(logits) if mask is None else (np.asarray(mask, bool) & np.isfinite(logits))
    lk = np.where(keep, logits, -np.inf)
    m = np.max(lk, axis=-1, keepdims=True)
    if shifted:
        dd = add_rnd(st.sub, np.where(keep, logits, m), -m, rng=rng)
    else:
        dd = np.where(keep, logits, 0.0)
    if exp_fn is not None:
        e = exp_fn(dd)
    elif arg_model is not None:
        L = rnd(arg_model, np.float64(math.log2(math.e)))
        t = mul_rnd(arg_model, dd, L, rng=rng)
        with np.errstate(over="ignore"):
            e = rnd(st.exp, np.exp2(t), rng=rng)
    else:
        with np.errstate(over="ignore"):
            e = rnd(st.exp, np.exp(dd), rng=rng)
    e = np.where(keep, e, 0.0)
    S, s_lo = accumulate(lambda k: e[..., k], logits.shape[-1], st.acc, rng=rng)
    S = S[..., None]
    s_lo = s_lo[..., None]
    if st.normalize == "divide":
        out = div_rnd(st.out, e, S, None, s_lo, rng=rng)
    else:
        r = recip_fn(S) if recip_fn is not None else rnd(st.recip, 1.0 / S, rng=rng)
        out = mul_rnd(st.out, e, r, rng=rng)
    return np.where(keep, out, 0.0)
