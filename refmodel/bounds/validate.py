"""Empirical validation of the op bounds: emulate each op with exactly the modelled roundings,
compare with float64 on the exact inputs, count violations, measure tightness.

A *trial* is one independent random instance of an op: one ``(4 x K) @ (K x 4)`` product, one
norm row, one softmax row, one elementwise vector. Cases are vectorised over trials. Input kinds:
``random`` (Gaussian), and adversarial ``outlier`` (channels at up to 1e3 sigma), ``positive`` (no
cancellation), ``cancel`` (near-cancelling sums), ``sink`` (one key takes almost all attention
weight), ``tie`` (near-tie scores), ``masked`` (causal rows), ``long`` (rows / K up to 2048),
``prop`` (inputs carry errors: the exact inputs sit at corners of the error box).

``run_cases(scale)`` runs the registry; ``scale`` multiplies the trial counts (the slow test uses
``scale = 14`` for >= 1e5 trials). ``python -m refmodel.bounds.validate [scale [seed]]`` prints
the tightness tables in markdown.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..numerics.fixed import FixedFormat
from .accum import Accum
from .elementwise import activation, activation_bound, add_bound, cast_bound, mul_bound, scale_bound
from .emulate import accumulate, add_rnd, emu_matmul, emu_norm, emu_softmax, func_model, mul_rnd, rnd
from .matmul import attention_mix_bound, linear_bound, logits_bound, matmul_bound
from .model import EXACT, Bound, RoundingModel, rounding_model
from .norm import NormSteps, norm_bound
from .softmax import SoftmaxSteps, softmax_bound

__all__ = ["CaseResult", "Case", "CASES", "run_cases", "summarize", "markdown_table", "op_summary_markdown"]

RANDOM_KINDS = ("random", "long")


@dataclass
class CaseResult:
    """Outcome of one case: violations of each tier and per-trial max(observed / bound)."""

    op: str
    config: str
    kind: str
    trials: int
    components: int
    viol_rig: int
    viol_stat: int
    no_guarantee: int
    ratio_rig: np.ndarray
    ratio_stat: np.ndarray
    seconds: float
    reasons: list[str] = field(default_factory=list)

    @property
    def max_rig(self) -> float:
        r = self.ratio_rig[np.isfinite(self.ratio_rig)]
        return float(r.max()) if r.size else float("nan")

    @property
    def med_rig(self) -> float:
        r = self.ratio_rig[np.isfinite(self.ratio_rig)]
        return float(np.median(r)) if r.size else float("nan")

    @property
    def max_stat(self) -> float:
        r = self.ratio_stat[np.isfinite(self.ratio_stat)]
        return float(r.max()) if r.size else float("nan")

    @property
    def med_stat(self) -> float:
        r = self.ratio_stat[np.isfinite(self.ratio_stat)]
        return float(np.median(r)) if r.size else float("nan")


#: allowance for the float64 evaluation of the reference and of the bound formulas (the bounds
#: treat float64 as exact): a component violates iff obs > E (1 + 2^-40) + 2^-50 |reference|
REF_REL = 2.0 ** -50
BOUND_REL = 2.0 ** -40


def _ratios(obs: np.ndarray, E: np.ndarray, T: int, ref: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Per-trial max(obs/E) over components with finite E; violations; no-guarantee count."""
    obs = np.broadcast_to(obs, E.shape).reshape(T, -1)
    ref = np.broadcast_to(np.abs(ref), E.shape).reshape(T, -1)
    E = E.reshape(T, -1)
    fin = np.isfinite(E)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(fin, np.where(obs == 0, 0.0, obs / E), np.nan)
    viol = int(np.sum(fin & (obs > E * (1 + BOUND_REL) + REF_REL * ref)))
    rmax = np.where(np.all(np.isnan(r), axis=1), np.nan, np.nanmax(np.where(np.isnan(r), -np.inf, r), axis=1))
    return rmax, viol, int(np.sum(~fin))


def _result(op: str, config: str, kind: str, T: int, y: np.ndarray, ref: np.ndarray, B: Bound, t0: float) -> CaseResult:
    with np.errstate(invalid="ignore"):
        obs = np.abs(np.asarray(y, dtype=np.float64) - np.asarray(ref, dtype=np.float64))
    fin = np.isfinite(B.rig)
    if np.any(~np.isfinite(obs) & fin):
        obs = np.where(np.isfinite(obs), obs, np.inf)  # a non-finite output under a finite bound is a violation
    rr, vr, ng = _ratios(obs, B.rig, T, ref)
    rs, vs, _ = _ratios(obs, B.stat, T, ref)
    return CaseResult(op, config, kind, T, int(B.rig.size), vr, vs, ng, rr, rs, time.perf_counter() - t0,
                      list(B.reasons))


# ---- input generators ------------------------------------------------------------------------
def _gen(kind: str, shape: tuple[int, ...], rng: np.random.Generator, axis: int = -1) -> np.ndarray:
    x = rng.standard_normal(shape)
    if kind == "outlier":
        n = shape[axis]
        idx = rng.choice(n, size=max(1, n // 128), replace=False)
        sl: list[slice | np.ndarray] = [slice(None)] * len(shape)
        sl[axis] = idx
        x[tuple(sl)] *= 10.0 ** rng.uniform(2, 3, size=x[tuple(sl)].shape)
    elif kind == "positive":
        x = np.abs(x)
    elif kind == "heavy":
        x = x * np.exp(1.5 * rng.standard_normal(shape))
    return x


def _exact_matmul(a: np.ndarray, b: np.ndarray, bias: Any = None) -> np.ndarray:
    K = a.shape[-1]
    v, st = accumulate(lambda k: a[..., :, k, None] * b[..., None, k, :], K, Accum.exact(),
                       None if bias is None else np.broadcast_to(bias, a.shape[:-1] + b.shape[-1:]))
    return v + st


# ---- case definitions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    op: str
    config: str
    kind: str
    trials: int
    fn: Callable[..., CaseResult]
    kw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    #: the configuration is expected to have no rigorous guarantee (vacuous gamma, overflow)
    expect_nog: bool = False
    #: the statistical tier is expected to be tight (False for biased rounding: stat == rig there)
    stat_tight: bool = True

    def run(self, scale: float = 1.0, seed: int = 0) -> CaseResult:
        T = max(1, int(round(self.trials * scale)))
        rng = np.random.default_rng(zlib.crc32(f"{self.op}|{self.config}|{self.kind}|{seed}".encode()))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self.fn(self, T, rng, **self.kw)


def _mm(case: Case, T: int, rng: np.random.Generator, *, fin: str, K: int, accum: Accum, out: str,
        products: Any = None, win: str | None = None, bias: bool = False, bias_in_acc: bool = False,
        rounding: str = "rne", M: int = 4, N: int = 4, fix_scale: float = 1.0) -> CaseResult:
    t0 = time.perf_counter()
    mi = rounding_model(fin)
    mw = rounding_model(win or fin)
    a = rnd(mi, fix_scale * _gen(case.kind, (T, M, K), rng, axis=-1))
    b = rnd(mw, _gen("random" if case.kind == "outlier" else case.kind, (T, K, N), rng, axis=-2) / math.sqrt(K) * 4)
    if case.kind == "cancel":  # products cancel in pairs up to a 2^-6 relative perturbation
        h = a[..., 1::2].shape[-1]
        a[..., 1::2] = -a[..., 0::2][..., :h]
        b[..., 1::2, :] = rnd(mw, b[..., 0::2, :][..., :h, :] * (1 + 2.0 ** -6 * rng.standard_normal((T, h, N))))
    bb = rnd(rounding_model(out), rng.standard_normal((T, 1, N))) if bias else None
    om = rounding_model(out, rounding)
    pm = EXACT if products is None else rounding_model(products, rounding)
    y = emu_matmul(a, b, accum=accum, products=pm, out=om, bias=bb, bias_in_acc=bias_in_acc, rng=rng)
    B = matmul_bound(a, b, accum=accum, products=pm, out=om, bias=bb, bias_in_acc=bias_in_acc)
    return _result(case.op, case.config, case.kind, T, y, _exact_matmul(a, b, bb), B, t0)


def _linear_prop(case: Case, T: int, rng: np.random.Generator, *, fin: str, fw: str, K: int, accum: Accum,
                 out: str) -> CaseResult:
    """Inputs and weights carry errors: x_hat = fl(x), W_hat = fl(W); the reference uses the exact
    x and the unquantised W (E_w = |W_hat - W|); x sits at the corner x_hat - E_x sign(...)."""
    t0 = time.perf_counter()
    N = 4
    mi, mw = rounding_model(fin), rounding_model(fw)
    xh = rnd(mi, rng.standard_normal((T, 4, K)))
    Ex = mi.err(np.abs(xh)) / (1 - mi.rel)
    W = rng.standard_normal((T, N, K)) / math.sqrt(K)
    Wh = rnd(mw, W)
    Ew = np.abs(Wh - W)
    sgn = np.sign(np.einsum("tnk->tk", Wh))[:, None, :]
    x = xh - Ex * sgn  # worst-case corner for the sum over outputs
    om = rounding_model(out)
    y = emu_matmul(xh, np.swapaxes(Wh, -1, -2), accum=accum, products=EXACT, out=om)
    B = linear_bound(xh, Wh, E_x=Ex, E_w=Ew, accum=accum, out=om)
    ref = _exact_matmul(x, np.swapaxes(W, -1, -2))
    return _result(case.op, case.config, case.kind, T, y, ref, B, t0)


def _logits(case: Case, T: int, rng: np.random.Generator, *, fmt: str, dh: int, S: int, accum: Accum,
            scale_exact: bool) -> CaseResult:
    t0 = time.perf_counter()
    m = rounding_model(fmt)
    q = rnd(m, rng.standard_normal((T, 4, dh)))
    k = rnd(m, rng.standard_normal((T, S, dh)))
    c = 1 / math.sqrt(dh)
    ch = float(rnd(m, np.float64(c)))
    prod = emu_matmul(q, np.swapaxes(k, -1, -2), accum=accum, products=EXACT, out=m)
    y = mul_rnd(m, prod, ch)
    B = logits_bound(q, k, scale=c, scale_hat=ch, scale_out=m, accum=accum, out=m)
    ref = c * _exact_matmul(q, np.swapaxes(k, -1, -2))
    return _result(case.op, case.config + ("" if scale_exact else f" c_hat={ch:.6g}"), case.kind, T, y, ref, B, t0)


def _ref_softmax(logits: np.ndarray, mask: Any = None) -> np.ndarray:
    keep = np.isfinite(logits) if mask is None else (mask & np.isfinite(logits))
    lk = np.where(keep, logits, -np.inf)
    m = np.max(lk, axis=-1, keepdims=True)
    w = np.where(keep, np.exp(lk - m), 0.0)
    return w / np.sum(w, axis=-1, keepdims=True)


def _softmax_logits(kind: str, T: int, n: int, rng: np.random.Generator, sigma: float = 3.0) -> tuple[np.ndarray, Any]:
    logits = sigma * rng.standard_normal((T, n))
    mask = None
    if kind == "sink":
        logits[np.arange(T), rng.integers(0, n, T)] += rng.uniform(8, 25, T)
    elif kind == "tie":
        logits = 4.0 + rng.integers(0, 4, (T, n)) * 2.0 ** -9 + rng.standard_normal((T, n)) * 1e-4
    elif kind == "masked":
        pos = rng.integers(1, n + 1, T)
        mask = np.arange(n)[None, :] < pos[:, None]
    elif kind == "wide":
        logits = 12.0 * rng.standard_normal((T, n))
    return logits, mask


def _softmax(case: Case, T: int, rng: np.random.Generator, *, fmt: str, n: int, acc: str | None = None,
             shifted: bool = True, arg: bool = False, normalize: str = "divide", out: str | None = None,
             rounding: str = "rne", sigma: float = 3.0) -> CaseResult:
    t0 = time.perf_counter()
    m = rounding_model(fmt, rounding)
    logits, mask = _softmax_logits(case.kind, T, n, rng, sigma)
    lh = rnd(rounding_model(fmt), logits)
    arg_model = m if arg else None
    steps = SoftmaxSteps(m, (1 + m.rel) ** 2 - 1 if arg else 0.0, func_model(m),
                         Accum.sequential(acc or fmt, rounding), normalize,
                         func_model(m) if normalize == "reciprocal" else EXACT,
                         rounding_model(out or fmt, rounding))
    y = emu_softmax(lh, steps=steps, shifted=shifted, mask=mask, arg_model=arg_model, rng=rng)
    B = softmax_bound(lh, steps=steps, shifted=shifted, mask=mask)
    return _result(case.op, case.config, case.kind, T, y, _ref_softmax(lh, mask), B, t0)


def _softmax_prop(case: Case, T: int, rng: np.random.Generator, *, fmt: str, n: int, acc: str) -> CaseResult:
    """Logits carry errors: l_hat = fl(l) + noise within E; the reference is softmax(l)."""
    t0 = time.perf_counter()
    m = rounding_model(fmt)
    logits, _ = _softmax_logits("sink" if case.kind == "prop-sink" else "random", T, n, rng)
    lh = rnd(m, logits)
    E = np.abs(lh - logits) + 1e-3 * np.abs(logits)  # a bound that is not tight everywhere
    lt = lh - E * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)  # corner of the box
    steps = SoftmaxSteps.floating(fmt, acc=Accum.sequential(acc), exp=func_model(m))
    y = emu_softmax(lh, steps=steps)
    B = softmax_bound(lh, E, steps=steps)
    return _result(case.op, case.config, case.kind, T, y, _ref_softmax(lt), B, t0)


def _softmax_fixed(case: Case, T: int, rng: np.random.Generator, *, n: int, out_w: int = 8, out_f: int = 8,
                   lut_bits: int = 6, guard: int = 4, sigma: float = 2.0, exp_rel: bool = False) -> CaseResult:
    """The project's fixed-point softmax unit (refmodel.numerics.units.softmax) with its measured
    exp error and its exact truncating reciprocal, against the generic bound."""
    from ..numerics.units import exp2 as _e2
    from ..numerics.units import softmax as _sm

    t0 = time.perf_counter()
    p = _sm.SoftmaxParams(n_max=max(n, 2), lut_bits=lut_bits, guard=guard, out_w=out_w, out_f=out_f)
    ew = p.e_w
    exp_err = _e2.exhaustive_error(p.exp2).max_abs_err
    fe = FixedFormat(ew, ew - 1, signed=False)
    fr = FixedFormat(p.k + 2, p.k - (ew - 1), signed=False)
    exp_m = RoundingModel.measured(exp_err, fe)
    if exp_rel:  # measured relative error before the final floor + the floor's 1 LSB
        exp_m = RoundingModel(_e2.prefloor_rel_error(p.exp2), fe.lsb, fe.max, 0.0, "saturate", False, "exp2 rel+1LSB")
    steps = SoftmaxSteps.fixed(exp=exp_m, acc=FixedFormat(p.s_w + 1, ew - 1, False),
                               recip=RoundingModel.measured(1.0, fr),
                               out_fmt=FixedFormat(out_w, out_f, signed=False), rounding="half_up")
    logits, mask = _softmax_logits(case.kind, T, n, rng, sigma)
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    codes = np.clip(np.floor(np.ldexp(logits, p.in_f) + 0.5), lo, hi).astype(np.int64)
    lh = np.ldexp(codes.astype(np.float64), -p.in_f)
    masked = None if mask is None else ~mask
    y = np.ldexp(_sm.softmax(codes, p, masked).astype(np.float64), -out_f)
    B = softmax_bound(lh, steps=steps, mask=mask)
    cfg = f"{case.config} exp_err={exp_err:.0f}LSB" + (" (rel model)" if exp_rel else "")
    return _result(case.op, cfg, case.kind, T, y, _ref_softmax(lh, mask), B, t0)


def _ref_norm(x: np.ndarray, center: bool, eps: float, g: Any, b: Any) -> np.ndarray:
    mu = x.mean(-1, keepdims=True) if center else 0.0
    c = x - mu
    return g * c / np.sqrt((c * c).mean(-1, keepdims=True) + eps) + b


def _norm_input(kind: str, T: int, d: int, rng: np.random.Generator, sigma: float = 1.0) -> np.ndarray:
    x = sigma * rng.standard_normal((T, d)) + (0.3 if kind != "shift" else 50.0)
    if kind == "outlier":
        ch = rng.choice(d, size=max(1, d // 256), replace=False)
        x[:, ch] = sigma * 10.0 ** rng.uniform(2, 3, size=(T, ch.size)) * rng.choice([-1, 1], size=(T, ch.size))
    return x


def _norm(case: Case, T: int, rng: np.random.Generator, *, fmt: str, d: int, center: bool = True,
          internal: str | None = None, acc: Accum | None = None, slanc: float = 1.0, eps: float = 1e-5,
          fma: bool = False) -> CaseResult:
    t0 = time.perf_counter()
    ms = rounding_model(fmt)
    mi = rounding_model(internal or fmt)
    steps = NormSteps.floating(internal or fmt, acc=acc, out=fmt, rsqrt=func_model(mi), fma=fma)
    x = _norm_input(case.kind, T, d, rng)
    xh = rnd(ms, x / slanc)
    g = rnd(ms, 1 + 0.2 * rng.standard_normal(d))
    b = rnd(ms, 0.1 * rng.standard_normal(d))
    y = emu_norm(xh, center=center, eps=eps, steps=steps, g=g, beta=b, slanc_scale=slanc)
    B = norm_bound(xh, None, center=center, eps=eps, steps=steps, g=g, beta=b, slanc_scale=slanc)
    ref = _ref_norm(xh * slanc, center, eps, g, b)
    return _result(case.op, case.config, case.kind, T, y, ref, B, t0)


def _norm_prop(case: Case, T: int, rng: np.random.Generator, *, fmt: str, d: int, center: bool = True,
               internal: str = "fp32") -> CaseResult:
    """Inputs, gain and bias carry errors; the reference uses exact x, g, beta at box corners."""
    t0 = time.perf_counter()
    ms = rounding_model(fmt)
    mi = rounding_model(internal)
    steps = NormSteps.floating(internal, out=fmt, rsqrt=func_model(mi))
    x = _norm_input("outlier" if case.kind == "prop-outlier" else "random", T, d, rng)
    xh = rnd(ms, x)
    Ex = np.abs(xh - x) + 2e-3 * np.abs(xh)
    xt = xh - Ex * rng.choice([-1.0, 1.0], size=xh.shape)
    g = 1 + 0.2 * rng.standard_normal(d)
    b = 0.1 * rng.standard_normal(d)
    gh, bh = rnd(ms, g), rnd(ms, b)
    y = emu_norm(xh, center=center, eps=1e-5, steps=steps, g=gh, beta=bh)
    B = norm_bound(xh, Ex, center=center, eps=1e-5, steps=steps, g=gh, beta=bh, E_g=np.abs(gh - g),
                   E_beta=np.abs(bh - b))
    return _result(case.op, case.config, case.kind, T, y, _ref_norm(xt, center, 1e-5, g, b), B, t0)


def _norm_fixed(case: Case, T: int, rng: np.random.Generator, *, d: int, center: bool = True,
                in_fmt: str = "s16.8", sigma: float = 1.0) -> CaseResult:
    """Fixed-point integer unit: exact accumulators, q/2 narrowings, the project's exact
    truncating rsqrt (refmodel.numerics.units.rsqrt, error in (-1, 0] LSB)."""
    from ..numerics.units import rsqrt as _rs

    t0 = time.perf_counter()
    fx = FixedFormat.parse(in_fmt)
    rp = _rs.RsqrtParams(v_w=40, k=31)
    var_fmt = FixedFormat(41, 16, signed=False)
    r_fmt = FixedFormat(rp.k + 2, rp.k - 8, signed=False)  # value = y * 2^-(k-8): 2^k/sqrt(t 2^16)
    steps = NormSteps.fixed(acc="s62.24", mean_fmt="s30.12", var_fmt=var_fmt,
                            rsqrt=RoundingModel.measured(1.0, r_fmt), norm_fmt="s20.12", out_fmt="s20.8")

    def rsqrt_fn(t: np.ndarray) -> np.ndarray:
        codes = np.rint(np.ldexp(t, 16)).astype(np.int64)
        return np.ldexp(_rs.rsqrt(codes, rp).astype(np.float64), -(rp.k - 8))

    x = _norm_input(case.kind, T, d, rng, sigma)
    xh = rnd(rounding_model(fx), x)
    g = rnd(rounding_model("s16.12"), 1 + 0.2 * rng.standard_normal(d))
    b = rnd(rounding_model("s16.12"), 0.1 * rng.standard_normal(d))
    y = emu_norm(xh, center=center, eps=1e-5, steps=steps, g=g, beta=b, rsqrt_fn=rsqrt_fn)
    B = norm_bound(xh, None, center=center, eps=1e-5, steps=steps, g=g, beta=b)
    return _result(case.op, case.config, case.kind, T, y, _ref_norm(xh, center, 1e-5, g, b), B, t0)


def _act(case: Case, T: int, rng: np.random.Generator, *, fn: str, fmt: str, n: int = 256) -> CaseResult:
    """phi(x): x_hat = fl(x) with its error bound, x at the corner that the slope amplifies."""
    t0 = time.perf_counter()
    m = rounding_model(fmt)
    x = 3 * rng.standard_normal((T, n))
    if case.kind == "outlier":
        x[:, :4] = rng.uniform(-60, 60, (T, 4))
    xh = rnd(m, x)
    Ex = m.err(np.abs(xh)) / (1 - m.rel)
    slope = np.sign(activation(fn, xh + 1e-6) - activation(fn, xh - 1e-6))
    xt = xh + Ex * slope
    unit = func_model(m)
    y = rnd(unit, activation(fn, xh))
    B = activation_bound(xh, Ex, fn=fn, unit=unit)
    return _result(case.op, case.config, case.kind, T, y, activation(fn, xt), B, t0)


def _act_fixed(case: Case, T: int, rng: np.random.Generator, *, fn: str, in_fmt: str = "s16.12",
               out_fmt: str = "s16.8") -> CaseResult:
    """The project's full-table activation unit with its exhaustively measured error."""
    from ..numerics.units import activation as _au

    t0 = time.perf_counter()
    fi = FixedFormat.parse(in_fmt)
    p = _au.ActParams(fn, fi, FixedFormat.parse(out_fmt))
    table = _au.act_table(fn, p.in_fmt, p.out_fmt)
    # exhaustive measurement of the table against our own float64 phi (every input code)
    codes_all = np.arange(fi.min_code, fi.max_code + 1, dtype=np.int64)
    vals = _au.act_lookup(codes_all, table, p).astype(np.float64)
    err_lsb = float(np.max(np.abs(vals - np.ldexp(activation(fn, np.ldexp(codes_all.astype(np.float64), -fi.frac)),
                                                   p.out_fmt.frac))))
    unit = RoundingModel.measured(err_lsb + 1e-9, p.out_fmt)
    x = np.clip(2.5 * rng.standard_normal((T, 256)), fi.min + 0.01, fi.max - 0.01)
    q = rounding_model(fi)
    xh = rnd(q, x)
    Ex = np.full_like(xh, fi.lsb / 2)
    xt = xh + Ex * rng.choice([-1.0, 1.0], size=xh.shape)
    codes = np.rint(np.ldexp(xh, fi.frac)).astype(np.int64)
    y = np.ldexp(_au.act_lookup(codes, table, p).astype(np.float64), -p.out_fmt.frac)
    B = activation_bound(xh, Ex, fn=fn, unit=unit)
    return _result(case.op, case.config + f" table_err={err_lsb:.3f}LSB", case.kind, T, y, activation(fn, xt), B, t0)


def _elementwise(case: Case, T: int, rng: np.random.Generator, *, eop: str, fmt: str, out: str | None = None,
                 n: int = 256) -> CaseResult:
    t0 = time.perf_counter()
    m = rounding_model(fmt)
    o = rounding_model(out or fmt)
    a = 3 * rng.standard_normal((T, n))
    b = 3 * rng.standard_normal((T, n))
    if case.kind == "outlier":
        a[:, :2] *= 1e3
    ah, bh = rnd(m, a), rnd(m, b)
    Ea = m.err(np.abs(ah)) / (1 - m.rel)
    Eb = m.err(np.abs(bh)) / (1 - m.rel)
    sa = rng.choice([-1.0, 1.0], size=a.shape)
    sb = rng.choice([-1.0, 1.0], size=a.shape)
    at, bt = ah + Ea * sa, bh + Eb * sb
    op = eop
    if op == "mul":
        y = mul_rnd(o, ah, bh)
        B = mul_bound(ah, bh, E_a=Ea, E_b=Eb, out=o)
        ref = at * bt
    elif op == "add":
        y = add_rnd(o, ah, bh)
        B = add_bound(ah, bh, E_a=Ea, E_b=Eb, out=o)
        ref = at + bt
    elif op == "cast":
        y = rnd(o, ah)
        B = cast_bound(ah, Ea, out=o)
        ref = at
    elif op == "scale":
        c = 1 / math.sqrt(48)
        ch = float(rnd(m, np.float64(c)))
        y = mul_rnd(o, ah, ch)
        B = scale_bound(ah, Ea, c=c, c_hat=ch, out=o)
        ref = c * at
    elif op == "swiglu":
        from .elementwise import activation as act

        unit = func_model(m)
        s_h = rnd(unit, act("silu", ah))
        Bs = activation_bound(ah, Ea, fn="silu", unit=unit)
        y = mul_rnd(o, s_h, bh)
        B = mul_bound(s_h, bh, E_a=Bs, E_b=Eb, out=o)
        slope = np.sign(act("silu", ah + 1e-6) - act("silu", ah - 1e-6))
        ref = act("silu", ah + Ea * slope) * bt
    else:
        raise ValueError(op)
    return _result(case.op, case.config, case.kind, T, y, ref, B, t0)


def _rope(case: Case, T: int, rng: np.random.Generator, *, fmt: str, const: str | None, hd: int = 64,
          layout: str = "half") -> CaseResult:
    """RoPE of x_hat = fl(x) (x at a corner of its error box), tables rounded into ``const``."""
    from .elementwise import rope_angles, rope_bound
    from .emulate import two_prod, two_sum

    t0 = time.perf_counter()
    m = rounding_model(fmt)
    cm = rounding_model(const) if const else EXACT
    S = 32
    pos = np.arange(S) * 37 + rng.integers(0, 1000)
    x = 3 * rng.standard_normal((T, S, hd))
    xh = rnd(m, x)
    Ex = m.err(np.abs(xh)) / (1 - m.rel)
    xt = xh + Ex * rng.choice([-1.0, 1.0], size=x.shape)
    ang = rope_angles(pos, hd, 10000.0)
    c, sn = np.cos(ang), np.sin(ang)
    ch, sh = rnd(cm, c), rnd(cm, sn)
    ia, ib = (np.arange(hd // 2), np.arange(hd // 2, hd)) if layout == "half" else (np.arange(0, hd, 2), np.arange(1, hd, 2))
    y = np.empty_like(xh)
    ref = np.empty_like(xh)
    for (u_, v_, sign, dst) in ((xh[..., ia], xh[..., ib], -1.0, ia), (xh[..., ib], xh[..., ia], 1.0, ib)):
        p1, e1 = two_prod(u_, ch)
        p2, e2 = two_prod(v_, sign * sh)
        s_, e_ = two_sum(p1, p2)
        y[..., dst] = rnd(m, s_, e_ + e1 + e2)
    ref[..., ia] = xt[..., ia] * c - xt[..., ib] * sn
    ref[..., ib] = xt[..., ib] * c + xt[..., ia] * sn
    B = rope_bound(xh, Ex, positions=pos, base=10000.0, out=m, layout=layout, const=cm)
    return _result(case.op, case.config, case.kind, T, y, ref, B, t0)


def _mix(case: Case, T: int, rng: np.random.Generator, *, fmt: str, S: int, dh: int = 16, acc: str = "fp32") -> CaseResult:
    """Attention P V with P from the emulated softmax (its bound as E_p) and V = fl(V_exact)."""
    t0 = time.perf_counter()
    m = rounding_model(fmt)
    logits, _ = _softmax_logits("sink" if case.kind == "sink" else "random", T * 4, S, rng)
    lh = rnd(m, logits)
    sm_steps = SoftmaxSteps.floating(fmt, acc=Accum.sequential(acc), exp=func_model(m))
    P = emu_softmax(lh, steps=sm_steps).reshape(T, 4, S)
    Bp = softmax_bound(lh, steps=sm_steps)
    Ep = Bound(Bp.rig.reshape(T, 4, S), Bp.stat.reshape(T, 4, S))
    V = rng.standard_normal((T, S, dh))
    Vh = rnd(m, V)
    accm = Accum.sequential(acc)
    y = emu_matmul(P, Vh, accum=accm, products=EXACT, out=m)
    B = attention_mix_bound(P, Vh, E_p=Ep, E_v=np.abs(Vh - V), accum=accm, out=m)
    ref = _exact_matmul(_ref_softmax(lh).reshape(T, 4, S), V)
    return _result(case.op, case.config, case.kind, T, y, ref, B, t0)


def _c(op_name: str, config: str, kind: str, trials: int, runner: Callable[..., CaseResult], expect_nog: bool = False,
       stat_tight: bool = True, **kw: Any) -> Case:
    return Case(op_name, config, kind, trials, runner, kw, expect_nog, stat_tight)


S = Accum.sequential
CASES: list[Case] = [
    # ---- matmul / linear ----
    _c("matmul", "fp16 in, seq fp16, out fp16, K=256", "random", 60, _mm, fin="fp16", K=256, accum=S("fp16"), out="fp16"),
    _c("matmul", "fp16 in, seq fp32, out fp32, K=1024", "random", 40, _mm, fin="fp16", K=1024, accum=S("fp32"), out="fp32"),
    _c("matmul", "bf16 in, blocked:fp32:32, out fp32, K=2048", "long", 30, _mm, fin="bf16", K=2048,
       accum=Accum.from_policy("blocked:fp32:32"), out="fp32"),
    _c("matmul", "bf16 in, seq bf16, out bf16, K=128", "random", 60, _mm, fin="bf16", K=128, accum=S("bf16"), out="bf16"),
    _c("matmul", "fp32 in, seq fp32, out fp32, K=512", "random", 40, _mm, fin="fp32", K=512, accum=S("fp32"), out="fp32"),
    _c("matmul", "fp16 in, blk16 in-block fp32, acc fp16, K=512", "random", 40, _mm, fin="fp16", K=512,
       accum=Accum.blocked("fp16", 16, inner="fp32"), out="fp16"),
    _c("matmul", "e4m3fn in, exact, out e4m3fn:sat, K=512", "random", 60, _mm, fin="e4m3fn", K=512, accum=Accum.exact(),
       out="e4m3fn:sat"),
    _c("matmul", "e4m3fn in, exact, out bf16, K=512", "outlier", 60, _mm, fin="e4m3fn", K=512, accum=Accum.exact(), out="bf16",
       fix_scale=0.1),
    _c("matmul", "fp16 in, seq fp32 + bias in acc, out fp16, K=768", "outlier", 40, _mm, fin="fp16", K=768, accum=S("fp32"),
       out="fp16", bias=True, bias_in_acc=True, fix_scale=0.05),
    _c("matmul", "fp16 in, seq fp16, out fp16, K=512", "positive", 40, _mm, fin="fp16", K=512, accum=S("fp16"), out="fp16",
       fix_scale=0.1),
    _c("matmul", "fp16 in, seq fp32, out fp32, K=512", "cancel", 40, _mm, fin="fp16", K=512, accum=S("fp32"), out="fp32"),
    _c("matmul", "bf16 in, seq bf16 stochastic, out bf16, K=64", "random", 60, _mm, fin="bf16", K=64,
       accum=S("bf16", "stochastic"), out="bf16", rounding="stochastic"),
    _c("matmul", "bf16 in, seq bf16, out bf16, K=512 (gamma vacuous)", "random", 30, _mm, fin="bf16", K=512,
       accum=S("bf16"), out="bf16", expect_nog=True),
    _c("matmul", "fp16 in, seq fp16 rtz, out fp16 rtz, K=256", "random", 40, _mm, fin="fp16", K=256, accum=S("fp16", "rtz"),
       out="fp16", rounding="rtz", stat_tight=False),
    _c("matmul", "fp16 in, products rounded fp16, seq fp32, K=512", "random", 40, _mm, fin="fp16", K=512, accum=S("fp32"),
       out="fp32", products="fp16"),
    _c("matmul", "s16.8 in, acc:s48:wrap, out s16.8 rne, K=512", "random", 60, _mm, fin="s16.8", K=512,
       accum=Accum.from_policy("acc:s48:wrap", product_frac=16), out="s16.8"),
    _c("matmul", "s8.4 in, acc:s24:sat, out s8.4 half_up", "outlier", 60, _mm, fin="s8.4", K=256,
       accum=Accum.from_policy("acc:s24:sat", product_frac=8), out="s8.4", rounding="half_up", fix_scale=0.02),
    _c("matmul", "s8.4 in, acc:s16:sat (may overflow), out s8.4", "positive", 60, _mm, fin="s8.4", K=256,
       accum=Accum.from_policy("acc:s16:sat", product_frac=8), out="s8.4", fix_scale=4.0, expect_nog=True),
    _c("linear", "x fp16, W bf16 (ref: unquantised W), seq fp32, out fp16", "prop", 40, _linear_prop, fin="fp16", fw="bf16",
       K=512, accum=S("fp32"), out="fp16"),
    _c("logits", "q,k fp16, seq fp32 -> fp16, * fl(1/sqrt 48)", "random", 40, _logits, fmt="fp16", dh=48, S=64,
       accum=S("fp32"), scale_exact=False),
    _c("attn_mix", "P fp16 (softmax bound as E_p), V bf16->fp16, S=512", "sink", 30, _mix, fmt="fp16", S=512),
    _c("attn_mix", "P bf16 (softmax bound as E_p), V fp32->bf16, S=256", "prop", 30, _mix, fmt="bf16", S=256),
    # ---- norms ----
    _c("layernorm", "fp16 io, fp32 internal, d=768", "random", 200, _norm, fmt="fp16", d=768, internal="fp32"),
    _c("layernorm", "fp16 all steps, d=256, SLaNC s=64", "outlier", 200, _norm, fmt="fp16", d=256, slanc=64.0),
    _c("layernorm", "fp16 all steps, d=256", "random", 200, _norm, fmt="fp16", d=256),
    _c("layernorm", "bf16 io, fp32 internal, d=1024", "outlier", 200, _norm, fmt="bf16", d=1024, internal="fp32"),
    _c("layernorm", "bf16 all steps, blk8 fp32 rb, d=128", "random", 200, _norm, fmt="bf16", d=128,
       acc=Accum.from_policy("blocked:fp32:8")),
    _c("layernorm", "fp32 all steps, d=2048, fma out", "long", 100, _norm, fmt="fp32", d=2048, fma=True),
    _c("layernorm", "fp16 io, fp32 internal, d=512 (mean 50)", "shift", 200, _norm, fmt="fp16", d=512, internal="fp32"),
    _c("rmsnorm", "fp16 all steps, d=256, SLaNC s=64", "outlier", 200, _norm, fmt="fp16", d=256, center=False, slanc=64.0),
    _c("rmsnorm", "fp16 io, fp32 internal, d=2048", "long", 100, _norm, fmt="fp16", d=2048, center=False, internal="fp32"),
    _c("rmsnorm", "bf16 all steps, d=64", "random", 200, _norm, fmt="bf16", d=64, center=False),
    _c("rmsnorm", "bf16 all steps, d=256 (gamma vacuous)", "random", 100, _norm, fmt="bf16", d=256, center=False,
       expect_nog=True),
    _c("layernorm", "fp16 all steps, d=256, no SLaNC (sum of squares overflows)", "outlier", 100, _norm, fmt="fp16",
       d=256, expect_nog=True),
    _c("layernorm", "x,g,b fp16 with errors, fp32 internal, d=256", "prop-outlier", 200, _norm_prop, fmt="fp16", d=256),
    _c("rmsnorm", "x,g fp16 with errors, fp32 internal, d=256", "prop", 200, _norm_prop, fmt="fp16", d=256, center=False),
    _c("layernorm", "fixed s16.8 in, exact acc, rsqrt unit, out s20.8, d=256", "random", 200, _norm_fixed, d=256),
    _c("layernorm", "fixed s16.8 in (bg sigma 0.1), d=256", "outlier", 200, _norm_fixed, d=256, sigma=0.1),
    _c("rmsnorm", "fixed s16.8 in, d=128", "random", 200, _norm_fixed, d=128, center=False),
    # ---- softmax ----
    _c("softmax", "fp16, shifted, acc fp32, n=2048", "long", 60, _softmax, fmt="fp16", n=2048, acc="fp32"),
    _c("softmax", "fp16, shifted, acc fp16, n=256", "random", 200, _softmax, fmt="fp16", n=256),
    _c("softmax", "bf16, shifted, acc bf16, n=64", "random", 200, _softmax, fmt="bf16", n=64),
    _c("softmax", "fp16, UNshifted, acc fp32, n=64 (exp overflows)", "wide", 100, _softmax, fmt="fp16", n=64, acc="fp32",
       shifted=False, expect_nog=True),
    _c("softmax", "bf16, shifted, acc fp32, n=512", "sink", 200, _softmax, fmt="bf16", n=512, acc="fp32"),
    _c("softmax", "fp16, shifted, acc fp32, n=256", "tie", 200, _softmax, fmt="fp16", n=256, acc="fp32"),
    _c("softmax", "fp16, shifted, acc fp32, n=512", "masked", 200, _softmax, fmt="fp16", n=512, acc="fp32"),
    _c("softmax", "fp32, shifted, acc fp32, n=1024, exp arg reduction", "wide", 100, _softmax, fmt="fp32", n=1024, arg=True),
    _c("softmax", "fp32, UNshifted, acc fp32, n=256, exp arg reduction", "random", 200, _softmax, fmt="fp32", n=256,
       shifted=False, arg=True),
    _c("softmax", "fp16, shifted, reciprocal normalize, n=256", "random", 200, _softmax, fmt="fp16", n=256, acc="fp32",
       normalize="reciprocal"),
    _c("softmax", "fp16 logits with errors, acc fp32, n=512", "prop", 100, _softmax_prop, fmt="fp16", n=512, acc="fp32"),
    _c("softmax", "bf16 logits with errors, acc fp32, n=256", "prop-sink", 100, _softmax_prop, fmt="bf16", n=256, acc="fp32"),
    _c("softmax", "fixed unit s16.8 -> UQ0.8, n=64", "random", 200, _softmax_fixed, n=64),
    _c("softmax", "fixed unit s16.8 -> UQ1.12, n=256", "sink", 200, _softmax_fixed, n=256, out_w=13, out_f=12, lut_bits=8,
       guard=6, exp_rel=True),
    _c("softmax", "fixed unit s16.8 -> UQ1.12, n=256", "masked", 200, _softmax_fixed, n=256, out_w=13, out_f=12, lut_bits=8,
       guard=6, exp_rel=True),
    _c("softmax", "fixed unit s16.8 -> UQ0.8, n=64", "tie", 200, _softmax_fixed, n=64),
    # ---- elementwise ----
    _c("gelu", "gelu_erf fp16 unit, x fp16 with errors", "prop", 100, _act, fn="gelu_erf", fmt="fp16"),
    _c("gelu", "gelu_tanh bf16 unit, x bf16 with errors", "prop", 100, _act, fn="gelu_tanh", fmt="bf16"),
    _c("silu", "silu fp16 unit, x fp16 with errors", "outlier", 100, _act, fn="silu", fmt="fp16"),
    _c("gelu", "gelu_tanh table s16.12 -> s16.8", "prop", 100, _act_fixed, fn="gelu_tanh"),
    _c("silu", "silu table s16.12 -> s16.8", "prop", 100, _act_fixed, fn="silu"),
    _c("swiglu", "silu(a) * b, fp16", "prop", 100, _elementwise, eop="swiglu", fmt="fp16"),
    _c("mul", "fp16 * fp16 -> fp16", "prop", 100, _elementwise, eop="mul", fmt="fp16"),
    _c("add", "residual bf16 + bf16 -> bf16", "prop", 100, _elementwise, eop="add", fmt="bf16"),
    _c("cast", "fp16 -> e4m3fn:sat", "outlier", 100, _elementwise, eop="cast", fmt="fp16", out="e4m3fn:sat"),
    _c("cast", "fp16 -> s16.8", "prop", 100, _elementwise, eop="cast", fmt="fp16", out="s16.8"),
    _c("scale", "fp16 * fl(1/sqrt 48)", "prop", 100, _elementwise, eop="scale", fmt="fp16"),
    _c("rope", "x fp16 with errors, float64 tables, out fp16, half", "prop", 50, _rope, fmt="fp16", const=None),
    _c("rope", "x bf16 with errors, bf16 tables, out bf16, pairs", "prop", 50, _rope, fmt="bf16", const="bf16",
       layout="pairs"),
]


def run_cases(scale: float = 1.0, cases: list[Case] | None = None, seed: int = 0) -> list[CaseResult]:
    """Run ``cases`` (default :data:`CASES`) with trial counts multiplied by ``scale``."""
    return [c.run(scale, seed) for c in (CASES if cases is None else cases)]


def summarize(results: list[CaseResult]) -> dict[str, Any]:
    """Totals: trials, components, violations per tier, seconds."""
    return {
        "cases": len(results),
        "trials": sum(r.trials for r in results),
        "components": sum(r.components for r in results),
        "viol_rig": sum(r.viol_rig for r in results),
        "viol_stat": sum(r.viol_stat for r in results),
        "no_guarantee": sum(r.no_guarantee for r in results),
        "seconds": sum(r.seconds for r in results),
    }


def _f(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3g}"


def markdown_table(results: list[CaseResult]) -> str:
    """Tightness table: one row per case (max and median over trials of max_i observed/bound)."""
    lines = ["| op | configuration | inputs | trials | rig viol | stat viol | rig max | rig median | stat max | "
             "stat median | no-guar. comps |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.op} | {r.config} | {r.kind} | {r.trials} | {r.viol_rig} | {r.viol_stat} | {_f(r.max_rig)} | "
                     f"{_f(r.med_rig)} | {_f(r.max_stat)} | {_f(r.med_stat)} | {r.no_guarantee} |")
    return "\n".join(lines)


def op_summary_markdown(results: list[CaseResult]) -> str:
    """Per op: trials, violations, and max / median over trials of max_i observed/bound, for all
    inputs and for the random ones (``random``, ``long``), both tiers."""
    lines = ["| op | trials | rig viol | rig max | rig median | stat max | stat median | random: rig max | "
             "random: stat max | random: stat median |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for op in dict.fromkeys(r.op for r in results):
        rs = [r for r in results if r.op == op]
        rr = np.concatenate([r.ratio_rig for r in rs])
        st = np.concatenate([r.ratio_stat for r in rs])
        rand = [r for r in rs if r.kind in RANDOM_KINDS]
        rr_r = np.concatenate([r.ratio_rig for r in rand]) if rand else np.array([np.nan])
        st_r = np.concatenate([r.ratio_stat for r in rand]) if rand else np.array([np.nan])

        def mx(a: np.ndarray) -> str:
            a = a[np.isfinite(a)]
            return _f(float(a.max())) if a.size else "n/a"

        def md(a: np.ndarray) -> str:
            a = a[np.isfinite(a)]
            return _f(float(np.median(a))) if a.size else "n/a"

        lines.append(f"| {op} | {sum(r.trials for r in rs)} | {sum(r.viol_rig for r in rs)} | {mx(rr)} | {md(rr)} | "
                     f"{mx(st)} | {md(st)} | {mx(rr_r)} | {mx(st_r)} | {md(st_r)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    scale = float(argv[0]) if argv else 1.0
    seed = int(argv[1]) if len(argv) > 1 else 0
    res = run_cases(scale, seed=seed)
    print(markdown_table(res))
    print()
    print(op_summary_markdown(res))
    print()
    print(summarize(res))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
