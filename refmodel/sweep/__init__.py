"""``refmodel sweep``: a grid of (config, plan, seed) jobs -- golden set generation and
verification, bound validation, accuracy against float64, RTL regression -- run on Dask
distributed (a LocalCluster, or an existing cluster's scheduler).

* :mod:`.grid` -- the grid (command-line strings or a grid file) and the job specs;
* :mod:`.jobs` -- one function per job kind, and :func:`~.jobs.run_job`, what a worker runs;
* :mod:`.run` -- the Dask client, submission and collection (futures API);
* :mod:`.outdir` -- the output directory (refuses a foreign one, replaces only its own files);
* :mod:`.report` -- the results table and the heat-map figure.

Importing this package does not import Dask; :mod:`.run` does.
"""

from .grid import JOB_KINDS, Grid, JobOptions, JobSpec, build_grid, load_grid_file, parse_seeds
from .jobs import JobResult, run_job

__all__ = ["JOB_KINDS", "Grid", "JobOptions", "JobSpec", "JobResult", "build_grid", "load_grid_file", "parse_seeds",
           "run_job"]
