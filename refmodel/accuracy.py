"""Accuracy of a precision plan against float64, layer by layer, with and without SLaNC.

Metrics per tensor (``ref`` = float64 reference run on the same layer input chain, ``q`` = the
quantized run; NaN/inf in ``q`` are counted and excluded from the error figures):

* ``max_abs``  = max |q - ref|
* ``max_rel``  = max |q - ref| / max |ref|   (normwise, infinity norm: componentwise ratios are
  dominated by near-zero entries, see stability notes §3.8)
* ``cosine``   = <q, ref> / (|q| |ref|) over all finite elements
* ``overflow`` = non-finite values + codes stuck at the format's max/min (saturated) + rows whose
  internal sum overflowed (a norm's sum of squares: inf makes 1/sqrt 0 and the row collapses to beta)

Layers chain: layer i of the quantized model takes the quantized output of layer i-1 (so drift
accumulates as it would on hardware), the reference takes the float64 output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layer.config import LayerConfig
from .layer.plan import PrecisionPlan
from .layer.quantized import run_quantized
from .layer.reference import run_reference
from .layer.weights import LayerWeights

__all__ = ["TensorAccuracy", "tensor_accuracy", "chain_accuracy"]


@dataclass
class TensorAccuracy:
    layer: int
    name: str
    max_abs: float
    max_rel: float
    cosine: float
    overflow: int
    nonfinite: int


def tensor_accuracy(layer: int, name: str, q: np.ndarray, ref: np.ndarray, stats: dict[str, int] | None) -> TensorAccuracy:
    finite = np.isfinite(q)
    nonfinite = int(q.size - np.count_nonzero(finite))
    qf, rf = q[finite], ref[finite]
    if qf.size:
        err = np.abs(qf - rf)
        max_abs = float(err.max())
        scale = float(np.max(np.abs(ref)))
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        den = float(np.linalg.norm(qf) * np.linalg.norm(rf))
        cos = float(np.dot(qf.ravel(), rf.ravel()) / den) if den > 0 else (1.0 if max_abs == 0 else 0.0)
    else:
        max_abs = max_rel = float("nan")
        cos = float("nan")
    sat = int((stats or {}).get("saturated", 0)) + int((stats or {}).get("internal_overflow", 0))
    return TensorAccuracy(layer, name, max_abs, max_rel, cos, nonfinite + sat, nonfinite)


def chain_accuracy(
    config: LayerConfig,
    layers: Sequence[LayerWeights],
    x: np.ndarray,
    plan: PrecisionPlan,
    *,
    layer_indices: Sequence[int] | None = None,
    pad_mask: np.ndarray | None = None,
    progress: Any = None,
) -> list[TensorAccuracy]:
    """Run ``layers`` in sequence under ``plan`` and in float64; one row per (layer, tensor)."""
    rows: list[TensorAccuracy] = []
    xq = np.asarray(x, dtype=np.float64)
    xr = xq.copy()
    idx = list(layer_indices) if layer_indices is not None else list(range(len(layers)))
    for i, w in zip(idx, layers):
        ref = run_reference(config, w, xr, pad_mask=pad_mask)
        xin = np.nan_to_num(xq, nan=0.0, posinf=0.0, neginf=0.0) if not np.all(np.isfinite(xq)) else xq
        run = run_quantized(config, w, xin, plan, pad_mask=pad_mask)
        for name, t in run.tensors.items():
            rows.append(tensor_accuracy(i, name, t.values, ref[name], run.stats.get(name)))
        xq, xr = run.tensors["out"].values, ref["out"]
        if progress is not None:
            progress()
    return rows
