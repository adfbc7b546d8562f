"""Run a sweep's jobs on Dask distributed: a LocalCluster of worker processes, or the scheduler of
an existing cluster, through Dask's futures API (``client.submit`` and ``as_completed``).

Workers run :func:`refmodel.sweep.jobs.run_job` and return a record (and a golden set's bytes);
the client writes the sets into the output directory as jobs finish, so workers need no shared
file system. A job that fails is a failed record; a job whose worker died is an error record; the
sweep goes on with the others.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refmodel.errors import UserError

from .grid import Grid, JobSpec
from .jobs import JobResult, run_job, worker_info
from .outdir import FIGURE, RESULTS, SweepOutput

__all__ = ["STATUSES", "ClusterInfo", "SweepResult", "dask_client", "run_sweep"]

#: record statuses, in the order tables list them
STATUSES = ("passed", "failed", "error", "skipped")
#: seconds to wait for a scheduler to answer, and for it to have a worker
CONNECT_TIMEOUT = 10
WORKER_TIMEOUT = 60
#: job kinds that usually take longest are started first (a long job started last holds the sweep)
_PRIORITY = {"rtl": 3, "bounds": 2, "golden": 1, "accuracy": 0}


@dataclass
class ClusterInfo:
    """Where the jobs ran."""

    scheduler: str
    local: bool
    workers: int
    threads: int

    def to_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler, "local": self.local, "workers": self.workers, "threads": self.threads}


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_reachable(address: str) -> None:
    """A usage error naming ``address`` when it is malformed or nothing listens there (tcp only;
    other schemes are left to Dask)."""
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, loc = parse_address(address)
        if scheme != "tcp":
            return
        host, port = parse_host_port(loc)
    except ValueError as e:
        raise UserError(f"--scheduler {address!r}: {e} (expected tcp://host:port)") from None
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise UserError(f"--scheduler {address}: no Dask scheduler answers there ({e.strerror or e})") from None


def _check_workers(client: Any, address: str, same_package: bool = False) -> int:
    """Wait for a worker, then check every worker runs this refmodel version (and, for a local
    cluster, imports it from the same directory as this process); the worker count."""
    import refmodel
    from refmodel import __version__

    try:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
    except TimeoutError:
        raise UserError(f"the Dask scheduler at {address} has no workers (waited {WORKER_TIMEOUT} s)") from None
    try:
        infos = client.run(worker_info)
    except Exception as e:  # the workers cannot import refmodel (unpickling the function fails there)
        raise UserError(f"the workers of {address} cannot run refmodel ({type(e).__name__}: {e}); install "
                        f"refmodel {__version__} on them") from None
    for addr, info in sorted(infos.items()):
        if info.get("refmodel") != __version__:
            raise UserError(f"worker {addr} runs refmodel {info.get('refmodel')}, this client {__version__}: "
                            "golden sets and figures would not match; install the same version on every worker")
        here = str(Path(refmodel.__file__).parent)
        if same_package and info.get("package") != here:
            raise UserError(f"worker {addr} imports refmodel from {info.get('package')}, this process from {here}: "
                            "install refmodel in the environment the workers start in (or set PYTHONPATH)")
    return len(infos)


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                threads_per_worker: int = 1) -> Iterator[tuple[Any, ClusterInfo]]:
    """A Dask client: connected to ``scheduler`` (``tcp://host:port``) when given, else to a new
    LocalCluster of ``workers`` processes (default: the CPUs this process may use) with
    ``threads_per_worker`` threads each, closed on exit. Yields ``(client, ClusterInfo)``."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        _check_reachable(scheduler)
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            raise UserError(f"--scheduler {scheduler}: cannot connect ({e})") from None
        try:
            n = _check_workers(client, scheduler)
            threads = sum(client.nthreads().values())
            yield client, ClusterInfo(scheduler, False, n, threads)
        finally:
            client.close()
        return
    n = workers or _usable_cpus()
    with LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        _check_workers(client, cluster.scheduler_address, same_package=True)
        yield client, ClusterInfo(cluster.scheduler_address, True, n, n * threads_per_worker)


@dataclass
class SweepResult:
    """The records of a sweep (in grid order) and how it ran."""

    grid: Grid
    records: list[dict[str, Any]]
    cluster: ClusterInfo
    started: str
    seconds: float
    golden_sets: int = 0
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for r in self.records if r["status"] == s) for s in STATUSES}

    @property
    def ok(self) -> bool:
        """No job failed or errored (skipped jobs are fine)."""
        c = self.counts()
        return c["failed"] == 0 and c["error"] == 0

    def to_dict(self) -> dict[str, Any]:
        from refmodel import __version__

        return {"refmodel_sweep": 1, "generator": {"name": "refmodel", "version": __version__},
                "grid": self.grid.to_dict(), "cluster": self.cluster.to_dict(), "started": self.started,
                "seconds": round(self.seconds, 3), "summary": {"jobs": len(self.records), **self.counts()},
                "records": self.records}

    def write(self, out: SweepOutput) -> list[str]:
        """``results.json`` and ``sweep.png`` into the output directory; their paths."""
        import json

        from refmodel.commands._common import json_ready

        from .report import plot_sweep

        text = json.dumps(json_ready(self.to_dict()), indent=1, sort_keys=False) + "\n"
        paths = [str(out.write_file(RESULTS, text.encode()))]
        paths.append(str(out.write_file(FIGURE, plot_sweep(self.records, self.grid))))
        return paths


def _lost_record(spec: JobSpec, e: BaseException) -> dict[str, Any]:
    """The record of a job whose worker died or whose result could not come back."""
    return {"id": spec.id, **spec.inputs(), "status": "error", "message": f"job lost: {type(e).__name__}: {e}",
            "figures": {}, "timings": {}, "duration_s": None, "worker": None}


def run_sweep(grid: Grid, client: Any, cluster: ClusterInfo, *, output: SweepOutput | None = None,
              keep_golden: bool = True, progress: Callable[[], Any] | None = None) -> SweepResult:
    """Submit every job of ``grid`` to ``client`` and collect the records as they complete
    (``progress()`` after each); golden sets go into ``output/golden/`` when ``keep_golden``."""
    from distributed import as_completed

    jobs = grid.jobs()
    token = uuid.uuid4().hex[:8]
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    futures: list[Any] = []
    index: dict[Any, tuple[int, JobSpec]] = {}
    for i, spec in enumerate(jobs):
        f = client.submit(run_job, spec, key=f"refmodel-sweep-{token}-{i}-{spec.id}", pure=False,
                          priority=_PRIORITY.get(spec.kind, 0))
        futures.append(f)
        index[f.key] = (i, spec)
    records: list[dict[str, Any] | None] = [None] * len(jobs)
    n_sets = 0
    pending = as_completed(futures)
    futures.clear()  # as_completed holds them until each is yielded: finished results are freed
    for fut in pending:
        i, spec = index[fut.key]
        try:
            res: JobResult = fut.result()
        except (Exception, asyncio.CancelledError) as e:  # worker died, result lost: the job's error record
            res = JobResult(_lost_record(spec, e))
        fut.release()
        rec = res.record
        rec["golden_set"] = None
        if res.files and output is not None and keep_golden:
            try:
                rec["golden_set"] = output.write_set(spec.set_name, res.files)
                n_sets += 1
            except (UserError, OSError) as e:
                rec["status"], rec["message"] = "error", f"golden set not written: {e}"
        records[i] = rec
        if progress is not None:
            progress()
    done = [r for r in records if r is not None]
    return SweepResult(grid, done, cluster, started, time.perf_counter() - t0, n_sets)

