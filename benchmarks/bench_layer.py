"""Every preset plan's quantized layer against the float64 reference layer: time and peak memory
growth, as ratios measured in the same run.

    python benchmarks/bench_layer.py                       # gpt2-small seq 128 and 512, smollm2 seq 32
    python benchmarks/bench_layer.py --shapes gpt2-small:128 --plans fp32,fp16 --repeats 3
    python benchmarks/bench_layer.py --memory rss          # memory from a fresh process per row

Targets: each plan's layer at GPT-2-small shape (d 768, 12 heads, d_ff 3072), seq 128 and 512,
within 3x the float64 reference layer's time and 3x its peak memory growth; one SmolLM2-shaped
layer (d 576, 9 heads / 3 kv heads, d_ff 1536) at seq 32 is measured too (a whole SmolLM2 run is
30 such layers).

Two baselines run in every table: the float64 reference layer (``run_reference``: correctly rounded
products and sums, reproducible elementary functions; the targets are ratios to it, "x ref") and
the same layer on plain numpy (BLAS products, np.sum, np.exp: ``bench_golden.blas_reference``;
"x blas", for scale). The load average is printed with each table: on a loaded machine the
multi-threaded BLAS calls inside the reference slow down more than the plans' kernels do, so
"x ref" reads lower than on an idle machine -- compare tables taken at similar load.

Method (printed with the table):
  * weights are prepared before any measurement: float64 for the reference, quantized once
    (:class:`QuantizedLayer`) for the plans, as an accelerator stores them; each contender runs once
    untimed first (caches, tables, compiled kernels);
  * time: ``--repeats`` rounds, each round runs every contender of a shape once in turn
    (interleaved, so load changes on a shared machine hit every row alike); the ratio is
    median(plan) / median(reference);
  * memory, ``tracemalloc`` (default): the peak of traced allocations during one forward, i.e. the
    peak growth over what was allocated before it. numpy reports its array buffers to tracemalloc, so
    every numpy allocation is counted; memory that C libraries allocate behind numpy's back (BLAS
    work buffers) is not, for the reference and the plans alike;
  * memory, ``rss``: one fresh Python process per contender (with ``MALLOC_MMAP_THRESHOLD_`` set
    so that freed buffers go back to the OS): prepare, run once, reset the kernel's peak-RSS mark
    (``/proc/self/clear_refs``), run again; growth = peak RSS (``VmHWM``) minus RSS before the run.
    Counts every allocation, C libraries included (Linux only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

from refmodel.layer.config import LayerConfig
from refmodel.layer.plan import PRESET_NAMES, PrecisionPlan
from refmodel.layer.quantized import QuantizedLayer
from refmodel.layer.reference import run_reference
from refmodel.layer.weights import random_inputs, random_weights

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_golden import blas_reference  # noqa: E402  (the plain numpy float64 layer, a sibling script)

REF = "float64 reference"
BLAS = "float64 numpy (BLAS)"
DEFAULT_SHAPES = "gpt2-small:128,gpt2-small:512,smollm2:32"


def parse_shape(text: str) -> tuple[str, int]:
    name, _, seq = text.partition(":")
    return name, int(seq) if seq else LayerConfig.from_name(name).seq_len


def load_plan(spec: str) -> PrecisionPlan:
    """A preset name or a plan file (.toml / .json)."""
    return PrecisionPlan.load(spec) if spec.endswith((".toml", ".json")) else PrecisionPlan.from_name(spec)


def contenders(shape: tuple[str, int], plans: list[str]) -> dict[str, Callable[[], object]]:
    """Prepared runs of one shape: the reference first, then one per plan."""
    name, seq = shape
    c = dataclasses.replace(LayerConfig.from_name(name), seq_len=seq)
    w = random_weights(c, seed=0)
    x = random_inputs(c, seed=1)
    runs: dict[str, Callable[[], object]] = {REF: lambda: run_reference(c, w, x), BLAS: lambda: blas_reference(c, w, x)}
    for spec in plans:
        runs[spec] = _bind(QuantizedLayer(c, w, load_plan(spec)), x)
    return runs


def _bind(ql: QuantizedLayer, x) -> Callable[[], object]:
    """A prepared layer's forward on ``x`` (weights quantized once, offline)."""
    return lambda: ql.run(x)


def traced_peak(fn: Callable[[], object]) -> int:
    """Peak bytes of traced (Python + numpy) allocations during one call."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def rss_growth_child(shape: str, contender: str) -> None:
    """Subprocess entry: print the peak RSS growth (bytes) of one forward of ``contender``."""
    plans = [] if contender in (REF, BLAS) else [contender]
    fn = contenders(parse_shape(shape), plans)[contender]
    fn()  # warm-up: caches and compiled kernels exist before the measured run
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark to the current RSS
    fn()
    print(json.dumps({"growth": (_status_kib("VmHWM") - before) * 1024}))


def rss_growth(shape: str, contender: str) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(128 * 1024), MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run([sys.executable, __file__, "--rss-child", shape, contender], env=env,
                         capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["growth"])


def measure(shape: tuple[str, int], plans: list[str], repeats: int, memory: str) -> dict[str, dict[str, float]]:
    runs = contenders(shape, plans)
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):  # interleaved rounds
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    spec = f"{shape[0]}:{shape[1]}"
    mem = {k: float(traced_peak(fn) if memory == "tracemalloc" else rss_growth(spec, k)) for k, fn in runs.items()}
    return {k: {"median_s": statistics.median(times[k]), "min_s": min(times[k]), "mem_bytes": mem[k]} for k in runs}


def report(shape: tuple[str, int], res: dict[str, dict[str, float]], repeats: int, memory: str) -> list[str]:
    c = dataclasses.replace(LayerConfig.from_name(shape[0]), seq_len=shape[1])
    ref, blas = res[REF], res[BLAS]

    def ratio(x: float, y: float) -> float:
        return x / y if y > 0 else float("inf")

    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    lines = [f"{shape[0]} (d_model {c.d_model}, heads {c.n_heads}/{c.n_kv_heads or c.n_heads}, d_ff {c.d_ff}), seq {shape[1]}: "
             f"median of {repeats} interleaved runs; memory: {memory}; load average {load}",
             f"{'run':<22} {'median ms':>10} {'x ref':>7} {'x blas':>7} {'min ms':>9} "
             f"{'peak MiB':>9} {'x ref':>7} {'x blas':>7}  target (x ref <= 3)"]
    for k, r in res.items():
        tr = ratio(r["median_s"], ref["median_s"])
        mr = ratio(r["mem_bytes"], ref["mem_bytes"])
        ok = "" if k in (REF, BLAS) else ("met" if tr <= 3 and mr <= 3 else "MISSED")
        lines.append(f"{k:<22} {r['median_s'] * 1e3:10.1f} {tr:7.3g} {ratio(r['median_s'], blas['median_s']):7.3g} "
                     f"{r['min_s'] * 1e3:9.1f} {r['mem_bytes'] / 2**20:9.1f} {mr:7.3g} "
                     f"{ratio(r['mem_bytes'], blas['mem_bytes']):7.3g}  {ok}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"config:seq list (default {DEFAULT_SHAPES})")
    ap.add_argument("--plans", default=",".join(p for p in PRESET_NAMES if p != "float64"),
                    help="preset names or plan files (default: every preset but float64)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    ap.add_argument("--memory", choices=("tracemalloc", "rss"), default="tracemalloc")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_growth_child(*args.rss_child)
        return
    plans = [p.strip() for p in args.plans.split(",") if p.strip()]
    results = {}
    for text in args.shapes.split(","):
        shape = parse_shape(text.strip())
        res = measure(shape, plans, args.repeats, args.memory)
        results[f"{shape[0]}:{shape[1]}"] = res
        print("\n".join(report(shape, res, args.repeats, args.memory)), end="\n\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
