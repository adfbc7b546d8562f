"""The sweep's results table (rich, one row per config x plan x job kind, seeds aggregated) and its
figure (a status heat map per job kind: configs x plans, each cell annotated with the pass count
and the kind's key figure, worst over seeds)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .grid import Grid

if TYPE_CHECKING:
    from rich.console import JustifyMethod
    from rich.table import Table

__all__ = ["key_figure", "results_table", "problem_lines", "plot_sweep"]


def _g(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _size(n: float) -> str:
    for unit, f in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= f:
            return f"{n / f:.3g} {unit}"
    return f"{n:.0f} B"


def _worst(recs: Sequence[dict[str, Any]], key: str, largest: bool = True) -> Any:
    vals = [r["figures"][key] for r in recs if key in r["figures"]]
    fin = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(fin) < len(vals):
        return float("nan")  # a non-finite figure is the worst
    if not fin:
        return None
    return max(fin) if largest else min(fin)


def key_figure(kind: str, recs: Sequence[dict[str, Any]], short: bool = False) -> str:
    """The kind's key figure over ``recs`` (the records of one config x plan x kind), worst over
    seeds: golden set size, bound tightness, output max rel error, RTL cycles."""
    ran = [r for r in recs if r["figures"]]
    if not ran:
        return "skipped" if all(r["status"] == "skipped" for r in recs) else "n/a"
    if kind == "golden":
        size = _size(_worst(ran, "bytes"))
        return size if short else f"{_worst(ran, 'files')} files, {size}"
    if kind == "bounds":
        t, v = _worst(ran, "rigorous_tightness_max"), sum(r["figures"]["rigorous_violations"] for r in ran)
        return f"tight {_g(t)}" if short else f"tight {_g(t)}, {v} viol"
    if kind == "accuracy":
        rel, cos = _worst(ran, "out_max_rel"), _worst(ran, "out_cosine", largest=False)
        return f"rel {_g(rel)}" if short else f"rel {_g(rel)}, cos {cos:.5f}"
    if kind == "rtl":
        cyc = _worst(ran, "cycles")
        exact = min(r["figures"]["bit_exact_stages"] for r in ran)
        stages = max(r["figures"]["stages"] for r in ran)
        return f"{_g(cyc)} cyc" if short else f"{_g(cyc)} cycles, {exact}/{stages} exact"
    return ""


def _groups(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault((r["config"], r["plan"], r["job"]), []).append(r)
    return out


def results_table(records: Sequence[dict[str, Any]], title: str) -> Table:
    """The rich table: config, plan, job, counts per status over the seeds, key figure."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
              caption="ok/fail/err/skip: jobs over the seeds; figure: worst over the seeds (golden: set size; "
                      "bounds: max observed/rigorous bound; accuracy: output max rel error and cosine vs float64; "
                      "rtl: cycles, stages bit-exact)", caption_justify="left")
    cols: tuple[tuple[str, JustifyMethod], ...] = (
        ("config", "left"), ("plan", "left"), ("job", "left"), ("ok", "right"), ("fail", "right"), ("err", "right"),
        ("skip", "right"), ("figure", "left"))
    for col, just in cols:
        t.add_column(col, justify=just, overflow="fold")
    for (cfg, plan, kind), recs in _groups(records).items():
        n = {s: sum(1 for r in recs if r["status"] == s) for s in ("passed", "failed", "error", "skipped")}
        t.add_row(cfg, plan, kind, str(n["passed"]), f"[red]{n['failed']}[/]" if n["failed"] else "0",
                  f"[red]{n['error']}[/]" if n["error"] else "0", str(n["skipped"]), key_figure(kind, recs))
    return t


def problem_lines(records: Sequence[dict[str, Any]], limit: int = 20) -> list[str]:
    """One line per failed or errored job (its message), then each distinct skip reason once
    with the jobs it covers."""
    out = []
    bad = [r for r in records if r["status"] in ("failed", "error")]
    for r in bad[:limit]:
        out.append(f"{r['status'].upper()} {r['id']}: {r['message']}")
    if len(bad) > limit:
        out.append(f"... and {len(bad) - limit} more failed or errored jobs (results.json has them all)")
    reasons: dict[str, list[str]] = {}
    for r in records:
        if r["status"] == "skipped":
            reasons.setdefault(str(r["message"]), []).append(r["id"])
    for msg, ids in reasons.items():
        where = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        out.append(f"skipped ({len(ids)} job{'s' if len(ids) > 1 else ''}: {where}): {msg}")
    return out


def plot_sweep(records: Sequence[dict[str, Any]], grid: Grid) -> bytes:
    """PNG bytes of the status heat map: one panel per job kind, configs x plans; colour = share of
    the seeds that passed (grey: every job skipped), text = passed/ran and the key figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    configs, plans, kinds = list(grid.configs), list(grid.plans), list(grid.kinds)
    groups = _groups(records)
    ncols = min(len(kinds), 2)
    nrows = -(-len(kinds) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(4.0, 1.6 * len(plans) + 1.6) * ncols,
                                                     (0.7 * len(configs) + 1.4) * nrows + 0.5), squeeze=False)
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#d9d9d9")
    for ax in axes.flat[len(kinds):]:
        ax.set_visible(False)
    for ax, kind in zip(axes.flat, kinds, strict=False):
        share = np.full((len(configs), len(plans)), np.nan)
        for i, c in enumerate(configs):
            for j, p in enumerate(plans):
                recs = groups.get((c, p, kind), [])
                ran = [r for r in recs if r["status"] != "skipped"]
                if ran:
                    share[i, j] = sum(r["status"] == "passed" for r in ran) / len(ran)
                if recs:
                    text = (f"{sum(r['status'] == 'passed' for r in ran)}/{len(ran)}\n{key_figure(kind, recs, True)}"
                            if ran else "skipped")
                    ax.text(j, i, text, ha="center", va="center", fontsize=8)
        ax.imshow(np.ma.masked_invalid(share), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", alpha=0.6)
        ax.set_xticks(range(len(plans)))
        ax.set_xticklabels(plans, rotation=30, ha="right")
        ax.set_yticks(range(len(configs)))
        ax.set_yticklabels(configs)
        ax.set_title(kind)
    n = {s: sum(1 for r in records if r["status"] == s) for s in ("passed", "failed", "error", "skipped")}
    fig.suptitle(f"refmodel sweep: {len(records)} jobs over {len(grid.seeds)} seed(s): {n['passed']} passed, "
                 f"{n['failed']} failed, {n['error']} errors, {n['skipped']} skipped "
                 "(colour: share of seeds passed; grey: skipped)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
