"""``refmodel demo``: the whole chain on the default layer (README's first command)."""

from __future__ import annotations

import math
from pathlib import Path

import typer


def _e(v: float) -> str:
    return "nan" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.3e}")


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", help="output directory (golden set, RTL build, plot)"),
        config: str = typer.Option("tiny", "--config", help="layer config (the RTL layer supports gpt2 configs)"),
        plan: str = typer.Option("hw", "--plan", help="precision plan (the RTL implements hw)"),
        seed: int = typer.Option(0, "--seed", help="seed of the random weights and input"),
        rtl: bool = typer.Option(True, "--rtl/--no-rtl", help="simulate the RTL layer on Icarus when present"),
    ) -> None:
        """Build the layer, compute SLaNC scales, write a golden set, compute error bounds, simulate the RTL
        layer on Icarus, and judge every stage (bit-exact RTL, error vs float64 within the bound); writes a PNG."""
        from rich.table import Table

        from refmodel.commands._common import load_config, load_plan
        from refmodel.console import make_console
        from refmodel.demo import plot_stages, run_demo
        from refmodel.errors import UserError

        console = make_console()
        cfg, p = load_config(config), load_plan(plan)
        if rtl and (cfg.arch != "gpt2" or p.name != "hw"):
            console.print("[yellow]the RTL layer implements the gpt2 arch under the hw plan: RTL step off[/]")
            rtl = False
        try:
            res = run_demo(out, cfg, p, seed, rtl=rtl, log=lambda s: console.print(s))
        except (ValueError, OverflowError) as e:
            raise UserError(str(e)) from None
        t = Table(title=f"refmodel demo: {cfg.arch} layer under plan {p.name} (seed {seed})")
        for col in ("stage", "RTL bit-exact", "max |err| vs float64", "bound", "err/bound", "verdict"):
            t.add_column(col, justify="left" if col in ("stage", "verdict") else "right")
        for s in res.stages:
            be = "-" if s.bit_exact is None else ("yes" if s.bit_exact else "NO")
            color = "green" if s.verdict == "PASS" else ("yellow" if s.verdict.startswith("NO") else "red")
            t.add_row(s.stage, be, _e(s.max_err), _e(s.bound), _e(s.ratio), f"[{color}]{s.verdict}[/]")
        console.print(t)
        png = out / "demo_error_vs_bound.png"
        plot_stages(res, png, f"{cfg.arch} layer, plan {p.name}: error vs float64 and its bound per stage")
        console.print(f"plot: {png}")
        n_pass = sum(s.verdict == "PASS" for s in res.stages)
        console.print(f"{n_pass}/{len(res.stages)} stages pass. {res.rtl_note}")
        if not res.passed:
            raise typer.Exit(1)
