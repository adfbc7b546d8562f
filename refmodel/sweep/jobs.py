"""The jobs of a sweep, one small function per kind, and :func:`run_job`, which a Dask worker runs.

Every job works in its own temporary directory (removed when it ends), so jobs running at once on
one machine never share files. A job's outcome is one of

* ``passed`` -- it ran and its checks held;
* ``failed`` -- it ran and a check failed (a golden set differs from its regeneration, a rigorous
  bound is violated, the RTL disagrees with the model, an accuracy threshold or a non-finite value);
* ``skipped`` -- it cannot apply (the RTL layer does not implement what the plan needs); the
  reason is recorded, it is not an error;
* ``error`` -- it could not run (an exception: the plan refuses the config, an overflow under an
  ``error`` policy, a missing simulator); the message is recorded.

Key figures per kind (``record["figures"]``, all deterministic for a given grid point):

* golden: ``tensors``, ``files``, ``bytes``, ``manifest_sha256`` (the manifest lists every file's
  sha256, so this one hash identifies the set), ``no_guarantee`` (tensors whose tolerance could
  not be bounded), ``verified`` (regenerated and compared byte for byte);
* bounds: ``trials``, ``elements``, ``rigorous_violations``, ``statistical_violations``,
  ``expected_statistical_failures``, ``no_guarantee_elements``, ``rigorous_tightness_max`` and
  ``statistical_tightness_max`` (max over tensors of observed / bound), ``run_errors``;
* accuracy: ``out_max_abs``, ``out_max_rel``, ``out_cosine`` (the layer output vs float64),
  ``worst_tensor`` and ``worst_max_rel`` (largest max relative error over all tensors),
  ``nonfinite``, ``saturated``;
* rtl: ``simulator``, ``lanes``, ``cycles``, ``stages``, ``bit_exact_stages``.

The workers' timings (``record["timings"]``, seconds) are kept apart from the figures.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refmodel.errors import CheckFailed, UserError

from .grid import JobSpec

__all__ = ["SIMULATORS", "JobSkipped", "Outcome", "JobResult", "run_job", "JOBS", "worker_info"]

#: simulators an RTL job can run on
SIMULATORS = ("icarus",)


class JobSkipped(Exception):
    """The job does not apply to its grid point (the message says why); recorded as ``skipped``."""


@dataclass
class Outcome:
    """What a job function returns: its figures, the check failures (empty: passed), timings and
    the files it produced for the sweep's output (golden sets)."""

    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class JobResult:
    """A finished job: its JSON record and, for golden jobs, the set's files (name -> bytes), which
    the client writes into the sweep's output directory."""

    record: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


def _layer(spec: JobSpec) -> tuple[Any, Any]:
    from refmodel.layer.config import LayerConfig
    from refmodel.layer.plan import PrecisionPlan

    return LayerConfig.from_dict(spec.config_dict), PrecisionPlan.from_dict(spec.plan_dict)


def _write_set(spec: JobSpec, cfg: Any, plan: Any, out: Path) -> float:
    """Write (config, plan, seed)'s golden set into ``out``; the seconds it took."""
    from refmodel.golden.generate import generate_set

    t0 = time.perf_counter()
    generate_set(cfg, plan, spec.seed, out)
    return time.perf_counter() - t0


def golden_job(spec: JobSpec, work: Path) -> Outcome:
    """Generate the golden set of the grid point, then verify it (schema, sha256, regenerate and
    compare byte for byte, :func:`refmodel.golden.generate.verify_set`)."""
    from refmodel.golden.generate import verify_set
    from refmodel.golden.manifest import read_manifest

    cfg, plan = _layer(spec)
    d = work / "set"
    o = Outcome()
    o.timings["generate"] = _write_set(spec, cfg, plan, d)
    t0 = time.perf_counter()
    try:
        verify_set(d)
        verified = True
    except (UserError, CheckFailed) as e:  # the set just written does not regenerate
        o.failures.append(f"verify: {e}".replace(str(d), "<set>"))
        verified = False
    o.timings["verify"] = time.perf_counter() - t0
    m = read_manifest(d)
    o.files = {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}
    o.figures = {
        "tensors": len(m["tensors"]),
        "files": len(o.files),
        "bytes": sum(len(b) for b in o.files.values()),
        "manifest_sha256": hashlib.sha256(o.files["manifest.json"]).hexdigest(),
        "no_guarantee": sum(1 for e in m["tensors"].values() if e.get("no_guarantee")),
        "verified": verified,
    }
    return o


def _finite_max(values: list[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return max(v) if v else float("nan")


def bounds_job(spec: JobSpec, work: Path) -> Outcome:
    """Validate the layer bounds of the plan on the config: ``trials`` seeded trials
    (:func:`refmodel.bounds.validate_layer.run_trials`, as ``refmodel bounds`` runs them); fails on
    any rigorous violation."""
    from refmodel.bounds.validate_layer import run_trials

    cfg, plan = _layer(spec)
    plan.check(cfg)
    rep = run_trials(plan, spec.options.trials, spec.seed, configs={spec.config: cfg})
    if rep.errors and sum(rep.errors.values()) == rep.trials:
        raise RuntimeError(f"every trial failed to run: {next(iter(rep.errors))}")
    rows = rep.rows()
    o = Outcome()
    o.figures = {
        "trials": rep.trials,
        "elements": rep.elements,
        "rigorous_violations": rep.viol_rig,
        "statistical_violations": rep.viol_stat,
        "expected_statistical_failures": sum(t.expected_stat_fail for t in rows),
        "no_guarantee_elements": rep.no_guarantee,
        "rigorous_tightness_max": _finite_max([t.rig_max for t in rows]),
        "statistical_tightness_max": _finite_max([t.stat_max for t in rows]),
        "run_errors": sum(rep.errors.values()),
    }
    o.timings["trials"] = rep.seconds
    if rep.viol_rig:
        worst = sorted((t for t in rows if t.viol_rig), key=lambda t: -t.viol_rig)
        o.failures.append(f"{rep.viol_rig} rigorous bound violation(s): "
                          + ", ".join(f"{t.name} {t.viol_rig}" for t in worst[:4]))
    return o


def accuracy_job(spec: JobSpec, work: Path) -> Outcome:
    """Run the plan's layer and the float64 reference on random weights and input (as
    ``refmodel accuracy --model random --config C --seed S`` does, with the plan's own SLaNC
    setting) and compare every tensor (:func:`refmodel.accuracy.chain_accuracy`). Fails on a
    non-finite value in any tensor, or when the output's max relative error exceeds ``max_rel``."""
    from refmodel.accuracy import chain_accuracy
    from refmodel.layer.weights import random_inputs, random_weights

    cfg, plan = _layer(spec)
    plan.check(cfg)
    w = random_weights(cfg, seed=spec.seed)
    x = random_inputs(cfg, seed=spec.seed + 10_000)
    t0 = time.perf_counter()
    rows = chain_accuracy(cfg, [w], x, plan, layer_indices=[0])
    o = Outcome(timings={"run": time.perf_counter() - t0})
    out = rows[-1]
    worst = max(rows, key=lambda r: r.max_rel if math.isfinite(r.max_rel) else math.inf)
    o.figures = {
        "out_max_abs": out.max_abs,
        "out_max_rel": out.max_rel,
        "out_cosine": out.cosine,
        "worst_tensor": worst.name,
        "worst_max_rel": worst.max_rel,
        "nonfinite": sum(r.nonfinite for r in rows),
        "saturated": sum(r.saturated for r in rows),
    }
    bad = [r.name for r in rows if r.nonfinite]
    if bad:
        o.failures.append(f"{o.figures['nonfinite']} non-finite value(s) in {', '.join(bad)}")
    lim = spec.options.max_rel
    if lim is not None and not out.max_rel <= lim:
        o.failures.append(f"out max rel error {out.max_rel:.3g} > --max-rel {lim:.3g}")
    return o


def rtl_job(spec: JobSpec, work: Path) -> Outcome:
    """Write the grid point's golden set, run the RTL layer (rtl/layer_top.v) on it
    (:func:`refmodel.rtl_layer.simulate_layer`) and compare every stage's codes with the set's.
    Skipped, with the reason, when the set needs something the RTL does not implement; fails when
    a stage differs."""
    from refmodel.golden.manifest import load_tensor, read_manifest
    from refmodel.rtl_layer import UnsupportedSet, layer_params, simulate_layer

    opts = spec.options
    if opts.sim not in SIMULATORS:
        raise UserError(f"unknown simulator {opts.sim!r}: use {' or '.join(SIMULATORS)}")
    cfg, plan = _layer(spec)
    if not plan.is_fixed_point(cfg):
        raise JobSkipped(f"plan {plan.name} is not fixed point throughout: the RTL layer is a fixed-point datapath")
    d = work / "set"
    o = Outcome()
    o.timings["generate"] = _write_set(spec, cfg, plan, d)
    try:
        layer_params(d, opts.lanes)
    except UnsupportedSet as e:
        raise JobSkipped(str(e).replace(str(d.resolve()), "<set>")) from None
    sim = simulate_layer(d, work / "rtl", lanes=opts.lanes)
    m = read_manifest(d)
    differ = []
    for name, codes in sim.codes.items():
        want = load_tensor(d, name, m)["codes"]
        if not np.array_equal(np.asarray(codes).reshape(want.shape), want):
            differ.append(name)
    o.timings["simulate"] = sim.seconds
    o.figures = {"simulator": opts.sim, "lanes": opts.lanes, "cycles": sim.cycles, "stages": len(sim.codes),
                 "bit_exact_stages": len(sim.codes) - len(differ)}
    if differ:
        o.failures.append(f"RTL differs from the model at stage(s) {', '.join(differ)}")
    return o


#: job kind -> function(spec, private work directory) -> Outcome
JOBS: dict[str, Callable[[JobSpec, Path], Outcome]] = {
    "golden": golden_job, "bounds": bounds_job, "accuracy": accuracy_job, "rtl": rtl_job,
}


def worker_info() -> dict[str, Any]:
    """Where this code runs: the Dask worker's address (``"in-process"`` outside a worker), host,
    process id, refmodel version and the directory refmodel was imported from."""
    from refmodel import __version__

    address = "in-process"
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker

            address = get_worker().address
        except ValueError:  # not inside a worker
            pass
    import refmodel

    return {"address": address, "host": socket.gethostname(), "pid": os.getpid(), "refmodel": __version__,
            "package": str(Path(refmodel.__file__).parent)}


def _message(e: BaseException) -> str:
    """An exception as one line for the record: its message, or its type and the place it was
    raised when it has none."""
    msg = str(e).strip()
    if isinstance(e, (UserError, JobSkipped, CheckFailed)):
        return msg
    if not msg:
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        return f"{type(e).__name__}{where}"
    return f"{type(e).__name__}: {msg}"


def run_job(spec: JobSpec) -> JobResult:
    """Run one job in a private temporary directory and turn whatever happens into its record
    (never raises for a job's own failure: a failed job is a record, not a crashed sweep)."""
    t0 = time.perf_counter()
    safe = spec.id.replace("/", "_")
    work = Path(tempfile.mkdtemp(prefix=f"refmodel-sweep-{safe}-"))
    outcome = Outcome()
    message: str | None = None
    try:
        with np.errstate(all="ignore"):
            outcome = JOBS[spec.kind](spec, work)
        status = "failed" if outcome.failures else "passed"
        message = "; ".join(outcome.failures) or None
    except JobSkipped as e:
        status, message = "skipped", _message(e)
    except Exception as e:  # any exception of one job is that job's error record
        status, message = "error", _message(e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "id": spec.id,
        **spec.inputs(),
        "status": status,
        "message": message,
        "figures": outcome.figures,
        "timings": {k: round(v, 4) for k, v in outcome.timings.items()},
        "duration_s": round(time.perf_counter() - t0, 4),
        "worker": worker_info(),
    }
    return JobResult(record, outcome.files if status in ("passed", "failed") else {})
