"""The PNG of ``refmodel accuracy --plot``: a heat map of the max relative error, tensor x layer.

One panel per run (``SLaNC off`` / ``SLaNC on``), side by side on one logarithmic colour scale, so
that where the error is large and what SLaNC changes can be read by eye; every cell also carries
its value (``4.4e-3``) while the cells are wide enough to hold it (up to 16 layers). Rows are the
tensors in forward order (``x`` at the top, ``out`` at the bottom), columns the layers. A tensor
with non-finite values (inf/NaN in the quantized run) is drawn grey and labelled ``inf``; an exact
tensor (error 0) is labelled ``0`` in the lowest colour. Sized for reading at 100 % zoom (text of
8-10 pt at 100 dpi, whatever the number of layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_accuracy", "error_grid"]

#: cell size in inches (at 100 dpi: 70 x 30 pixels, room for "4.4e-3" in 8 pt)
CELL_W, CELL_H = 0.7, 0.3
ANNOTATE_MAX_LAYERS = 16


def error_grid(rows: Sequence[Any]) -> tuple[list[str], list[int], np.ndarray]:
    """(tensor names in forward order, layer indices, grid[tensor, layer] of max_rel) from the
    rows of one run; NaN where the quantized tensor had non-finite values (or no value)."""
    names: list[str] = []
    layers: list[int] = []
    for r in rows:
        if r.name not in names:
            names.append(r.name)
        if r.layer not in layers:
            layers.append(r.layer)
    grid = np.full((len(names), len(layers)), np.nan)
    for r in rows:
        bad = r.nonfinite > 0 or not math.isfinite(r.max_rel)
        grid[names.index(r.name), layers.index(r.layer)] = np.nan if bad else r.max_rel
    return names, layers, grid


def _short(v: float) -> str:
    """4.4e-3 (two digits, exponent without padding)."""
    if v == 0:
        return "0"
    m, e = f"{v:.1e}".split("e")
    return f"{m}e{int(e)}"


def plot_accuracy(rows_by_label: dict[str, list[Any]], path: str | Path, title: str) -> str:
    """Write the heat map PNG of ``rows_by_label`` (label -> rows with ``layer``, ``name``,
    ``max_rel``, ``nonfinite``) to ``path``; returns the path."""
    import matplotlib
    from matplotlib import colors
    from matplotlib.figure import Figure

    grids = {label: error_grid(rows) for label, rows in rows_by_label.items()}
    names, layers, _ = next(iter(grids.values()))
    values = np.concatenate([g.ravel() for _, _, g in grids.values()])
    positive = values[np.isfinite(values) & (values > 0)]
    lo = float(positive.min()) if positive.size else 1e-8
    hi = float(positive.max()) if positive.size else 1.0
    if hi <= lo:
        lo, hi = lo / 10, hi * 10
    norm = colors.LogNorm(vmin=lo, vmax=hi)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#b0b0b0")

    n_panels, n_rows, n_cols = len(grids), len(names), len(layers)
    annotate = n_cols <= ANNOTATE_MAX_LAYERS
    cell_w = CELL_W if annotate else 0.3
    panel_w = max(n_cols * cell_w, 1.6)
    width = 1.0 + n_panels * (panel_w + 0.2) + 1.2  # tensor labels, panels, colour bar
    height = max(n_rows * CELL_H, 2.0) + 1.6  # title, panel titles, layer labels
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, n_panels, sharey=True, squeeze=False)[0]
    image = None
    for ax, (label, (_, lay, grid)) in zip(axes, grids.items(), strict=True):
        shown = np.where(grid == 0, lo, grid)  # exact tensors take the lowest colour
        image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, aspect="auto",
                          interpolation="nearest")
        ax.set_title(label, fontsize=11)
        ax.set_xticks(range(n_cols), [str(i) for i in lay], fontsize=9)
        ax.set_xlabel("layer", fontsize=10)
        ax.set_yticks(range(n_rows), names, fontsize=10)
        ax.tick_params(length=0)
        ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=0.8)
        ax.tick_params(which="minor", length=0)
        if annotate:
            for i in range(n_rows):
                for j in range(n_cols):
                    v = grid[i, j]
                    if not np.isfinite(v):
                        text, dark = "inf", False
                    else:
                        rgb = cmap(norm(max(v, lo)))[:3]
                        text, dark = _short(v), (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) > 0.55
                    ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if dark else "white")
    assert image is not None
    bar = fig.colorbar(image, ax=list(axes), fraction=0.05, pad=0.02)
    grey = " (grey: inf/NaN in the quantized run)" if np.isnan(values).any() else ""
    bar.set_label(f"max |q - ref| / max |ref|{grey}", fontsize=10)
    bar.ax.tick_params(labelsize=9)
    fig.suptitle(title, fontsize=12)
    fig.savefig(path, dpi=100)
    return str(path)
