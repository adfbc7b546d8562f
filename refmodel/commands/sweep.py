"""``refmodel sweep``: a grid of (config, plan, seed) jobs on Dask distributed, with a results table,
``results.json`` and ``sweep.png`` in the output directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from refmodel.errors import CheckFailed, UserError

EXIT_HELP = ("Exit codes: 0 every job passed (or was skipped: the RTL cannot run the plan), 1 a job failed its "
             "check or could not run, 2 usage error (bad option, grid, config, plan, --out or scheduler).")


def register(app: typer.Typer) -> None:
    @app.command("sweep", help=(
        "Run a grid of (config, plan, seed) jobs on Dask distributed: golden set generation + verification, "
        "bound validation, accuracy against float64, RTL regression. A local cluster of --workers processes by "
        "default, or --scheduler tcp://host:port of a running cluster (its workers need the same refmodel). "
        "Writes results.json (one record per job), sweep.png (status heat map) and the golden sets to --out. "
        + EXIT_HELP))
    def sweep(
        out: Path | None = typer.Option(None, "--out", help="output directory: new, empty, or a previous sweep's "
                                        "(only its own files are replaced)"),
        grid: Path | None = typer.Option(None, "--grid", help="a .toml/.json grid file with the keys configs, plans, "
                                         "seeds, jobs, trials, max_rel, sim, lanes (options given here win)"),
        configs: str | None = typer.Option(None, "--configs", help="comma-separated config presets or .json files "
                                           "[default: tiny]"),
        plans: str | None = typer.Option(None, "--plans", help="comma-separated plan presets or .json/.toml files "
                                         "[default: hw]"),
        seeds: str | None = typer.Option(None, "--seeds", help="seeds: N, A-B or A,B,C [default: 0]"),
        jobs: str | None = typer.Option(None, "--jobs", help="job kinds, comma-separated: golden, bounds, accuracy, "
                                        "rtl [default: all four]"),
        trials: int | None = typer.Option(None, "--trials", help="bounds: trials per job, cycling over the trial "
                                          "kinds of refmodel bounds [default: 6]"),
        max_rel: float | None = typer.Option(None, "--max-rel", help="accuracy: fail a job whose output max "
                                             "relative error exceeds this (a non-finite value always fails)"),
        sim: str | None = typer.Option(None, "--sim", help="rtl: simulator [default: icarus]"),
        lanes: int | None = typer.Option(None, "--lanes", help="rtl: MAC lanes of the RTL layer [default: 1]"),
        workers: int | None = typer.Option(None, "--workers", help="local cluster: worker processes [default: the "
                                           "CPUs this process may use]"),
        threads_per_worker: int | None = typer.Option(None, "--threads-per-worker",
                                                      help="local cluster: threads per worker [default: 1]"),
        scheduler: str | None = typer.Option(None, "--scheduler", help="address of a running Dask scheduler "
                                             "(tcp://host:port) instead of a local cluster"),
        golden_sets: bool = typer.Option(True, "--golden-sets/--no-golden-sets", help="keep the golden jobs' sets "
                                         "in --out/golden/"),
        as_json: bool = typer.Option(False, "--json", help="print the results (as in results.json) on stdout "
                                     "instead of the table"),
    ) -> None:
        from refmodel.commands._common import print_json, progress_bar
        from refmodel.console import make_console
        from refmodel.sweep.grid import JOB_KINDS, JobOptions, build_grid, load_grid_file
        from refmodel.sweep.outdir import SweepOutput
        from refmodel.sweep.report import problem_lines, results_table
        from refmodel.sweep.run import dask_client, run_sweep

        if out is None:
            raise UserError("refmodel sweep needs --out DIR (the results, figure and golden sets go there)")
        if scheduler and (workers is not None or threads_per_worker is not None):
            raise UserError("--workers and --threads-per-worker size the local cluster; with --scheduler the "
                            "cluster's own workers run the jobs")
        for name, v in (("--workers", workers), ("--threads-per-worker", threads_per_worker)):
            if v is not None and v < 1:
                raise UserError(f"{name} must be >= 1, got {v}")
        spec: dict[str, Any] = load_grid_file(grid) if grid is not None else {}
        given = {"configs": configs, "plans": plans, "seeds": seeds, "jobs": jobs, "trials": trials,
                 "max_rel": max_rel, "sim": sim, "lanes": lanes}
        spec.update({k: v for k, v in given.items() if v is not None})
        defaults = JobOptions()
        g = build_grid(spec.get("configs", "tiny"), spec.get("plans", "hw"), spec.get("seeds", "0"),
                       spec.get("jobs", ",".join(JOB_KINDS)),
                       JobOptions(trials=spec.get("trials", defaults.trials), max_rel=spec.get("max_rel"),
                                  sim=spec.get("sim", defaults.sim), lanes=spec.get("lanes", defaults.lanes)))
        SweepOutput.check(out)
        n = len(g.jobs())
        console = make_console()
        with dask_client(scheduler, workers, threads_per_worker or 1) as (client, info):
            output = SweepOutput.prepare(out)
            where = f"{info.workers} local workers" if info.local else f"{info.workers} workers of {info.scheduler}"
            with progress_bar(f"sweep: {n} jobs on {where}", total=n) as advance:
                res = run_sweep(g, client, info, output=output, keep_golden=golden_sets, progress=advance)
        paths = res.write(output)
        c = res.counts()
        if as_json:
            print_json(res.to_dict())
        else:
            console.print(results_table(res.records, f"refmodel sweep: {n} jobs on {where} in {res.seconds:.1f} s"))
            for line in problem_lines(res.records):
                console.print(line, markup=False, highlight=False)
            sets = f"; {res.golden_sets} golden sets in {output.path / 'golden'}" if res.golden_sets else ""
            console.print(f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped; "
                          f"wrote {', '.join(paths)}{sets}", markup=False, highlight=False)
        if not res.ok:
            raise CheckFailed(f"{c['failed']} job(s) failed and {c['error']} could not run "
                              f"(records in {output.path / 'results.json'})")
