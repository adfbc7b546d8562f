"""Accuracy of a precision plan against float64, layer by layer, with and without SLaNC.

Metrics per tensor (``ref`` = float64 reference run on the same layer input chain, ``q`` = the
quantized run; NaN/inf in ``q`` are counted and excluded from the error figures):

* ``max_abs``  = max |q - ref|
* ``max_rel``  = max |q - ref| / max |ref|   (normwise, infinity norm: componentwise ratios are
  dominated by near-zero entries, see stability notes §3.8)
* ``cosine``   = <q, ref> / (|q| |ref|) over all finite elements
* ``overflow`` = non-finite values + codes stuck at the format's max/min (saturated) + rows whose
  internal sum overflowed (a norm's sum of squares: inf makes 1/sqrt 0 and the row collapses to beta)
* ``saturated``, ``zero``, ``underflow``, ``n``: the run's clipping counts of the tensor
  (:mod:`refmodel.layer.clipping`: clamped to the format's range, stored as 0, flushed to 0 from a
  nonzero value where the op keeps that value; masked attention entries are not counted)

Layers chain: layer i of the quantized model takes the quantized output of layer i-1 (so drift
accumulates as it would on hardware), the reference takes the float64 output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .layer.clipping import ClipCount
from .layer.config import LayerConfig
from .layer.plan import PrecisionPlan
from .layer.quantized import LayerRun, QuantizedLayer
from .layer.reference import run_reference
from .layer.weights import LayerWeights

__all__ = ["TensorAccuracy", "tensor_accuracy", "chain_accuracy", "plot_accuracy", "SLANC_FIXED_NOTE"]

#: why SLaNC does not help (and costs accuracy) in the integer norm unit of fixed-point plans
SLANC_FIXED_NOTE = (
    "SLaNC in a fixed-point plan: the integer norm unit sums x and x^2 exactly, in registers sized from "
    "the input format, so nothing can overflow and SLaNC's range reduction buys nothing; its shift "
    "x1 = round(x / 2^k) drops k of the input's fraction bits before normalising, which is why SLaNC on "
    "is less accurate here. fixed16 runs without SLaNC; hw keeps the shift because rtl/layer_top.v "
    "implements it.")


@dataclass
class TensorAccuracy:
    layer: int
    name: str
    max_abs: float
    max_rel: float
    cosine: float
    overflow: int
    nonfinite: int
    saturated: int = 0
    zero: int = 0
    underflow: int | None = None
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tensor_accuracy(layer: int, name: str, q: np.ndarray, ref: np.ndarray, stats: dict[str, int] | None,
                    clip: ClipCount | None = None) -> TensorAccuracy:
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
    c = clip if clip is not None else ClipCount(int(q.size))
    return TensorAccuracy(layer, name, max_abs, max_rel, cos, nonfinite + sat, nonfinite, c.saturated, c.zero,
                          c.underflow, c.n)


def chain_accuracy(
    config: LayerConfig,
    layers: Sequence[LayerWeights],
    x: np.ndarray,
    plan: PrecisionPlan,
    *,
    layer_indices: Sequence[int] | None = None,
    pad_mask: np.ndarray | None = None,
    progress: Any = None,
    on_run: Callable[[int, LayerRun], None] | None = None,
) -> list[TensorAccuracy]:
    """Run ``layers`` in sequence under ``plan`` and in float64; one row per (layer, tensor).
    ``on_run(layer_index, run)`` sees each layer's :class:`LayerRun` (e.g. for its weights'
    clipping counts, ``run.clipping``)."""
    rows: list[TensorAccuracy] = []
    xq = np.asarray(x, dtype=np.float64)
    xr = xq.copy()
    idx = list(layer_indices) if layer_indices is not None else list(range(len(layers)))
    if len(idx) != len(layers):
        raise ValueError(f"chain_accuracy: {len(idx)} layer indices for {len(layers)} layers")
    for i, w in zip(idx, layers, strict=True):
        ref = run_reference(config, w, xr, pad_mask=pad_mask)
        xin = np.nan_to_num(xq, nan=0.0, posinf=0.0, neginf=0.0) if not np.all(np.isfinite(xq)) else xq
        run = QuantizedLayer(config, w, plan).run(xin, pad_mask=pad_mask)
        for name, t in run.tensors.items():
            rows.append(tensor_accuracy(i, name, t.values, ref[name], run.stats.get(name), run.clipping.get(name)))
        if on_run is not None:
            on_run(i, run)
        xq, xr = run.tensors["out"].values, ref["out"]
        if progress is not None:
            progress()
    return rows


def plot_accuracy(rows_by_label: dict[str, list[TensorAccuracy]], path: str, title: str) -> str:
    """One line per label (e.g. 'SLaNC on' / 'off'): max_rel per (layer, tensor), log scale; NaN
    (a tensor that overflowed entirely) is drawn at the top as an 'x'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8, 0.25 * len(next(iter(rows_by_label.values())))), 4.5))
    top = 1.0
    for rows in rows_by_label.values():
        vals = np.array([r.max_rel if np.isfinite(r.max_rel) else np.nan for r in rows])
        if np.any(np.isfinite(vals)):
            top = max(top, float(np.nanmax(vals)) * 3)
    for label, rows in rows_by_label.items():
        xs = np.arange(len(rows))
        vals = np.array([r.max_rel for r in rows], dtype=float)
        ok = np.isfinite(vals) & (vals > 0)
        ax.semilogy(xs[ok], vals[ok], marker="o", ms=3, lw=1, label=label)
        bad = ~np.isfinite(vals) | np.array([r.nonfinite > 0 for r in rows])
        if bad.any():
            ax.semilogy(xs[bad], np.full(bad.sum(), top), "x", ms=8, label=f"{label}: inf/NaN")
    rows = next(iter(rows_by_label.values()))
    ax.set_xticks(np.arange(len(rows)))
    ax.set_xticklabels([f"{r.layer}:{r.name}" for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("max |q - ref| / max |ref|")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
