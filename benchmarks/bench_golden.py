"""Golden set generation at GPT-2-small shape (d 768, 12 heads, d_ff 3072): time against the
quantized forward plus the bounds, peak memory against the bytes written, and the cost of the
reproducible float64 reference against a plain-BLAS float64 layer, all measured in one run.

    python benchmarks/bench_golden.py [--seq 128 1024] [--plan hw] [--repeats 3] [--no-memory]

Targets (issue: speed and scale, goal 2): generation <= 2x (quantized forward + bounds) at seq 128;
memory growing with the size written, not faster. Times are the minimum of interleaved repeats
(min = least-contended run; say when the machine was shared). Peak memory is tracemalloc's peak of
Python + numpy allocations during one generation (a separate, untimed run).
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
from refmodel.layer.ops import NORMS, Float64Ops, repeat_kv
from refmodel.layer.quantized import run_quantized
from refmodel.layer.reference import run_reference
from refmodel.layer.weights import random_inputs, random_weights


class BlasFloat64Ops(Float64Ops):
    """The float64 layer as it was before it was made reproducible: numpy BLAS products, np.sum /
    np.mean, numpy's SIMD exp, cos and sin (results move in the last bit with the BLAS kernel,
    thread count and CPU). Only a speed baseline here."""

    def linear(self, name: str, x: np.ndarray, w: np.ndarray, b: Any, *, heads: int | None = None) -> np.ndarray:
        y = x @ w.T
        if b is not None:
            y = y + b
        if heads is not None:
            s, n = y.shape
            y = y.reshape(s, heads, n // heads).transpose(1, 0, 2).copy()
        return self.record(name, y)

    def norm(self, name: str, x: np.ndarray, gamma: np.ndarray, beta: Any, *, kind: str, eps: float,
             scale: float = 1.0) -> np.ndarray:
        assert kind in NORMS
        xs = x / scale if scale != 1.0 else x
        eps_s = eps / (scale * scale)
        if kind == "layernorm":
            c = xs - xs.mean(axis=-1, keepdims=True)
            n = c / np.sqrt(np.mean(c * c, axis=-1, keepdims=True) + eps_s)
        else:
            n = xs / np.sqrt(np.mean(xs * xs, axis=-1, keepdims=True) + eps_s)
        y = n * gamma
        return self.record(name, y if beta is None else y + beta)

    def scores(self, name: str, q: np.ndarray, k: np.ndarray, *, scale: float, mask: Any) -> np.ndarray:
        s = (q @ repeat_kv(k, q.shape[0]).transpose(0, 2, 1)) * scale
        return self.record(name, s if mask is None else np.where(mask, s, 0.0))

    def softmax(self, name: str, s: np.ndarray, *, mask: Any, shifted: bool = True) -> np.ndarray:
        allowed = np.ones(s.shape, dtype=bool) if mask is None else np.broadcast_to(mask, s.shape)
        m = np.max(np.where(allowed, s, -np.inf), axis=-1, keepdims=True)
        e = np.where(allowed, np.exp(np.where(allowed, s - m, 0.0)), 0.0)
        return self.record(name, e / e.sum(axis=-1, keepdims=True))

    def mix(self, name: str, p: np.ndarray, v: np.ndarray) -> np.ndarray:
        o = p @ repeat_kv(v, p.shape[0])
        h, s, hd = o.shape
        return self.record(name, o.transpose(1, 0, 2).reshape(s, h * hd))

    def act(self, name: str, h: np.ndarray, *, kind: str) -> np.ndarray:
        u = math.sqrt(2.0 / math.pi) * (h + 0.044715 * h * h * h)
        with np.errstate(over="ignore"):
            return self.record(name, h / (1.0 + np.exp(-2.0 * u)))


def blas_reference(c: LayerConfig, w: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    ops = BlasFloat64Ops()
    layer_forward(ops, c, w, x)
    return ops.results()


def _min_interleaved(runs: dict[str, Any], repeats: int) -> dict[str, float]:
    best = {k: math.inf for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


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
        "bounds": lambda: _tolerances(run, ref),
        "float64 reference (reproducible)": lambda: run_reference(c, w, x),
        "float64 layer, plain BLAS": lambda: blas_reference(c, w, x),
        "golden generation (all)": lambda: generate_set(c, plan, out, force=True),
    }
    t = _min_interleaved(runs, repeats)
    size = sum(p.stat().st_size for p in out.iterdir())
    base = t["quantized forward"] + t["bounds"]
    print(f"\ngpt2-small, seq {seq}, plan {plan}: {repeats} interleaved repeats (min)")
    print(f"{'run':<36} {'s':>9}")
    for k, v in t.items():
        print(f"{k:<36} {v:9.3f}")
    print(f"golden / (forward + bounds)          {t['golden generation (all)'] / base:9.2f}x   (target <= 2x)")
    print(f"reproducible / plain-BLAS reference  {t['float64 reference (reproducible)'] / t['float64 layer, plain BLAS']:9.1f}x")
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
