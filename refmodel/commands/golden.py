"""``refmodel golden``: write a golden vector set, or verify one (``refmodel golden verify DIR``)."""

from __future__ import annotations

from pathlib import Path

import typer

from refmodel.errors import UserError


def register(app: typer.Typer) -> None:
    golden = typer.Typer(help="Golden vector sets: $readmemh hex files + manifest.json (formats, shapes, sha256, "
                         "tolerances).", invoke_without_command=True, no_args_is_help=False)

    @golden.callback()
    def generate(
        ctx: typer.Context,
        config: str = typer.Option("tiny", "--config", help="layer config preset (tiny, tiny-bert, tiny-llama, "
                                   "gpt2-small, minilm, smollm2) or a .json config file"),
        plan: str = typer.Option("hw", "--plan", help="precision plan preset or .json/.toml plan file"),
        seed: int = typer.Option(0, "--seed", help="seed of the random weights and inputs"),
        out: Path | None = typer.Option(None, "--out", help="output directory, e.g. golden/tiny_gpt2_hw"),
    ) -> None:
        """Write the golden set of one layer (random weights and input from --seed) under --plan."""
        if ctx.invoked_subcommand is not None:
            return
        if out is None:
            raise UserError("refmodel golden needs --out DIR (or: refmodel golden verify DIR)")
        from refmodel.commands._common import load_config, load_plan
        from refmodel.console import make_console
        from refmodel.golden.generate import generate_set
        from refmodel.golden.manifest import read_manifest

        cfg = load_config(config)
        p = load_plan(plan)
        if p.name == "float64":
            raise UserError("golden sets need a quantized plan; float64 has no codes")
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} exists and is not a directory")
        try:
            generate_set(cfg, p, seed, out)
        except (ValueError, OverflowError) as e:
            raise UserError(f"cannot generate the set: {e}") from None
        m = read_manifest(out)
        console = make_console()
        n_files = sum(len(e["sha256"]) for e in m["tensors"].values()) + 1
        size = sum(f.stat().st_size for f in out.iterdir())
        ng = [n for n, e in m["tensors"].items() if e.get("no_guarantee")]
        console.print(f"wrote {out}: {len(m['tensors'])} tensors, {n_files} files, {size / 1024:.0f} KiB "
                      f"(config {config}, plan {p.name}, seed {seed})")
        if ng:
            console.print(f"[yellow]no guarantee[/] (tolerance could not be bounded) for: {', '.join(ng)}")

    @golden.command("verify")
    def verify(set_dir: Path = typer.Argument(..., help="a golden set directory")) -> None:
        """Check schema, word counts and sha256, then regenerate from the manifest and compare byte for byte."""
        from refmodel.console import make_console
        from refmodel.golden.generate import verify_set

        files = verify_set(set_dir)
        make_console().print(f"{set_dir}: OK ({len(files)} files identical to a fresh regeneration)")

    app.add_typer(golden, name="golden")
