"""Saturation and underflow counters of every quantization (weights and activations).

One :class:`ClipCount` per tensor or weight of a run (``LayerRun.clipping``):

* ``n``: elements counted (masked attention entries, which are 0 by construction, are excluded);
* ``saturated``: elements clamped to the format's range. With the value before rounding known
  (weights, and activations rounded by a plain store): the value lay beyond the format's largest
  (smallest) finite value and was stored at it. Otherwise (the integer units of fixed plans): codes
  at the format's limits. Minifloats that overflow to inf count as ``nonfinite`` instead; MX
  block formats follow the block maximum and are not counted here;
* ``nonfinite``: inf / NaN stored;
* ``zero``: elements stored as exactly 0;
* ``underflow`` (flushed to zero): nonzero before rounding, 0 after. Known only where the value
  before rounding is kept (weights, plain stores); ``None`` where the op's integer unit keeps none
  (then ``zero`` is the count to watch).

:data:`WARN_SATURATED` (0.1 %) and :data:`WARN_ZERO` (50 %) are the warning thresholds;
:func:`clipping_warnings` and :func:`format_clipping` give printable lines for the CLI commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..numerics.fixed import FixedFormat
from ..numerics.minifloat import FloatFormat

__all__ = ["WARN_SATURATED", "WARN_ZERO", "ClipCount", "count_clipping", "clipping_warnings", "format_clipping",
           "total_clipping"]

#: warn when more than this fraction of a tensor saturated (or overflowed)
WARN_SATURATED = 1e-3
#: warn when more than this fraction of a tensor is stored as zero
WARN_ZERO = 0.5


@dataclass(frozen=True)
class ClipCount:
    """Counts of one quantization (module docstring)."""

    n: int
    saturated: int = 0
    nonfinite: int = 0
    zero: int = 0
    underflow: int | None = None

    @property
    def saturated_fraction(self) -> float:
        """(saturated + non-finite) / n."""
        return (self.saturated + self.nonfinite) / self.n if self.n else 0.0

    @property
    def zero_fraction(self) -> float:
        return self.zero / self.n if self.n else 0.0

    def __add__(self, other: ClipCount) -> ClipCount:
        uf = None if self.underflow is None or other.underflow is None else self.underflow + other.underflow
        return ClipCount(self.n + other.n, self.saturated + other.saturated, self.nonfinite + other.nonfinite,
                         self.zero + other.zero, uf)

    def warnings(self, name: str) -> list[str]:
        """Lines for the thresholds this count exceeds (empty when none)."""
        out = []
        if self.saturated_fraction > WARN_SATURATED:
            what = f"{self.saturated} saturated" + (f" + {self.nonfinite} non-finite" if self.nonfinite else "")
            out.append(f"{name}: {what} of {self.n} ({100 * self.saturated_fraction:.3g} % > "
                       f"{100 * WARN_SATURATED:.3g} %)")
        if self.zero_fraction > WARN_ZERO:
            uf = "" if self.underflow is None else f", {self.underflow} flushed from nonzero"
            out.append(f"{name}: {self.zero} of {self.n} stored as zero ({100 * self.zero_fraction:.3g} % > "
                       f"{100 * WARN_ZERO:.3g} %{uf})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "saturated": self.saturated, "nonfinite": self.nonfinite, "zero": self.zero,
                "underflow": self.underflow}


def _clamped_fixed(codes: np.ndarray, pre: np.ndarray, fmt: FixedFormat, rounding: str) -> np.ndarray:
    """True where rounding ``pre`` into ``fmt`` (without a range limit) leaves the code range, i.e.
    where the stored code is a clamp, not a rounding (checked only where codes sit at a limit)."""
    from ..numerics.fixed import quantize

    sat = np.zeros(codes.shape, dtype=bool)
    at = ((codes == fmt.max_code) | (codes == fmt.min_code)) & ~np.isnan(pre)
    if at.any():
        sub = pre[at]
        fin = np.isfinite(sub)
        r = "rne" if rounding == "stochastic" else rounding
        wide = quantize(np.where(fin, sub, 0.0), FixedFormat(63, fmt.frac, True), r, "saturate").codes
        sat[at] = ~fin | (wide > fmt.max_code) | (wide < fmt.min_code)
    return sat


def count_clipping(q: Any, pre: np.ndarray | None = None, *, exclude: np.ndarray | None = None,
                   rounding: str = "rne") -> ClipCount:
    """Counts for the stored tensor ``q`` (a :class:`refmodel.layer.qtensor.QTensor`; for a scaled
    weight pass the element tensor and ``pre = w / s``). ``pre``: the float64 value before the
    rounding (same shape) or None; ``exclude``: True where an element is 0 by construction;
    ``rounding``: the rounding that produced ``q`` (fixed point: a value that rounds onto the limit
    code is not counted as saturated, one that rounds beyond it is; minifloats: beyond the largest
    finite value by more than half its spacing)."""
    v = np.asarray(q.values)
    keep = np.ones(v.shape, dtype=bool) if exclude is None else ~np.broadcast_to(exclude, v.shape)
    n = int(np.count_nonzero(keep))
    fmt = q.fmt
    p = None if pre is None else np.broadcast_to(np.asarray(pre, dtype=np.float64), v.shape)
    with np.errstate(invalid="ignore"):
        if isinstance(fmt, FixedFormat) and q.codes is not None:
            if p is not None:
                sat = _clamped_fixed(q.codes, p, fmt, rounding)
            else:
                sat = (q.codes == fmt.max_code) | ((q.codes == fmt.min_code) if fmt.signed else False)
        elif isinstance(fmt, FloatFormat):
            at_max = np.abs(v) == fmt.max
            if p is not None:
                half = 2.0 ** (fmt.emax - fmt.man - 1)  # half the spacing at the top binade
                sat = at_max & np.isfinite(p) & (np.abs(p) > fmt.max + half)
            else:
                sat = at_max if fmt.has_inf is False else np.zeros(v.shape, dtype=bool)
        else:
            sat = np.zeros(v.shape, dtype=bool)
        finite = np.isfinite(v)
        zero = v == 0
        uf = None
        if p is not None:
            uf = int(np.count_nonzero(zero & (p != 0) & np.isfinite(p) & keep))
    return ClipCount(n, int(np.count_nonzero(sat & keep)), int(np.count_nonzero(~finite & keep)),
                     int(np.count_nonzero(zero & keep)), uf)


def total_clipping(counts: Mapping[str, ClipCount]) -> ClipCount:
    """The sum of several counts (e.g. one weight over all layers)."""
    out = ClipCount(0, 0, 0, 0, 0)
    for c in counts.values():
        out = out + c
    return out


def clipping_warnings(clipping: Mapping[str, ClipCount], prefix: str = "") -> list[str]:
    """Every threshold exceeded, one line each (``prefix`` names the layer or run)."""
    return [prefix + w for name, c in clipping.items() for w in c.warnings(name)]


def format_clipping(clipping: Mapping[str, ClipCount], *, all_rows: bool = False) -> list[str]:
    """One line per tensor/weight that saturated, overflowed or flushed anything (every entry with
    ``all_rows``): ``wq: 0 saturated, 12 flushed to zero, 3.1 % zero of 4096``."""
    out = []
    for name, c in clipping.items():
        if not all_rows and not (c.saturated or c.nonfinite or c.underflow):
            continue
        parts = [f"{c.saturated} saturated"]
        if c.nonfinite:
            parts.append(f"{c.nonfinite} non-finite")
        if c.underflow is not None:
            parts.append(f"{c.underflow} flushed to zero")
        parts.append(f"{100 * c.zero_fraction:.3g} % zero of {c.n}")
        out.append(f"{name}: " + ", ".join(parts))
    return out
