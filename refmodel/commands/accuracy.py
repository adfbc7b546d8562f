"""``refmodel accuracy``: drift of a precision plan from float64 on real or random weights."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from refmodel.errors import UserError

MODELS = ("minilm", "smollm2", "random")
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog, while numerics engineers check every rounding."


def _num(v: float) -> str:
    """A number that keeps its exponent in a narrow column."""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.3g}"


def _pct(part: int, n: int) -> str:
    return "-" if n == 0 else f"{100 * part / n:.3g}"


def accuracy_table(results: dict[str, list[Any]], title: str) -> Any:
    """The per-tensor table (rich): for each run label, max relative error, cosine, saturated
    count (incl. non-finite and norm rows whose sum overflowed) and % of elements stored as zero.
    Every column fits an 80-column terminal for two labels; numbers use ``.3g``."""
    from rich import box
    from rich.table import Table

    labels = list(results)
    t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False, show_edge=False, title_justify="left",
              caption="rel = max|q - ref| / max|ref|; cos = cosine; sat = saturated + non-finite; zero% = stored as 0"
              + ("; off/on = SLaNC off/on" if len(labels) > 1 else ""), caption_justify="left")
    t.add_column("layer", justify="right", min_width=5)
    t.add_column("tensor", min_width=6, no_wrap=True)
    for label in labels:
        tag = f" {label.split()[-1]}" if len(labels) > 1 else ""
        for col, w in (("rel", 8), ("cos", 7), ("sat", 3), ("zero%", 5)):
            t.add_column(col + tag, justify="right", min_width=w, overflow="fold")
    for i, r0 in enumerate(results[labels[0]]):
        row = [str(r0.layer), r0.name]
        for lab in labels:
            r = results[lab][i]
            row += [_num(r.max_rel), f"{r.cosine:.5f}" if not math.isnan(r.cosine) else "nan", str(r.overflow),
                    _pct(r.zero, r.n)]
        t.add_row(*row)
    return t


def _grouped_warnings(per_layer: list[tuple[int, str]]) -> list[str]:
    """(layer, warning line) -> one line per distinct tensor warning kind, listing the layers."""
    groups: dict[tuple[str, str], list[int]] = {}
    first: dict[tuple[str, str], str] = {}
    for layer, line in per_layer:
        name, _, rest = line.partition(": ")
        kind = "saturated" if "saturated" in rest else "zero"
        key = (name, kind)
        groups.setdefault(key, []).append(layer)
        first.setdefault(key, line)
    out = []
    for key, layers in groups.items():
        where = f"layer {layers[0]}" if len(layers) == 1 else f"layers {','.join(map(str, sorted(set(layers))))}"
        out.append(f"{where}: {first[key]}" + (" (first of them)" if len(layers) > 1 else ""))
    return out


def register(app: typer.Typer) -> None:
    @app.command("accuracy")
    def accuracy(
        model: str = typer.Option("minilm", "--model", help="minilm (bert, real weights), smollm2 (llama, real "
                                  "Q4_1-dequantized weights) or random (seeded weights for --config)"),
        plan: str = typer.Option("fp16", "--plan", help="preset (fp32, fp16, fp16-acc16, bf16, fp8, mxfp8, fixed16, "
                                 "hw) or plan file"),
        text: str = typer.Option(DEFAULT_TEXT, "--text", help="input text (real models)"),
        layers: str = typer.Option("0", "--layers", help="layers to run as a chain: all, N, A-B"),
        config: str = typer.Option("tiny", "--config", help="layer config for --model random"),
        seed: int = typer.Option(0, "--seed", min=0, help="seed for --model random"),
        outliers: float = typer.Option(0.0, "--outliers", help="inject outlier channels of this size into the "
                                       "layer input (0 = none), as real LLM residual streams carry"),
        slanc: str = typer.Option("both", "--slanc", help="run with SLaNC on, off, or both (two column groups)"),
        slanc_first: str = typer.Option("input", "--slanc-first", help="SLaNC rule for a pre-norm layer's first "
                                        "norm when SLaNC is on: input (scale from the input rows) or none (s = 1, "
                                        "as the SLaNC code does for layer 0)"),
        plot: str | None = typer.Option(None, "--plot", help="write a PNG of max relative error per tensor"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object (rows, clipping counts, "
                                     "warnings) on stdout instead of the table"),
    ) -> None:
        """Per tensor: max relative error and cosine similarity vs float64, saturated elements and
        the share stored as zero, with and without SLaNC; then the weights' saturation/underflow
        counts. Warnings (stderr) flag tensors above 0.1 % saturated or 50 % zero. Exit codes: 0 done,
        2 usage error (bad option, plan or file)."""
        import numpy as np

        from refmodel.accuracy import SLANC_FIXED_NOTE, chain_accuracy
        from refmodel.accuracy_plot import plot_accuracy
        from refmodel.commands._common import load_config, load_plan, parse_layers, print_json, progress_bar
        from refmodel.console import make_console
        from refmodel.layer.clipping import ClipCount, format_clipping, total_clipping

        if model not in MODELS:
            raise UserError(f"unknown --model {model!r}: use one of {', '.join(MODELS)}")
        if slanc_first not in ("input", "none"):
            raise UserError(f"bad --slanc-first {slanc_first!r}: use input or none")
        if slanc not in ("both", "on", "off"):
            raise UserError(f"bad --slanc {slanc!r}: use on, off or both")
        if plot is not None and not plot.lower().endswith(".png"):
            raise UserError(f"--plot must name a .png file, got {plot!r}")
        if plot is not None and not Path(plot).resolve().parent.is_dir():
            raise UserError(f"--plot {plot}: directory {Path(plot).parent} does not exist")
        p = load_plan(plan)
        console = make_console()
        err = make_console(stderr=True)
        pad = None
        if model == "random":
            from refmodel.layer.weights import random_inputs, random_weights

            cfg = load_config(config)
            idx = parse_layers(layers, 1_000_000)
            ws = [random_weights(cfg, seed=seed + i) for i in idx]
            x = random_inputs(cfg, seed=seed + 10_000)
            source = f"random weights, config {config}, seed {seed}"
        else:
            from refmodel.layer import realweights

            loader = realweights.load_minilm if model == "minilm" else realweights.load_smollm2
            probe = loader(layers=[])
            idx = parse_layers(layers, probe.n_layers)
            m = loader(layers=idx)
            cfg = m.config
            ws = m.layers
            x = m.embed(text)
            source = f"{m.name}, layers {idx[0]}-{idx[-1]} of {m.n_layers}, {x.shape[0]} tokens"
            if model == "smollm2":
                source += " (weights are Q4_1-dequantized)"
        try:
            p.check(cfg)
        except ValueError as e:
            raise UserError(str(e)) from None
        notes = p.notes() + [c.message for c in p.accumulator_checks(cfg) if c.status == "risk"]
        if outliers:
            x = x.copy()
            ch = np.random.default_rng(seed).choice(x.shape[1], size=min(3, x.shape[1]), replace=False)
            x[:, ch] += outliers
        runs = {"on": [True], "off": [False], "both": [False, True]}[slanc]
        results: dict[str, list[Any]] = {}
        weight_clip: dict[str, ClipCount] = {}
        act_warn: dict[str, list[tuple[int, str]]] = {}
        weight_warn: list[tuple[int, str]] = []
        shifts: dict[str, dict[str, int]] = {}

        def collect(label: str) -> Callable[[int, Any], None]:
            def on_run(i: int, run: Any) -> None:
                for n, t in run.weights.items():
                    if t.clip is not None:
                        weight_clip[f"layer {i} {n}"] = t.clip
                for line in run.clipping_warnings():
                    (weight_warn if line.startswith("weight ") else act_warn.setdefault(label, [])).append((i, line))
                if run.slanc is not None and run.plan.slanc_pow2:
                    shifts.setdefault(label, {}).update({f"{i}:{k}": run.slanc.shift(k) for k in run.slanc.entries})
            return on_run

        with progress_bar(f"{model} / {p.name}", total=len(runs) * len(ws)) as advance:
            for on in runs:
                pp = p.replace(slanc=on, slanc_pow2=p.slanc_pow2 if on else False,
                               slanc_first=slanc_first if on else p.slanc_first)
                label = "SLaNC on" if on else "SLaNC off"
                if on and not p.slanc_pow2 and p.is_fixed_point(cfg):
                    pp = pp.replace(slanc_pow2=True)  # fixed-point norms apply SLaNC as a shift
                try:
                    results[label] = chain_accuracy(cfg, ws, x, pp, layer_indices=idx, pad_mask=pad,
                                                    progress=advance, on_run=collect(label))
                except (ValueError, OverflowError) as e:
                    raise UserError(f"plan {p.name} ({label}): {e}") from None
        labels = list(results)
        wtotal = total_clipping(weight_clip)
        warnings = [f"{lab}, {w}" for lab in labels for w in _grouped_warnings(act_warn.get(lab, []))]
        warnings = _grouped_warnings(sorted(set(weight_warn))) + warnings
        fixed_note = SLANC_FIXED_NOTE if (p.is_fixed_point(cfg) and "SLaNC on" in results) else None
        if as_json:
            out = {
                "model": model, "source": source, "plan": p.name, "plan_summary": p.summary(), "layers": idx,
                "runs": {lab: {"rows": [r.to_dict() for r in rows], "final": rows[-1].to_dict(),
                               "nonfinite": sum(r.nonfinite for r in rows), "slanc_shifts": shifts.get(lab, {})}
                         for lab, rows in results.items()},
                "weights": {"total": wtotal.to_dict(), "per_weight": {k: c.to_dict() for k, c in weight_clip.items()}},
                "warnings": warnings, "plan_notes": notes, "notes": [fixed_note] if fixed_note else [],
            }
            for line in notes + warnings:
                err.print(f"warning: {line}", highlight=False)
            print_json(out)
            if plot:
                plot_accuracy(results, plot, f"{p.name} vs float64: {source}")
            return
        console.print(accuracy_table(results, f"accuracy of plan {p.name} vs float64 -- {source}"))
        for lab in labels:
            rows = results[lab]
            ov = sum(r.nonfinite for r in rows)
            last = rows[-1]
            console.print(f"{lab}: final '{last.name}' max rel {_num(last.max_rel)}, cosine {last.cosine:.6f}; "
                          f"{ov} non-finite values in all tensors", highlight=False)
        console.print(f"weights: {wtotal.saturated} saturated, {wtotal.underflow} flushed to zero "
                      f"({_pct(wtotal.underflow or 0, wtotal.n)} %) of {wtotal.n}", highlight=False)
        for line in format_clipping({k: c for k, c in weight_clip.items() if c.saturated or c.nonfinite})[:20]:
            console.print(f"  {line}", highlight=False)
        if fixed_note:
            sh = shifts.get("SLaNC on", {})
            where = ", ".join(f"layer {k.replace(':', ' ')} k={v}" for k, v in list(sh.items())[:6])
            console.print(f"note: {fixed_note}" + (f" Shifts here: {where}." if where else ""), highlight=False)
        for line in notes:
            err.print(f"warning: {line}", highlight=False)
        for line in warnings:
            err.print(f"warning: {line}", highlight=False)
        if plot:
            plot_accuracy(results, plot, f"{p.name} vs float64: {source}")
            console.print(f"plot written: {plot}")
