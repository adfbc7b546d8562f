"""Per-stage local tolerances: each stage against the float64 op on the stage's OWN quantised inputs.

A unit bench (or the layer bench stage by stage) drives one stage with the golden set's inputs of
that stage, which are quantised codes. What that stage must produce, up to its own roundings, is
the float64 op applied to those same inputs: the **local reference** (:func:`local_references`,
computed only through :mod:`refmodel.layer.ops`, the deterministic float64 ops of the reference
layer). Two tiers bound the distance of the stage output to it:

* **rigorous** (``LocalBound.rigorous``): ``|stage output - local reference| <= rigorous``
  elementwise, for the plan's declared datapath: every rounding the op performs (requantisers,
  the exp2-LUT softmax and its reciprocal, the rsqrt norm unit, the activation table, fixed-point
  accumulators, sequential / blocked / exact float accumulation with the output rounding, MX
  block rounding with the stored scales) bounded worst case, the float accumulations a
  posteriori from their exact partial sums (:func:`refmodel.bounds.accum.running_error`), a
  saturated output by its exact overshoot, plus the float64 reference's own rounding error. No
  propagation through the layer: the inputs are exact by definition. Finite for every finite run.
* **warning** (``LocalBound.warning``): the statistical tier of the same local error, at most the
  rigorous one: mean-zero roundings (round to nearest) summed in quadrature over the actual
  partial sums (Azuma-Hoeffding), biased ones (directed rounding, LUT units, saturation) worst
  case. An element of correct hardware exceeds it with probability at most
  ``failure_probability`` under that model (independent rounding errors: see
  :func:`coherent_groups` for the repeated-token case where they are not).

The computation is the end-to-end walk (:mod:`.walk`) in local mode: every input and weight error
is 0 and the "reference inputs" of each op are the run's own quantised inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...layer.ops import Float64Ops
from ..model import DEFAULT_ALPHA
from .walk import LayerWalk, run_mask_and_positions
from .weights import WeightError

__all__ = ["LocalBound", "local_bounds", "local_references", "stage_inputs", "LOCAL_STAT_TERMS"]

#: statistical applications (Azuma at level alpha) one element's warning threshold rests on, per
#: op kind: its own, plus the row-shared terms (a norm's mean and variance sums, a softmax
#: denominator); the stated failure probability is ``alpha`` times this count
LOCAL_STAT_TERMS = {"norm": 3, "softmax": 2}


@dataclass
class LocalBound:
    """Local tolerance of one stage (module docstring).

    ``inputs``: the tensors and weights the stage reads (names in the golden set);
    ``reference``: the float64 op on those quantised inputs (``.lref.hex``); ``rigorous`` and
    ``warning``: per-element bounds on ``|stage output - reference|`` (``warning <= rigorous``);
    ``failure_probability``: per element, of the warning tier under its model; ``notes``:
    saturations and other remarks; ``parts``: named pieces for reports."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    reference: np.ndarray
    rigorous: np.ndarray
    warning: np.ndarray
    failure_probability: float
    notes: list[str] = field(default_factory=list)
    parts: dict[str, Any] = field(default_factory=dict)

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.rigorous)))

    def check(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(fail, warn)`` masks for stage output ``values`` (decoded): ``fail`` where the
        rigorous tier is exceeded, ``warn`` where only the warning tier is."""
        with np.errstate(invalid="ignore"):
            err = np.abs(np.asarray(values, dtype=np.float64) - self.reference)
            fail = ~(err <= self.rigorous)
            warn = ~fail & ~(err <= self.warning)
        return fail, warn


def stage_inputs(run: Any) -> dict[str, tuple[str, ...]]:
    """The input tensor / weight names of every stage of ``run`` (``()`` for the layer input)."""
    return {rec.name: tuple(rec.inputs) for rec in run.records}


def local_references(run: Any, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The float64 op of every stage applied to that stage's own quantised inputs, through
    :class:`refmodel.layer.ops.Float64Ops` only. ``x``: the float64 layer input (the local
    reference of the input stage ``x``); without it ``x`` has no entry."""
    ops = Float64Ops()
    val = {n: np.asarray(t.values, dtype=np.float64) for n, t in run.tensors.items()}
    val.update({n: np.asarray(t.values, dtype=np.float64) for n, t in run.weights.items()})
    mask, positions = run_mask_and_positions(run)
    for rec in run.records:
        d = rec.details
        a = [val[n] for n in rec.inputs]
        if rec.kind == "input":
            if x is not None:
                ops.input(rec.name, x)
        elif rec.kind == "linear":
            out = run.tensors[rec.name].values
            ops.linear(rec.name, a[0], a[1], a[2] if len(a) > 2 else None,
                       heads=out.shape[0] if out.ndim == 3 else None)
        elif rec.kind == "norm":
            ops.norm(rec.name, a[0], a[1], a[2] if len(a) > 2 else None, kind=d["norm"], eps=float(d["eps"]))
        elif rec.kind == "rope":
            pos = d.get("positions")
            ops.rope(rec.name, a[0], np.arange(a[0].shape[-2]) if pos is None else np.asarray(pos),
                     base=float(d["base"]))
        elif rec.kind == "scores":
            ops.scores(rec.name, a[0], a[1], scale=float(d["scale"]), mask=d.get("mask", mask))
        elif rec.kind == "softmax":
            ops.softmax(rec.name, a[0], mask=d.get("mask", mask), shifted=bool(d.get("shifted", True)))
        elif rec.kind == "mix":
            ops.mix(rec.name, a[0], a[1])
        elif rec.kind == "act":
            ops.act(rec.name, a[0], kind=d["act"])
        elif rec.kind == "mul":
            ops.mul(rec.name, a[0], a[1])
        elif rec.kind == "add":
            ops.add(rec.name, a[0], a[1])
        else:
            raise ValueError(f"local reference: op kind {rec.kind!r} of tensor {rec.name!r} has no float64 op")
    del positions
    return {n: np.asarray(v, dtype=np.float64) for n, v in ops.results().items()}


def local_bounds(run: Any, *, x: np.ndarray | None = None, alpha: float = DEFAULT_ALPHA) -> dict[str, LocalBound]:
    """Local tolerance of every stage of ``run`` (module docstring), in forward order.

    ``x``: the float64 layer input, for the input stage ``x`` (its local tolerance is the
    rounding of ``x`` into its format); without it ``x`` is left out. ``alpha``: failure
    probability of one statistical application (the warning tier)."""
    with np.errstate(all="ignore"):  # a run that overflowed has non-finite stage inputs
        refs = local_references(run, x)
    view = {n: np.asarray(t.values, dtype=np.float64) for n, t in run.tensors.items()}
    if x is not None:
        view["x"] = np.asarray(x, dtype=np.float64)
    zero: dict[str, WeightError] = {n: (np.zeros(np.shape(t.values)), [], np.zeros(np.shape(t.values), bool))
                                    for n, t in run.weights.items()}
    walk = LayerWalk(run, view, None, alpha, weight_err=zero, local=True)
    out: dict[str, LocalBound] = {}
    inputs = stage_inputs(run)
    for name, tb in walk.run_all().items():
        if name == "x" and x is None:
            continue
        rig = np.asarray(tb.rigorous, dtype=np.float64)
        warn = np.minimum(np.asarray(tb.statistical, dtype=np.float64), rig)
        notes = list(tb.notes) + [r for r in tb.no_guarantee]
        pf = min(1.0, alpha * LOCAL_STAT_TERMS.get(tb.kind, 1))
        out[name] = LocalBound(name, tb.kind, inputs[name], refs[name], rig, warn, pf, notes,
                               {k: tb.parts[k] for k in ("local", "propagated", "ref64") if k in tb.parts})
    return out
