"""Per-tensor error state carried by the layer walk, and the result type :class:`TensorBound`.

Two kinds of state, one per tier:

* :class:`ValueChain` (rigorous tier): a computed value ``v`` known to lie within ``local`` of
  ``z`` (the op's exact result on its computed inputs: the op's own roundings) and ``z`` within
  ``propagated`` of the reference (the inputs' errors pushed through the op). ``ref64`` is the
  float64 reference's own rounding error. Rigorous bound: ``propagated + local + ref64``.
* :class:`StatError` (statistical tier, first order): the error is modelled as
  ``det + X + Y + delta_row * row_base`` with ``|det| <= det`` deterministic, ``X`` a sum of
  independent mean-zero terms of variance proxy ``indep``, ``Y`` a sum of weight-quantisation
  errors (independent across features, SHARED by every token) of variance proxy ``shared``, and
  one relative error ``|delta_row| <= row_rel`` per row (a norm's rsqrt error, a softmax
  denominator). Reported at probability level ``lam``: ``det + lam sqrt(indep + shared) +
  row_rel |row_base|`` (Azuma-Hoeffding; stability.md 5.4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...numerics.rounding import Rounding
from ..model import Bound, RoundingModel, output_rounding
from ..mx import mx_element_model, mx_round_error, mx_round_parts
from .models import full

__all__ = ["TensorBound", "StatError", "ValueChain", "rig_only"]


@dataclass
class TensorBound:
    """Error bound of one layer tensor against the float64 reference.

    ``rigorous``: per-element array (the tensor's shape), ``|run value - ref| <= rigorous``
    everywhere; ``inf`` where there is no guarantee. ``statistical``: per element, ``<=
    rigorous`` wherever that is finite; holds everywhere with probability ``>= 1 - failure_prob``
    under the model (module docstring of :mod:`refmodel.bounds.layer`). ``no_guarantee``: one
    reason per cause (names the tensor, the format and the value). ``notes``: remarks that do not
    void the bound. ``parts``: named rigorous pieces (``propagated``, ``local``, ``ref64``) and the
    statistical components (``stat_indep``, ``stat_det``, ``stat_row_rel``, ...).
    """

    name: str
    kind: str
    rigorous: np.ndarray
    statistical: np.ndarray
    no_guarantee: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failure_prob: float = 0.0
    parts: dict[str, Any] = field(default_factory=dict)

    @property
    def guaranteed(self) -> bool:
        """True when the rigorous bound is finite everywhere."""
        return bool(np.all(np.isfinite(self.rigorous)))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.rigorous.shape

    def tier(self, name: str) -> np.ndarray:
        if name in ("rig", "rigorous"):
            return self.rigorous
        if name in ("stat", "statistical"):
            return self.statistical
        raise ValueError(f"unknown bound tier {name!r}; expected 'rigorous' or 'statistical'")


def rig_only(E: Any) -> Bound:
    """An input error for the op bounds' rigorous tier; their statistical tier (not used here:
    the walk has its own) sees no input error, so ``inf`` there means an overflow."""
    E = np.asarray(E, dtype=np.float64)
    return Bound(E, np.zeros_like(E))


class StatError:
    """First-order statistical error state of a tensor (module docstring): ``indep``, ``shared``,
    ``det`` per element, ``row_rel`` per row and the ``row_base`` it multiplies."""

    def __init__(self, shape: tuple[int, ...], indep: Any = 0.0, det: Any = 0.0, row_rel: Any = 0.0,
                 row_base: Any = 0.0, shared: Any = 0.0) -> None:
        self.indep = full(indep, shape)
        self.det = full(det, shape)
        self.row_rel = full(row_rel, shape[:-1] + (1,))
        self.row_base = full(row_base, shape)
        self.shared = full(shared, shape)

    def copy(self) -> StatError:
        return StatError(self.indep.shape, self.indep, self.det, self.row_rel, self.row_base, self.shared)

    @property
    def var(self) -> np.ndarray:
        """``indep + shared``: the variance proxy of one element (both mean-zero parts)."""
        return self.indep + self.shared

    def row_part(self) -> np.ndarray:
        """``row_rel |row_base|``: the bound of the row-shared relative part, per element."""
        with np.errstate(invalid="ignore"):
            r = self.row_rel * np.abs(self.row_base)
        return np.where(np.isnan(r), 0.0, r)

    def bound(self, lam: float) -> np.ndarray:
        """``det + lam sqrt(indep + shared) + row_rel |row_base|`` (``inf`` where undefined)."""
        with np.errstate(invalid="ignore", over="ignore"):
            t = self.det + lam * np.sqrt(self.indep + self.shared) + self.row_part()
        return np.where(np.isnan(t), np.inf, t)

    def absorb_row(self) -> StatError:
        """End the shared relative part where it stops being relative: ``row_rel |row_base|``
        bounds a mean-zero error (sums of rounding errors), so it enters ``indep`` squared."""
        rv = self.row_part()
        self.indep = self.indep + rv * rv
        self.row_rel = np.zeros_like(self.row_rel)
        self.row_base = np.zeros_like(self.row_base)
        return self

    def set_row(self, row_rel: Any, row_base: Any) -> StatError:
        """A new row-shared relative error ``row_rel`` on ``row_base``; an existing one on another
        base is absorbed first (two different row factors cannot share one ``delta``)."""
        if np.any(self.row_rel > 0):
            self.absorb_row()
        self.row_rel = np.broadcast_to(np.asarray(row_rel, dtype=np.float64), self.row_rel.shape).copy()
        self.row_base = np.broadcast_to(np.asarray(row_base, dtype=np.float64), self.row_base.shape).copy()
        return self

    def add_rounding(self, err: Any, unbiased: bool) -> StatError:
        """One more rounding with error bound ``err``: its square into ``indep`` when unbiased,
        else into ``det``."""
        err = np.asarray(err, dtype=np.float64)
        if unbiased:
            self.indep = self.indep + err * err
        else:
            self.det = self.det + err
        return self

    def map(self, f: Callable[[np.ndarray], np.ndarray], f_row: Callable[[np.ndarray], np.ndarray] | None = None
            ) -> StatError:
        """Apply a layout change to every per-element array (``f_row`` to the per-row one)."""
        self.indep, self.det, self.row_base, self.shared = f(self.indep), f(self.det), f(self.row_base), f(self.shared)
        self.row_rel = (f_row or f)(self.row_rel)
        return self


class ValueChain:
    """A computed value with ``|v - z| <= local`` (``z`` exact on the computed inputs) and
    ``|z - ref| <= propagated`` (module docstring); also the local roundings of the statistical
    tier (``local_var``, ``local_det``) and the reasons / notes met on the way."""

    def __init__(self, z: np.ndarray, local: Any, propagated: Any) -> None:
        z = np.asarray(z, dtype=np.float64)
        self.z = z
        sh = z.shape
        self.local = full(local, sh)
        self.propagated = full(propagated, sh)
        self.void = np.zeros(sh, bool)  # both tiers void (overflow, saturation)
        self.vacuous = np.zeros(sh, bool)  # rigorous tier void (vacuous gamma, ...)
        self.reasons: list[str] = []
        self.notes: list[str] = []
        self.ref64 = np.zeros(sh)
        self.local_var = np.zeros(sh)
        self.local_det = np.zeros(sh)

    @classmethod
    def from_bound(cls, B: Bound) -> ValueChain:
        """The chain of an op bound's result (its ``z``, ``local`` and ``propagated`` parts)."""
        p = B.parts
        c = cls(p["z"], p["local"], p["propagated"])
        c.void |= np.broadcast_to(~np.isfinite(B.stat), c.z.shape)
        c.vacuous |= np.broadcast_to(~np.isfinite(B.rig), c.z.shape) & ~c.void
        c.reasons += B.reasons
        c.notes += B.notes
        if "local_V" in p:
            c.local_var = c.local_var + p["local_V"]
            c.local_det = c.local_det + p["local_D"]
        return c

    def round(self, m: RoundingModel, what: str) -> ValueChain:
        """One more rounding ``m`` of the value (range checked: ``output_rounding``)."""
        Lf = np.where(np.isfinite(self.local), self.local, 0.0)
        with np.errstate(invalid="ignore", over="ignore"):
            er, _, nog, rs, ns = output_rounding(self.z, self.local, Lf, m, what)
        self.local = self.local + er
        self.void |= np.broadcast_to(nog, self.z.shape)
        self.reasons += [r for r in rs if r]
        self.notes += ns
        e0 = m.step_err(self.z)
        if m.unbiased:
            self.local_var = self.local_var + e0 * e0
        else:
            self.local_det = self.local_det + e0
        # a saturated value: the clamp's overshoot (the bounded part beyond the rounding) is a bias
        with np.errstate(invalid="ignore", over="ignore"):
            over = er - m.err(np.abs(self.z) + Lf)
        self.local_det = self.local_det + np.where(over > 0, over, 0.0)
        return self

    def round_mx(self, spec: str, rounding: str, X: Any, axis: int, what: str) -> ValueChain:
        """One MX block rounding (``X``: the known block exponents, or None: derived from the data)."""
        em = mx_element_model(spec, rounding)
        Lf = np.where(np.isfinite(self.local), self.local, 0.0)
        er, nog_r, rr = mx_round_error(self.z, Lf, em, X=X, axis=axis)
        self.local = self.local + er
        self.void |= nog_r
        if rr:
            self.reasons.append(f"{rr} [{what}]")
        # statistical: the in-range rounding is mean-zero (unless directed); the top-of-block clamp
        # shrinks |v|, whose sign is random relative to the downstream weights: also into indep
        inr, sat = mx_round_parts(self.z, em, X=X, axis=axis)
        if Rounding.parse(rounding) in (Rounding.RNE, Rounding.STOCHASTIC):
            self.local_var = self.local_var + inr * inr + sat * sat
        else:
            self.local_det = self.local_det + inr + sat
        return self

    def add_const(self, b: Any, Eb: Any) -> ValueChain:
        """``v + b_hat`` where ``|b_hat - b_ref| <= Eb`` (an exact add; round separately)."""
        self.z = self.z + np.asarray(b, dtype=np.float64)
        self.propagated = self.propagated + Eb
        return self

    def scale(self, c_hat: float | np.ndarray, c: float | np.ndarray) -> ValueChain:
        """``c_hat * v`` against the reference ``c * t`` (exact algebra)."""
        a, d = np.abs(c_hat), np.abs(c_hat - c)
        self.propagated = a * self.propagated + d * (np.abs(self.z) + self.propagated + self.local)
        self.local = a * self.local
        self.local_var = a * a * self.local_var
        self.local_det = a * self.local_det
        self.z = c_hat * self.z
        return self

    def map(self, f: Callable[[np.ndarray], np.ndarray]) -> ValueChain:
        """Apply a layout change (reshape / transpose / mask) to every per-element array."""
        for k in ("z", "local", "propagated", "void", "vacuous", "ref64", "local_var", "local_det"):
            setattr(self, k, f(getattr(self, k)))
        return self

    def rigorous(self) -> np.ndarray:
        """``propagated + local + ref64``, ``inf`` where a tier was voided."""
        with np.errstate(invalid="ignore", over="ignore"):
            rig = self.propagated + self.local + self.ref64
        rig = np.where(np.isnan(rig), np.inf, rig)
        return np.where(self.void | self.vacuous, np.inf, rig)

