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


def measure(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (tables, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--config", default="gpt2-small")
    args = ap.parse_args()
    c = LayerConfig.from_name(args.config)
    w = random_weights(c, seed=0)
    x = random_inputs(c, seed=1)
    rows = [("float64 reference", *measure(lambda: run_reference(c, w, x), args.repeats))]
    for plan in ("fp8", "fixed16", "hw", "mxfp8"):
        ql = QuantizedLayer(c, w, plan)  # weights quantized once, offline, as hardware stores them
        rows.append((f"plan {plan}", *measure(lambda q=ql: q.run(x), args.repeats)))
    t0, m0 = rows[0][1], rows[0][2]
    print(f"layer {args.config}: d_model {c.d_model}, heads {c.n_heads}, d_ff {c.d_ff}, seq {c.seq_len}; "
          f"median of {args.repeats}")
    print(f"{'run':<20} {'time ms':>10} {'x ref':>7} {'peak MiB':>10} {'x ref':>7}")
    for name, t, m in rows:
        print(f"{name:<20} {t * 1e3:10.1f} {t / t0:7.2f} {m:10.1f} {m / m0:7.2f}")
    for name, t, m in rows[1:3]:
        ok = t / t0 <= 3 and m / m0 <= 3
        print(f"{name}: {'within' if ok else 'OUTSIDE'} the 3x time / 3x memory target")


if __name__ == "__main__":
    main()
