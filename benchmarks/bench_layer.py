"""GPT-2-small-shaped layer (d 768, 12 heads, d_ff 3072, seq 128): the fp8 and fixed16 plans vs
the float64 reference layer, time and peak memory measured side by side in one run.

    python benchmarks/bench_layer.py [--repeats 5]

Targets (issue: transformer layer): each plan within 3x the float64 reference's time and 3x its
peak memory. Peak memory is tracemalloc's peak of Python + numpy allocations during one forward. Weights
are prepared before timing: float64 for the reference, quantized once (QuantizedLayer) for the
plans, as an accelerator stores them.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

from refmodel.layer.config import LayerConfig
from refmodel.layer.quantized import QuantizedLayer
from refmodel.layer.reference import run_reference
from refmodel.layer.weights import random_inputs, random_weights


def peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--config", default="gpt2-small")
    args = ap.parse_args()
    c = LayerConfig.from_name(args.config)
    w = random_weights(c, seed=0)
    x = random_inputs(c, seed=1)
    runs = {"float64 reference": lambda: run_reference(c, w, x)}
    for plan in ("fp8", "fixed16", "hw", "mxfp8"):
        ql = QuantizedLayer(c, w, plan)  # weights quantized once, offline, as hardware stores them
        runs[f"plan {plan}"] = lambda q=ql: q.run(x)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up (tables, caches)
    for _ in range(args.repeats):  # interleaved, so load changes hit every row alike
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    peaks = {k: peak_mib(fn) for k, fn in runs.items()}
    ref = "float64 reference"
    t0, tm0, m0 = min(times[ref]), statistics.median(times[ref]), peaks[ref]
    print(f"layer {args.config}: d_model {c.d_model}, heads {c.n_heads}, d_ff {c.d_ff}, seq {c.seq_len}; "
          f"{args.repeats} interleaved repeats (min = least-contended run)")
    print(f"{'run':<20} {'min ms':>9} {'x ref':>7} {'median ms':>10} {'x ref':>7} {'peak MiB':>9} {'x ref':>7}")
    for k in runs:
        t, tm, m = min(times[k]), statistics.median(times[k]), peaks[k]
        print(f"{k:<20} {t * 1e3:9.1f} {t / t0:7.2f} {tm * 1e3:10.1f} {tm / tm0:7.2f} {m:9.1f} {m / m0:7.2f}")
    for k in ("plan fp8", "plan fixed16"):
        ok = min(times[k]) / t0 <= 3 and peaks[k] / m0 <= 3
        print(f"{k}: {'within' if ok else 'OUTSIDE'} the 3x time / 3x memory target (min times)")


if __name__ == "__main__":
    main()
