"""Matplotlib (Agg) helpers for the study figures: sizes and fonts legible at 100% zoom."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["new_figure", "COLORS", "log_safe", "integer_x", "model_panels"]

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
          "#bcbd22"]


def new_figure(ncols: int = 1, *, width: float = 6.0, height: float = 4.2) -> tuple[Any, Any]:
    """A figure with ``ncols`` axes side by side (``width`` inches each), fonts >= 10 pt."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "legend.fontsize": 9, "axes.labelsize": 11})
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False, layout="constrained")
    for ax in axes[0]:
        ax.grid(True, which="both", alpha=0.3)
    return fig, list(axes[0])


def log_safe(v: Any, floor: float = 1e-300) -> np.ndarray:
    """Values for a log axis: non-finite -> NaN (not drawn), 0 -> ``floor``."""
    a = np.asarray(v, dtype=np.float64)
    return np.where(np.isfinite(a), np.maximum(a, floor), np.nan)


def integer_x(ax: Any) -> None:
    """Integer ticks on the x axis (layers)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def model_panels(rows: list[dict[str, Any]], *, width: float = 5.0) -> tuple[Any, list[tuple[Any, str]]]:
    """A figure with one panel per distinct ``row["model"]`` (sorted): ``(fig, [(ax, model)])``."""
    models = sorted({r["model"] for r in rows})
    fig, axes = new_figure(len(models), width=width)
    return fig, list(zip(axes, models, strict=True))
