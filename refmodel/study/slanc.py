"""``refmodel study slanc``: SLaNC on and off, per plan, on the whole models.

Each plan runs the whole model (:mod:`refmodel.layer.model`, quantized stream carried) twice: with
SLaNC (static scales from the weights, :func:`refmodel.layer.slanc.model_slanc`; a pre-norm
model's first norm by the plan's ``slanc_first`` rule, ``input`` for the study) and without. At
every norm site (layer, norm) it records:

* **overflow**: rows whose sum of squares was not finite in the norm's work format (float plans;
  the norm then outputs garbage: zeros plus beta);
* **underflow**: entries of the norm input whose square is lost whole (float plans: ``(x/s)^2``
  below half the work format's smallest subnormal; fixed-point plans: a nonzero input code that
  the unit's SLaNC shift ``round_half_up(x / 2^k)`` turns into 0);
* the norm output's error and the stream's error against the float64 whole-model run.

Predicted before the run, from the float64 whole-model reference alone: a float plan's norm
overflows at the first site where a row's sum of squares (centred for LayerNorm) of ``x / s``
reaches the work format's overflow threshold (``max + half an ulp``); a fixed-point plan's norm
unit sums exactly in wide integers (``refmodel.numerics.units.norm``): it cannot overflow, so
SLaNC cannot help it, and its shift drops ``k`` fraction bits of the input: the error with SLaNC
is not below the error without.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..layer.forward import norm_sites
from ..layer.model import PreparedModel, reference_forward
from ..layer.plan import PrecisionPlan
from ..numerics.fixed import FixedFormat
from ..numerics.formats import is_fixed_spec
from ..numerics.minifloat import FloatFormat
from .models import StudyModel
from .options import Progress, StudyOptions, each_model, resolve_plans
from .plots import COLORS, integer_x, log_safe, new_figure
from .report import Claim, Figure, Report, Table, png_bytes

__all__ = ["DEFAULT_PLANS", "site_stats", "predicted_overflow", "steps", "run"]

DEFAULT_PLANS = ("fp16-acc16", "fp16", "bf16", "fixed16", "hw")
QUICK_PLANS = ("fp16-acc16", "fp16", "fixed16")


def _plans(opts: StudyOptions) -> list[str]:
    return opts.plan_names(DEFAULT_PLANS, QUICK_PLANS, DEFAULT_PLANS + ("fp32", "fp8", "mxfp8"))


def steps(opts: StudyOptions) -> int:
    return sum(1 + 4 * len(_plans(opts)) * opts.n_layers(k) for k in opts.models)


def _with_slanc(plan: PrecisionPlan, on: bool) -> PrecisionPlan:
    if on:
        return plan.replace(name=f"{plan.name} +SLaNC", slanc=True,
                            slanc_pow2=plan.slanc_pow2 or is_fixed_spec(plan.tensor("out").format),
                            slanc_first="input")
    return plan.replace(name=f"{plan.name} no SLaNC", slanc=False, slanc_pow2=False)


def _fixed(plan: PrecisionPlan) -> bool:
    return is_fixed_spec(plan.tensor("out").format)


def _work_format(plan: PrecisionPlan, name: str) -> str:
    """The format a float plan's norm ``name`` computes its sums in (the accumulation format of
    a sequential/blocked policy, else fp32 or the storage format when wider), as the quantized
    layer does."""
    from ..numerics import accumulate as acc

    tp = plan.tensor(name)
    pol = acc.parse_policy(tp.acc)
    if isinstance(pol, (acc.Sequential, acc.Blocked)):
        return str(pol.fmt)
    if tp.format == "float64":
        return "float64"
    f = FloatFormat.parse(tp.format) if not is_fixed_spec(tp.format) else None
    return tp.format if f is not None and f.man >= 23 else "fp32"


def _limit(work: str) -> float:
    if work == "float64":
        return math.inf
    f = FloatFormat.parse(work)
    return f.max + math.ldexp(1.0, f.emax - f.man - 1)


def _centred(x: np.ndarray, kind: str) -> np.ndarray:
    return x - x.mean(axis=-1, keepdims=True) if kind == "layernorm" else x


def site_stats(plan: PrecisionPlan, kind: str, out_name: str, x: np.ndarray, scale: float, stats: dict[str, int],
               codes: np.ndarray | None = None, in_fmt: Any = None) -> dict[str, Any]:
    """Overflow rows and underflow entries at one norm site (module docstring)."""
    if _fixed(plan):
        k = int(round(math.log2(scale))) if scale > 1 else 0
        under = 0
        if k > 0 and codes is not None:
            half = 1 << (k - 1)
            under = int(np.count_nonzero((codes != 0) & (codes >= -half) & (codes < half)))
        bits = k if isinstance(in_fmt, FixedFormat) else 0
        return {"overflow": 0, "underflow": under, "shift": k, "bits_lost": bits}
    work = _work_format(plan, out_name)
    c = _centred(x / scale, kind)
    sq = c * c
    tiny = FloatFormat.parse(work).min_subnormal / 2 if work != "float64" else 0.0
    return {"overflow": int(stats.get("internal_overflow", 0)),
            "underflow": int(np.count_nonzero((sq > 0) & (sq < tiny))), "work": work}


def predicted_overflow(plan: PrecisionPlan, kind: str, sites: list[Any], ref: list[dict[str, np.ndarray]],
                       scales: list[dict[str, float]]) -> tuple[int, str] | None:
    """First (layer, norm key) where the float64 stream's sum of squares of ``x / s`` reaches the
    work format's overflow threshold (None: nowhere; always None for fixed-point plans)."""
    if _fixed(plan):
        return None
    for i, r in enumerate(ref):
        for site in sites:
            lim = _limit(_work_format(plan, site.output))
            s = scales[i].get(site.key, 1.0) if i < len(scales) else 1.0
            c = _centred(r[site.input] / s, kind)
            if np.max(np.sum(c * c, axis=-1)) >= lim:
                return i, site.key
    return None


def shift_cost(plan: PrecisionPlan, kind: str, eps: float, name: str, x: Any, g: Any, b: Any, k: int
               ) -> tuple[float, float]:
    """A fixed-point norm unit's own error on one input, without and with a SLaNC shift of ``k``
    bits: ``(max |unit(x) - norm(x)|, max |unit(x, shift k) - norm(x)|)``, ``norm`` in float64 on
    the same stored input and gains."""
    from .norms import _norm64
    from .ops import op_backend

    ops = op_backend(plan, d=x.shape[-1], rows=x.shape[0], arch="gpt2" if kind == "layernorm" else "llama")
    ref, _, _ = _norm64(x.values, g.values, None if b is None else b.values, kind, eps)
    errs = []
    for shift in (0, k):
        ops.tensors.pop(name, None)
        y = ops.norm(name, x, g, b, kind=kind, eps=eps, scale=2.0**shift)
        errs.append(float(np.max(np.abs(y.values - ref))))
    return errs[0], errs[1]


def _run(sm: StudyModel, plan: PrecisionPlan, ref: list[dict[str, np.ndarray]], progress: Progress,
         shifts: list[dict[str, float]] | None = None) -> dict[str, Any]:
    cfg = sm.weights.config
    sites = norm_sites(cfg)
    per_site: list[dict[str, Any]] = []
    scales: list[dict[str, float]] = []

    def hook(i: int, run: Any, r: Any) -> None:
        sc = {s.key: float(run.slanc.scale(s.key)) if run.slanc is not None else 1.0 for s in sites}
        scales.append(sc)
        for s in sites:
            t = run.tensors[s.input]
            st = site_stats(plan, cfg.norm, s.output, t.values, sc[s.key], run.stats.get(s.output, {}), t.codes, t.fmt)
            out = run.tensors[s.output].values
            ro = r[s.output]
            err = float(np.max(np.abs(out - ro)) / np.max(np.abs(ro))) if np.all(np.isfinite(out)) else math.inf
            row = {"layer": i, "site": s.key, "scale": sc[s.key], "norm_out_rel": err, **st}
            if shifts is not None and _fixed(plan):  # the unit's own error without / with the SLaNC shift
                k = int(round(math.log2(shifts[i][s.key]))) if shifts[i][s.key] > 1 else 0
                beta = run.weights.get(f"{s.key}_b")
                row["local_off"], row["local_on"] = shift_cost(plan, cfg.norm, float(cfg.eps or 0.0), s.output, t,
                                                               run.weights[f"{s.key}_g"], beta, k)
                row["shift_on"] = k
            per_site.append(row)

    run = PreparedModel(sm.weights, plan).run(sm.x, reference=ref, local=False, hook=hook, progress=progress)
    first = next(((p["layer"], p["site"]) for p in per_site if p["overflow"]), None)
    return {"plan": plan.name, "sites": per_site, "first_overflow": first, "scales": scales,
            "overflow_rows": sum(p["overflow"] for p in per_site), "underflow": sum(p["underflow"] for p in per_site),
            "rel": run.stream_rel().tolist(), "final_rel": float(run.stream_rel()[-1]), "stopped_at": run.stopped_at,
            "predicted_overflow": predicted_overflow(plan, cfg.norm, sites, ref, scales)}


def _claims(results: list[dict[str, Any]]) -> list[Claim]:
    claims = []
    for res in results:
        for base, pair in res["plans"].items():
            off, on = pair["off"], pair["on"]
            if pair["fixed"]:
                shifted = [p for p in off["sites"] if p.get("shift_on", 0) > 0]
                worse = [p for p in shifted if p["local_on"] >= p["local_off"]]
                ratio = float(np.median([p["local_on"] / p["local_off"] for p in shifted if p["local_off"] > 0])) \
                    if shifted else float("nan")
                claims.append(Claim(
                    f"{res['model']}, {base}: in the fixed-point norm unit SLaNC prevents no overflow (its sums are "
                    "exact integers) and its shift only costs precision",
                    "0 overflowing rows either way; at every site SLaNC shifts, the unit's own error on the same input "
                    "is not lower with the shift",
                    f"overflow rows {off['overflow_rows']} / {on['overflow_rows']}; error with shift >= without at "
                    f"{len(worse)} of {len(shifted)} shifted sites (median x{ratio:.3g}, shifts up to "
                    f"{max((p['shift_on'] for p in shifted), default=0)} bits); stream error after the last layer "
                    f"{off['final_rel']:.3g} without, {on['final_rel']:.3g} with",
                    off["overflow_rows"] == 0 and on["overflow_rows"] == 0 and len(worse) == len(shifted),
                    "refmodel.numerics.units.norm (exact integer sums, input shift round_half_up(x / 2^k))"))
                continue
            fmt = lambda p: "nowhere" if p is None else f"layer {p[0]} {p[1]}"  # noqa: E731
            held = (tuple(off["first_overflow"] or ()) == tuple(off["predicted_overflow"] or ())
                    and tuple(on["first_overflow"] or ()) == tuple(on["predicted_overflow"] or ()))
            claims.append(Claim(
                f"{res['model']}, {base}: the first norm whose sum of squares overflows, without and with SLaNC, is "
                "where the float64 stream predicts it",
                f"without SLaNC: {fmt(off['predicted_overflow'])}; with SLaNC: {fmt(on['predicted_overflow'])} "
                f"(work format {off['sites'][0].get('work', '?')})",
                f"without: {fmt(off['first_overflow'])} ({off['overflow_rows']} rows in all); with: "
                f"{fmt(on['first_overflow'])} ({on['overflow_rows']} rows); final rel error {off['final_rel']:.3g} -> "
                f"{on['final_rel']:.3g}", held, "arXiv 2410.10553 (abstract); slanc.md 1.2"))
            if off["first_overflow"] is not None:
                claims.append(Claim(
                    f"{res['model']}, {base}: SLaNC prevents the overflow that the plan has without it",
                    "0 overflowing rows with SLaNC", f"{on['overflow_rows']} rows with SLaNC (first: "
                    f"{fmt(on['first_overflow'])}), {off['overflow_rows']} without", on["overflow_rows"] == 0,
                    "arXiv 2410.10553 (abstract: SLaNC rules out overflow)"))
    return claims


def _fig(results: list[dict[str, Any]]) -> Figure:
    reals = [r for r in results if r["kind"] == "real"]
    fig, axes = new_figure(max(1, len(reals)), width=5.5)
    for ax, res in zip(axes, reals, strict=False):
        for i, (base, pair) in enumerate(res["plans"].items()):
            for onoff, style in (("off", ":"), ("on", "-")):
                rel = pair[onoff]["rel"]
                ax.semilogy(range(len(rel)), log_safe(rel), style, color=COLORS[i % len(COLORS)],
                            label=f"{base} {'SLaNC' if onoff == 'on' else 'no SLaNC'}")
        ax.set(xlabel="layer", ylabel="stream max rel error", title=res["model"])
        integer_x(ax)
        ax.legend(fontsize=7)
    return Figure("Stream error with and without SLaNC", png_bytes(fig),
                  "Relative error of the residual stream after each layer, SLaNC on (solid) and off (dotted).")


def run(opts: StudyOptions, progress: Progress) -> Report:
    """The SLaNC study (module docstring)."""
    plans = resolve_plans(_plans(opts))
    tokens = opts.n_tokens(8, quick=4, full=32)
    rep = Report("slanc", "SLaNC on and off, per plan, on the whole models",
                 "Every plan runs the whole model with SLaNC (static scales from the weights) and without; per norm "
                 "site: rows whose sum of squares overflowed, input entries whose square (or shifted code) is lost, "
                 "the error of the norm output and of the stream against float64. Predictions come from the float64 "
                 "whole-model stream.", {**opts.as_dict(), "tokens": tokens, "plans": [p.name for p in plans]})
    results: list[dict[str, Any]] = []
    for sm in each_model(opts, tokens, progress):
        ref = reference_forward(sm.weights, sm.x)
        res: dict[str, Any] = {"model": sm.label, "kind": sm.kind, "plans": {}}
        for plan in plans:
            on = _run(sm, _with_slanc(plan, True), ref, progress)
            off = _run(sm, _with_slanc(plan, False), ref, progress, shifts=on["scales"])
            res["plans"][plan.name] = {"fixed": _fixed(plan), "off": off, "on": on}
        results.append(res)
    head = []
    for res in results:
        for base, pair in res["plans"].items():
            for onoff in ("off", "on"):
                r = pair[onoff]
                fo = r["first_overflow"]
                head.append([res["model"], base, onoff == "on", "-" if fo is None else f"{fo[0]}:{fo[1]}",
                             r["overflow_rows"], r["underflow"], r["final_rel"], r["stopped_at"]])
    s = rep.section("SLaNC on/off per plan",
                    "first overflow = first layer:norm whose sum of squares overflowed; overflow rows = over all "
                    "sites; underflow = norm-input entries whose square (float plans) or SLaNC-shifted code (fixed "
                    "plans) is lost whole; final rel = the stream's relative error after the last layer.")
    s.tables.append(Table("SLaNC on/off: overflow, underflow, error", ["model", "plan", "SLaNC", "first overflow",
                                                                      "overflow rows", "underflow", "final rel",
                                                                      "stopped at"], head))
    for res in results:
        if res["kind"] != "real":
            continue
        rows = []
        for base, pair in res["plans"].items():
            for a, b in zip(pair["off"]["sites"], pair["on"]["sites"], strict=True):
                if a["overflow"] or b["overflow"] or a["underflow"] or b["underflow"] or a["layer"] < 2:
                    rows.append([base, a["layer"], a["site"], b["scale"], a["overflow"], b["overflow"], a["underflow"],
                                 b["underflow"], a["norm_out_rel"], b["norm_out_rel"]])
        s.tables.append(Table(f"{res['model']}: norm sites (layers 0-1 and every site with an overflow or underflow)",
                              ["plan", "layer", "site", "SLaNC scale", "ovf off", "ovf on", "udf off", "udf on",
                               "norm err off", "norm err on"], rows))
    s.figures.append(_fig(results))
    rep.claims += _claims(results)
    rep.data = {"models": results}
    return rep
