"""Weight-quantisation errors ``|w_hat - w|`` of a run's weights (end-to-end tier only: the local
tier compares with the float64 op on the quantised weights, so they carry no error there)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...numerics.fixed import FixedFormat
from ...numerics.rounding import Rounding
from ..model import rounding_model
from ..mx import mx_weight_error

__all__ = ["weight_errors", "WeightError"]

#: ``(E, reasons, biased)``: the per-element bound, the no-guarantee reasons, and a mask of the
#: elements whose error is not a mean-zero rounding error (directed rounding, an MX clamp)
WeightError = tuple[np.ndarray, list[str], np.ndarray]


def weight_errors(run: Any, weights: Any = None) -> dict[str, WeightError]:
    """``|w_hat - w|`` bound of every weight of ``run``.

    Exact when ``weights`` (the unquantised :class:`LayerWeights`) is given; else from the weight
    format's rounding model: ``(u |w_hat| + eta) / (1 - u)`` (a value that rounded to ``w_hat``
    was within that of it; for a weight scaled in an epilogue, of its element value, times its
    scale), fixed ``q/2``, MX from the stored block scales
    (:func:`refmodel.bounds.mx.mx_weight_error`). A code at the top of a saturating format may
    have been clipped: ``inf`` with a reason there, unless the exact weights are given.
    """
    out: dict[str, WeightError] = {}
    for name, t in run.weights.items():
        wp = run.plan.weight(name)
        v = np.asarray(t.values, dtype=np.float64)
        reasons: list[str] = []
        directed = Rounding.parse(wp.rounding) not in (Rounding.RNE, Rounding.STOCHASTIC)
        biased = np.full(v.shape, directed)
        if weights is not None:
            w = np.asarray(weights[name], dtype=np.float64)
            with np.errstate(invalid="ignore"):
                E = np.abs(v - w)
            bad = ~np.isfinite(E)
            if np.any(bad):
                E = np.where(bad, np.inf, E)
                reasons.append(f"no guarantee: weight {name} ({wp.format}) is non-finite in {int(bad.sum())} element(s)")
            out[name] = (E, reasons, biased)
            continue
        if wp.format == "float64":
            out[name] = (np.zeros_like(v), [], biased)
            continue
        if t.mx is not None:
            E, r = mx_weight_error(t, wp.rounding)
            out[name] = (E, [f"{r} ({name})"] if r else [], biased)
            continue
        fmt = t.fmt
        m = rounding_model(fmt, wp.rounding)
        sc = getattr(t, "scale", None)
        with np.errstate(invalid="ignore", over="ignore"):
            if sc is not None and not sc.absorbed:  # codes in the element format times s: scale the model
                el = np.asarray(t.unscaled().values, dtype=np.float64)
                E = (m.rel * np.abs(el) + m.abs) / (1.0 - m.rel) * np.abs(sc.along_rows(el.ndim))
            else:
                E = (m.rel * np.abs(v) + m.abs) / (1.0 - m.rel)
        if isinstance(fmt, FixedFormat):
            top = (t.codes == fmt.max_code) | ((t.codes == fmt.min_code) if fmt.signed else False)
            what = f"at the top of {fmt} (max {fmt.max:g}): the weight may have been clipped"
        else:
            top = ~np.isfinite(v) | (np.abs(v) >= fmt.max)
            what = f"at or beyond the range of {fmt} (max {fmt.max:g}): it may have overflowed or saturated"
        if np.any(top):
            E = np.where(top, np.inf, E)
            reasons.append(f"no guarantee: weight {name} has {int(np.count_nonzero(top))} code(s) {what}; pass the "
                           f"exact weights to bound it")
        out[name] = (E, reasons, biased)
    return out
