"""``refmodel bounds``: layer-level validation of the error bounds (trials), and the attention
Lipschitz table."""

from __future__ import annotations

import math

import typer

from refmodel.errors import UserError

TIERS = ("rigorous", "statistical")


def _f(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3g}"


def register(app: typer.Typer) -> None:
    @app.command("bounds")
    def bounds(
        plan: str = typer.Option("hw", "--plan", help="preset (fp32, fp16, bf16, fp8, mxfp8, fixed16, hw) or plan file"),
        trials: int = typer.Option(60, "--trials", help="number of layer trials (random and adversarial inputs)"),
        config: str = typer.Option("tiny", "--config", help="layer config preset (tiny, tiny-bert, tiny-llama, ...) or "
                                   ".json file"),
        seed: int = typer.Option(0, "--seed", help="seed of the trials"),
        plot: str | None = typer.Option(None, "--plot", help="write a PNG of observed error vs bound per tensor"),
        tier: str = typer.Option("rigorous", "--tier", help="tier shown in the tightness columns and the plot: "
                                 "rigorous | statistical"),
        kinds: str = typer.Option("all", "--kinds", help="input kinds, comma separated: random, outlier, sink, tie, "
                                  "long, scaled (all = every kind)"),
        long_seq: int = typer.Option(128, "--long-seq", help="sequence length of the 'long' trials"),
        attention_table: bool = typer.Option(False, "--attention-table", help="print the self-attention Lipschitz "
                                             "factor table for sequence lengths 16..2048 instead"),
    ) -> None:
        """Run layer trials of a plan against float64 and report, per tensor, the rigorous and
        statistical bound violations, the tightness (observed / bound) and the no-guarantee counts.
        Exit code 1 if any rigorous bound is violated."""
        from refmodel.commands._common import load_config, load_plan, progress_bar
        from refmodel.console import make_console

        console = make_console()
        if attention_table:
            _attention_table(console)
            return
        if tier not in TIERS:
            raise UserError(f"bad --tier {tier!r}: use rigorous or statistical")
        if trials < 1:
            raise UserError(f"--trials must be >= 1, got {trials}")
        if long_seq < 1:
            raise UserError(f"--long-seq must be >= 1, got {long_seq}")
        if plot is not None and not plot.lower().endswith(".png"):
            raise UserError(f"--plot must name a .png file, got {plot!r}")
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
        with progress_bar(f"bounds {p.name} / {config}", total=trials) as advance:
            rep = run_trials(p, trials, seed, configs={config: cfg}, kinds=ks, progress=advance, long_seq=long_seq,
                             keep_points=64 if plot else 0)
        if rep.errors and len(rep.errors) and sum(rep.errors.values()) == rep.trials:
            first = next(iter(rep.errors))
            raise UserError(f"plan {p.name} cannot run config {config}: {first}")
        _print_table(console, rep, tier, config)
        if plot:
            _plot(rep, plot, tier, f"{p.name} / {config}: {rep.trials} trials")
            console.print(f"plot written: {plot}")
        if rep.viol_rig:
            console.print(f"[bold red]FAIL: {rep.viol_rig} rigorous bound violation(s)[/]")
            raise typer.Exit(1)


def _attention_table(console) -> None:
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


def _print_table(console, rep, tier: str, config: str) -> None:
    from rich.table import Table

    t = Table(title=f"layer bounds of plan {rep.plan} vs float64 -- {config}, {rep.trials} trials "
                    f"({', '.join(f'{k} {n}' for k, n in rep.kinds.items())})",
              caption=f"tightness = observed / {tier} bound over elements with a finite bound > 0; stat viol = "
                      f"elements (trials) above the statistical bound, expected = sum of the stated failure probabilities")
    for col in ("tensor", "op", "rig viol", "stat viol (trials)", "expected", f"{tier[:4]} max", f"{tier[:4]} median",
                "iso max", "no-guar. elems (trials)"):
        t.add_column(col, justify="left" if col in ("tensor", "op") else "right")
    for ts in rep.rows():
        mx, md = (ts.rig_max, ts.rig_median) if tier == "rigorous" else (ts.stat_max, ts.stat_median)
        rv = f"[bold red]{ts.viol_rig}[/]" if ts.viol_rig else "0"
        t.add_row(ts.name, ts.kind, rv, f"{ts.viol_stat} ({ts.trials_stat_viol})", f"{ts.expected_stat_fail:.2g}",
                  _f(mx), _f(md), _f(ts.iso_max), f"{ts.no_guarantee} ({ts.trials_no_guarantee})")
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


def _plot(rep, path: str, tier: str, title: str) -> None:
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
        col = 0 if tier == "rigorous" else 1
        pts = pts[(pts[:, col] > 0) & (pts[:, 2] > 0) & np.isfinite(pts[:, col])][:, [col, 2]]
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
