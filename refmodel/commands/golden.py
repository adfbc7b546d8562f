"""``refmodel golden``: write a golden vector set, or verify one (``refmodel golden verify DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from refmodel.errors import UserError

_EXIT_CODES = "Exit codes: 0 pass, 1 a check failed, 2 usage error (bad option, file or target directory)."


def _given(ctx: typer.Context, names: list[str]) -> list[str]:
    """The options among ``names`` that were typed on the command line (not defaults)."""
    out = []
    for n in names:
        src = ctx.get_parameter_source(n)
        if src is not None and getattr(src, "name", "") == "COMMANDLINE":  # click's or typer's own enum
            out.append(n)
    return out


def _clipping_lines(m: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(info lines, warning lines) for the saturation / underflow counts the run recorded in the
    manifest: a line per tensor or weight that saturated or flushed anything, a warning per
    threshold exceeded (above 0.1 % saturated, above 50 % zero; :mod:`refmodel.layer.clipping`)."""
    from refmodel.layer.clipping import ClipCount, clipping_warnings, format_clipping

    counts = {name: ClipCount(**c) for name, c in (m.get("clipping") or {}).items()}
    return format_clipping(counts), clipping_warnings(counts)


def _describe_part(e: dict[str, Any], noun: str) -> str:
    kind = e.get("kind")
    if kind == "model":
        return f"{e.get('name', e.get('model'))} layer {e.get('layer')}"
    if kind == "model_text":
        return f"{e.get('tokens')} tokens of text"
    if kind == "file":
        return f"{noun} {e.get('file')}"
    if kind == "embedded":
        return f"{noun} given as array(s)"
    return f"random {noun} (seed {e.get('seed')})"


def _describe_source(src: dict[str, Any]) -> str:
    return f"{_describe_part(src.get('weights', {}), 'weights')}, {_describe_part(src.get('input', {}), 'input')}"


def register(app: typer.Typer) -> None:
    golden = typer.Typer(help="Golden vector sets: $readmemh hex files + manifest.json (formats, shapes, sha256, "
                         "tolerances). " + _EXIT_CODES, invoke_without_command=True, no_args_is_help=False)

    @golden.callback()
    def generate(
        ctx: typer.Context,
        config: str = typer.Option("tiny", "--config", help="layer config preset (tiny, tiny-bert, tiny-llama, "
                                   "gpt2-small, minilm, smollm2) or a .json config file"),
        plan: str = typer.Option("hw", "--plan", help="precision plan preset or .json/.toml plan file"),
        seed: int = typer.Option(0, "--seed", min=0, help="seed of the random weights (seed) and input (seed + 1) when "
                                 "--weights / --input / --model are not given"),
        weights: Path | None = typer.Option(None, "--weights", help="the layer's weights: .safetensors or .npz with "
                                            "refmodel's tensor names (docs/golden.md), linear weights shaped (out, in)"),
        input_file: Path | None = typer.Option(None, "--input", help="the layer's input activations x, shaped "
                                               "(seq, d_model): .npy, or .npz with an array named x"),
        model: str | None = typer.Option(None, "--model", help="a bundled real model instead: minilm or smollm2 "
                                         "(its config; use with --layer and --text)"),
        layer: int | None = typer.Option(None, "--layer", help="layer index of --model (default 0)"),
        text: str | None = typer.Option(None, "--text", help="with --model: text tokenized and embedded by the model "
                                        "and run through its layers before --layer (default: a sample sentence)"),
        out: Path | None = typer.Option(None, "--out", help="output directory: new, empty, or (with --force) a "
                                        "refmodel golden set"),
        force: bool = typer.Option(False, "--force", help="replace an existing refmodel golden set in --out (only "
                                   "its own files; nothing else is ever deleted)"),
    ) -> None:
        """Write the golden set of one layer under --plan: random weights and input from --seed, or the
        layer's own weights (--weights) and input (--input), or a bundled model's layer (--model, --layer,
        --text). The manifest records the sha256 of every file used, so `golden verify` can rebuild it."""
        gen_opts = ["config", "plan", "seed", "weights", "input_file", "model", "layer", "text", "out", "force"]
        if ctx.invoked_subcommand is not None:
            early = _given(ctx, gen_opts)
            if early:
                flags = ", ".join("--" + ("input" if n == "input_file" else n) for n in early)
                sub = ctx.invoked_subcommand
                raise UserError(f"{flags} given before '{sub}': options there configure generation, not '{sub}'; "
                                f"put {sub}'s options after it (refmodel golden {sub} --help)")
            return
        if out is None:
            raise UserError("refmodel golden needs --out DIR (or: refmodel golden verify DIR)")
        from refmodel.commands._common import load_config, load_plan, progress_bar
        from refmodel.console import make_console
        from refmodel.golden.generate import generate_set, generation_steps
        from refmodel.golden.manifest import read_manifest
        from refmodel.golden.safewrite import SetTarget

        if model is not None and "config" in _given(ctx, ["config"]):
            raise UserError("--config and --model exclude each other: the model brings its own config")
        cfg = load_config(config)
        p = load_plan(plan)
        if p.name == "float64":
            raise UserError("golden sets need a quantized plan; float64 has no codes")
        SetTarget(out, force=force)  # refuse a bad --out before any work (one line, no traceback)
        try:
            with progress_bar(f"golden {p.name}", total=generation_steps(cfg)) as advance:
                generate_set(cfg, p, out, seed=seed, weights=weights, inputs=input_file, model=model, layer=layer,
                             text=text, force=force, progress=advance)
        except (ValueError, OverflowError) as e:
            if isinstance(e, UserError):
                raise
            raise UserError(f"cannot generate the set: {e}") from None
        m = read_manifest(out)
        console = make_console()
        n_files = sum(len(e["sha256"]) for e in m["tensors"].values()) + 1 + len(m.get("files", []))
        size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
        ng = [n for n, e in m["tensors"].items() if e.get("no_guarantee")]
        console.print(f"wrote {out}: {len(m['tensors'])} tensors, {n_files} files, {size / 1024:.0f} KiB "
                      f"(config {m['config']['arch']} d{m['config']['d_model']} seq {m['config']['seq_len']}, "
                      f"plan {p.name}; {_describe_source(m['source'])})", soft_wrap=True)
        if ng:
            console.print(f"[yellow]no guarantee[/] (tolerance could not be bounded) for: {', '.join(ng)}")
        info, warn = _clipping_lines(m)
        if info:
            console.print("saturated / flushed to zero in quantization:")
            for line in info:
                console.print(f"  {line}", soft_wrap=True)
        for w in warn:
            console.print(f"[yellow]warning[/]: {w}", soft_wrap=True)

    @golden.command("verify", help="Check a golden set: schema, word counts and sha256 of every file, then "
                    "rebuild it from its recorded source (seed, or the weights/input files found next to the set, "
                    "at their recorded path, or given with --weights/--input) and compare byte for byte. "
                    + _EXIT_CODES)
    def verify(
        set_dir: Path = typer.Argument(..., help="a golden set directory"),
        weights: Path | None = typer.Option(None, "--weights", help="the weights file the set was built from (when "
                                            "not next to the set or at its recorded path)"),
        input_file: Path | None = typer.Option(None, "--input", help="the input file the set was built from"),
        files_only: bool = typer.Option(False, "--files-only", help="check schema, word counts and sha256 only, "
                                        "without rebuilding (for sets whose inputs are not at hand)"),
        as_json: bool = typer.Option(False, "--json", help="print the result as one JSON object on stdout"),
    ) -> None:
        from refmodel.commands._common import print_json, progress_bar
        from refmodel.console import make_console
        from refmodel.golden.generate import generation_steps, verify_set
        from refmodel.golden.manifest import read_manifest
        from refmodel.layer.config import LayerConfig

        m = read_manifest(set_dir)
        total = len(m["tensors"])
        if not files_only:
            try:
                total += generation_steps(LayerConfig.from_dict(m["config"]))
            except (KeyError, ValueError, TypeError):
                pass
        from refmodel.errors import CheckFailed

        try:
            with progress_bar(f"verify {set_dir.name}", total=total) as advance:
                report = verify_set(set_dir, weights=weights, inputs=input_file, files_only=files_only,
                                    progress=advance)
        except CheckFailed as e:
            if as_json:
                print_json({"set": str(set_dir), "ok": False, "error": str(e)})
            raise
        report["ok"] = True
        if as_json:
            print_json(report)
            return
        how = "identical to a fresh regeneration" if report["regenerated"] else "schema, word counts and sha256 OK; " \
            "not regenerated (--files-only)"
        make_console().print(f"{set_dir}: OK ({report['files']} files {how})", soft_wrap=True)

    app.add_typer(golden, name="golden")
