"""The float64 reference layer: :func:`layer_forward` on :class:`Float64Ops`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import LayerConfig
from .forward import layer_forward
from .ops import Float64Ops
from .weights import LayerWeights

__all__ = ["run_reference"]


def run_reference(
    config: LayerConfig,
    weights: LayerWeights,
    x: np.ndarray,
    slanc: Any | Mapping[str, float] | None = None,
    *,
    pad_mask: np.ndarray | None = None,
    softmax_shifted: bool = True,
    positions: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every tensor of one layer in float64, keyed by the names of :func:`tensor_names`.

    ``x`` is float64 ``[s, d_model]``; ``slanc`` is None (unscaled norms) or per-norm scales
    (:class:`refmodel.layer.slanc.SlancScales` or a mapping ``{"ln1": s1, "ln2": s2}``), which in
    float64 change the result only by rounding (norm(x/s; eps/s^2) == norm(x; eps) exactly).
    ``weights`` are validated first (``ValueError`` naming a bad tensor). Arithmetic is IEEE
    double throughout, and the result is the same on every machine: products and sums are
    correctly rounded, elementary functions reproducible (see :mod:`refmodel.layer.ops`).
    """
    ops = Float64Ops()
    layer_forward(ops, config, weights, x, pad_mask=pad_mask, slanc=slanc, softmax_shifted=softmax_shifted,
                  positions=positions)
    return ops.results()
