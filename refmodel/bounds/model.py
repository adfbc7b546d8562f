"""Rounding-error models, gamma factors and the result type shared by every op bound.

Numeric contract
----------------
A :class:`RoundingModel` ``(rel, abs)`` states that one rounding step ``z -> fl(z)`` satisfies

    |fl(z) - z| <= rel * |z| + abs          for every z with min <= z <= max (no overflow).

:func:`rounding_model` derives it from a format and a rounding mode:

=====================================  ==================  =====================================
format / rounding                      rel                 abs
=====================================  ==================  =====================================
float, nearest (rne/half_up/half_away)  2^-(man+1)          min_subnormal / 2  (gradual underflow)
float, rtz/floor/ceil/stochastic        2^-man              min_subnormal
float without subnormals (FTZ)          as above            min_normal (a flushed value loses it all)
fixed, nearest                          0                   2^-frac / 2
fixed, rtz/floor/ceil/stochastic        0                   2^-frac
"float64" / None                        0                   0   (float64 is the exact reference)
=====================================  ==================  =====================================

Treating float64 as exact is an assumption of every bound in this package: the reference is
computed in float64 and its own error (about 1e-16 relative) is not budgeted.

``gamma(n, u) = n u / (1 - n u)`` bounds ``|prod (1 + d_i) - 1|`` over ``n`` factors with
``|d_i| <= u``; when ``n u >= 1`` no finite bound exists: the value is ``inf`` and a reason
string says so (never a silent number).

Statistical tier (Higham & Mary, SISC 2019): ``gamma_tilde(n, u, lam) = exp(lam sqrt(n) u +
n u^2 / (1 - u)) - 1`` bounds the same product with probability at least
``1 - 2 n exp(-lam^2 (1 - u)^2 / 2)`` when the rounding errors are mean-independent and
mean-zero. :func:`lambda_hm` inverts that for a failure probability ``alpha`` (default
:data:`DEFAULT_ALPHA` = 1e-6 per inner product). :func:`lambda_azuma` gives the smaller
``lam`` of the Azuma-Hoeffding bound on a sum of mean-independent rounding errors
``|sum e_k| <= lam sqrt(sum c_k^2)`` with ``|e_k| <= c_k``, probability ``>= 1 - 2 exp(-lam^2/2)``,
which the op bounds use with the actual partial sums (see ``docs/bounds.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..numerics.fixed import FixedFormat
from ..numerics.minifloat import FloatFormat
from ..numerics.rounding import Rounding

__all__ = [
    "DEFAULT_ALPHA",
    "RoundingModel",
    "EXACT",
    "rounding_model",
    "Gamma",
    "gamma",
    "gamma_tilde",
    "lambda_hm",
    "lambda_azuma",
    "Bound",
    "as_tiers",
    "range_reason",
    "range_mask",
    "output_rounding",
]

#: default failure probability of the statistical tier, per inner product / reduction
DEFAULT_ALPHA = 1e-6

_NEAREST = (Rounding.RNE, Rounding.HALF_UP, Rounding.HALF_AWAY)


@dataclass(frozen=True)
class RoundingModel:
    """One rounding step: ``|fl(z) - z| <= rel*|z| + abs`` for ``min <= z <= max``.

    ``overflow`` says what the step does out of range (``inf``, ``nan``, ``saturate``, ``wrap``,
    ``error`` or ``none`` for an unbounded target). ``unbiased`` is True when the errors may be
    treated as mean-zero random variables by the statistical tier (rne and stochastic rounding);
    directed roundings are biased and the statistical tier falls back to the rigorous one for them.
    """

    rel: float = 0.0
    abs: float = 0.0
    max: float = math.inf
    min: float = -math.inf
    overflow: str = "none"
    unbiased: bool = True
    label: str = "exact"
    #: the format and rounding mode this model was derived from (None for exact / measured units);
    #: emulators round with them, bounds never read them
    fmt: Any = field(default=None, compare=False)
    mode: str = field(default="rne", compare=False)
    #: a ``saturate`` target clamps out-of-range values; True: the clamp error is bounded as an
    #: overshoot (``output_rounding``); False: saturation voids the guarantee (layer bounds, where a
    #: clamped value must be reported, never absorbed into a large tolerance)
    saturation_ok: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        if not (self.rel >= 0 and self.abs >= 0):
            raise ValueError(f"RoundingModel needs rel >= 0 and abs >= 0, got rel={self.rel!r}, abs={self.abs!r}")
        if self.rel >= 1:
            raise ValueError(f"RoundingModel rel must be < 1 (a relative error of 100% is no model), got {self.rel!r}")

    @property
    def exact(self) -> bool:
        return self.rel == 0 and self.abs == 0

    def err(self, mag: Any) -> Any:
        """Bound on the error of rounding values of magnitude at most ``mag``."""
        return self.rel * np.asarray(mag, dtype=np.float64) + self.abs

    def step_err(self, mag: Any) -> Any:
        """Per-value bound for a first-order (statistical) model: ``rel 2^floor(log2 mag) + abs``,
        the half-ulp of ``mag``'s binade for a nearest rounding (``<= err(mag)``; an error bound
        of the rounding of a value in that binade, first order in the value itself)."""
        m = np.abs(np.asarray(mag, dtype=np.float64))
        fin = np.isfinite(m) & (m > 0)
        _, e = np.frexp(np.where(fin, m, 1.0))
        floor2 = np.where(fin, np.ldexp(1.0, (e - 1).astype(np.int64)), np.where(m > 0, m, 0.0))
        return self.rel * floor2 + self.abs

    def widened(self, rel: float = 0.0, abs: float = 0.0, label: str | None = None) -> RoundingModel:
        """Same step with ``rel``/``abs`` added (for units whose error exceeds one rounding)."""
        return replace(self, rel=self.rel + rel, abs=self.abs + abs, label=label or self.label)

    @classmethod
    def measured(cls, err_lsb: float, fmt: FixedFormat | str, label: str | None = None) -> RoundingModel:
        """A hardware unit (LUT exp, reciprocal, rsqrt, GELU ...) with a measured maximum absolute
        error of ``err_lsb`` LSBs of its fixed-point output format ``fmt`` (quantisation included).
        Treated as biased (a LUT error is a deterministic function of its input)."""
        fmt = FixedFormat.parse(fmt)
        if not err_lsb >= 0:
            raise ValueError(f"measured unit error must be >= 0 LSB, got {err_lsb!r}")
        return cls(0.0, float(err_lsb) * fmt.lsb, fmt.max, fmt.min, "saturate", False,
                   label or f"unit({err_lsb:g} LSB of {fmt})")


EXACT = RoundingModel()


def rounding_model(fmt: Any, rounding: Rounding | str = Rounding.RNE, *, overflow: str | None = None) -> RoundingModel:
    """Rounding model of one rounding into ``fmt`` under ``rounding`` (table in the module doc).

    ``fmt``: a :class:`FloatFormat`, :class:`FixedFormat`, a spec string (``"fp16"``, ``"s16.8"``),
    ``"float64"``/``None`` (exact) or a :class:`RoundingModel` (returned unchanged). ``overflow``
    overrides the fixed-point overflow label (default ``saturate``).
    """
    if isinstance(fmt, RoundingModel):
        return fmt
    if fmt is None or (isinstance(fmt, str) and fmt.strip().lower() == "float64"):
        return EXACT
    if isinstance(fmt, str):
        from ..numerics.formats import parse_format

        fmt = parse_format(fmt)
    mode = Rounding.parse(rounding)
    nearest = mode in _NEAREST
    unbiased = mode in (Rounding.RNE, Rounding.STOCHASTIC)
    if isinstance(fmt, FloatFormat):
        if fmt.man == 0 or not fmt.has_zero:
            raise ValueError(f"rounding_model: {fmt} has no mantissa / no zero; no (rel, abs) model is provided for it")
        rel = math.ldexp(1.0, -(fmt.man + 1)) if nearest else math.ldexp(1.0, -fmt.man)
        if fmt.subnormals:
            ab = fmt.min_subnormal / 2 if nearest else fmt.min_subnormal
        else:
            ab = fmt.min_normal  # flush-to-zero: a value just below min normal may become 0
        lo = -fmt.max if fmt.signed else 0.0
        return RoundingModel(rel, ab, fmt.max, lo, fmt.overflow, unbiased, f"{fmt}/{mode.value}", fmt, mode.value)
    if isinstance(fmt, FixedFormat):
        ab = fmt.lsb / 2 if nearest else fmt.lsb
        return RoundingModel(0.0, ab, fmt.max, fmt.min, overflow or "saturate", unbiased, f"{fmt}/{mode.value}",
                             fmt, mode.value)
    raise ValueError(f"rounding_model: unsupported format {fmt!r}")


@dataclass(frozen=True)
class Gamma:
    """``gamma_n(u)``: ``value`` (``inf`` when there is no guarantee) and the ``reason`` for it."""

    value: float
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def gamma(n: int, u: float) -> Gamma:
    """``gamma_n(u) = n u / (1 - n u)``; ``Gamma(inf, reason)`` when ``n u >= 1`` (vacuous)."""
    n = int(n)
    if n < 0 or not u >= 0:
        raise ValueError(f"gamma needs n >= 0 and u >= 0, got n={n}, u={u!r}")
    nu = n * float(u)
    if nu >= 1.0:
        return Gamma(math.inf, f"no guarantee: gamma_{n}(u={u:.3g}) is vacuous (n*u = {nu:.3g} >= 1)")
    return Gamma(nu / (1.0 - nu))


def lambda_hm(n: int, u: float, alpha: float = DEFAULT_ALPHA) -> float:
    """``lam`` with ``2 n exp(-lam^2 (1-u)^2 / 2) = alpha`` (Higham & Mary 2019, Thm 2.4)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    n = max(int(n), 1)
    return math.sqrt(2.0 * math.log(2.0 * n / alpha)) / (1.0 - u)


def lambda_azuma(alpha: float = DEFAULT_ALPHA) -> float:
    """``lam`` with ``2 exp(-lam^2 / 2) = alpha`` (Azuma-Hoeffding, one sum of bounded
    mean-independent increments)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return math.sqrt(2.0 * math.log(2.0 / alpha))


def gamma_tilde(n: int, u: float, lam: float) -> float:
    """``exp(lam sqrt(n) u + n u^2/(1-u)) - 1`` (Higham & Mary 2019); probabilistic, not rigorous."""
    n = int(n)
    if n < 0 or not 0 <= u < 1:
        raise ValueError(f"gamma_tilde needs n >= 0 and 0 <= u < 1, got n={n}, u={u!r}")
    return math.expm1(lam * math.sqrt(n) * u + n * u * u / (1.0 - u))


@dataclass
class Bound:
    """Componentwise error bounds of one op's output against float64 on the exact inputs.

    ``rig``: rigorous bound (``inf`` where no guarantee; each such case has a ``reasons`` entry).
    ``stat``: statistical bound (holds with probability >= 1 - alpha per reduction under the
    mean-independent rounding model; first order in the unit roundoffs); always ``<= rig``.
    ``parts``: named pieces of the rigorous bound (``local``, ``propagated``, ...), for reports.
    ``notes``: remarks that do not void the bound (e.g. an output that may saturate).
    """

    rig: np.ndarray
    stat: np.ndarray
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a NaN bound (inf * 0 after a vacuous step) carries no information: it is no guarantee
        rig = np.asarray(self.rig, dtype=np.float64)
        stat = np.asarray(self.stat, dtype=np.float64)
        self.rig = np.where(np.isnan(rig), np.inf, rig)
        self.stat = np.minimum(np.where(np.isnan(stat), np.inf, stat), self.rig)

    @property
    def guaranteed(self) -> bool:
        """True when the rigorous bound is finite everywhere."""
        return not self.reasons and bool(np.all(np.isfinite(self.rig)))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.rig.shape

    def tier(self, name: str) -> np.ndarray:
        if name in ("rig", "rigorous"):
            return self.rig
        if name in ("stat", "statistical"):
            return self.stat
        raise ValueError(f"unknown bound tier {name!r}; expected 'rig' or 'stat'")


def as_tiers(E: Any, shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Input error bound -> (rigorous, statistical) float64 arrays. ``None`` is exact (0);
    a :class:`Bound` gives its two tiers; an array is used for both."""
    if E is None:
        z = np.zeros(shape if shape is not None else (), dtype=np.float64)
        return z, z
    if isinstance(E, Bound):
        r, s = E.rig, E.stat
    else:
        r = s = np.asarray(E, dtype=np.float64)
    if np.any(r < 0) or np.any(np.isnan(r)):
        raise ValueError("error bounds must be >= 0 (and not NaN)")
    if shape is not None:
        r = np.broadcast_to(r, shape)
        s = np.broadcast_to(s, shape)
    return r, s


def range_mask(lo: Any, hi: Any, model: RoundingModel) -> np.ndarray:
    """Components whose value may leave ``[model.min, model.max]`` given ``lo <= value <= hi``."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    return (hi > model.max) | (lo < model.min) | np.isnan(lo) | np.isnan(hi)


def range_reason(what: str, mask: np.ndarray, lo: Any, hi: Any, model: RoundingModel) -> str | None:
    """A ``"no guarantee: ..."`` reason when ``mask`` (from :func:`range_mask`) has any entry."""
    if not np.any(mask):
        return None
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    top = float(np.max(np.where(mask, np.maximum(np.abs(lo), np.abs(hi)), 0.0)))
    n = int(np.count_nonzero(mask))
    return (f"no guarantee: {what} may reach |value| = {top:.6g}, outside [{model.min:.6g}, {model.max:.6g}] "
            f"of {model.label} ({n} component(s), overflow={model.overflow})")


def output_rounding(z: Any, L_rig: Any, L_stat: Any, out: RoundingModel, what: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """Error of the final rounding ``out`` of a value known to be within ``L`` of ``z``.

    Returns ``(err_rig, err_stat, nog_mask, reasons, notes)``: ``err = out.rel (|z| + L) +
    out.abs``. Where the value may leave the target's range: a saturating target adds the
    overshoot ``max(z + L - max, min - (z - L))`` (exact: saturation moves the value to the bound;
    a note says so); any other overflow policy (inf, nan, wrap, error) gives no guarantee
    (``nog_mask`` True, a reason).
    """
    z = np.asarray(z, dtype=np.float64)
    L_rig = np.asarray(L_rig, dtype=np.float64)
    L_stat = np.asarray(L_stat, dtype=np.float64)
    err_r = out.err(np.abs(z) + L_rig)
    err_s = out.err(np.abs(z) + L_stat)
    reasons: list[str] = []
    notes: list[str] = []
    nog = np.zeros(np.broadcast(z, L_rig).shape, dtype=bool)
    if math.isfinite(out.max) or math.isfinite(out.min):
        Lc = np.where(np.isfinite(L_rig), L_rig, L_stat)  # a vacuous rigorous L: check the range on L_stat
        lo, hi = z - Lc, z + Lc
        mask = range_mask(lo, hi, out)
        if np.any(mask):
            if out.overflow == "saturate" and out.saturation_ok:
                over_r = np.maximum(np.maximum(z + L_rig - out.max, out.min - (z - L_rig)), 0.0)
                over_s = np.maximum(np.maximum(z + L_stat - out.max, out.min - (z - L_stat)), 0.0)
                err_r = err_r + over_r
                err_s = err_s + over_s
                notes.append(f"{what} may saturate at {out.label} ({int(mask.sum())} component(s)); "
                             f"the bound includes the overshoot (up to {float(over_r.max()):.4g})")
            else:
                nog = np.broadcast_to(mask, nog.shape).copy()
                r = range_reason(what, mask, lo, hi, out)
                if r is not None:
                    reasons.append(r)
    return err_r, err_s, nog, reasons, notes
