"""``refmodel plan``: print a precision plan as a table, list the presets, or export one."""

from __future__ import annotations

from pathlib import Path

import typer

from refmodel.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan(
        name: str | None = typer.Argument(None, help="preset name or .json/.toml plan file; omit to list presets"),
        config: str = typer.Option("tiny", "--config", help="layer config whose tensors the table shows"),
        save: Path | None = typer.Option(None, "--save", help="write the plan to this .json or .toml file"),
        schema: bool = typer.Option(False, "--schema", help="print every plan knob with its default and help"),
    ) -> None:
        """Show a precision plan: format, accumulation, rounding and overflow of every tensor and
        weight (weight scales included), and its fixed-point accumulators checked against the
        config's reduction lengths. Without NAME: what each preset does (storage, weights,
        accumulation, units). Exit codes: 0 shown, 2 usage error (bad name, file or option)."""
        from rich.table import Table

        from refmodel.commands._common import load_config, load_plan
        from refmodel.console import make_console
        from refmodel.layer.plan import PRESET_NAMES, PrecisionPlan, plan_schema

        console = make_console()
        if schema:
            t = Table(title="precision plan knobs")
            for col in ("key", "default", "help"):
                t.add_column(col)
            for row in plan_schema():
                t.add_row(*row)
            console.print(t)
            return
        if name is None:
            t = Table(title="precision plan presets (refmodel plan NAME shows one in full)")
            for col in ("name", "storage", "weights", "accumulation", "units"):
                t.add_column(col, overflow="fold")
            for n in PRESET_NAMES:
                sm = PrecisionPlan.from_name(n).summary()
                t.add_row(n, sm["storage"], sm["weights"], sm["accumulation"], sm["units"])
            console.print(t)
            for n in PRESET_NAMES:
                console.print(f"{n}: {PrecisionPlan.from_name(n).description}", highlight=False)
            return
        p = load_plan(name)
        cfg = load_config(config)
        p.print(cfg, console=console)
        console.print(f"{p.name}: {p.description}" if p.description else p.name, highlight=False)
        for line in p.notes():
            console.print(f"note: {line}", highlight=False)
        checks = p.accumulator_checks(cfg)
        if checks:
            t = Table(title=f"fixed-point accumulators ({cfg.arch}, config {config})")
            for col in ("tensor", "operands", "K", "bits needed", "accumulator", "status"):
                t.add_column(col, overflow="fold")
            for c in checks:
                t.add_row(c.tensor, f"{c.operands[0]} {c.formats[0]} x {c.operands[1]} {c.formats[1]}", str(c.k),
                          str(c.needed), c.policy, c.status)
            console.print(t)
            for c in checks:
                if c.status != "ok":
                    console.print(f"{c.status}: {c.message}", highlight=False)
        if save is not None:
            if save.suffix.lower() not in (".json", ".toml"):
                raise UserError(f"--save must end in .json or .toml, got {save}")
            p.save(save)
            console.print(f"saved {save}")
