"""``refmodel accuracy``: drift of a precision plan from float64 on real or random weights."""

from __future__ import annotations

import math

import typer

from refmodel.errors import UserError

MODELS = ("minilm", "smollm2", "random")
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog, while numerics engineers check every rounding."


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.3e}"


def register(app: typer.Typer) -> None:
    @app.command("accuracy")
    def accuracy(
        model: str = typer.Option("minilm", "--model", help="minilm (bert, real weights), smollm2 (llama, real "
                                  "Q4_1-dequantized weights) or random (seeded weights for --config)"),
        plan: str = typer.Option("fp16", "--plan", help="preset (fp32, fp16, bf16, fp8, mxfp8, fixed16, hw) or plan file"),
        text: str = typer.Option(DEFAULT_TEXT, "--text", help="input text (real models)"),
        layers: str = typer.Option("0", "--layers", help="layers to run as a chain: all, N, A-B"),
        config: str = typer.Option("tiny", "--config", help="layer config for --model random"),
        seed: int = typer.Option(0, "--seed", help="seed for --model random"),
        outliers: float = typer.Option(0.0, "--outliers", help="inject outlier channels of this size into the "
                                       "layer input (0 = none), as real LLM residual streams carry"),
        slanc: str = typer.Option("both", "--slanc", help="run with SLaNC on, off, or both (two column groups)"),
        slanc_first: str = typer.Option("input", "--slanc-first", help="SLaNC rule for a pre-norm layer's first "
                                        "norm when SLaNC is on: input (scale from the input rows) or none (s = 1, "
                                        "as the SLaNC code does for layer 0)"),
        plot: str | None = typer.Option(None, "--plot", help="write a PNG of max relative error per tensor"),
    ) -> None:
        """Per tensor: max abs error, max relative error, cosine similarity vs float64 and overflow
        count, with and without SLaNC."""
        import numpy as np

        from refmodel.accuracy import chain_accuracy
        from refmodel.accuracy_plot import plot_accuracy
        from refmodel.commands._common import load_config, load_plan, parse_layers, progress_bar
        from refmodel.console import make_console

        if model not in MODELS:
            raise UserError(f"unknown --model {model!r}: use one of {', '.join(MODELS)}")
        if slanc_first not in ("input", "none"):
            raise UserError(f"bad --slanc-first {slanc_first!r}: use input or none")
        if slanc not in ("both", "on", "off"):
            raise UserError(f"bad --slanc {slanc!r}: use on, off or both")
        if plot is not None and not plot.lower().endswith(".png"):
            raise UserError(f"--plot must name a .png file, got {plot!r}")
        p = load_plan(plan)
        console = make_console()
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
        if outliers:
            x = x.copy()
            ch = np.random.default_rng(seed).choice(x.shape[1], size=min(3, x.shape[1]), replace=False)
            x[:, ch] += outliers
        runs = {"on": [True], "off": [False], "both": [False, True]}[slanc]
        results = {}
        with progress_bar(f"{model} / {p.name}", total=len(runs) * len(ws)) as advance:
            for on in runs:
                pp = p.replace(slanc=on, slanc_pow2=p.slanc_pow2 if on else False,
                               slanc_first=slanc_first if on else p.slanc_first)
                try:
                    results["SLaNC on" if on else "SLaNC off"] = chain_accuracy(cfg, ws, x, pp, layer_indices=idx,
                                                                               pad_mask=pad, progress=advance)
                except (ValueError, OverflowError) as e:
                    raise UserError(f"plan {p.name} ({'SLaNC on' if on else 'SLaNC off'}): {e}") from None
        from rich.table import Table

        t = Table(title=f"accuracy of plan {p.name} vs float64 -- {source}")
        t.add_column("layer", justify="right")
        t.add_column("tensor")
        for label in results:
            for col in ("max abs", "max rel", "cosine", "overflow"):
                t.add_column(f"{col} ({label.split()[1]})" if len(results) > 1 else col, justify="right")
        labels = list(results)
        for i, r0 in enumerate(results[labels[0]]):
            row = [str(r0.layer), r0.name]
            for lab in labels:
                r = results[lab][i]
                row += [_fmt(r.max_abs), _fmt(r.max_rel), f"{r.cosine:.6f}" if not math.isnan(r.cosine) else "nan",
                        str(r.overflow)]
            t.add_row(*row)
        console.print(t)
        for lab in labels:
            rows = results[lab]
            ov = sum(r.nonfinite for r in rows)
            last = rows[-1]
            console.print(f"{lab}: final '{last.name}' max rel {_fmt(last.max_rel)}, cosine {last.cosine:.6f}; "
                          f"{ov} non-finite values in all tensors")
        if plot:
            plot_accuracy(results, plot, f"{p.name} vs float64: {source}")
            console.print(f"plot written: {plot}")
