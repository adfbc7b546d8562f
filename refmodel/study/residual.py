"""``refmodel study residual``: how the residual stream's error grows through the whole model.

Part 1, per model (real and random weights) and plan: the relative error of the stream after every
layer against the float64 whole-model run (:mod:`refmodel.layer.model`: the quantized stream is
carried from layer to layer), beside the worst-case bound of the stability analysis

    B_l = A_l B_{l-1} + delta_l,    B_{-1} = max |x_q - x| (input rounding),

with ``A_l`` the layer's first-order Lipschitz factor from its weights and the reference stream
(:mod:`refmodel.study.lipschitz`) and ``delta_l`` the layer's measured local error (its own
rounding, on its own quantized input). The relative bound is ``B_l / max|x_l|``. Growth rate per
layer: ``rho_l / rho_{l-1}``; measured amplification: ``||F(x_q) - F(x)|| / ||x_q - x||``.

Part 2, the residual-projection scaling experiment of the paper (arXiv 2503.10251, section on
GPT-2): ``wo, bo, w_down, b_down`` times ``c`` (each branch writes ``c`` times its output into the
stream), in the reference and the quantized model alike, for powers of two ``c``. The analysis
(stability.md 3.9) predicts: while the stream is branch-dominated, every stream quantity scales
by ``c`` and the norms remove it, so the relative error is unchanged (float formats: rounding is
scale-invariant); when the scaling makes the stream embedding-dominated (small ``c``) or pushes
values out of a format's range (large ``c``), it changes. The "branch share" (mean over
sublayers of ``||branch|| / ||stream after the add||``, Frobenius, float64) shows the regime.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..layer.model import ModelWeights, PreparedModel, reference_forward
from ..layer.plan import PrecisionPlan
from .lipschitz import LayerFactors, layer_factors
from .models import StudyModel
from .options import Progress, StudyOptions, available, each_model, resolve_plans
from .plots import COLORS, integer_x, log_safe, model_panels, new_figure
from .report import Claim, Figure, Report, Table, png_bytes

__all__ = ["DEFAULT_PLANS", "SCALES", "steps", "run", "worst_case_bound", "branch_share", "scaling_claims"]

DEFAULT_PLANS = ("fp16", "bf16", "fp8", "fixed16", "hw")
QUICK_PLANS = ("bf16", "fixed16")
#: residual scales c (powers of two: exact in every float format)
SCALES = (2.0**-6, 1.0, 32.0)
FULL_SCALES = (2.0**-8, 2.0**-4, 1.0, 4.0, 32.0)
SCALING_PLANS = ("bf16", "fixed16")
FULL_SCALING_PLANS = ("fp16", "bf16", "fixed16")


def _scales(opts: StudyOptions) -> tuple[float, ...]:
    return FULL_SCALES if opts.full else SCALES


def _scaling_kinds(opts: StudyOptions) -> tuple[str, ...]:
    """Weights the scaling experiment runs on (random weights too with --full)."""
    return ("real", "random") if opts.full else ("real",)


def _scaling_plans(opts: StudyOptions) -> list[str]:
    if "scaling_plans" in opts.extra:
        return list(opts.extra["scaling_plans"])
    return available(FULL_SCALING_PLANS if opts.full else SCALING_PLANS)


def _plans(opts: StudyOptions) -> list[str]:
    return opts.plan_names(DEFAULT_PLANS, QUICK_PLANS)


def steps(opts: StudyOptions) -> int:
    """Progress-bar steps of :func:`run` (one per layer run, one per model load)."""
    n = 0
    for key in opts.models:
        L = opts.n_layers(key)
        scaling = len(_scales(opts)) * len(_scaling_plans(opts)) * L
        control = (len(_scales(opts)) - 1) * L if key == "smollm2" and _scaling_plans(opts) else 0
        n += 1 + 2 * len(_plans(opts)) * L + len(_scaling_kinds(opts)) * (scaling + control)
    return n


def worst_case_bound(input_error: float, factors: list[LayerFactors], local: np.ndarray) -> np.ndarray:
    """log10 of ``B_l = A_l B_{l-1} + delta_l`` for every layer (module docstring), computed in
    logarithms (the products overflow float64 within a few dozen layers)."""
    ln_b = math.log(input_error) if input_error > 0 else -math.inf
    out = []
    for f, d in zip(factors, local, strict=True):
        if not np.isfinite(d):
            ln_b = math.inf
        else:
            ln_b = float(np.logaddexp(math.log(f.total) + ln_b, math.log(d) if d > 0 else -math.inf))
        out.append(ln_b / math.log(10))
    return np.array(out)


def branch_share(model: ModelWeights, ref: list[dict[str, np.ndarray]]) -> float:
    """Mean over layers and both sublayers of ``||branch||_F / ||stream after the add||_F``
    (float64): near 1 when the branches dominate the stream, near 0 when the skip path does."""
    pairs = [("proj", "res1"), ("down", "out" if model.config.prenorm else "res2")]
    vals = [np.linalg.norm(r[b]) / np.linalg.norm(r[s]) for r in ref for b, s in pairs]
    return float(np.mean(vals))


def _bound_cell(log10_b: float) -> Any:
    if not np.isfinite(log10_b):
        return float("nan") if np.isnan(log10_b) else float(log10_b)
    return 10.0**log10_b if log10_b < 300 else f"1e+{log10_b:.0f}"


def _geo_growth(rho: np.ndarray) -> float:
    ok = np.isfinite(rho) & (rho > 0)
    idx = np.flatnonzero(ok)
    if idx.size < 2:
        return float("nan")
    return float((rho[idx[-1]] / rho[idx[0]]) ** (1.0 / (idx[-1] - idx[0])))


def _one_model(sm: StudyModel, plans: list[PrecisionPlan], progress: Progress) -> dict[str, Any]:
    cfg = sm.weights.config
    ref = reference_forward(sm.weights, sm.x)
    factors = [layer_factors(cfg, w, r) for w, r in zip(sm.weights.layers, ref, strict=True)]
    ref_max = np.array([float(np.max(np.abs(r["out"]))) for r in ref])
    out: dict[str, Any] = {"label": sm.label, "name": sm.weights.name, "ref_max": ref_max.tolist(),
                           "lipschitz": [f.__dict__ for f in factors], "plans": {}}
    for plan in plans:
        run = PreparedModel(sm.weights, plan).run(sm.x, reference=ref, progress=progress)
        rho = run.stream_rel()
        local = np.array([r.local for r in run.layers])
        prop = np.array([r.propagated for r in run.layers])
        err = np.array([r.max_abs for r in run.layers])
        e_in = run.tensor(0, "x").max_abs
        lb = worst_case_bound(e_in, factors, local) - np.log10(ref_max)
        prev = np.concatenate([[e_in], err[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            amp = np.where(prev > 0, prop / prev, np.nan)
            growth = np.concatenate([[np.nan], rho[1:] / rho[:-1]])
        out["plans"][plan.name] = {
            "rel": rho.tolist(), "token_rel_median": [r.token_rel_median for r in run.layers],
            "bound_rel_log10": lb.tolist(), "local": local.tolist(), "propagated": prop.tolist(),
            "amplification": amp.tolist(), "growth": growth.tolist(), "input_error": e_in,
            "overflow": sum(r.overflow for r in run.layers), "stopped_at": run.stopped_at,
            "stop_reason": run.stop_reason,
        }
    return out


def stream_change(ref: list[dict[str, np.ndarray]], base: list[dict[str, np.ndarray]]) -> float:
    """Max over layers of the sine of the angle between two float64 streams (layer outputs,
    flattened): 0 when one is a multiple of the other at every layer (the scaling changed only
    the stream's size, not its dynamics)."""
    out = 0.0
    for a, b in zip(ref, base, strict=True):
        u, v = a["out"].ravel(), b["out"].ravel()
        cos = float(u @ v) / float(np.linalg.norm(u) * np.linalg.norm(v))
        out = max(out, math.sqrt(max(0.0, 1.0 - min(1.0, cos * cos))))
    return out


def _scaling(sm: StudyModel, plans: list[PrecisionPlan], scales: tuple[float, ...], progress: Progress
             ) -> list[dict[str, Any]]:
    """Rows of the scaling experiment. Variant ``branches``: the paper's (residual projections x c);
    variant ``branches+input`` (pre-norm models, first plan only): the model input also x c, so the
    float64 stream is exactly c times the unscaled one (the norms remove c): the control that keeps
    the dynamics."""
    rows = []
    base = reference_forward(sm.weights, sm.x)
    control = sm.weights.config.prenorm
    for c in scales:
        mc = sm.weights.scale_residual(c)
        variants = [("branches", sm.x)] + ([("branches+input", sm.x * c)] if control and c != 1.0 else [])
        for variant, x in variants:
            ref = reference_forward(mc, x)
            share, change = branch_share(mc, ref), stream_change(ref, base)
            for plan in plans if variant == "branches" else plans[:1]:
                run = PreparedModel(mc, plan).run(x, reference=ref, local=False, progress=progress)
                rel = run.stream_rel()
                rows.append({"model": sm.label, "plan": plan.name, "float": not _is_fixed(plan), "variant": variant,
                             "c": c, "branch_share": share, "stream_change": change, "final_rel": float(rel[-1]),
                             "mean_rel": float(np.nanmean(rel)), "stream_max": float(np.max(np.abs(ref[-1]["out"]))),
                             "overflow": sum(r.overflow for r in run.layers), "stopped_at": run.stopped_at})
    return rows


#: the streams count as having the same dynamics when, at every layer, they are parallel within this
#: sine (about 6 degrees)
SAME_DYNAMICS = 0.1


def _is_fixed(plan: PrecisionPlan) -> bool:
    from ..numerics.formats import is_fixed_spec

    return is_fixed_spec(plan.tensor("out").format)


def scaling_claims(rows: list[dict[str, Any]]) -> list[Claim]:
    """The paper's scaling claim, checked per (model, float plan) on the measured rows: where the
    float64 stream of the scaled model stays parallel to the unscaled one (``stream_change <
    SAME_DYNAMICS`` at every layer) and no new overflow appears, the final relative error stays
    within 2x of its value at c = 1. Fixed-point plans are reported, not claimed (their error is
    absolute: it cannot be scale-invariant)."""
    claims = []
    keys = sorted({(r["model"], r["plan"]) for r in rows if r["float"]})
    for model, plan in keys:
        rs = [r for r in rows if r["model"] == model and r["plan"] == plan]
        base = next((r for r in rs if r["c"] == 1.0 and r["variant"] == "branches"), None)
        if base is None or not base["final_rel"] > 0:
            continue
        same: list[tuple[str, float, float, int]] = []
        changed: list[tuple[str, float, float, int]] = []
        for r in rs:
            if r["c"] == 1.0:
                continue
            ratio = r["final_rel"] / base["final_rel"]
            kept = r["stream_change"] < SAME_DYNAMICS and r["overflow"] == base["overflow"]
            (same if kept else changed).append((f"{r['variant']} x{r['c']:g}", ratio, r["stream_change"],
                                                 r["overflow"]))
        if not same:  # nothing to test: every scale changed the dynamics (see scaling_note)
            continue
        fmt = lambda c, q, s, o: (f"{c}: error x{q:.3g} (stream change {s:.2g}"  # noqa: E731
                                  + (f", {o} overflow" if o else "") + ")")
        meas = "; ".join(fmt(*t) for t in same)
        if changed:
            meas += " | dynamics changed: " + "; ".join(fmt(*t) for t in changed)
        claims.append(Claim(
            f"{model}, {plan}: scaling the residual projections by c keeps the relative error unless it changes the "
            "stream's dynamics",
            f"final relative error within 2x of c = 1 wherever the scaled stream stays parallel to the unscaled one "
            f"(sine < {SAME_DYNAMICS} at every layer) with no new overflow",
            meas, all(0.5 <= q <= 2 for _, q, _, _ in same),
            "arXiv 2503.10251 (abstract, GPT-2 experiment); stability.md 3.9"))
    return claims


def scaling_note(rows: list[dict[str, Any]]) -> str:
    """A sentence per model whose every scale changed the stream's dynamics (so the paper's claim
    cannot be put to the test there by scaling)."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        rs = [r for r in rows if r["model"] == model and r["c"] != 1.0]
        if rs and all(r["stream_change"] >= SAME_DYNAMICS for r in rs):
            worst = min(r["stream_change"] for r in rs)
            out.append(f"{model}: every scale tried changed the dynamics (stream change >= {worst:.2g}); for a "
                       "post-LN model (bert) a LayerNorm after every add renormalises the stream, so scaling the "
                       "branches always moves the branch/skip balance, and the paper's claim cannot be tested by "
                       "scaling alone.")
    return " ".join(out)


def _fig_errors(res: dict[str, Any]) -> Figure:
    fig, (ax, bx) = new_figure(2)
    for i, (name, p) in enumerate(res["plans"].items()):
        col = COLORS[i % len(COLORS)]
        L = np.arange(len(p["rel"]))
        ax.semilogy(L, log_safe(p["rel"]), "-o", ms=3, color=col, label=name)
        bx.plot(L, np.where(np.isfinite(p["bound_rel_log10"]), p["bound_rel_log10"], np.nan), "--", color=col,
                label=name)
    ax.set(xlabel="layer", ylabel="max |x_q - x| / max |x|", title=f"{res['label']}: stream relative error")
    bx.set(xlabel="layer", ylabel="log10 (worst-case bound, relative)", title="worst-case bound (first order)")
    bx.axhline(0.0, color="k", lw=0.8)
    integer_x(ax)
    integer_x(bx)
    ax.legend()
    bx.legend()
    return Figure(f"Stream error and worst-case bound, {res['label']}", png_bytes(fig),
                  "Left: measured relative error of the residual stream after each layer (quantized stream carried "
                  "through the model). Right: log10 of the worst-case bound B_l / max|x_l|; above the black line "
                  "(0) the bound says nothing (relative error >= 1).")


def _fig_scaling(rows: list[dict[str, Any]]) -> Figure:
    fig, panels = model_panels(rows)
    for ax, m in panels:
        for i, plan in enumerate(sorted({r["plan"] for r in rows if r["model"] == m})):
            for variant, style in (("branches", "-o"), ("branches+input", "--s")):
                rs = [r for r in rows if r["model"] == m and r["plan"] == plan and r["variant"] == variant]
                if variant != "branches":
                    base = [r for r in rows if r["model"] == m and r["plan"] == plan and r["c"] == 1.0]
                    rs = sorted(rs + base[:1], key=lambda r: r["c"]) if rs else []
                if rs:
                    ax.loglog([r["c"] for r in rs], log_safe([r["final_rel"] for r in rs]), style, color=COLORS[i],
                              label=plan + ("" if variant == "branches" else " (input also x c)"))
        tw = ax.twinx()
        rs = [r for r in rows if r["model"] == m and r["plan"] == rows[0]["plan"] and r["variant"] == "branches"]
        tw.semilogx([r["c"] for r in rs], [r["branch_share"] for r in rs], ":", color="k", label="branch share")
        tw.set_ylim(0, 1.05)
        tw.set_ylabel("branch share (dotted)")
        ax.set(xlabel="residual scale c", ylabel="final relative error", title=m)
        ax.legend(loc="lower right")
    return Figure("Residual-projection scaling", png_bytes(fig),
                  "Final relative error of the stream vs the scale c of wo/bo/w_down/b_down (solid, left axis; "
                  "dashed: the model input also x c, which keeps a pre-norm model's dynamics) and the branch share "
                  "of the float64 stream (dotted, right axis).")


def run(opts: StudyOptions, progress: Progress) -> Report:
    """The residual study (module docstring)."""
    plans = resolve_plans(_plans(opts))
    splans = resolve_plans(_scaling_plans(opts))
    scales = _scales(opts)
    tokens = opts.n_tokens(16)
    rep = Report("residual", "Residual stream: error growth per layer and residual-projection scaling",
                 "Relative error of the residual stream after every layer of the whole model against float64 "
                 "(the quantized stream carried from layer to layer, as deployed), beside the worst-case bound of "
                 "the stability analysis, and the residual-projection scaling experiment of arXiv 2503.10251. "
                 f"Inputs: the first {tokens} tokens of the study text; random weights have the real tensors' shapes "
                 "and per-tensor mean/std.", {**opts.as_dict(), "tokens": tokens, "plans": [p.name for p in plans],
                                              "scales": list(scales), "scaling_plans": [p.name for p in splans]})
    results: list[dict[str, Any]] = []
    scaling_rows: list[dict[str, Any]] = []
    for sm in each_model(opts, tokens, progress):
        results.append(_one_model(sm, plans, progress))
        if sm.kind in _scaling_kinds(opts):
            scaling_rows += _scaling(sm, splans, scales, progress)
    head = []
    for res in results:
        for name, p in res["plans"].items():
            rho = np.array(p["rel"])
            lb = np.array(p["bound_rel_log10"])
            vac = np.flatnonzero(lb >= 0)
            amp = np.array(p["amplification"], dtype=float)
            amp = amp[np.isfinite(amp) & (amp > 0)]
            lip = np.array([f["total"] for f in res["lipschitz"]])
            head.append([res["label"], name, len(rho), float(rho[-1]), _bound_cell(float(lb[-1])),
                         int(vac[0]) if vac.size else None, _geo_growth(rho),
                         float(np.exp(np.mean(np.log(amp)))) if amp.size else float("nan"),
                         float(np.exp(np.mean(np.log(lip)))), p["overflow"], p["stopped_at"]])
    s1 = rep.section("Residual stream error per layer",
                     "rel = max|x_q - x| / max|x| of the stream after the last layer; bound = worst-case bound "
                     "B_l / max|x_l| (first order; B_l = A_l B_(l-1) + delta_l with A_l the layer's Lipschitz factor "
                     "in the infinity norm from its weights and the reference stream, delta_l the measured local "
                     "error); 'vacuous from' = first layer where the bound exceeds 1; growth = geometric mean of "
                     "rel_l / rel_(l-1); amplification = geometric mean of ||F(x_q) - F(x)|| / ||x_q - x|| (measured "
                     "propagation of the incoming error through one layer); Lipschitz = geometric mean of A_l; "
                     "overflow = saturated codes + non-finite values + overflowed norm sums over the whole run.")
    s1.tables.append(Table("Stream error after the last layer, per model and plan",
                           ["model", "plan", "layers", "rel", "bound", "vacuous from", "growth/layer",
                            "amplification", "Lipschitz A_l", "overflow", "stopped at"], head))
    for res in results:
        first = next(iter(res["plans"]))
        cols = ["layer", "max|x|"] + [f"rel {n}" for n in res["plans"]] + [f"bound {n}" for n in res["plans"]]
        rows = []
        for i in range(len(res["ref_max"])):
            rows.append([i, res["ref_max"][i]] + [p["rel"][i] for p in res["plans"].values()]
                        + [_bound_cell(p["bound_rel_log10"][i]) for p in res["plans"].values()])
        s1.tables.append(Table(f"{res['label']}: relative error of the stream per layer", cols, rows))
        p = res["plans"][first]
        rows = [[i, p["rel"][i], p["growth"][i], p["local"][i] / res["ref_max"][i], p["propagated"][i] / res["ref_max"][i],
                 p["amplification"][i], res["lipschitz"][i]["total"]] for i in range(len(p["rel"]))]
        s1.tables.append(Table(f"{res['label']}, plan {first}: growth, local and propagated error per layer",
                               ["layer", "rel", "growth", "local/max|x|", "propagated/max|x|", "amplification",
                                "Lipschitz A_l"], rows))
        s1.figures.append(_fig_errors(res))
    s2 = rep.section("Residual-projection scaling",
                     "wo, bo, w_down and b_down multiplied by c in the reference and the quantized model alike. "
                     "branch share = mean over sublayers of ||branch|| / ||stream after the add|| (float64); "
                     "stream change = max over layers of the sine of the angle between the scaled and the unscaled "
                     "model's float64 streams (0: the scaling changed only the size of the stream, not its "
                     "dynamics). "
                     + "scaled = branches: the paper's intervention; branches+input: the model input also multiplied "
                     "by c, which for a pre-norm model scales the whole float64 stream by c (the norms remove it): "
                     "the control that keeps the dynamics.")
    scols = [("model", "model"), ("plan", "plan"), ("scaled", "variant"), ("c", "c"),
             ("branch share", "branch_share"), ("stream change", "stream_change"), ("final rel", "final_rel"),
             ("mean rel", "mean_rel"), ("stream max", "stream_max"), ("overflow", "overflow")]
    s2.tables.append(Table("Final relative error vs residual scale c", [c for c, _ in scols],
                           [[r.get(k) for _, k in scols] for r in scaling_rows]))
    s2.figures.append(_fig_scaling(scaling_rows))
    note = scaling_note(scaling_rows)
    if note:
        s2.text += " " + note
    rep.claims += _bound_claims(results)
    rep.claims += scaling_claims(scaling_rows)
    rep.data = {"models": results, "scaling": scaling_rows}
    return rep


def _bound_claims(results: list[dict[str, Any]]) -> list[Claim]:
    viol, total = [], 0
    for res in results:
        for name, p in res["plans"].items():
            rho = np.array(p["rel"])
            lb = np.array(p["bound_rel_log10"])
            ok = np.isfinite(rho) & (rho > 0)
            total += int(ok.sum())
            bad = ok & (np.log10(np.where(ok, rho, 1.0)) > lb + 1e-9)
            viol += [(res["label"], name, int(i)) for i in np.flatnonzero(bad)]
    claims = [Claim("The worst-case bound (first order) is above the measured stream error at every layer",
                    "0 layers with error > bound (the bound propagates the measured local errors with the "
                    "layers' worst-case Lipschitz factors)",
                    f"{len(viol)} of {total} (model, plan, layer) cases above the bound"
                    + (f": {viol[:5]}" if viol else ""), not viol, "stability.md 3.9 (reconstruction)")]
    return claims
