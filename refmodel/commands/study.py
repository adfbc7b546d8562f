"""``refmodel study NAME``: run an accuracy study on the real models and write its report folder."""

from __future__ import annotations

import shlex
import sys

import typer

from refmodel.errors import UserError

_MODELS = {"minilm": ("minilm",), "smollm2": ("smollm2",), "both": ("minilm", "smollm2")}


def register(app: typer.Typer) -> None:
    @app.command("study")
    def study(
        name: str = typer.Argument(..., help="residual | norms | softmax | slanc"),
        model: str = typer.Option("both", "--model", help="minilm, smollm2 or both (each also runs on random "
                                  "weights of the same shapes)"),
        plans: str | None = typer.Option(None, "--plans", help="comma-separated presets or plan files (default: "
                                         "the study's own subset; --full: every preset)"),
        out: str | None = typer.Option(None, "--out", help="report folder (default: study-NAME); must be new, "
                                       "empty, or an earlier refmodel report"),
        quick: bool = typer.Option(False, "--quick", help="a small run: first layers only, few tokens, two plans"),
        full: bool = typer.Option(False, "--full", help="everything: every preset, more tokens, more residual "
                                  "scales, scaling on random weights too"),
        tokens: int | None = typer.Option(None, "--tokens", help="input tokens, 1..64 (default: each study's own, "
                                          "see docs/studies.md; fewer with --quick, more with --full)"),
        seed: int = typer.Option(0, "--seed", min=0, help="seed of the random weights and synthetic inputs"),
        as_json: bool = typer.Option(False, "--json", help="print the claims and headline tables as JSON"),
    ) -> None:
        """Run a study on the real models (and random weights of the same shapes) and write
        report.html (tables, inline PNG figures, claims) and results.json into --out.
        Exit codes: 0 report written (whether or not each claim held: the report says),
        2 usage error (bad name, option, plan or --out)."""
        from refmodel.commands._common import print_json, progress_bar
        from refmodel.console import make_console
        from refmodel.study import study_module
        from refmodel.study.options import StudyOptions
        from refmodel.study.report import check_out_dir, fmt_num, write_report

        mod = study_module(name)
        if model not in _MODELS:
            raise UserError(f"unknown --model {model!r}: use minilm, smollm2 or both")
        plan_list = None
        if plans is not None:
            plan_list = tuple(p.strip() for p in plans.split(",") if p.strip())
            if not plan_list:
                raise UserError(f"--plans {plans!r}: no plan named")
        opts = StudyOptions(models=_MODELS[model], plans=plan_list, tokens=tokens, quick=quick, full=full, seed=seed)
        folder = check_out_dir(out if out is not None else f"study-{name}")
        if plan_list is not None:
            from refmodel.study.options import resolve_plans

            resolve_plans(plan_list)  # a bad plan fails before any work
        with progress_bar(f"study {name}", total=mod.steps(opts)) as advance:
            rep = mod.run(opts, advance)
        rep.command = "refmodel " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else \
            f"refmodel study {name}"
        path = write_report(rep, folder)
        if as_json:
            print_json({"report": str(path / "report.html"), "claims": [c.to_dict() for c in rep.claims],
                        "headline": [t.to_dict() for t in rep.headline()]})
            return
        from rich.table import Table

        console = make_console()
        for t in rep.headline():
            rt = Table(title=t.title)
            for c in t.columns:
                rt.add_column(c, justify="left" if c in ("model", "plan", "site", "norm") else "right",
                              overflow="fold")
            for r in t.rows:
                rt.add_row(*[fmt_num(v) for v in r])
            console.print(rt)
        for c in rep.claims:
            mark = "[green]held[/green]" if c.held else "[red]did NOT hold[/red]"
            console.print(f"{mark}: {c.statement} -- measured: {c.measured}", soft_wrap=False)
        console.print(f"report written: {path / 'report.html'} (+ results.json)")
