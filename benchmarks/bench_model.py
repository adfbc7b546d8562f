"""Whole-model forward on SmolLM2-135M (all 30 layers): each preset plan vs the float64 whole-model
run, timed side by side in one process.

    python benchmarks/bench_model.py [--tokens 32] [--repeats 3] [--model smollm2] [--plans fp16,bf16]

Target (issue: standalone accuracy studies): any preset within 10x of the float64 whole-model
run at 32 tokens. Weights are prepared before timing (each plan's weights quantized once, as an
accelerator stores them: :class:`refmodel.layer.model.PreparedModel`); each timed run is the
forward alone (:meth:`PreparedModel.forward`; the float64 side: :func:`reference_forward`).
Runs are interleaved, so load changes on a shared machine hit every row alike; the table gives the
min (least-contended run) and the median, and their ratios to float64 measured in the same run.
On a loaded machine, pin every thread pool to one thread (``OPENBLAS_NUM_THREADS=1
OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1``): oversubscribed BLAS threads spin and make the float64 side
several times slower than it is. The header prints the settings used.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from refmodel.layer.model import ModelWeights, PreparedModel, reference_forward
from refmodel.layer.plan import PRESET_NAMES
from refmodel.study.models import TEXT

TARGET = 10.0


def pm_forward(pm: PreparedModel, x: np.ndarray) -> Callable[[], object]:
    """The timed call: the plan's whole-model forward alone."""
    return lambda: pm.forward(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", choices=("smollm2", "minilm"), default="smollm2")
    ap.add_argument("--plans", default=",".join(n for n in PRESET_NAMES if n != "float64"))
    args = ap.parse_args()
    from refmodel.layer import realweights as rw

    real = (rw.load_smollm2 if args.model == "smollm2" else rw.load_minilm)()
    m = ModelWeights.from_real(real)
    x = real.embed_ids(real.tokenize(TEXT)[: args.tokens])
    runs: dict[str, Callable[[], object]] = {"float64 reference": lambda: reference_forward(m, x)}
    prep = {}
    for name in args.plans.split(","):
        t0 = time.perf_counter()
        pm = PreparedModel(m, name)  # weights quantized once, SLaNC scales computed once
        prep[name] = time.perf_counter() - t0
        runs[f"plan {name}"] = pm_forward(pm, x)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    ref = "float64 reference"
    t_min, t_med = min(times[ref]), statistics.median(times[ref])
    import os

    threads = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in
                        ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"))
    print(f"{m.name}: {m.n_layers} layers, {args.tokens} tokens, {args.repeats} interleaved repeats "
          f"(ratios to the float64 whole-model run measured in the same process; target <= {TARGET:g}x); {threads}")
    print(f"{'run':<22} {'min s':>8} {'x f64':>8} {'median s':>9} {'x f64':>8} {'prepare s':>10} {'target':>7}")
    for k, ts in times.items():
        lo, med = min(ts), statistics.median(ts)
        name = k.removeprefix("plan ")
        ok = "" if k == ref else ("met" if med / t_med <= TARGET else "MISSED")
        print(f"{k:<22} {lo:8.3f} {lo / t_min:8.1f} {med:9.3f} {med / t_med:8.1f} "
              f"{prep.get(name, 0.0):10.2f} {ok:>7}")


if __name__ == "__main__":
    main()
