"""``refmodel bounds``: layer-level validation of the error bounds (trials), and the attention
Lipschitz table."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import typer

from refmodel.errors import CheckFailed, UserError

if TYPE_CHECKING:
    from rich.console import Console

    from refmodel.bounds.validate_layer import LayerReport
    from refmodel.layer.config import LayerConfig
    from refmodel.layer.plan import PrecisionPlan

TIERS = ("rigorous", "statistical")


def _f(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3g}"


def register(app: typer.Typer) -> None:
    @app.command("bounds")
    def bounds(
        plan: str = typer.Option("hw", "--plan", help="preset (fp32, fp16, bf16, fp8, mxfp8, fixed16, hw, ...) or plan file"),
        trials: int | None = typer.Option(None, "--trials", help="layer trials (random and adversarial inputs; default "
                                          "60); with --local: the number of seeds, from --seed on (default 1)"),
        config: str = typer.Option("tiny", "--config", help="layer config preset (tiny, tiny-bert, tiny-llama, d256, "
                                   "gpt2-small, ...) or .json file"),
        seed: int = typer.Option(0, "--seed", min=0, help="seed of the trials (with --local: the first seed of the random "
                                 "layer, weights from the seed and input from seed + 1, as golden sets)"),
        local: bool = typer.Option(False, "--local", help="show the per-stage local tolerances instead: each stage "
                                   "against the float64 op on its own quantised inputs (rigorous and warning tiers, "
                                   "max bound / max observed)"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout instead of tables"),
        plot: str | None = typer.Option(None, "--plot", help="write a PNG of observed error vs bound per tensor "
                                        "(trials mode)"),
        tier: str = typer.Option("rigorous", "--tier", help="tier shown in the tightness columns and the plot: "
                                 "rigorous | statistical (trials mode)"),
        kinds: str = typer.Option("all", "--kinds", help="input kinds, comma separated: random, outlier, sink, tie, "
                                  "long, scaled (all = every kind; trials mode)"),
        long_seq: int = typer.Option(128, "--long-seq", help="sequence length of the 'long' trials"),
        attention_table: bool = typer.Option(False, "--attention-table", help="print the self-attention Lipschitz "
                                             "factor table for sequence lengths 16..2048 instead"),
    ) -> None:
        """Validate the error bounds of a plan against float64.

        Trials mode (default): run layer trials and report, per tensor, the end-to-end rigorous and
        statistical bound violations, the tightness (observed / bound) and the no-guarantee counts.

        --local: for the random layer of each seed, every stage's local tolerance (rigorous, and
        the warning tier with its failure probability) against the float64 op on the stage's own
        quantised inputs, with the largest bound / largest observed error (median over seeds).

        Exit codes: 0 no rigorous bound violated; 1 a rigorous bound was violated; 2 usage error.
        """
        from refmodel.commands._common import load_config, load_plan, print_json, progress_bar
        from refmodel.console import make_console

        console = make_console()
        if attention_table:
            _attention_table(console)
            return
        if tier not in TIERS:
            raise UserError(f"bad --tier {tier!r}: use rigorous or statistical")
        n = trials if trials is not None else (1 if local else 60)
        if n < 1:
            raise UserError(f"--trials must be >= 1, got {n}")
        if long_seq < 1:
            raise UserError(f"--long-seq must be >= 1, got {long_seq}")
        if plot is not None and not plot.lower().endswith(".png"):
            raise UserError(f"--plot must name a .png file, got {plot!r}")
        if local and plot is not None:
            raise UserError("--plot is for the trials mode; --local prints a table (or --json)")
        from refmodel.bounds.validate_layer import KINDS, run_trials

        ks = KINDS if kinds.strip().lower() == "all" else tuple(k.strip() for k in kinds.split(",") if k.strip())
        bad = [k for k in ks if k not in KINDS]
        if bad or not ks:
            raise UserError(f"bad --kinds {kinds!r}: use all or a comma-separated list of {', '.join(KINDS)}")
        p = load_plan(plan)
        cfg = load_config(config)
        try:
            p.check(cfg)
        except ValueError as e:
            raise UserError(str(e)) from None
        if local:
            _local(console, p, cfg, config, seed, n, json_out)
            return
        with progress_bar(f"bounds {p.name} / {config}", total=n) as advance:
            rep = run_trials(p, n, seed, configs={config: cfg}, kinds=ks, progress=advance, long_seq=long_seq,
                             keep_points=64 if plot else 0)
        if rep.errors and len(rep.errors) and sum(rep.errors.values()) == rep.trials:
            first = next(iter(rep.errors))
            raise UserError(f"plan {p.name} cannot run config {config}: {first}")
        if json_out:
            print_json(_trials_json(rep, config))
        else:
            _print_table(console, rep, tier, config)
        if plot:
            _plot(rep, plot, tier, f"{p.name} / {config}: {rep.trials} trials")
            make_console(stderr=True).print(f"plot written: {plot}")
        if rep.viol_rig:
            raise CheckFailed(f"{rep.viol_rig} rigorous bound violation(s) in plan {p.name} / {config}")


def _local(console: Console, plan: PrecisionPlan, cfg: LayerConfig, config: str, seed: int, n: int,
           json_out: bool) -> None:
    from rich.table import Table

    from refmodel.bounds.report import local_summary
    from refmodel.commands._common import print_json, progress_bar

    seeds = list(range(seed, seed + n))
    try:
        with progress_bar(f"local tolerances {plan.name} / {config}", total=n) as advance:
            s = local_summary(cfg, plan, seeds, config_name=config, progress=advance)
    except (ValueError, OverflowError) as e:
        raise UserError(f"plan {plan.name} cannot run config {config}: {e}") from None
    if json_out:
        print_json(s.as_dict())
    else:
        seeds_txt = f"seed {seed}" if n == 1 else f"seeds {seed}..{seed + n - 1}"
        t = Table(title=f"local tolerances of plan {plan.name} -- {config}, {seeds_txt}",
                  caption="local: rigorous bound on |stage - float64 op on its own quantised inputs| (max over "
                          "elements); ratio: max local / max observed, median over seeds (exact: observed 0); "
                          "warning: statistical tier, warns: elements above it; inputs and failure probabilities "
                          "in --json")
        for col in ("stage", "format", "local", "observed", "ratio", "warning", "warns", "viol"):
            t.add_column(col, justify="left" if col in ("stage", "format") else "right", overflow="fold")
        for st in s.stages.values():
            ratio = "exact" if not st.ratios else _f(st.ratio_median)
            viol = f"[bold red]{st.violations}[/]" if st.violations else "0"
            fin = "" if st.finite else " [bold red]inf[/]"
            t.add_row(st.name, st.format, _f(st.max_bound) + fin, _f(st.max_observed), ratio, _f(st.max_warning),
                      str(st.warnings), viol)
        console.print(t)
        console.print(f"totals: {len(s.stages)} stages, {sum(st.elements for st in s.stages.values())} elements, "
                      f"rigorous violations {s.violations}, all finite: {'yes' if s.finite else 'no'}, "
                      f"{s.seconds:.1f} s", markup=False)
    if s.violations:
        raise CheckFailed(f"{s.violations} local rigorous bound violation(s) in plan {plan.name} / {config}")


def _trials_json(rep: LayerReport, config: str) -> dict[str, Any]:
    return {"plan": rep.plan, "config": config, "trials": rep.trials, "kinds": rep.kinds, "seconds": rep.seconds,
            "elements": rep.elements, "rigorous_violations": rep.viol_rig, "statistical_violations": rep.viol_stat,
            "no_guarantee": rep.no_guarantee, "errors": rep.errors,
            "tensors": [{"name": t.name, "kind": t.kind, "trials": t.trials, "rigorous_violations": t.viol_rig,
                         "statistical_violations": t.viol_stat, "expected_statistical_failures": t.expected_stat_fail,
                         "rigorous_max": t.rig_max, "rigorous_median": t.rig_median, "statistical_max": t.stat_max,
                         "statistical_median": t.stat_median, "no_guarantee": t.no_guarantee}
                        for t in rep.rows()]}


def _attention_table(console: Console) -> None:
    from refmodel.bounds.attention import attention_factor_table, table_markdown
    from refmodel.commands._common import progress_bar

    lens = (16, 32, 64, 128, 256, 512, 1024, 2048)
    tables = {}
    with progress_bar("attention factors", total=2) as advance:
        for sink in (False, True):
            tables[sink] = attention_factor_table(lens, sink=sink)  # one layer for every n (docs/bounds.md 4)
            advance(1)
    for sink in (False, True):
        console.print("attention sink (token 0 built as a sink, Q/K gains x2)" if sink else "random heads")
        console.print(table_markdown(tables[sink]), markup=False, highlight=False)
        console.print()


def _print_table(console: Console, rep: LayerReport, tier: str, config: str) -> None:
    from rich.table import Table

    t = Table(title=f"layer bounds of plan {rep.plan} vs float64 -- {config}, {rep.trials} trials "
                    f"({', '.join(f'{k} {n}' for k, n in rep.kinds.items())})",
              caption=f"max / med: tightness = observed / {tier} bound over elements with a finite bound > 0; "
                      f"rig viol: elements above the rigorous bound; stat viol: elements (trials) above the "
                      f"statistical bound; expected: sum of its stated failure probabilities; iso max (100+ columns, --json): isolated "
                      f"stage bound; no-guar: elements (trials) without a finite bound")
    # below 100 columns the op and iso columns are left out (they are in --json) so that every
    # number keeps all its digits
    wide = console.width >= 100
    cols = ["tensor"] + (["op"] if wide else []) + ["rig\nviol", "stat\nviol", "expected", "max", "med"]
    cols += (["iso\nmax"] if wide else []) + ["no-guar"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("tensor", "op") else "right", no_wrap=True)
    for ts in rep.rows():
        mx, md = (ts.rig_max, ts.rig_median) if tier == "rigorous" else (ts.stat_max, ts.stat_median)
        rv = f"[bold red]{ts.viol_rig}[/]" if ts.viol_rig else "0"
        row = [ts.name] + ([ts.kind] if wide else []) + [rv, f"{ts.viol_stat} ({ts.trials_stat_viol})",
                                                         f"{ts.expected_stat_fail:.2g}", _f(mx), _f(md)]
        row += ([_f(ts.iso_max)] if wide else []) + [f"{ts.no_guarantee} ({ts.trials_no_guarantee})"]
        t.add_row(*row)
    console.print(t)
    reasons: dict[str, int] = {}
    for ts in rep.rows():
        for r, n in ts.reasons.items():
            if not r.startswith(("no guarantee: input tensor ", "no guarantee: input weight ")):  # inherited
                reasons[r] = reasons.get(r, 0) + n
    if reasons:
        console.print("no guarantee (first causes, with the number of tensor-trials):", markup=False)
        for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:12]:
            console.print(f"  {n:5d}  {r}", markup=False, highlight=False)
    for e, n in rep.errors.items():
        console.print(f"run error in {n} trial(s): {e}", markup=False)
    console.print(f"totals: {rep.trials} trials, {rep.elements} elements, rigorous violations {rep.viol_rig}, "
                  f"statistical violations {rep.viol_stat}, no-guarantee elements {rep.no_guarantee}, "
                  f"{rep.seconds:.1f} s", markup=False)


def _plot(rep: LayerReport, path: str, tier: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [t for t in rep.rows() if t.name != "x"]
    names = [t.name for t in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 5.8), gridspec_kw={"width_ratios": [1.25, 1]})
    idx = np.arange(len(rows))
    w = 0.2
    series = [("rigorous max", [t.rig_max for t in rows], "#1f77b4", 1.0),
              ("rigorous median", [t.rig_median for t in rows], "#1f77b4", 0.45),
              ("statistical max", [t.stat_max for t in rows], "#d62728", 1.0),
              ("statistical median", [t.stat_median for t in rows], "#d62728", 0.45)]
    for k, (lab, vals, col, alpha) in enumerate(series):
        v = np.array([x if math.isfinite(x) and x > 0 else np.nan for x in vals])
        ax1.bar(idx + (k - 1.5) * w, v, w, label=lab, color=col, alpha=alpha)
    ax1.axhline(1.0, color="k", lw=1)
    ax1.text(len(rows) - 0.5, 1.05, "bound", ha="right", va="bottom", fontsize=8)
    ax1.axhline(0.1, color="gray", lw=0.8, ls="--")
    ax1.text(-0.5, 0.105, "bound 10x the observed", ha="left", va="bottom", fontsize=8, color="gray")
    ax1.set_yscale("log")
    ax1.set_xticks(idx)
    ax1.set_xticklabels(names, rotation=45, ha="right")
    ax1.set_ylabel("observed error / bound")
    ax1.set_title("tightness per tensor (max and median over elements)")
    ax1.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    cmap = plt.get_cmap("tab20")
    lo, hi = np.inf, 0.0
    for k, t in enumerate(rows):
        pts = np.array(t.points, dtype=float)
        if not pts.size:
            continue
        ci = 0 if tier == "rigorous" else 1
        pts = pts[(pts[:, ci] > 0) & (pts[:, 2] > 0) & np.isfinite(pts[:, ci])][:, [ci, 2]]
        if not pts.size:
            continue
        ax2.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.5, color=cmap(k % 20), label=t.name)
        lo, hi = min(lo, pts.min()), max(hi, pts.max())
    if math.isfinite(lo) and hi > 0:
        ax2.plot([lo, hi], [lo, hi], "k-", lw=1, label="observed = bound")
        ax2.plot([lo, hi], [lo / 10, hi / 10], color="gray", ls="--", lw=0.8, label="bound / 10")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel(f"{tier} bound (sampled elements)")
    ax2.set_ylabel("observed |run - float64|")
    ax2.set_title(f"observed vs {tier} bound")
    ax2.legend(fontsize=7, ncol=2, markerscale=3, loc="upper left")
    fig.suptitle(f"{title}; rigorous violations {rep.viol_rig}, statistical {rep.viol_stat} "
                 f"(tier shown: {tier})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
