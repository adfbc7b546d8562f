"""The accuracy heat map: tensor x layer grids built from the rows as they come, and a PNG whose
cells are large enough to read their values at 100 % zoom."""

from __future__ import annotations

import numpy as np
from matplotlib import image

from refmodel.accuracy import TensorAccuracy
from refmodel.accuracy_plot import CELL_H, CELL_W, error_grid, plot_accuracy

NAMES = ["x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down", "out"]


def _rows(n_layers: int, seed: int = 0) -> list[TensorAccuracy]:
    rng = np.random.default_rng(seed)
    return [TensorAccuracy(layer, name, 1.0, float(10 ** rng.uniform(-4, -1)), 0.99, 0, 0)
            for layer in range(n_layers) for name in NAMES]


def test_error_grid_places_every_row():
    rows = _rows(6)
    rows[NAMES.index("k")] = TensorAccuracy(0, "k", float("nan"), float("nan"), float("nan"), 7, 7)  # overflowed
    rows[15 + NAMES.index("v")] = TensorAccuracy(1, "v", 0.0, 0.0, 1.0, 0, 0)  # exact
    names, layers, grid = error_grid(rows)
    assert names == NAMES and layers == list(range(6)) and grid.shape == (15, 6)
    for r in rows:
        v = grid[names.index(r.name), layers.index(r.layer)]
        assert (np.isnan(v) and r.nonfinite) or v == r.max_rel
    assert np.isnan(grid[3, 0]) and grid[4, 1] == 0.0


def test_heat_map_is_readable_at_100_percent(tmp_path):
    rows = _rows(6)
    rows[40] = TensorAccuracy(2, NAMES[10], float("nan"), float("nan"), float("nan"), 3, 3)
    png = plot_accuracy({"SLaNC off": rows, "SLaNC on": _rows(6, 1)}, tmp_path / "acc.png", "6 layers")
    h, w = image.imread(png).shape[:2]
    # two panels of 6 x 15 cells of CELL_W x CELL_H inches at 100 dpi, plus labels and a colour bar
    assert 2 * 6 * CELL_W * 100 < w <= 1400, w
    assert 15 * CELL_H * 100 < h <= 800, h
    assert CELL_W * 100 >= 60 and CELL_H * 100 >= 25  # room for "4.4e-3" in 8 pt


def test_many_layers_stay_a_reasonable_size(tmp_path):
    png = plot_accuracy({"SLaNC on": _rows(30)}, tmp_path / "acc30.png", "30 layers")
    h, w = image.imread(png).shape[:2]
    assert w <= 1600 and h <= 800, (w, h)
