"""Golden set generation at GPT-2-small shape (d 768, 12 heads, d_ff 3072): time against the
quantized forward plus the bounds, peak memory against the bytes written, and the cost of the
reproducible float64 reference against a plain-BLAS float64 layer, all measured in one run.

    python benchmarks/bench_golden.py [--seq 128 1024] [--plan hw] [--repeats 3] [--no-memory]

Targets (issue: speed and scale, goal 2): generation <= 2x (quantized forward + bounds) at seq 128;
memory growing with the size written, not faster. Times are the minimum of interleaved repeats,
both wall-clock and CPU time of this process (on a shared machine the CPU time is the steadier
figure; run with OPENBLAS_NUM_THREADS=1 so that it is not inflated by idle BLAS threads). Peak
memory is tracemalloc's peak of Python + numpy allocations during one generation (a separate,
untimed run).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from refmodel.golden.generate import _tolerances, generate_set
from refmodel.layer.config import LayerConfig
from refmodel.layer.forward import layer_forward
from refmodel.layer.ops import Float64Ops
from refmodel.layer.quantized import run_quantized
from refmodel.layer.reference import run_reference
from refmodel.layer.weights import random_inputs, random_weights


def _np_dot_rows(a: np.ndarray, b: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    return np.sum(a * b, axis=axis, keepdims=keepdims)


class BlasFloat64Ops(Float64Ops):
    """The float64 layer as it was before it was made reproducible: numpy BLAS products, np.sum /
    np.mean and numpy's SIMD exp (results move in the last bit with the BLAS kernel, thread count
    and CPU). Only a speed baseline here."""

    _matmul = staticmethod(np.matmul)
    _mean = staticmethod(np.mean)
    _dot_rows = staticmethod(_np_dot_rows)
    _fsum = staticmethod(np.sum)
    _exp = staticmethod(np.exp)

    def act(self, name: str, h: np.ndarray, *, kind: str) -> np.ndarray:  # gelu_tanh (gpt2) with numpy's exp
        u = math.sqrt(2.0 / math.pi) * (h + 0.044715 * h * h * h)
        with np.errstate(over="ignore"):
            return self.record(name, h / (1.0 + np.exp(-2.0 * u)))


def blas_reference(c: LayerConfig, w: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    ops = BlasFloat64Ops()
    layer_forward(ops, c, w, x)
    return ops.results()


def _min_interleaved(runs: dict[str, Any], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """(min wall seconds, min CPU seconds) per run over interleaved repeats."""
    wall = {k: math.inf for k in runs}
    cpu = {k: math.inf for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k] = min(wall[k], time.perf_counter() - t0)
            cpu[k] = min(cpu[k], time.process_time() - c0)
    return wall, cpu


def _peak_mib(fn: Any) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def bench(seq: int, plan: str, repeats: int, memory: bool, tmp: Path) -> None:
    c = dataclasses.replace(LayerConfig.from_name("gpt2-small"), seq_len=seq)
    w, x = random_weights(c, seed=0), random_inputs(c, seed=1)
    run = run_quantized(c, w, x, plan)
    ref = run_reference(c, w, x)
    out = tmp / f"s{seq}"
    runs = {
        "quantized forward": lambda: run_quantized(c, w, x, plan),
        "bounds": lambda: _tolerances(run, ref, w, x),
        "float64 reference (reproducible)": lambda: run_reference(c, w, x),
        "float64 layer, plain BLAS": lambda: blas_reference(c, w, x),
        "golden generation (all)": lambda: generate_set(c, plan, out, force=True),
    }
    wall, cpu = _min_interleaved(runs, repeats)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"\ngpt2-small, seq {seq}, plan {plan}: {repeats} interleaved repeats (min)")
    print(f"{'run':<36} {'wall s':>9} {'CPU s':>9}")
    for k in runs:
        print(f"{k:<36} {wall[k]:9.3f} {cpu[k]:9.3f}")
    for label, t in (("wall", wall), ("CPU", cpu)):
        base = t["quantized forward"] + t["bounds"]
        print(f"golden / (forward + bounds), {label:<4}   {t['golden generation (all)'] / base:9.2f}x   (target <= 2x)")
        print(f"reproducible / plain-BLAS ref, {label:<4} {t['float64 reference (reproducible)'] / t['float64 layer, plain BLAS']:9.1f}x")
    print(f"written: {size / 2**20:.1f} MiB in {len(list(out.iterdir()))} files")
    if memory:
        peak = _peak_mib(lambda: generate_set(c, plan, out, force=True))
        print(f"peak memory of one generation (tracemalloc): {peak:.0f} MiB = {peak * 2**20 / size:.2f}x the bytes written")
    shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, nargs="+", default=[128])
    ap.add_argument("--plan", default="hw")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the (slower) tracemalloc run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-golden-") as d:
        for seq in args.seq:
            bench(seq, args.plan, args.repeats, not args.no_memory, Path(d))


if __name__ == "__main__":
    main()
