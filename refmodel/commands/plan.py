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
        """Show a precision plan: format, accumulation, rounding and overflow of every tensor and weight."""
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
            t = Table(title="precision plan presets")
            t.add_column("name")
            t.add_column("description")
            for n in PRESET_NAMES:
                t.add_row(n, PrecisionPlan.from_name(n).description)
            console.print(t)
            return
        p = load_plan(name)
        cfg = load_config(config)
        p.print(cfg, console=console)
        if save is not None:
            if save.suffix.lower() not in (".json", ".toml"):
                raise UserError(f"--save must end in .json or .toml, got {save}")
            p.save(save)
            console.print(f"saved {save}")
