"""``refmodel study norms``: LayerNorm vs RMSNorm in the massive-outlier regime.

Inputs, per model (real and random weights): the rows of the model's layer-0 input (token
embeddings: no massive activations yet), each with one outlier channel set to ``M`` times the
row's RMS, ``M`` in 0 (none), 1e2, 1e3, 1e4; the channel is the one that carries the real model's
largest activation in its last layer. Both norms run on the same rows with the same gain (the
gain of the norm SLaNC scales from weights: layer 1's first norm for SmolLM2, layer 0's
post-attention norm for MiniLM; no beta: the norms are compared as normalisers), so only the norm
differs.

Measured per norm and ``M``:

* condition numbers (float64, exact Jacobian with eps): the mixed ``||(|J||x|)||_inf / ||y||_inf``
  (max over rows) and the componentwise ``(|J||x|)_i / |y_i|`` (median over background entries,
  max over all entries);
* forward error of the product's norm op (:class:`refmodel.layer.quantized.QuantOps`, the same
  arithmetic as every plan) against float64 on the same stored inputs (its own rounding), for
  fp16 storage with fp16 accumulation (SLaNC on: nothing overflows), fp16 with fp32 accumulation,
  bf16 with fp32 accumulation: componentwise relative error on the background entries (median),
  and on the outlier;
* fp16 overflow: rows whose sum of squares overflows fp16 (the norm then outputs zeros, plus
  beta), without SLaNC and with the model's static SLaNC scale for that norm
  (``refmodel.layer.slanc``). The fp16-accumulation error runs divide the input by the smallest
  power of two that keeps the sum of squares below a quarter of fp16's max
  (:func:`overflow_free_scale`), so that they measure rounding, not overflow.

The analysis (stability.md 3.2-3.4) says: LayerNorm's background entries lose accuracy through
the rounding error of the mean, an absolute error shared by every entry; RMSNorm has no
subtraction, its componentwise condition number is at most 2 and its error does not grow with
``M``. Two refinements the measurements force (both in the report): with one outlier the mean is
about ``M rms / d``, so a centred background entry is about ``-mean`` (not small): its relative error
is the relative error of the computed mean, and its condition number is O(1) unless the entry
sits near the mean (then unbounded); and in fp16 accumulation a term below half an ulp of the
running sum is lost whole (swamping), so the mean's error stops growing in proportion to ``M``.
:func:`predict_background_error` turns the mechanism into numbers before the measurement, with
that rounding model of a sequential sum (swamped terms lost, every other rounding an independent
error uniform within half an ulp, exact partial sums); the claims compare the measurement with it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..layer.qtensor import store
from ..layer.quantized import quantize_weight
from ..numerics.minifloat import FloatFormat
from .models import StudyModel
from .ops import op_backend, op_plan
from .options import Progress, StudyOptions, each_model
from .plots import COLORS, log_safe, model_panels
from .report import Claim, Figure, Report, Table, png_bytes

__all__ = ["OUTLIERS", "ARITHMETICS", "outlier_rows", "condition_numbers", "norm_forward", "predict_background_error",
           "steps", "run"]

#: outlier size M, in units of the row's RMS (0 = no outlier)
OUTLIERS = (0.0, 1e2, 1e3, 1e4)
#: (label, storage format, accumulation policy, SLaNC on)
ARITHMETICS = (("fp16, fp16 acc, SLaNC", "fp16", "sequential:fp16", True),
               ("fp16, fp32 acc", "fp16", "sequential:fp32", False),
               ("bf16, fp32 acc", "bf16", "sequential:fp32", False))
#: median of |N(0, 1)|
_MEDIAN_ABS_NORMAL = 0.6745
_KINDS = ("layernorm", "rmsnorm")


def steps(opts: StudyOptions) -> int:
    return len(opts.models) * (1 + 2 * len(OUTLIERS))


def outlier_rows(x: np.ndarray, channel: int, m: float) -> np.ndarray:
    """``x`` with ``x[:, channel] = m * RMS(row)`` (unchanged for m = 0)."""
    out = np.array(x, dtype=np.float64)
    if m:
        out[:, channel] = m * np.sqrt(np.mean(x * x, axis=1))
    return out


def _norm64(x: np.ndarray, g: np.ndarray, b: np.ndarray | None, kind: str, eps: float) -> tuple[np.ndarray, ...]:
    c = x - x.mean(axis=1, keepdims=True) if kind == "layernorm" else x
    r = np.sqrt(np.mean(c * c, axis=1, keepdims=True) + eps)
    y = c / r * g + (0.0 if b is None else b)
    return y, c, r


def condition_numbers(x: np.ndarray, g: np.ndarray, b: np.ndarray | None, kind: str, eps: float,
                      background: np.ndarray) -> dict[str, float]:
    """Mixed and componentwise relative condition numbers of ``y = norm(x) g + b`` in ``x``
    (exact Jacobian with eps, float64): ``mixed`` = max over rows of ``||(|J||x|)||_inf /
    ||y||_inf``; ``bg_median`` = median of ``(|J||x|)_i / |y_i|`` over the ``background`` entries;
    ``max`` = its max over all entries."""
    d = x.shape[1]
    y, c, r = _norm64(x, g, b, kind, eps)
    mixed, comp = [], []
    for row in range(x.shape[0]):
        ci, ri = c[row], float(r[row, 0])
        J = (np.eye(d) - (1.0 / d if kind == "layernorm" else 0.0)) / ri - np.outer(ci, ci) / (d * ri**3)
        J *= g[:, None]
        jx = np.abs(J) @ np.abs(x[row])
        mixed.append(float(np.max(jx) / np.max(np.abs(y[row]))))
        with np.errstate(divide="ignore", invalid="ignore"):
            comp.append(np.where(y[row] != 0, jx / np.abs(y[row]), np.nan))
    comp_a = np.array(comp)
    bg = background & np.isfinite(comp_a)
    return {"mixed": float(max(mixed)), "bg_median": float(np.median(comp_a[bg])),
            "max": float(np.nanmax(comp_a))}


def norm_forward(x: np.ndarray, g: np.ndarray, b: np.ndarray | None, *, kind: str, eps: float, fmt: str, acc: str,
                 scale: float = 1.0) -> dict[str, Any]:
    """The product's norm op (:meth:`QuantOps.norm`, float plan) on ``x`` stored in ``fmt`` with
    internal sums under ``acc``, input divided by ``scale`` (SLaNC). Returns the output ``y``,
    the stored inputs (``x``, ``g``, ``b``: the float64 reference takes these) and
    ``overflow_rows`` (rows whose sum of squares was not finite)."""
    plan = op_plan({"x": (fmt, "exact"), "ln1": (fmt, acc)}, {"ln1_g": fmt, "ln1_b": fmt})
    ops = op_backend(plan, d=x.shape[1], rows=x.shape[0])
    xq = store(x, fmt)
    gq = quantize_weight(plan, "ln1_g", g)
    bq = quantize_weight(plan, "ln1_b", b) if b is not None else None
    with np.errstate(over="ignore", invalid="ignore"):
        y = ops.norm("ln1", xq, gq, bq, kind=kind, eps=eps, scale=scale)
    return {"y": y.values, "x": xq.values, "g": gq.values, "b": None if bq is None else bq.values,
            "overflow_rows": int(ops.stats["ln1"].get("internal_overflow", 0))}


def _half_ulp(v: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Half the spacing of ``fmt`` at ``|v|`` (subnormal spacing below the normal range)."""
    a = np.abs(np.asarray(v, dtype=np.float64))
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    e = np.maximum(e, fmt.emin)
    return np.ldexp(1.0, (e - fmt.man - 1).astype(np.int64))


def _seq_sum_error(terms: np.ndarray, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) of the rounding error of a sequential sum over the last axis in ``fmt``
    (exact partial sums S_k): a term below half an ulp of the running sum is lost (error -t_k:
    swamping, deterministic); otherwise the add rounds within half an ulp of S_k, uniformly."""
    ps = np.cumsum(terms, axis=-1)
    prev = np.concatenate([np.zeros(ps.shape[:-1] + (1,)), ps[..., :-1]], axis=-1)
    swamped = np.abs(terms) < np.where(prev != 0, _half_ulp(prev, fmt), 0.0)
    mean = -np.sum(np.where(swamped, terms, 0.0), axis=-1)
    var = np.sum(np.where(swamped, 0.0, _half_ulp(ps, fmt) ** 2), axis=-1) / 3.0
    return mean, var


def predict_background_error(x: np.ndarray, g: np.ndarray, *, kind: str, eps: float, work: str, store_fmt: str,
                             background: np.ndarray) -> float:
    """Predicted median componentwise relative error of ``norm(x) * g`` on the ``background``
    entries for the norm op of :func:`norm_forward` (``x`` already divided by the SLaNC scale),
    from the rounding model of the analysis applied to the op's steps (refmodel.layer.quantized:
    mean = round(sum / d), c = round(x - mean), V = sequential sum of c^2, var = round(V / d),
    ve = round(var + eps), r = round(1/sqrt(ve)), n = round(c r), y = round(n g), then one more
    rounding into the storage format when it differs from the work format): sequential sums follow
    :func:`_seq_sum_error` (swamped terms lost, others uniform within half an ulp); a row-shared
    error of the mean (LayerNorm) and of r (half the relative error of V, var and ve) plus each
    entry's own roundings. Entry i's
    error is about ``sqrt(a_i^2 + (0.674 sigma_i)^2)`` (deterministic part a_i, random sigma_i);
    the prediction is its median over the background entries."""
    W = FloatFormat.parse(work)
    S = FloatFormat.parse(store_fmt)
    d = x.shape[1]
    y, c, r = _norm64(x, g, None, kind, eps)
    n = c / r
    a = np.zeros_like(x)
    var = np.zeros_like(x)

    def rel_var(v: np.ndarray, fmt: FloatFormat) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(v != 0, (_half_ulp(v, fmt) / np.abs(v)) ** 2 / 3.0, 0.0)

    tiny = np.abs(x) < W.min_normal  # x / s is stored in W: exact unless subnormal
    var += np.where(tiny, rel_var(x, W), 0.0)
    if kind == "layernorm":
        m_sum, v_sum = _seq_sum_error(x, W)
        mu = x.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            a -= (m_sum[:, None] / d) / c
            var += (v_sum[:, None] / d**2 + _half_ulp(mu, W) ** 2 / 3.0) / (c * c) + rel_var(c, W)
    V = np.sum(c * c, axis=1, keepdims=True)
    m_V, v_V = _seq_sum_error(c * c, W)  # its last add is the rounding of V itself
    a += -0.5 * m_V[:, None] / V
    var_d = V / d
    var += v_V[:, None] / (4.0 * V * V) + (rel_var(var_d, W) + rel_var(var_d + eps, W)) / 4.0 + rel_var(r, W)
    var += rel_var(n, W) + rel_var(n * g, W)
    if S != W:  # the output is rounded once more into the storage format
        var += rel_var(y, S)
    pred = np.sqrt(a * a + (_MEDIAN_ABS_NORMAL**2) * var)
    ok = background & np.isfinite(pred) & (y != 0)
    return float(np.median(pred[ok]))


def _errors(out: dict[str, Any], kind: str, eps: float, background: np.ndarray, channel: int) -> dict[str, float]:
    ref, _, _ = _norm64(out["x"], out["g"], out["b"], kind, eps)
    y = out["y"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(y - ref) / np.abs(ref)
    ok = np.isfinite(y).all(axis=1)
    bg = background & ok[:, None] & (ref != 0)
    return {"bg_median": float(np.median(rel[bg])) if bg.any() else float("nan"),
            "outlier": float(np.max(rel[ok, channel])) if ok.any() else float("nan"),
            "normwise": float(np.max(np.abs(y[ok] - ref[ok])) / np.max(np.abs(ref[ok]))) if ok.any() else float("nan")}


def _site(sm: StudyModel) -> tuple[np.ndarray, np.ndarray | None, float, int, float]:
    """(gain, beta, eps, outlier channel, static SLaNC scale) of the norm the study uses: a
    pre-norm model's layer-1 first norm (the first norm whose SLaNC scale comes from weights: the
    MLP formula of layer 0), bert's layer-0 first norm (after attention: the attention formula with
    the embedding LayerNorm's gain). The outlier channel carries the model's largest activation
    after its last layer."""
    from ..layer.model import reference_forward

    cfg = sm.weights.config
    li = 1 if cfg.prenorm and sm.weights.n_layers > 1 else 0
    w = sm.weights.layers[li]
    g = w["ln1_g"]
    b = w["ln1_b"] if "ln1_b" in w else None
    last = reference_forward(sm.weights, sm.x)[-1]["out"]
    channel = int(np.argmax(np.max(np.abs(last), axis=0)))
    s = sm.weights.static_slanc(pow2=True)[li].scale("ln1")
    return g, b, float(cfg.eps), channel, s


def overflow_free_scale(x: np.ndarray, kind: str, fmt: str = "fp16") -> float:
    """The smallest power of two ``s >= 1`` that keeps every row's sum of squares (centred for
    LayerNorm) of ``x / s`` below a quarter of ``fmt``'s max (a SLaNC-like shift chosen from the
    data, so that the error measurement sees no overflow and no needless underflow)."""
    c = x - x.mean(axis=1, keepdims=True) if kind == "layernorm" else x
    ss = float(np.max(np.sum(c * c, axis=1)))
    lim = FloatFormat.parse(fmt).max / 4
    return 1.0 if ss <= lim else 2.0 ** math.ceil(0.5 * math.log2(ss / lim))


def _one_model(sm: StudyModel, progress: Progress) -> list[dict[str, Any]]:
    g, _, eps, channel, s_static = _site(sm)
    rows = []
    bgmask = np.ones_like(sm.x, dtype=bool)
    bgmask[:, channel] = False
    for m in OUTLIERS:
        x = outlier_rows(sm.x, channel, m)
        for kind in _KINDS:
            bk = None  # the norms compared as normalisers (LayerNorm's beta is an add after them)
            row: dict[str, Any] = {"model": sm.label, "norm": kind, "M": m, "channel": channel}
            cn = condition_numbers(x, g, bk, kind, eps, bgmask)
            row.update({"cond_mixed": cn["mixed"], "cond_bg_median": cn["bg_median"], "cond_max": cn["max"]})
            for label, fmt, acc, slanc in ARITHMETICS:
                scale = overflow_free_scale(x, kind, fmt) if slanc else 1.0
                out = norm_forward(x, g, bk, kind=kind, eps=eps, fmt=fmt, acc=acc, scale=scale)
                e = _errors(out, kind, eps, bgmask, channel)
                work = acc.split(":")[1]
                pred = predict_background_error(out["x"] / scale, out["g"], kind=kind, eps=eps / scale**2, work=work,
                                                store_fmt=fmt, background=bgmask)
                row[label] = {**e, "predicted_bg": pred, "overflow_rows": out["overflow_rows"]}
            # fp16 overflow of the sum of squares: without SLaNC, with the model's static SLaNC scale
            row["fp16_overflow_off"] = norm_forward(x, g, bk, kind=kind, eps=eps, fmt="fp16",
                                                    acc="sequential:fp16")["overflow_rows"]
            row["fp16_overflow_slanc"] = norm_forward(x, g, bk, kind=kind, eps=eps, fmt="fp16", acc="sequential:fp16",
                                                      scale=s_static)["overflow_rows"]
            row["slanc_scale"] = s_static
            c = x - x.mean(axis=1, keepdims=True) if kind == "layernorm" else x
            f16 = FloatFormat.parse("fp16")
            limit = f16.max + float(_half_ulp(np.array(f16.max), f16))  # sums from here on round to inf
            row["predicted_overflow_rows"] = int(np.count_nonzero(np.sum(c * c, axis=1) >= limit))
            rows.append(row)
            progress()
    return rows


def _claims(rows: list[dict[str, Any]]) -> list[Claim]:
    claims = []
    lab = ARITHMETICS[0][0]
    src = "arXiv 2503.10251 (abstract: LayerNorm vs RMSNorm, massive outliers); stability.md 3.4"
    for model in sorted({r["model"] for r in rows}):
        get = {(r["norm"], r["M"]): r for r in rows if r["model"] == model}
        ln, rms = get[("layernorm", 1e3)][lab], get[("rmsnorm", 1e3)][lab]
        meas = ln["bg_median"] / rms["bg_median"]
        pred = ln["predicted_bg"] / rms["predicted_bg"]
        claims.append(Claim(
            f"{model}: under a 1e3 outlier, RMSNorm's forward error on the background entries is below LayerNorm's "
            f"by the factor the analysis predicts ({lab})",
            f"LayerNorm/RMSNorm = {pred:.3g} (rounding model), within 2x",
            f"{meas:.3g} (LayerNorm {ln['bg_median']:.3g}, RMSNorm {rms['bg_median']:.3g})", 0.5 <= meas / pred <= 2,
            src))
        l2, l3 = get[("layernorm", 1e2)][lab]["bg_median"], get[("layernorm", 1e3)][lab]["bg_median"]
        claims.append(Claim(
            f"{model}: LayerNorm's background error grows in proportion to the outlier (M = 1e2 -> 1e3)",
            "x10 (the worst-case mechanism: the mean's rounding error ~ u M / d, shared by every entry)",
            f"x{l3 / l2:.3g} (LayerNorm {l2:.3g} -> {l3:.3g}). In fp16 accumulation a term below half an ulp of the "
            "running sum is lost whole (swamping): once the outlier makes the sum's ulp larger than the background "
            "entries, the mean's error is the sum of the lost entries, no longer proportional to M; at M = 1e2 the "
            "background squares are swamped in the variance sum instead, which hurts both norms",
            0.5 <= (l3 / l2) / 10.0 <= 2, "stability.md 3.4 ([R] mechanism)"))
        ratios = [(k, m, r[lab]["bg_median"] / r[lab]["predicted_bg"]) for (k, m), r in get.items()]
        claims.append(Claim(
            f"{model}: the rounding model predicts each norm's background error at every outlier size",
            "measured/predicted within [0.5, 2] for both norms and every M",
            ", ".join(f"{k[:3]} M={m:g}: {q:.2f}" for k, m, q in ratios), all(0.5 <= q <= 2 for *_, q in ratios),
            "this study's rounding model (module docstring)"))
        kmax = max(r["cond_max"] for r in rows if r["model"] == model and r["norm"] == "rmsnorm")
        claims.append(Claim(f"{model}: RMSNorm's componentwise condition number is at most 2 for every input",
                            "<= 2 (plus float64 rounding)", f"max {kmax:.6g} over all entries and outliers",
                            kmax <= 2 * (1 + 1e-9), "stability.md 3.3 (secondary: 'RMSNorm kappa <= 2')"))
        ov = [(r["norm"], r["M"], r["predicted_overflow_rows"], r["fp16_overflow_off"], r["fp16_overflow_slanc"])
              for r in rows if r["model"] == model]
        claims.append(Claim(
            f"{model}: without SLaNC the fp16 sum of squares overflows exactly in the rows where it exceeds fp16's "
            "range",
            "overflowing rows = rows whose float64 sum of squares rounds to inf in fp16 (>= 65520)",
            "; ".join(f"{k} M={m:g}: {off} rows (predicted {p})" for k, m, p, off, _ in ov if p or off)
            or "no row overflows at any M", all(p == off for _, _, p, off, _ in ov), "slanc.md 1.2"))
        s_used = next(r["slanc_scale"] for r in rows if r["model"] == model)
        claims.append(Claim(
            f"{model}: the static SLaNC scale (from the weights) prevents the fp16 overflow at every outlier size",
            "0 overflowing rows with SLaNC",
            f"scale {s_used:g}: " + "; ".join(f"{k} M={m:g}: {sl} of {off} rows still overflow" for k, m, _, off, sl in ov
                                              if off) + (" (an injected outlier larger than anything the weights "
                                                         "can produce is beyond a static, weight-derived scale)"
                                                         if any(sl for *_, sl in ov) else ""),
            all(sl == 0 for *_, sl in ov), "arXiv 2410.10553 (abstract); slanc.md 1.1"))
    return claims


def _fig(rows: list[dict[str, Any]]) -> Figure:
    fig, panels = model_panels(rows)
    lab = ARITHMETICS[0][0]
    for ax, m in panels:
        for i, kind in enumerate(_KINDS):
            rs = [r for r in rows if r["model"] == m and r["norm"] == kind and r["M"] > 0]
            Ms = [r["M"] for r in rs]
            ax.loglog(Ms, log_safe([r[lab]["bg_median"] for r in rs]), "-o", color=COLORS[i], label=f"{kind} measured")
            ax.loglog(Ms, log_safe([r[lab]["predicted_bg"] for r in rs]), "--", color=COLORS[i],
                      label=f"{kind} predicted")
        ax.set(xlabel="outlier / row RMS (M)", ylabel="median rel. error, background entries", title=m)
        ax.legend()
    return Figure("Norm forward error under an outlier channel", png_bytes(fig),
                  f"{lab}: measured median componentwise relative error of the background entries (solid) and the "
                  "rounding-model prediction (dashed), vs the outlier size.")


def run(opts: StudyOptions, progress: Progress) -> Report:
    """The norms study (module docstring)."""
    tokens = opts.n_tokens(32, quick=8, full=64)
    rep = Report("norms", "LayerNorm vs RMSNorm in the massive-outlier regime",
                 "Both norms on the same rows (each model's token embeddings, one channel set to M times the row RMS) "
                 "with the same gain: condition numbers, the forward error of the product's norm op against float64 "
                 "on the same stored inputs, and fp16 overflow of the sum of squares with and without SLaNC.",
                 {**opts.as_dict(), "tokens": tokens, "outliers": list(OUTLIERS)})
    rows: list[dict[str, Any]] = []
    for sm in each_model(opts, tokens, progress):
        rows += _one_model(sm, progress)
    head = []
    for r in rows:
        a = r[ARITHMETICS[0][0]]
        head.append([r["model"], r["norm"], r["M"], r["cond_mixed"], r["cond_bg_median"], a["bg_median"],
                     a["predicted_bg"], r[ARITHMETICS[1][0]]["bg_median"], r["fp16_overflow_off"],
                     r["fp16_overflow_slanc"]])
    s = rep.section("Condition, forward error and overflow",
                    "cond mixed = max over rows of ||(|J||x|)||/||y|| (infinity norm); cond bg = median componentwise "
                    "condition number of the background entries; err bg = median componentwise relative error of the "
                    f"background entries ({ARITHMETICS[0][0]}; pred = the rounding-model prediction) and with fp32 "
                    "accumulation; overflow = rows whose fp16 sum of squares overflowed without SLaNC / with the "
                    "model's static SLaNC scale.")
    s.tables.append(Table("Norms under an outlier channel of M x the row RMS",
                          ["model", "norm", "M", "cond mixed", "cond bg", "err bg fp16", "pred", "err bg fp32 acc",
                           "ovf off", "ovf SLaNC"], head))
    detail = []
    for r in rows:
        for label, *_ in ARITHMETICS:
            a = r[label]
            detail.append([r["model"], r["norm"], r["M"], label, a["bg_median"], a["predicted_bg"], a["outlier"],
                           a["normwise"], a["overflow_rows"]])
    s.tables.append(Table("Forward error per arithmetic", ["model", "norm", "M", "arithmetic", "err bg", "pred bg",
                                                          "err outlier", "normwise", "overflow rows"], detail))
    s.figures.append(_fig(rows))
    rep.claims += _claims(rows)
    rep.data = {"rows": rows}
    return rep
