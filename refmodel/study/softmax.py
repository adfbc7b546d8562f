"""``refmodel study softmax``: shifted vs unshifted evaluation, attention sinks, error vs length.

Every measurement runs the product's softmax op (:meth:`refmodel.layer.quantized.QuantOps.softmax`,
float plans: subtract the row max, exp, a sequential sum in the accumulation format, divide)
against float64 softmax of the same stored logits (the op's own rounding).

1. **Attention rows of the model.** The float64 reference of the model on the study text; from
   every layer and head the last query's row of scores (it sees every key, also under a causal
   mask). Reported: how often one key takes most of the weight (attention sinks) and the spread
   of the other logits.
2. **Shifted vs unshifted** on those rows, each row offset so that its largest logit is ``T``.
   Predicted from the formats alone: the unshifted evaluation fails (inf/NaN, or a denominator
   that overflowed to inf) exactly when the row's log-sum-exp reaches ``ln(max + half ulp)`` of
   the format the exps and their sum are held in (11.09 for fp16) or when every exp rounds to 0
   (largest logit ``< ln(min_subnormal / 2)``, -17.33 for fp16); the shifted one never does.
3. **Error vs sequence length** n = 16 .. 4096 on synthetic rows whose other logits have the
   model's spread: *sink* rows (key 0 holds 0.99 of the weight at every n) and *diffuse* rows
   (no sink). Bounds on ``|p_j - s_j|`` (first order, ``u_W`` the work format's unit roundoff,
   ``u_o`` the output's, ``a_j = max - l_j``):

       s_j [u_W (a_j + s^T a + 2) + u_o + E_sum]  +  eta_o + eta_W (1 + n s_j) / S

   (``eta``: half the smallest subnormal, the absolute rounding error below the normal range;
   ``S`` the shifted denominator)
   with the accumulation error of the denominator ``E_sum`` either the generic
   ``gamma_{n-1}(u_W)`` (grows with n, no guarantee once ``(n-1) u_W >= 1``: n >= 2049 in fp16) or
   the sink bound ``sum_{k>=1} min(u_W S_k, e_k) / S`` (an add's rounding error is at most half an
   ulp of the partial sum S_k AND at most the term e_k itself, which it may drop whole), which is
   at most ``1 - s_0``: independent of n. Predicted (swamping): in fp16 accumulation the sink's
   partial sum makes every tail term smaller than half an ulp once n is large, the whole tail mass
   ``1 - s_0`` is lost and the error saturates at about ``1 - s_0 = 0.01``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..layer.model import reference_forward
from ..layer.qtensor import store
from ..numerics.minifloat import FloatFormat
from .models import StudyModel
from .ops import op_backend, op_plan
from .options import Progress, StudyOptions, each_model
from .plots import COLORS, log_safe, model_panels
from .report import Claim, Figure, Report, Table, png_bytes

__all__ = ["LENGTHS", "ARITHMETICS", "SINK_MASS", "attention_rows", "softmax_op", "softmax_bounds", "overflow_limits",
           "steps", "run"]

LENGTHS = (16, 64, 256, 1024, 4096)
QUICK_LENGTHS = (16, 256, 1024)
#: (label, format of scores and probabilities, accumulation of the denominator)
ARITHMETICS = (("fp16, fp16 acc", "fp16", "sequential:fp16"), ("fp16, fp32 acc", "fp16", "sequential:fp32"),
               ("bf16, fp32 acc", "bf16", "sequential:fp32"))
#: the sink key's probability in the synthetic sink rows
SINK_MASS = 0.99
#: largest logit of each row in the shifted-vs-unshifted experiment
TARGETS = (-30.0, -17.0, -10.0, 0.0, 5.0, 10.0, 11.0, 11.2, 12.0, 20.0, 100.0)


def _lengths(opts: StudyOptions) -> tuple[int, ...]:
    return QUICK_LENGTHS if opts.quick else LENGTHS


def _n_rows(opts: StudyOptions) -> int:
    return 8 if opts.quick else 32


def steps(opts: StudyOptions) -> int:
    return len(opts.models) * (1 + 2 * (1 + len(_lengths(opts))))


def attention_rows(sm: StudyModel) -> np.ndarray:
    """The last query's score row of every head of every layer (float64 reference), ``[L*H, s]``."""
    ref = reference_forward(sm.weights, sm.x)
    return np.concatenate([r["scores"][:, -1, :] for r in ref], axis=0)


def _softmax64(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_op(logits: np.ndarray, fmt: str, acc: str, *, shifted: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities from the product's softmax op, the stored logits): rows ``[r, n]`` stored
    in ``fmt``, denominator summed under ``acc``."""
    plan = op_plan({"scores": (fmt, "exact"), "probs": (fmt, acc)}).replace(softmax_shifted=shifted)
    ops = op_backend(plan, d=8, rows=logits.shape[-1])
    s = store(logits, fmt)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        p = ops.softmax("probs", s, mask=None, shifted=shifted)
    return p.values, s.values


def overflow_limits(fmt: str) -> tuple[float, float]:
    """(lo, hi) for the unshifted evaluation with exps and their sum in ``fmt``: a row fails when
    its log-sum-exp is ``>= hi`` (an exp or the sum rounds to inf; the probabilities become 0 or
    NaN) or its largest logit is ``< lo`` (every exp rounds to 0: 0/0)."""
    f = FloatFormat.parse(fmt)
    half_top = math.ldexp(1.0, f.emax - f.man - 1)
    return math.log(f.min_subnormal / 2), math.log(f.max + half_top)


def softmax_bounds(logits: np.ndarray, work: str, out: str) -> dict[str, np.ndarray]:
    """First-order bounds on ``|p_j - s_j|`` per element (module docstring) for shifted rows
    ``[r, n]`` (float64 values of the stored logits): ``generic`` and ``sink``; ``s`` is the
    float64 softmax."""
    W, Fo = FloatFormat.parse(work), FloatFormat.parse(out)
    uW, uo = W.unit_roundoff, Fo.unit_roundoff
    etaW, etao = W.min_subnormal / 2, Fo.min_subnormal / 2  # absolute rounding floors (gradual underflow)
    n = logits.shape[-1]
    s = _softmax64(logits)
    a = logits.max(axis=-1, keepdims=True) - logits
    e = np.exp(-a)
    S = e.sum(axis=-1, keepdims=True)
    ps = np.cumsum(e, axis=-1)
    sink_sum = np.sum(np.minimum(uW * ps[:, 1:], e[:, 1:]), axis=-1, keepdims=True) / S
    nu = (n - 1) * uW
    generic_sum = nu / (1 - nu) if nu < 1 else math.inf
    local = uW * (a + np.sum(s * a, axis=-1, keepdims=True) + 2) + uo
    floor = etao + etaW * (1 + n * s) / S  # subnormal exp values and outputs
    return {"s": s, "generic": s * (local + generic_sum) + floor, "sink": s * (local + sink_sum) + floor}


def _synthetic(rng: np.random.Generator, rows: int, n: int, sigma: float, sink: bool) -> np.ndarray:
    lg = rng.normal(0.0, sigma, size=(rows, n))
    if sink:  # key 0 takes SINK_MASS of the weight exactly (float64)
        rest = np.log(np.sum(np.exp(lg[:, 1:]), axis=1))
        lg[:, 0] = rest + math.log(SINK_MASS / (1 - SINK_MASS))
    return lg


def _row_stats(rows: np.ndarray) -> dict[str, float]:
    p = _softmax64(rows)
    top = p.max(axis=1)
    srt = np.sort(rows, axis=1)
    others = srt[:, :-1]
    return {"rows": int(rows.shape[0]), "median_top_weight": float(np.median(top)),
            "sink_rows_0.5": float(np.mean(top >= 0.5)), "sink_rows_0.9": float(np.mean(top >= 0.9)),
            "sink_at_key0": float(np.mean(np.argmax(rows, axis=1) == 0)),
            "other_logit_std": float(np.median(others.std(axis=1))),
            "median_gap": float(np.median(srt[:, -1] - np.median(others, axis=1)))}


def _shift_table(sm: StudyModel, rows: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for label, fmt, acc in ARITHMETICS:
        lo, hi = overflow_limits(acc.split(":")[1])  # exp and sum run in the accumulation format
        for T in TARGETS:
            lg = rows - rows.max(axis=1, keepdims=True) + T
            ls64 = store(lg, fmt).values
            m = ls64.max(axis=1)
            lse = m + np.log(np.sum(np.exp(ls64 - m[:, None]), axis=1))
            r: dict[str, Any] = {"model": sm.label, "arithmetic": label, "T": T,
                                 "predicted_failed": int(np.count_nonzero((lse >= hi) | (m < lo)))}
            for shifted in (True, False):
                p, ls = softmax_op(lg, fmt, acc, shifted=shifted)
                ref = _softmax64(ls)
                with np.errstate(invalid="ignore"):
                    bad = ~np.isfinite(p).all(axis=1) | ~(np.abs(np.sum(p, axis=1) - 1) < 0.5)
                big = ref >= 1e-3
                ok = big & ~bad[:, None]
                err = float(np.max(np.abs(p - ref)[ok] / ref[ok])) if ok.any() else float("nan")
                key = "shifted" if shifted else "unshifted"
                r[f"{key}_failed"] = int(bad.sum())
                r[f"{key}_max_rel"] = err
            out.append(r)
    return out


def _length_table(sm: StudyModel, sigma: float, lengths: tuple[int, ...], nrows: int, seed: int,
                  progress: Progress) -> list[dict[str, Any]]:
    out = []
    for n in lengths:
        rng = np.random.default_rng([seed, n])
        for kind in ("sink", "diffuse"):
            l64 = _synthetic(rng, nrows, n, sigma, kind == "sink")
            for label, fmt, acc in ARITHMETICS:
                work = acc.split(":")[1]
                p, ls = softmax_op(l64, fmt, acc)
                b = softmax_bounds(ls, work, fmt)
                err = np.abs(p - b["s"])
                out.append({"model": sm.label, "rows": kind, "n": n, "arithmetic": label,
                            "sink_weight": float(np.median(b["s"][:, 0])),
                            "max_abs": float(np.max(err)), "sink_abs": float(np.max(err[:, 0])),
                            "generic_bound": float(np.max(b["generic"])), "sink_bound": float(np.max(b["sink"])),
                            "over_generic": int(np.count_nonzero(err > 1.01 * b["generic"])),
                            "over_sink": int(np.count_nonzero(err > 1.01 * b["sink"]))})
        progress()
    return out


def _claims(stats: dict[str, dict[str, float]], shift_rows: list[dict[str, Any]],
            len_rows: list[dict[str, Any]]) -> list[Claim]:
    claims = []
    miss = [(r["model"], r["arithmetic"], r["T"], r["unshifted_failed"], r["predicted_failed"])
            for r in shift_rows if r["unshifted_failed"] != r["predicted_failed"]]
    shifted_bad = sum(r["shifted_failed"] for r in shift_rows)
    lo, hi = overflow_limits("fp16")
    claims.append(Claim(
        "Unshifted softmax fails (inf/NaN, or a sum that overflowed to inf) exactly when the row's exps leave the "
        "format's range; the shifted evaluation never does",
        f"unshifted failed rows = rows whose log-sum-exp >= ln(max + ulp/2) or whose max logit < "
        f"ln(min_subnormal/2) in the format of the exps and their sum (fp16: {hi:.4g}, {lo:.4g}); shifted: 0",
        f"{len(shift_rows)} (model, arithmetic, T) cases: {len(miss)} mismatches{(': ' + str(miss[:4])) if miss else ''}"
        f"; shifted failed rows: {shifted_bad}", not miss and shifted_bad == 0,
        "arXiv 2503.10251 (abstract: shifted evaluation); stability.md 5.1 item 6"))
    sink16 = [r for r in len_rows if r["rows"] == "sink" and r["arithmetic"] == ARITHMETICS[0][0]]
    over = sum(r["over_sink"] for r in len_rows) + sum(r["over_generic"] for r in len_rows if
                                                        math.isfinite(r["generic_bound"]))
    claims.append(Claim(
        "The softmax error stays below the first-order bounds (generic gamma_(n-1) bound where it exists, and the "
        "length-independent sink bound) at every length",
        "0 elements above either bound", f"{over} elements above a bound over {len(len_rows)} (model, rows, n, "
        "arithmetic) cases", over == 0, "stability.md 3.5 (attention-sink tightening)"))
    for model in sorted({r["model"] for r in sink16}):
        rs = sorted((r for r in sink16 if r["model"] == model), key=lambda r: r["n"])
        vac = [r["n"] for r in rs if not math.isfinite(r["generic_bound"])]
        top = rs[-1]
        claims.append(Claim(
            f"{model}, {ARITHMETICS[0][0]}, sink rows: the error saturates at the lost tail mass as n grows, while the "
            "generic bound grows with n",
            f"at n = {top['n']}: error within 2x of 1 - s_0 = {1 - SINK_MASS:.3g} (every tail term below half an ulp of "
            "the sink's partial sum is lost); generic bound without guarantee from n = 2049",
            "error " + ", ".join(f"n={r['n']}: {r['max_abs']:.3g}" for r in rs) + "; sink bound <= "
            + f"{max(r['sink_bound'] for r in rs):.3g}; generic bound vacuous at n = {vac or 'none'}",
            0.5 <= top["max_abs"] / (1 - SINK_MASS) <= 2, "stability.md 3.5; swamping (this study)"))
    return claims


def _fig(len_rows: list[dict[str, Any]]) -> Figure:
    fig, panels = model_panels(len_rows, width=4.6)
    lab = ARITHMETICS[0][0]
    for ax, m in panels:
        for i, kind in enumerate(("sink", "diffuse")):
            rs = sorted((r for r in len_rows if r["model"] == m and r["rows"] == kind and r["arithmetic"] == lab),
                        key=lambda r: r["n"])
            ns = [r["n"] for r in rs]
            ax.loglog(ns, log_safe([r["max_abs"] for r in rs]), "-o", color=COLORS[i], label=f"{kind}: measured")
            ax.loglog(ns, log_safe([r["generic_bound"] for r in rs]), ":", color=COLORS[i], label=f"{kind}: generic bound")
            if kind == "sink":
                ax.loglog(ns, log_safe([r["sink_bound"] for r in rs]), "--", color=COLORS[i], label="sink bound")
        ax.set(xlabel="sequence length n", ylabel="max |p - s|", title=m)
        ax.legend(fontsize=8)
    return Figure("Softmax error vs sequence length", png_bytes(fig),
                  f"{lab}: max abs error of the probabilities (solid), the generic gamma_(n-1) bound (dotted; missing "
                  "where it gives no guarantee) and the length-independent sink bound (dashed).")


def run(opts: StudyOptions, progress: Progress) -> Report:
    """The softmax study (module docstring)."""
    tokens = opts.n_tokens(32, quick=8, full=64)
    lengths, nrows = _lengths(opts), _n_rows(opts)
    rep = Report("softmax", "Softmax: shifted vs unshifted, attention sinks, error vs sequence length",
                 "The product's softmax op against float64 on the same stored logits: the models' own attention rows "
                 "(real and random weights), offset to probe the range of the exp, and synthetic rows with the "
                 "models' logit spread at lengths up to 4096, with and without an attention sink.",
                 {**opts.as_dict(), "tokens": tokens, "lengths": list(lengths), "rows_per_length": nrows,
                  "sink_mass": SINK_MASS})
    stats: dict[str, dict[str, float]] = {}
    shift_rows: list[dict[str, Any]] = []
    len_rows: list[dict[str, Any]] = []
    for sm in each_model(opts, tokens, progress):
        rows = attention_rows(sm)
        stats[sm.label] = _row_stats(rows)
        shift_rows += _shift_table(sm, rows)
        progress()
        len_rows += _length_table(sm, stats[sm.label]["other_logit_std"], lengths, nrows, opts.seed, progress)
    s1 = rep.section("Error vs sequence length",
                     f"Synthetic rows ({nrows} per length) whose non-sink logits are N(0, sigma^2) with sigma the median "
                     f"spread of the model's own attention logits; sink rows give key 0 the weight {SINK_MASS}. "
                     "max abs = max |p - s|; bounds as in the module docstring (generic: inf = no guarantee).")
    head = [[r["model"], r["rows"], r["n"], r["max_abs"], r["generic_bound"], r["sink_bound"]]
            for r in len_rows if r["arithmetic"] == ARITHMETICS[0][0]]
    s1.tables.append(Table(f"{ARITHMETICS[0][0]}: error and bounds vs n", ["model", "rows", "n", "max abs",
                                                                          "generic bound", "sink bound"], head))
    s1.tables.append(Table("All arithmetics", ["model", "rows", "n", "arithmetic", "max abs", "sink abs",
                                               "generic bound", "sink bound"],
                           [[r["model"], r["rows"], r["n"], r["arithmetic"], r["max_abs"], r["sink_abs"],
                             r["generic_bound"], r["sink_bound"]] for r in len_rows]))
    s1.figures.append(_fig(len_rows))
    s2 = rep.section("Attention rows of the models",
                     "The last query row of every head and layer (float64 reference). top weight = the largest "
                     "probability of a row; sink rows = rows whose largest probability is >= 0.5 / 0.9; at key 0 = "
                     "rows whose largest logit is the first key; spread = std of the other logits.")
    s2.tables.append(Table("Attention sinks in the models", ["model", "rows", "median top weight", "sink rows >= 0.5",
                                                             "sink rows >= 0.9", "max at key 0", "spread", "gap"],
                           [[k, v["rows"], v["median_top_weight"], v["sink_rows_0.5"], v["sink_rows_0.9"],
                             v["sink_at_key0"], v["other_logit_std"], v["median_gap"]] for k, v in stats.items()]))
    s3 = rep.section("Shifted vs unshifted evaluation",
                     "The models' attention rows offset so that each row's largest logit is T. failed = rows with an "
                     "inf/NaN probability or whose probabilities do not sum to 1 within 0.5 (the sum overflowed); "
                     "predicted from the float64 log-sum-exp and the range of the format of the exps; max rel = "
                     "max |p - s| / s over probabilities >= 1e-3 of the other rows.")
    s3.tables.append(Table("Shifted vs unshifted", ["model", "arithmetic", "T", "predicted failed",
                                                    "unshifted failed", "shifted failed", "unshifted max rel",
                                                    "shifted max rel"],
                           [[r["model"], r["arithmetic"], r["T"], r["predicted_failed"], r["unshifted_failed"],
                             r["shifted_failed"], r["unshifted_max_rel"], r["shifted_max_rel"]] for r in shift_rows]))
    rep.claims += _claims(stats, shift_rows, len_rows)
    rep.data = {"attention": stats, "shift": shift_rows, "lengths": len_rows}
    return rep
