"""Layer-level error bounds: every tensor of a quantized layer run against the float64 reference.

:func:`layer_bounds` walks the op records of a :class:`~refmodel.layer.quantized.LayerRun` in
forward order. Each record says what the op rounded where (``refmodel/layer/quantized.py`` module
docstring); the walk maps it onto the op bounds of this package and propagates, a posteriori, the
error of every tensor:

    E_t >= |t_hat - t_ref|          componentwise, t_ref = run_reference(config, weights, x)[t]

where ``t_hat`` is the quantized layer's value and ``t_ref`` the float64 reference on the
UNQUANTISED weights and input (no SLaNC: it is exact algebra). For each op with computed inputs
``a_hat`` (within ``E_a`` of the reference's inputs) the rigorous bound is

    E_y = propagated(E_a, E_w)  +  local(a_hat)  +  ref64(|a_hat| + E_a)

* ``propagated``: the op's sensitivity to its input errors, exact algebra over the computed
  magnitudes (matmul ``E_a|b| + (|a| + E_a)E_b``, the norm and softmax remainders, activation
  Lipschitz / Taylor with ``M2``, ...), see the op modules;
* ``local``: the op's own roundings on the computed inputs, step by step as the record and the
  plan say (float plans: one rounding per listed step in the op's work format; fixed plans: the
  integer units' own derived bounds, ``units.norm.norm_error_bound`` (plus the exact effect of the
  unit's quantised eps), ``units.softmax.softmax_error_bound`` (with the generic per-element bound,
  whichever is smaller), the activation table's exhaustively measured error after the requantising
  shift into the table input format);
* ``ref64``: the float64 reference's OWN rounding error (numpy BLAS, ``np.mean``, ``np.exp``,
  ...), so that ``E`` bounds the distance to the actual float64 tensors, not only to exact math
  (about 1e-16 relative; it matters only where a bound is attained to 1e-13).

Inputs: ``E_x = |x_hat - x|`` (known exactly: ``ref['x']`` is ``x``) is what propagates; the bound
REPORTED for ``x`` is its rounding model at the exact ``x`` (so a quantiser fault shows as a
violation). Weights: ``E_w = |w_hat - w|`` when the exact weights are given, else the rounding
model of the weight's format applied to ``w_hat`` (``(u|w_hat| + eta)/(1 - u)``; fixed ``q/2``; MX
from the stored block scales, :mod:`refmodel.bounds.mx`). A weight code at the top of a saturating
format may have been clipped: no guarantee there unless the exact weights are passed.

No guarantee (``inf`` plus a reason naming tensor, format and value): overflow of any step
(inf/NaN/wrap targets, accumulators), saturation of a value into a fixed-point or saturating
minifloat format (a clamped value is not bounded by its format), ``n u >= 1``, a variance or softmax
denominator error bound not below its value, an unmodelled policy, non-finite values. Downstream
tensors inherit it through the propagation (their reasons name the input). MX in-block element
saturation is part of the MX rounding model and bounded (see :mod:`refmodel.bounds.mx`).

Two decompositions (``isolate=True``, the default, reports their elementwise minimum; both are
rigorous): (1) the propagation above; (2) isolation, ``|t - ref| <= |t - t_q| + |t_q - ref|`` with
``t_q`` the float64 layer on the QUANTISED weights and input: the first term is the same walk with
zero input and weight errors (the arithmetic roundings alone), the second is computed exactly
(the quantisation effect). Once a value was saturated or overflowed, isolation may not lift a
"no guarantee" downstream (it would absorb the clamp into a finite number).

Statistical tier (``TensorBound.statistical``, clipped to the rigorous one where that is finite):
a first-order propagation of, per tensor,

* ``V``: sub-Gaussian variance proxy of independent mean-zero rounding errors (each unbiased
  step adds ``c^2`` with ``c`` the half-ulp of the value's binade; accumulations ``sum (u t_k)^2``
  over the actual partial sums; input errors ``e_x^2``), through each op's exact Jacobian squared;
* ``W``: the same for weight / bias / gain quantisation errors, which every token shares: sums
  over tokens (``P V``, the softmax's ``s^T dl``) add their standard deviations;
* ``D``: deterministic (biased roundings, measured LUT parts, subnormal quanta, the reference's
  own error), propagated worst case;
* ``R``, ``B``: a row-shared relative error ``delta_row * B``, ``|delta_row| <= R`` (a norm's rsqrt
  error on ``g n``, a softmax denominator on ``s``): exact through linear maps and RoPE, annihilated
  by a norm up to ``eps/T``, turned into ``V`` elsewhere;

with the nonlinearity of softmax / norm / activation as a multiplicative factor at the
statistical input bound (``expm1(x)/x``, ``(1 - rho)^-1/2``, ``M2 T^2 / 2``). Reported:
``D + lam sqrt(V + W) + R |B|``, ``lam = sqrt(2 ln(2/alpha))``; with isolation the minimum with
the isolated one plus the quantisation effect. ``TensorBound.failure_prob`` is ``alpha`` times (the
tensor's element count + the per-row statistical terms used upstream): a union bound for "the
statistical bound fails anywhere in the tensor", under the model (mean-zero rounding errors,
independent across elements, token-shared weight errors as above).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..layer.ops import repeat_kv
from ..layer.qtensor import FLOAT64_FMT
from ..numerics import accumulate as _acc
from ..numerics.fixed import FixedFormat
from ..numerics.formats import parse_format
from ..numerics.minifloat import FloatFormat
from ..numerics.rounding import Rounding, round_shift
from .accum import Accum, PartialSums
from .elementwise import (
    activation,
    activation_bound,
    activation_constants,
    activation_derivative,
    add_bound,
    mul_bound,
    rope_angles,
    rope_bound,
)
from .matmul import matmul_bound
from .model import DEFAULT_ALPHA, EXACT, Bound, RoundingModel, gamma, lambda_azuma, output_rounding, rounding_model
from .mx import is_mx_spec, mx_element_model, mx_round_error, mx_round_parts, mx_scale_exponents, mx_weight_error
from .norm import NormSteps, norm_bound
from .softmax import SoftmaxSteps, softmax_bound, softmax_propagation

__all__ = ["TensorBound", "layer_bounds", "F64", "weight_errors"]

U64 = 2.0 ** -53
#: float64 arithmetic as a rounding model (the float64 preset's steps and the reference's own steps)
F64 = RoundingModel(U64, 2.0 ** -1075, 1.7976931348623157e308, -1.7976931348623157e308, "inf", True, "float64/rne",
                    FLOAT64_FMT, "rne", False)
#: a value computed in float64 and then rounded once into a narrower float: double rounding
WIDEN = 2.0 ** -52
#: exp / 1/sqrt evaluated by numpy in float64 (< 1 ulp each) before one rounding
FUNC = 2.0 ** -50
#: the float64 activations (erfc series / continued fraction within 2e-14 relative, tanh, exp)
ACT_FUNC = 2.0 ** -40
#: float64 evaluation of the bound formulas themselves (sums of products, sqrt): final inflation
FORMULA_REL = 2.0 ** -40


@dataclass
class TensorBound:
    """Error bound of one layer tensor against the float64 reference.

    ``rigorous``: per-element array (the tensor's shape), ``|run value - ref| <= rigorous``
    everywhere; ``inf`` where there is no guarantee. ``statistical``: per element, ``<=
    rigorous`` wherever that is finite; holds everywhere with probability ``>= 1 - failure_prob``
    under the model (module docstring). ``no_guarantee``: one reason per cause (names the tensor,
    the format and the value). ``notes``: remarks that do not void the bound. ``parts``: named
    rigorous pieces (``propagated``, ``local``, ``ref64``) and the statistical components
    (``stat_V``, ``stat_D``, ``stat_R``).
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


def _rig_only(E: Any) -> Bound:
    """An input error for the op bounds' rigorous tier; their statistical tier (not used here:
    the walk has its own) sees no input error, so ``inf`` there means an overflow."""
    E = np.asarray(E, dtype=np.float64)
    return Bound(E, np.zeros_like(E))


class _Unsupported(Exception):
    """An op / policy the walk has no model for: the tensor gets no guarantee with this reason."""


# ---- rounding models of the plan's formats ---------------------------------------------------------
@functools.lru_cache(maxsize=512)
def _model(spec: str, rounding: str = "rne", overflow: str = "saturate", *, widen: float = WIDEN) -> RoundingModel:
    """One rounding into ``spec`` (fixed / minifloat / float64) of a float64-computed value.

    Saturation into the format voids the guarantee (``saturation_ok=False``); float targets are
    widened by ``widen`` for the double rounding (float64 evaluation, then the format)."""
    if spec == "float64":
        return F64
    fmt = parse_format(spec)
    if isinstance(fmt, FixedFormat):
        return replace(rounding_model(fmt, rounding, overflow=overflow), saturation_ok=False)
    if isinstance(fmt, FloatFormat):
        m = replace(rounding_model(fmt, rounding), saturation_ok=False)
        return m.widened(rel=widen) if widen else m
    raise _Unsupported(f"format {spec} has no scalar rounding model (MX is handled per block)")


@functools.lru_cache(maxsize=512)
def _fixed_model(fmt: FixedFormat, rounding: Any, overflow: str = "saturate") -> RoundingModel:
    r = rounding.value if isinstance(rounding, Rounding) else str(rounding)
    return replace(rounding_model(fmt, r, overflow=overflow), saturation_ok=False)


#: the reference's own float64 sums (numpy, any order): rigorous gamma only, no partial sums
F64_SUM = Accum("sequential", replace(F64, unbiased=False), 1, None, EXACT, FLOAT64_FMT, None, "rne")


def _gamma(n: int) -> float:
    return gamma(n, U64).value


@functools.lru_cache(maxsize=256)
def _reduction(policy: str, out_spec: str, rounding: str) -> tuple[Accum, RoundingModel, RoundingModel]:
    """(accumulation, output rounding, product rounding) of a float-plan matrix product whose
    result is stored in ``out_spec`` (``numerics.accumulate.matmul`` semantics)."""
    pol = _acc.parse_policy(policy)
    if out_spec == "float64":
        if isinstance(pol, _acc.Exact):
            # float64 BLAS (any order, FMA or not): products rounded + recursive sum
            return Accum.sequential(FLOAT64_FMT), EXACT, F64
        raise _Unsupported(f"policy {policy} with a float64 output is not modelled")
    out = parse_format(out_spec)
    if isinstance(pol, _acc.Exact):
        return Accum.exact(), _model(out_spec, rounding, widen=0.0), EXACT
    if isinstance(pol, (_acc.Sequential, _acc.Blocked)):
        if isinstance(pol.fmt, FixedFormat):
            raise _Unsupported(f"fixed-point accumulation policy {policy} with float operands is not modelled")
        a = Accum.from_policy(pol, rounding=rounding)
        a = replace(a, model=replace(a.model, saturation_ok=False))
        o = EXACT if pol.fmt == out else _model(out_spec, rounding, widen=0.0)
        return a, o, EXACT
    raise _Unsupported(f"accumulation policy {policy} with float operands is not modelled")


@functools.lru_cache(maxsize=256)
def _internal_sum(policy: str, work: str, rounding: str) -> Accum:
    """The sum inside a float norm / softmax: ``_mm(v, ones, work, policy)``."""
    if work == "float64":
        return Accum.sequential(FLOAT64_FMT)
    pol = _acc.parse_policy(policy)
    if isinstance(pol, _acc.Exact):
        return Accum.rounded(_model(work, rounding, widen=0.0), rounding)
    if isinstance(pol, (_acc.Sequential, _acc.Blocked)) and not isinstance(pol.fmt, FixedFormat):
        return Accum.from_policy(pol, rounding=rounding)
    raise _Unsupported(f"accumulation policy {policy} inside a float norm/softmax is not modelled")


def _compose(m1: RoundingModel, m2: RoundingModel) -> RoundingModel:
    """Two roundings in a row (``m1`` then ``m2``) as one model: ``(1+u1)(1+u2) - 1`` and
    ``eta1 (1 + u2) + eta2``; range and overflow of the tighter / the last step."""
    return RoundingModel((1 + m1.rel) * (1 + m2.rel) - 1, m1.abs * (1 + m2.rel) + m2.abs, min(m1.max, m2.max),
                         max(m1.min, m2.min), m2.overflow, m1.unbiased and m2.unbiased, f"{m1.label} then {m2.label}",
                         m2.fmt, m2.mode, m1.saturation_ok and m2.saturation_ok)


def _rows(a: np.ndarray) -> tuple[int, ...]:
    return a.shape[:-1] + (1,)


def _full(a: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` as a float64 array of ``shape`` (a fresh array: callers update in place)."""
    if isinstance(a, (int, float)):
        return np.full(shape, float(a))
    a = np.asarray(a, dtype=np.float64)
    return a.copy() if a.shape == shape else np.broadcast_to(a, shape).copy()


# ---- statistical state -------------------------------------------------------------------------------
class _Stat:
    """First-order statistical error state of a tensor: variance proxy ``V`` of the independent
    mean-zero part, variance proxy ``W`` of the part made of weight / bias / gain quantisation
    errors (independent across features but SHARED by every token: sums over tokens add their
    standard deviations, not their variances), deterministic ``D``, and a row-shared relative
    error ``delta_row * B`` with ``|delta_row| <= R`` (``R`` per row, ``B`` the base it multiplies,
    e.g. ``g * n`` for a norm's rsqrt error; module docstring)."""

    def __init__(self, shape: tuple[int, ...], V: Any = 0.0, D: Any = 0.0, R: Any = 0.0, B: Any = 0.0,
                 W: Any = 0.0) -> None:
        self.V = _full(V, shape)
        self.D = _full(D, shape)
        self.R = _full(R, shape[:-1] + (1,))
        self.B = _full(B, shape)
        self.W = _full(W, shape)

    def copy(self) -> _Stat:
        return _Stat(self.V.shape, self.V, self.D, self.R, self.B, self.W)

    @property
    def VW(self) -> np.ndarray:
        """``V + W``: the variance proxy of one element (both mean-zero parts)."""
        return self.V + self.W

    def rel(self) -> np.ndarray:
        """``R |B|``: the bound of the row-shared relative part, per element."""
        with np.errstate(invalid="ignore"):
            r = self.R * np.abs(self.B)
        return np.where(np.isnan(r), 0.0, r)

    def total(self, lam: float, value: Any = None) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            t = self.D + lam * np.sqrt(self.V + self.W) + self.rel()
        return np.where(np.isnan(t), np.inf, t)

    def absorb_R(self) -> _Stat:
        """End the shared relative part where it stops being relative: ``R |B|`` bounds a
        mean-zero error (sums of rounding errors), so it enters ``V`` as ``(R |B|)^2``."""
        rv = self.rel()
        self.V = self.V + rv * rv
        self.R = np.zeros_like(self.R)
        self.B = np.zeros_like(self.B)
        return self

    def set_R(self, R: Any, B: Any) -> _Stat:
        """A new row-shared relative error ``R`` on the base ``B``; an existing one on another base
        is absorbed first (two different row factors cannot share one ``delta``)."""
        if np.any(self.R > 0):
            self.absorb_R()
        self.R = np.broadcast_to(np.asarray(R, dtype=np.float64), self.R.shape).copy()
        self.B = np.broadcast_to(np.asarray(B, dtype=np.float64), self.B.shape).copy()
        return self

    def add_local(self, err: Any, unbiased: bool) -> _Stat:
        """One more rounding with error bound ``err``: its square into ``V`` when unbiased."""
        err = np.asarray(err, dtype=np.float64)
        if unbiased:
            self.V = self.V + err * err
        else:
            self.D = self.D + err
        return self

    def map(self, f, fR=None) -> _Stat:
        self.V, self.D, self.B, self.W = f(self.V), f(self.D), f(self.B), f(self.W)
        self.R = (fR or f)(self.R)
        return self


# ---- the error of one value along a chain of roundings -------------------------------------------
class _Chain:
    """A computed value ``v`` with ``|v - z| <= L`` (``z`` exact on the computed inputs; local
    rounding error ``L``) and ``|z - ref| <= P`` (propagated input error); the rigorous tier, and
    the local roundings of the statistical tier (``sV``, ``sD``, ``sR``)."""

    def __init__(self, z: np.ndarray, Lr: Any, Pr: Any) -> None:
        z = np.asarray(z, dtype=np.float64)
        self.z = z
        sh = z.shape
        self.Lr = _full(Lr, sh)
        self.Pr = _full(Pr, sh)
        self.nog = np.zeros(sh, bool)  # both tiers void (overflow, saturation)
        self.vac = np.zeros(sh, bool)  # rigorous tier void (vacuous gamma, ...)
        self.reasons: list[str] = []
        self.notes: list[str] = []
        self.ref64 = np.zeros(sh)
        self.sV = np.zeros(sh)
        self.sD = np.zeros(sh)
        self.sR = np.zeros(_rows(z))

    @classmethod
    def from_bound(cls, B: Bound) -> _Chain:
        p = B.parts
        c = cls(p["z"], p["local"], p["propagated"])
        c.nog |= np.broadcast_to(~np.isfinite(B.stat), c.z.shape)
        c.vac |= np.broadcast_to(~np.isfinite(B.rig), c.z.shape) & ~c.nog
        c.reasons += B.reasons
        c.notes += B.notes
        if "local_V" in p:
            c.sV = c.sV + p["local_V"]
            c.sD = c.sD + p["local_D"]
        return c

    def round(self, m: RoundingModel, what: str) -> _Chain:
        Lf = np.where(np.isfinite(self.Lr), self.Lr, 0.0)
        with np.errstate(invalid="ignore", over="ignore"):
            er, _, nog, rs, ns = output_rounding(self.z, self.Lr, Lf, m, what)
        self.Lr = self.Lr + er
        self.nog |= np.broadcast_to(nog, self.z.shape)
        self.reasons += [r for r in rs if r]
        self.notes += ns
        e0 = m.step_err(self.z)
        if m.unbiased:
            self.sV = self.sV + e0 * e0
        else:
            self.sD = self.sD + e0
        return self

    def round_mx(self, spec: str, rounding: str, X: Any, axis: int, what: str) -> _Chain:
        em = mx_element_model(spec, rounding)
        Lf = np.where(np.isfinite(self.Lr), self.Lr, 0.0)
        er, nog_r, rr = mx_round_error(self.z, Lf, em, X=X, axis=axis)
        self.Lr = self.Lr + er
        self.nog |= nog_r
        if rr:
            self.reasons.append(f"{rr} [{what}]")
        # statistical: the in-range rounding is mean-zero (unless directed); the top-of-block clamp
        # shrinks |v|, whose sign is random relative to the downstream weights: also into V
        inr, sat = mx_round_parts(self.z, em, X=X, axis=axis)
        if Rounding.parse(rounding) in (Rounding.RNE, Rounding.STOCHASTIC):
            self.sV = self.sV + inr * inr + sat * sat
        else:
            self.sD = self.sD + inr + sat
        return self

    def add_const(self, b: Any, Ebr: Any) -> _Chain:
        """``v + b_hat`` where ``|b_hat - b_ref| <= Eb`` (an exact add; round separately)."""
        self.z = self.z + np.asarray(b, dtype=np.float64)
        self.Pr = self.Pr + Ebr
        return self

    def scale(self, c_hat: float, c: float) -> _Chain:
        """``c_hat * v`` against the reference ``c * t`` (exact algebra)."""
        a, d = abs(c_hat), abs(c_hat - c)
        self.Pr = a * self.Pr + d * (np.abs(self.z) + self.Pr + self.Lr)
        self.Lr = a * self.Lr
        self.sV = a * a * self.sV
        self.sD = a * self.sD
        self.z = c_hat * self.z
        return self

    def map(self, f) -> _Chain:
        """Apply a layout change (reshape / transpose / mask) to every per-element array."""
        for k in ("z", "Lr", "Pr", "nog", "vac", "ref64", "sV", "sD"):
            setattr(self, k, f(getattr(self, k)))
        return self

    def tiers(self) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            rig = self.Pr + self.Lr + self.ref64
        rig = np.where(np.isnan(rig), np.inf, rig)
        return np.where(self.nog | self.vac, np.inf, rig)


# ---- weights ---------------------------------------------------------------------------------------
def weight_errors(run: Any, weights: Any = None) -> dict[str, tuple[np.ndarray, list[str], np.ndarray]]:
    """``|w_hat - w|`` bound of every weight of ``run``: exact when ``weights`` (the unquantised
    :class:`LayerWeights`) is given, else from the weight format's rounding model (module doc).
    Returns ``{name: (E, reasons, biased)}``; ``biased`` marks elements whose error is not a
    mean-zero rounding error (directed rounding, an MX top-of-block clamp) for the statistical tier."""
    out: dict[str, tuple[np.ndarray, list[str], np.ndarray]] = {}
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
        with np.errstate(invalid="ignore", over="ignore"):
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


# ---- the walk ---------------------------------------------------------------------------------------
class _Walk:
    def __init__(self, run: Any, ref: Mapping[str, np.ndarray], weights: Any, alpha: float,
                 iso: Mapping[str, TensorBound] | None = None, ref_q: Mapping[str, np.ndarray] | None = None,
                 Ew: Any = None) -> None:
        self.iso = iso
        self.ref_q = ref_q
        self.run = run
        self.ref = ref
        self.plan = run.plan
        self.cfg = run.config
        self.alpha = alpha
        self.lam = lambda_azuma(alpha)
        self.E: dict[str, np.ndarray] = {}  # rigorous bounds of the tensors so far
        self.S: dict[str, _Stat] = {}  # statistical states
        self.out: dict[str, TensorBound] = {}
        self.shared_events = 0
        self.Ew = weight_errors(run, weights) if Ew is None else Ew
        #: set once a value was saturated / overflowed / clipped: from then on the isolated bound
        #: (which would absorb that effect exactly) cannot lift a "no guarantee" downstream
        self.voided = any(r for _, r, _ in self.Ew.values())
        self.fixed = self._is_fixed()

    def _is_fixed(self) -> bool:
        specs = [self.plan.tensor(n).format for n in self.run.tensors]
        return all((not is_mx_spec(s)) and s != "float64" and isinstance(parse_format(s), FixedFormat) for s in specs)

    # -- helpers --
    def val(self, name: str) -> np.ndarray:
        if name in self.run.tensors:
            return np.asarray(self.run.tensors[name].values, dtype=np.float64)
        return np.asarray(self.run.weights[name].values, dtype=np.float64)

    def qt(self, name: str) -> Any:
        return self.run.tensors[name] if name in self.run.tensors else self.run.weights[name]

    def err(self, name: str) -> np.ndarray:
        return self.E[name] if name in self.E else self.Ew[name][0]

    def mag(self, name: str) -> np.ndarray:
        """An error bound for magnitude estimates (the reference's own rounding, ``ref64``): the
        rigorous bound where finite, else the statistical one (the rigorous tier is void there)."""
        E = self.err(name)
        if np.all(np.isfinite(E)):
            return E
        return np.where(np.isfinite(E), E, self.total(name))

    def stat_of(self, name: str) -> _Stat:
        """A copy of the statistical state of a tensor, or of a weight (its quantisation error)."""
        if name in self.S:
            return self.S[name].copy()
        E, _, biased = self.Ew[name]
        Ef = np.where(np.isfinite(E), E, 0.0)
        return _Stat(E.shape, 0.0, np.where(biased, Ef, 0.0), 0.0, 0.0, np.where(biased, 0.0, Ef * Ef))

    def total(self, name: str) -> np.ndarray:
        """The statistical bound of an input (tensor or weight) as an array."""
        return self.stat_of(name).total(self.lam, self.val(name))

    def unbiased_w(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(unbiased, biased) parts of a weight's error bound (for V and D)."""
        E, _, biased = self.Ew[name]
        Ef = np.where(np.isfinite(E), E, 0.0)
        return np.where(biased, 0.0, Ef), np.where(biased, Ef, 0.0)

    def inherited(self, names: tuple[str, ...]) -> list[str]:
        rs = []
        for n in names:
            r = self.err(n)
            if not np.all(np.isfinite(r)):
                k = int(np.count_nonzero(~np.isfinite(r)))
                if n not in self.E and self.Ew[n][1]:
                    rs += self.Ew[n][1]  # the weight's own reason (clipped, overflowed, poisoned)
                    continue
                src = "weight" if n in self.run.weights else "tensor"
                rs.append(f"no guarantee: input {src} {n} has no guarantee in {k} element(s)")
        return rs

    def tp(self, name: str):
        return self.plan.tensor(name)

    def stored_X(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        t = self.run.tensors[name]
        return mx_scale_exponents(t.mx, shape)

    def finish(self, rec: Any, chain: _Chain, st: _Stat, *, shared_events: int = 0,
               extra_reasons: list[str] | None = None) -> None:
        rig = chain.tiers()
        name = rec.name
        v = self.val(name)
        st.D = st.D + chain.ref64
        stat = st.total(self.lam, v)
        stat = np.where(chain.nog, np.inf, stat)
        with np.errstate(over="ignore"):
            rig = rig * (1 + FORMULA_REL)
            stat = stat * (1 + FORMULA_REL)
        self.shared_events += shared_events
        reasons = list(dict.fromkeys(self.inherited(rec.inputs) + (extra_reasons or []) + chain.reasons))
        nf = ~np.isfinite(v)
        if np.any(nf & np.isfinite(rig)):
            reasons.append(f"no guarantee: tensor {name} ({rec.out_format}) holds {int(nf.sum())} non-finite value(s)")
            rig = np.where(nf, np.inf, rig)
            stat = np.where(nf, np.inf, stat)
        if np.any(~np.isfinite(rig)) and not reasons:
            reasons.append(f"no guarantee: tensor {name}: bound not finite in {int(np.sum(~np.isfinite(rig)))} element(s)")
        stat = np.where(np.isfinite(rig), np.minimum(stat, rig), stat)
        parts: dict[str, Any] = {}
        pf = min(1.0, self.alpha * (int(np.prod(v.shape)) + self.shared_events))
        if self.iso is not None and name in self.iso:
            # isolation: |t - ref| <= |t - t_q| + |t_q - ref| with t_q the float64 layer on the quantised
            # weights and input (its own float64 error is in the isolated bound's ref64)
            ib = self.iso[name]
            q_eff = np.abs(np.asarray(self.ref_q[name]) - np.asarray(self.ref[name])) * (1 + 2.0 ** -52)
            irig = ib.rigorous + q_eff
            istat = ib.statistical + q_eff
            parts.update(iso_rigorous=ib.rigorous, iso_statistical=ib.statistical, quant_effect=q_eff,
                         iso_reference=np.asarray(self.ref_q[name]), prop_rigorous=rig, prop_statistical=stat)
            if self.voided:  # only where the propagation itself is finite
                rig = np.where(np.isfinite(rig), np.minimum(rig, irig), np.inf)
                stat = np.where(np.isfinite(stat), np.minimum(stat, istat), np.inf)
            else:
                rig = np.minimum(rig, irig)
                stat = np.minimum(stat, istat)
            pf = min(1.0, pf + ib.failure_prob)
            # a reason stays only if some element has no guarantee in both decompositions
            reasons = [] if np.all(np.isfinite(rig)) else list(dict.fromkeys(reasons + ib.no_guarantee))
        self.E[name] = rig
        void = chain.nog | nf  # overflow / saturation / non-finite: the statistical state is void too
        if np.any(void):
            self.voided = True
        if np.any(void):
            st.V = np.where(void, np.inf, st.V)
            st.W = np.where(void, np.inf, st.W)
            st.D = np.where(void, np.inf, st.D)
        self.S[name] = st
        parts.update({"propagated": chain.Pr, "local": chain.Lr, "ref64": chain.ref64, "stat_V": st.V, "stat_D": st.D,
                      "stat_R": st.R, "stat_B": st.B, "stat_W": st.W})
        self.out[name] = TensorBound(name, rec.kind, rig, stat, reasons, list(dict.fromkeys(chain.notes)), pf, parts)

    def fail(self, rec: Any, reason: str) -> None:
        shape = self.val(rec.name).shape
        self.E[rec.name] = np.full(shape, np.inf)
        self.S[rec.name] = _Stat(shape, np.inf, np.inf, 0.0, 0.0, np.inf)
        self.out[rec.name] = TensorBound(rec.name, rec.kind, np.full(shape, np.inf), np.full(shape, np.inf),
                                         [f"no guarantee: tensor {rec.name}: {reason}"], [], 1.0)

    # -- driver --
    def run_all(self) -> dict[str, TensorBound]:
        handlers = {"input": self.op_input, "linear": self.op_linear, "norm": self.op_norm, "rope": self.op_rope,
                    "scores": self.op_scores, "softmax": self.op_softmax, "mix": self.op_mix, "act": self.op_act,
                    "mul": self.op_mul, "add": self.op_add}
        for rec in self.run.records:
            h = handlers.get(rec.kind)
            try:
                if h is None:
                    raise _Unsupported(f"op kind {rec.kind!r} has no bound")
                with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                    h(rec)
            except _Unsupported as e:
                self.fail(rec, str(e))
            except ValueError as e:  # an op bound refusing its inputs (non-finite logits, ...)
                self.fail(rec, f"{e}")
        return self.out

    # ---- input ------------------------------------------------------------------------------------
    def op_input(self, rec: Any) -> None:
        name = rec.name
        t = self.run.tensors[name]
        xh = np.asarray(t.values, dtype=np.float64)
        x = np.asarray(self.ref[name], dtype=np.float64)
        tp = self.tp(name)
        E = np.abs(xh - x)
        ch = _Chain(x, 0.0, 0.0)  # the reported bound: the rounding model at the exact x
        if tp.format != "float64":
            if t.mx is not None:
                ch.round_mx(tp.format, tp.rounding, self.stored_X(name), -1, f"input {name}")
            else:
                ch.round(_model(tp.format, tp.rounding, tp.overflow, widen=0.0), f"input {name}")
        rig = ch.tiers()
        bad = ~np.isfinite(rig) | ~np.isfinite(E)
        E = np.where(bad, np.inf, E)  # a saturated / overflowed input is no guarantee downstream too
        if np.any(bad):
            self.voided = True
        self.E[name] = E
        # statistical: the realised input errors with random signs (Hoeffding given the magnitudes)
        self.S[name] = _Stat(E.shape, np.where(bad, np.inf, E * E), 0.0, 0.0)
        self.out[name] = TensorBound(name, "input", rig, rig.copy(), list(dict.fromkeys(ch.reasons)),
                                     ch.notes, min(1.0, self.alpha * E.size),
                                     {"propagated": np.zeros_like(E), "local": ch.Lr, "ref64": np.zeros_like(E),
                                      "input_error": E})

    # ---- matrix products ----------------------------------------------------------------------
    def _mm_stat(self, a: np.ndarray, b: np.ndarray, Sa: _Stat, Sb: _Stat, Ta: np.ndarray, Tb: np.ndarray,
                 z: np.ndarray, b_row_relative: bool) -> _Stat:
        """First-order statistical propagation through ``a @ b`` (errors of both operands).
        ``Sa.R`` is relative per row of ``a`` (stays relative on the product); ``Sb.R`` per row
        of ``b`` when ``b_row_relative`` (a key / value token: converted to ``D``)."""
        # second order (da + Da)(db + Db): the products of independent mean-zero parts are
        # mean-zero with variance Va Vb; the deterministic product stays deterministic
        V = Sa.V @ (b * b) + (a * a) @ Sb.V + Sa.VW @ (Sb.VW + Sb.D ** 2) + (Sa.D ** 2) @ Sb.VW
        D = Sa.D @ np.abs(b) + np.abs(a) @ Sb.D + Sa.D @ Sb.D
        if b_row_relative:  # one relative error per key / value token: independent across tokens
            rb = Sb.rel()
            V = V + (a * a) @ (rb * rb)
        if b_row_relative:  # a sum over tokens: the token-shared parts add their standard deviations
            sw = np.sqrt(Sa.W) @ np.abs(b) + np.abs(a) @ np.sqrt(Sb.W)
            Wq = sw * sw
        else:  # a sum over features: independent
            Wq = Sa.W @ (b * b) + (a * a) @ Sb.W
        st = _Stat(z.shape, V, D, 0.0, 0.0, Wq)
        if np.any(Sa.R > 0):  # a's row factor stays relative: its base goes through the product
            st.R = np.broadcast_to(Sa.R, st.R.shape).copy()
            st.B = Sa.B @ b
        return st

    def op_linear(self, rec: Any) -> None:
        name = rec.name
        xn, wn = rec.inputs[0], rec.inputs[1]
        bn = rec.inputs[2] if len(rec.inputs) > 2 else None
        tp = self.tp(name)
        x = self.val(xn)
        w = self.val(wn)
        Exr = self.err(xn)
        Ew = self.err(wn)
        K = x.shape[-1]
        Wt = w.T
        Ewt = Ew.T
        out_t = self.run.tensors[name]
        heads = out_t.values.ndim == 3
        b = self.val(bn) if bn else None
        Eb = self.err(bn) if bn else 0.0
        reasons: list[str] = []
        if self.fixed:
            mac = rec.details["mac"]
            xq, wq = self.qt(xn), self.qt(wn)
            pf = xq.fmt.frac + wq.fmt.frac
            accum = Accum.fixed(FixedFormat(mac.acc_w, pf, True), mac.acc_overflow.value)
            out = _fixed_model(parse_format(tp.format), mac.rounding)
            bias = None
            Eb_tot: Any = Eb
            if b is not None:
                bq = self.qt(bn)
                codes = bq.codes.astype(np.int64)
                bfrac = bq.fmt.frac
                if bfrac > pf:
                    codes = round_shift(codes, bfrac - pf, Rounding.RNE)
                    bfrac = pf
                    Eb_tot = Eb + 2.0 ** (-pf - 1)
                lim = (1 << (mac.b_w - 1)) - 1
                clip = (codes > lim) | (codes < -lim - 1)
                if np.any(clip):
                    reasons.append(f"no guarantee: bias {bn} of {name} clipped to {mac.b_w} bits in {int(clip.sum())} element(s)")
                    Eb_tot = np.where(clip, np.inf, Eb_tot)
                bias = np.ldexp(np.clip(codes, -lim - 1, lim).astype(np.float64), -bfrac)
            Ebv = np.broadcast_to(Eb_tot, (w.shape[0],)) + 0.0
            B = matmul_bound(x, Wt, E_a=_rig_only(Exr), bias=bias, E_bias=None if bias is None else _rig_only(Ebv),
                             accum=accum, bias_in_acc=bias is not None, out=out, what=f"{name} ({tp.format})")
            ch = _Chain.from_bound(B)
        else:
            mx_out = is_mx_spec(tp.format)
            accum, outm, prod = _reduction(tp.acc, "fp32" if mx_out else tp.format, tp.rounding)
            B = matmul_bound(x, Wt, E_a=_rig_only(Exr), accum=accum, products=prod, out=outm,
                             what=f"{name} ({tp.format}, {tp.acc})", stat_mode="hm" if prod is F64 else "partial_sums")
            ch = _Chain.from_bound(B)
            axis = 0 if name == "v" else -1
            if mx_out:
                X = None if b is not None else self.stored_X(name)
                ch.round_mx(tp.format, tp.rounding, X, axis, f"{name} output")
            if b is not None:
                ch.add_const(b, Eb)
                if mx_out:
                    ch.round_mx(tp.format, tp.rounding, self.stored_X(name), axis, f"{name} + bias")
                else:
                    ch.round(_model(tp.format, tp.rounding, tp.overflow), f"{name} + bias")
        # weight quantisation: rigorous (|x| + E_x) E_w; statistical through V (independent roundings)
        absx = np.abs(x)
        ch.Pr = ch.Pr + (absx + Exr) @ Ewt
        # the float64 reference's own error: x @ w.T (+ b), any summation order
        Pext = (absx + self.mag(xn)) @ (np.abs(Wt) + Ewt)
        ch.ref64 = _gamma(K + 2) * (Pext + (0.0 if b is None else np.abs(b) + Eb))
        # statistical tier
        Sx = self.stat_of(xn)
        Tx = Sx.total(self.lam, x)
        Ewu, Ewb = self.unbiased_w(wn)
        Sw = _Stat(Wt.shape, 0.0, Ewb.T, 0.0, 0.0, (Ewu * Ewu).T)
        st = self._mm_stat(x, Wt, Sx, Sw, Tx, np.where(np.isfinite(Ewt), Ewt, np.inf), ch.z, False)
        if b is not None:
            Ebu, Ebb = self.unbiased_w(bn)
            st.W = st.W + Ebu * Ebu  # a bias error is shared by every token
            st.D = st.D + Ebb + (np.asarray(Eb_tot) - Eb if self.fixed else 0.0)  # bias requantised in the MAC
        st.V = st.V + ch.sV
        st.D = st.D + ch.sD
        if heads:
            H = out_t.values.shape[0]
            s = x.shape[0]
            split = lambda a: a.reshape(s, H, -1).transpose(1, 0, 2)  # noqa: E731
            ch.map(split)
            st.map(split, lambda r: np.broadcast_to(r[None], (H,) + r.shape).copy())
        self.finish(rec, ch, st, extra_reasons=reasons)

    def _scale_model(self, tp: Any, pow2: bool) -> RoundingModel:
        if tp.format == "float64":
            return EXACT if pow2 else F64
        m = _model(tp.format, tp.rounding, tp.overflow)
        if pow2:  # an exact power-of-two scale rounds only where the result is subnormal
            return replace(m, rel=0.0)
        return m

    def _kv(self, name: str, H: int) -> tuple[np.ndarray, np.ndarray, _Stat]:
        """Value, rigorous bound and statistical state of a key/value tensor repeated to H heads."""
        v = repeat_kv(self.val(name), H)
        E = repeat_kv(self.err(name), H)
        s = self.stat_of(name)
        s.map(lambda a: repeat_kv(a, H))
        return v, E, s

    def op_scores(self, rec: Any) -> None:
        name = rec.name
        qn, kn = rec.inputs
        tp = self.tp(name)
        q = self.val(qn)
        H = q.shape[0]
        Eq = self.err(qn)
        kr, Ekr, Sk = self._kv(kn, H)
        kT = np.swapaxes(kr, -1, -2)
        EkT = np.swapaxes(Ekr, -1, -2)
        c = float(rec.details["scale"])
        hd = q.shape[-1]
        mask = rec.details.get("mask")
        allowed = np.ones(q.shape[:1] + (q.shape[1], kr.shape[1]), bool) if mask is None else \
            np.broadcast_to(mask, (H, q.shape[1], kr.shape[1]))
        if self.fixed:
            mac = rec.details["mac"]
            rq = rec.details["requant"]
            M = int(rec.details["multiplier"])
            pf = self.qt(qn).fmt.frac + self.qt(kn).fmt.frac
            out_fmt = parse_format(tp.format)
            B = matmul_bound(q, kT, E_a=_rig_only(Eq), E_b=_rig_only(EkT), accum=Accum.fixed(FixedFormat(mac.acc_w, pf, True),
                             mac.acc_overflow.value), out=EXACT, what=f"{name} q.k")
            ch = _Chain.from_bound(B)
            c_hat = math.ldexp(float(M), pf - rq.shift - out_fmt.frac)
            z_qk = ch.z.copy()
            ch.scale(c_hat, c)
            ch.round(_fixed_model(out_fmt, rq.rounding), f"{name} requant")
        else:
            mx_out = is_mx_spec(tp.format)
            accum, outm, prod = _reduction(tp.acc, "fp32" if mx_out else tp.format, tp.rounding)
            B = matmul_bound(q, kT, E_a=_rig_only(Eq), E_b=_rig_only(EkT), accum=accum, products=prod, out=outm,
                             what=f"{name} q.k ({tp.format}, {tp.acc})", stat_mode="hm" if prod is F64 else "partial_sums")
            ch = _Chain.from_bound(B)
            z_qk = ch.z.copy()
            c_hat = c
            ch.scale(c, c)
            pow2 = math.frexp(c)[0] == 0.5
            if mx_out:
                ch.round_mx(tp.format, tp.rounding, self.stored_X(name), -1, f"{name} scaled")
            else:
                ch.round(self._scale_model(tp, pow2), f"{name} scaled")
        Pext = (np.abs(q) + self.mag(qn)) @ (np.abs(kT) + np.swapaxes(repeat_kv(self.mag(kn), H), -1, -2))
        ch.ref64 = _gamma(hd + 3) * abs(c) * Pext
        # statistical: q and k errors (k's row-relative part is per key: into D)
        Sq = self.stat_of(qn)
        Tq = Sq.total(self.lam, q)
        Tk = Sk.total(self.lam, kr)
        SkT = _Stat(kT.shape, np.swapaxes(Sk.V, -1, -2), np.swapaxes(Sk.D, -1, -2), 0.0, 0.0, np.swapaxes(Sk.W, -1, -2))
        st = self._mm_stat(q, kT, Sq, SkT, Tq, np.swapaxes(Tk, -1, -2), z_qk, False)
        # k's row factor is per key token: delta_j (q_i . B_k,j), independent across keys
        rk = np.swapaxes(Sk.R, -1, -2) * np.abs(q @ np.swapaxes(Sk.B, -1, -2))
        st.V = st.V + rk * rk
        st.absorb_R()  # q's row factor: a logit "temperature" change, not relative downstream
        a = abs(c_hat)
        st.V = a * a * st.V + ch.sV
        st.W = a * a * st.W
        st.D = a * st.D + abs(c_hat - c) * np.abs(z_qk) + ch.sD
        keep = allowed
        ch.map(lambda arr: np.where(keep, arr, False if arr.dtype == bool else 0.0))
        st.map(lambda arr: np.where(keep, arr, 0.0), lambda r: r)
        self.finish(rec, ch, st)

    def op_mix(self, rec: Any) -> None:
        name = rec.name
        pn, vn = rec.inputs
        tp = self.tp(name)
        p = self.val(pn)
        H = p.shape[0]
        Ep = self.err(pn)
        vr, Evr, Sv = self._kv(vn, H)
        n = p.shape[-1]
        if self.fixed:
            mac = rec.details["mac"]
            pf = self.qt(pn).fmt.frac + self.qt(vn).fmt.frac
            B = matmul_bound(p, vr, E_a=_rig_only(Ep), E_b=_rig_only(Evr),
                             accum=Accum.fixed(FixedFormat(mac.acc_w, pf, True), mac.acc_overflow.value),
                             out=_fixed_model(parse_format(tp.format), mac.rounding), what=f"{name} ({tp.format})")
            ch = _Chain.from_bound(B)
            mx_out = False
        else:
            mx_out = is_mx_spec(tp.format)
            accum, outm, prod = _reduction(tp.acc, "fp32" if mx_out else tp.format, tp.rounding)
            B = matmul_bound(p, vr, E_a=_rig_only(Ep), E_b=_rig_only(Evr), accum=accum, products=prod, out=outm,
                             what=f"{name} ({tp.format}, {tp.acc})", stat_mode="hm" if prod is F64 else "partial_sums")
            ch = _Chain.from_bound(B)
        Pext = (np.abs(p) + self.mag(pn)) @ (np.abs(vr) + repeat_kv(self.mag(vn), H))
        ch.ref64 = _gamma(n + 2) * Pext
        Sp = self.stat_of(pn)
        st = self._mm_stat(p, vr, Sp, Sv, Sp.total(self.lam, p), Sv.total(self.lam, vr), ch.z, True)
        st.absorb_R()  # a per-(head, query) factor: not shared by the concatenated row
        st.V = st.V + ch.sV
        st.D = st.D + ch.sD
        h, s, hd = ch.z.shape
        cat = lambda a: a.transpose(1, 0, 2).reshape(s, h * hd)  # noqa: E731
        ch.map(cat)
        st.map(cat, lambda r: np.zeros((s, 1)))
        if mx_out:
            v0, d0 = ch.sV.copy(), ch.sD.copy()
            ch.round_mx(tp.format, tp.rounding, self.stored_X(name), -1, f"{name} output")
            st.V = st.V + (ch.sV - v0)
            st.D = st.D + (ch.sD - d0)
        self.finish(rec, ch, st)

    # ---- norms ----------------------------------------------------------------------------------------
    def _norm_ref64(self, rec: Any, center: bool, eps: float, g: np.ndarray, Eg: np.ndarray, b: Any, Eb: Any) -> np.ndarray:
        """The float64 reference's own error of ``norm(x_ref) * g + b`` (``Float64Ops.norm``: mean by
        a numpy sum, ``c = x - mean``, ``var = mean(c^2)``, ``n = c / sqrt(var + eps)``), in closed
        form with u = 2^-53: ``e_mu <= g_(d+1) mean|x|``, ``|dc_i| <= e_mu (1+u) + u|c_i|``, the
        relative error of ``var + eps`` ``<= g_(d+5) + 3 e_mu^2 / T``, then
        ``|dn_i| <= R |dc_i| + |n_i| (rho_t / 2 + 2u)``; padded by 2x for the dropped higher orders."""
        xr = np.asarray(self.ref[rec.inputs[0]], dtype=np.float64)
        d = xr.shape[-1]
        mu = np.mean(xr, -1, keepdims=True) if center else 0.0
        c = xr - mu
        T = np.mean(c * c, -1, keepdims=True) + eps
        with np.errstate(divide="ignore"):
            R = np.where(T > 0, 1.0 / np.sqrt(T), np.inf)
        e_mu = _gamma(d + 1) * np.mean(np.abs(xr), -1, keepdims=True) if center else 0.0
        dc = e_mu * (1 + U64) + U64 * np.abs(c)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho_t = _gamma(d + 5) + np.where(T > 0, 3 * e_mu * e_mu / T, np.inf)
        n = np.abs(c) * R
        e_n = 2.0 * (R * dc + n * (rho_t / 2 + 2 * U64))
        G = np.abs(g) + Eg
        e = G * e_n + U64 * G * (n + e_n)
        if b is not None:
            e = e + U64 * (G * (n + e_n) * (1 + U64) + np.abs(b) + Eb)
        return e

    def _norm_stat_prop(self, Sx: _Stat, Tx: np.ndarray, xs: np.ndarray, center: bool, epsp: float, g: np.ndarray,
                        gn: str, bn: str | None, b: Any) -> _Stat:
        """First-order propagation through ``g * norm(xs) + b`` (exact Jacobian at ``xs``; the
        statistical state is in the unit's (scaled) domain) plus the rigorous second-order
        remainder into ``D``."""
        d = xs.shape[-1]
        c = xs - (np.mean(xs, -1, keepdims=True) if center else 0.0)
        Vv = np.mean(c * c, -1, keepdims=True)
        T = Vv + epsp
        R = np.where(T > 0, 1.0 / np.sqrt(np.where(T > 0, T, 1.0)), np.inf)
        n = c * R
        D = Sx.D

        def jac2(V):  # sum_j J_ij^2 V_j (J the norm's Jacobian at xs, without the gain)
            sV = np.sum(V, -1, keepdims=True)
            snV = np.sum(n * V, -1, keepdims=True)
            sn2V = np.sum(n * n * V, -1, keepdims=True)
            if center:
                aii = (1 + n * n) / d
                cross = (sV + 2 * n * snV + n * n * sn2V) / d ** 2
            else:
                aii = n * n / d
                cross = n * n * sn2V / d ** 2
            return R * R * np.maximum(V * (1 - 2 * aii) + cross, 0.0)

        if center:
            Dmix = (np.sum(D, -1, keepdims=True) + np.abs(n) * np.sum(np.abs(n) * D, -1, keepdims=True)) / d
        else:
            Dmix = np.abs(n) * np.sum(np.abs(n) * D, -1, keepdims=True) / d
        Vn, Wn = jac2(Sx.V), jac2(Sx.W)
        V = Sx.VW
        Dn = R * (D + Dmix)
        # beyond first order: the rigorous propagation is the first-order one times at most
        # f = (1 - rho)^-1/2, rho the relative change of the variance; at the statistical level
        # rho = (2 lam sqrt(sum c^2 V) + 2 |c|.D + sum E^2) / (d T)
        Dr = D + Sx.rel()
        # sum of squared errors: mean sum V, concentrated (sub-exponential) at the lam level
        S2 = (np.sum(V, -1, keepdims=True) + self.lam * np.sqrt(2 * np.sum(V * V, -1, keepdims=True))
              + np.sum(Dr * Dr, -1, keepdims=True) + 2 * self.lam * np.sqrt(np.sum(Dr * Dr * V, -1, keepdims=True)))
        rho = (2 * self.lam * np.sqrt(np.sum(c * c * V, -1, keepdims=True)) + 2 * np.sum(np.abs(c) * Dr, -1, keepdims=True)
               + S2) / (d * T)
        f = np.where(rho < 1, (1 - np.minimum(rho, 1 - 1e-16)) ** -0.5, np.inf)
        Vn, Wn, Dn = Vn * f * f, Wn * f * f, Dn * f
        Egu, Egb = self.unbiased_w(gn)
        G = np.abs(g)
        # a row-relative input error survives the norm only through eps: delta eps/T on g n
        st = _Stat(xs.shape, G * G * Vn, G * Dn + np.abs(n) * Egb, Sx.R * epsp / T, g * n,
                   G * G * Wn + n * n * Egu * Egu)
        if bn is not None:
            Ebu, Ebb = self.unbiased_w(bn)
            st.W = st.W + Ebu * Ebu
            st.D = st.D + Ebb
        return st

    def op_norm(self, rec: Any) -> None:
        name = rec.name
        xn, gn = rec.inputs[0], rec.inputs[1]
        bn = rec.inputs[2] if len(rec.inputs) > 2 else None
        det = rec.details
        center = det["norm"] == "layernorm"
        eps = float(det["eps"])
        scale = float(det["scale"])
        tp = self.tp(name)
        x = self.val(xn)
        Exr = self.err(xn)
        g = self.val(gn)
        Eg = self.err(gn)
        b = self.val(bn) if bn else None
        Eb = self.err(bn) if bn else None
        Sx = self.stat_of(xn)
        Tx = Sx.total(self.lam, x)
        if self.fixed:
            ch, st = self._fixed_norm(rec, x, Exr, g, Eg, b, Eb, center, eps, Sx, Tx, gn, bn)
        else:
            ch, st = self._float_norm(rec, x, Exr, g, Eg, b, Eb, center, eps, scale, tp, Sx, Tx, gn, bn)
        ch.ref64 = self._norm_ref64(rec, center, eps, g, Eg, b, Eb)
        self.finish(rec, ch, st, shared_events=4 * int(np.prod(x.shape[:-1])))

    def _float_norm(self, rec, x, Exr, g, Eg, b, Eb, center, eps, scale, tp, Sx, Tx, gn, bn):
        from ..layer.qtensor import store

        W = rec.details["work_format"]
        eps_fmt = rec.details["eps_format"]
        rnd = tp.rounding
        if W != "float64" and is_mx_spec(W):
            raise _Unsupported(f"norm work format {W} is an MX format")
        mW = _model(W, rnd, tp.overflow)
        # xs = round_W(x / s): the unit's actual input (deterministic replay of the cast)
        xs_exact = x / scale
        xs = store(xs_exact, W, rnd, tp.overflow).values
        if W != "float64" and np.any(np.abs(xs_exact) > mW.max):
            raise _Unsupported(f"input {rec.inputs[0]} / {scale:g} overflows the work format {W}")
        cast = np.where(xs == xs_exact, 0.0, mW.err(np.abs(xs_exact)))
        if math.frexp(scale)[0] != 0.5:  # x / s itself was rounded in float64
            cast = cast + 2.0 ** -52 * np.abs(xs_exact)
        acc = _internal_sum(tp.acc, W, rnd)
        sq = F64 if W == "float64" else EXACT
        eps_store = F64 if eps_fmt == "float64" else _model(eps_fmt, "rne")
        rs = F64.widened(rel=FUNC) if W == "float64" else _model(W, rnd, tp.overflow, widen=FUNC)
        mx_out = is_mx_spec(tp.format)
        if center:
            out = mW if (W == tp.format or mx_out) else _compose(mW, _model(tp.format, rnd, tp.overflow))
        else:
            out = EXACT if (W == tp.format or mx_out) else _model(tp.format, rnd, tp.overflow)
        steps = NormSteps(acc, acc, mW, mW, sq, mW, eps_store, mW, rs, mW, mW, out, False)
        B = norm_bound(xs, _rig_only(Exr / scale + cast), center=center, eps=eps, steps=steps, g=g, beta=b, E_g=_rig_only(Eg),
                       E_beta=None if Eb is None else _rig_only(Eb),
                       slanc_scale=scale, alpha=self.alpha)
        ch = _Chain.from_bound(B)
        # statistical: propagate in the scaled domain, then the unit's own roundings
        Sxs = _Stat(x.shape, Sx.V / scale ** 2, Sx.D / scale, Sx.R, Sx.B / scale, Sx.W / scale ** 2)
        Sxs.add_local(cast, mW.unbiased)
        st = self._norm_stat_prop(Sxs, Tx / scale + cast, xs, center, eps / scale ** 2, g, gn, bn, b)
        p = B.parts
        R, n, c = p["R"], p["n"], p["c"]
        G = np.abs(g)
        rho = np.where(np.isfinite(p["rho_r_stat"]), p["rho_r_stat"], np.inf)
        emu = p["e_mu_stat"]
        sub = steps.sub if center else EXACT
        per_elem = [(G * R * sub.step_err(c), sub.unbiased), (G * steps.norm.step_err(n), steps.norm.unbiased),
                    (steps.gain.step_err(g * n), steps.gain.unbiased),
                    (out.step_err(p["z"]), out.unbiased)]
        for e, unb in per_elem:
            st.add_local(e, unb)
        st.add_local(G * (1 + np.where(np.isfinite(rho), rho, 0.0)) * R * emu, True)  # shared mean error
        st.R = st.R + rho  # the 1/sqrt error: relative on g n (the base set by the propagation)
        if mx_out:
            v0, d0 = ch.sV.copy(), ch.sD.copy()
            ch.round_mx(tp.format, rnd, self.stored_X(rec.name), -1, f"{rec.name} output")
            st.V = st.V + (ch.sV - v0)
            st.D = st.D + (ch.sD - d0)
        return ch, st

    def _fixed_norm(self, rec, x, Exr, g, Eg, b, Eb, center, eps, Sx, Tx, gn, bn):
        from ..numerics.units.norm import norm_error_bound

        prm = rec.details["norm_params"]
        xq, gq = self.qt(rec.inputs[0]), self.qt(rec.inputs[1])
        bq = self.qt(rec.inputs[2]) if len(rec.inputs) > 2 else None
        bc = bq.codes if bq is not None else np.zeros(prm.d, dtype=np.int64)
        lsb = math.ldexp(1.0, -prm.out_fmt.frac)
        local = norm_error_bound(xq.codes, gq.codes, bc, prm) * lsb
        # the unit normalises with eps_real (its EPS code) instead of eps: exact difference at x_hat
        c = x - (np.mean(x, -1, keepdims=True) if center else 0.0)
        V = np.mean(c * c, -1, keepdims=True)
        T, Tu = V + eps, V + prm.eps_real
        rT = np.where(T > 0, 1 / np.sqrt(np.where(T > 0, T, 1.0)), 0.0)
        rTu = np.where(Tu > 0, 1 / np.sqrt(np.where(Tu > 0, Tu, 1.0)), 0.0)
        nu = c * rTu
        eps_term = np.abs(g) * np.abs(c) * np.abs(rT - rTu)
        bb = 0.0 if b is None else b
        z_u = g * nu + bb  # the unit's reference point (norm_error_bound compares with clamp(z_u))
        clamp = np.abs(np.clip(z_u, prm.out_fmt.min, prm.out_fmt.max) - z_u)
        z = g * c * rT + bb
        # propagated: the exact-arithmetic norm's sensitivity to E_x, E_g, E_b (norm_bound, exact steps)
        Bp = norm_bound(x, _rig_only(Exr), center=center, eps=eps, steps=NormSteps(), g=g, beta=b, E_g=_rig_only(Eg),
                        E_beta=None if Eb is None else _rig_only(Eb), alpha=self.alpha, what=f"{rec.name} (propagation)")
        ch = _Chain(z, local + eps_term + clamp, Bp.rig)
        ch.vac |= np.broadcast_to(~np.isfinite(Bp.rig), z.shape)
        ch.reasons += Bp.reasons
        sat = clamp > 0
        if np.any(sat):
            ch.nog |= sat
            ch.reasons.append(f"no guarantee: {rec.name} output saturates at {prm.out_fmt} (|value| up to "
                              f"{float(np.max(np.abs(z_u[sat]))):.6g} > {prm.out_fmt.max:g}, {int(sat.sum())} element(s))")
        st = self._norm_stat_prop(Sx, Tx, x, center, eps, g, gn, bn, b)
        # the unit's own error, split as in norm_error_bound's derivation: the SLaNC-shift and mean
        # roundings (Delta, per element), the row's scale change rms(Delta)/s_u and the rsqrt /
        # sqrt(D) error eta (relative, shared by the row), the n and output roundings
        dl, rel, rn = _fixed_norm_split(xq.codes, prm)
        G = np.abs(g)
        st.add_local(G * dl, True)
        st.add_local(G * rn, True)
        st.add_local(np.zeros_like(z) + math.ldexp(0.5, -prm.out_fmt.frac), prm.out_rounding is Rounding.RNE)
        st.R = st.R + rel
        st.D = st.D + eps_term
        return ch, st

    # ---- softmax ---------------------------------------------------------------------------------
    def op_softmax(self, rec: Any) -> None:
        name = rec.name
        sn = rec.inputs[0]
        tp = self.tp(name)
        l = self.val(sn)
        Er = self.err(sn)
        mask = rec.details.get("mask")
        allowed = np.ones(l.shape, bool) if mask is None else np.broadcast_to(mask, l.shape)
        shifted = bool(rec.details.get("shifted", True))
        Sl = self.stat_of(sn)
        Tl = np.where(allowed, Sl.total(self.lam, l), 0.0)
        if self.fixed:
            ch, s, loc_stat = self._fixed_softmax(rec, l, Er, allowed)
            st = _fixed_softmax_stat(l, s, allowed, rec.details["softmax"])
        else:
            W = rec.details["work_format"]
            rnd = tp.rounding
            mx_out = is_mx_spec(tp.format)
            if W == "float64":
                mW = F64
                ex = F64.widened(rel=FUNC)
            else:
                mW = _model(W, rnd, tp.overflow)
                ex = _model(W, rnd, tp.overflow, widen=FUNC)
            if mx_out:
                out = EXACT
            elif W == tp.format:
                out = mW
            else:
                out = _model(tp.format, rnd, tp.overflow)
            sub = mW if shifted else EXACT
            acc = _internal_sum(tp.acc, W, rnd)
            steps = SoftmaxSteps(sub, 0.0, ex, acc, "divide", EXACT, out)
            B = softmax_bound(l, _rig_only(Er), steps=steps, shifted=shifted, mask=allowed, alpha=self.alpha,
                              what=f"{name} ({W})")
            ch = _Chain.from_bound(B)
            s = B.parts["s"]
            st = self._softmax_local_stat(l, s, allowed, shifted, steps)
            if mx_out:
                v0, d0 = ch.sV.copy(), ch.sD.copy()
                ch.round_mx(tp.format, rnd, self.stored_X(name), -1, f"{name} output")
                st.V = st.V + (ch.sV - v0)
                st.D = st.D + (ch.sD - d0)
        # propagation of the input's statistical state (first order) + second-order remainder
        s2 = s * s
        V = np.where(allowed, Sl.V, 0.0)
        D = np.where(allowed, Sl.D + Sl.rel(), 0.0)
        # beyond first order: expm1(x) <= x expm1(2M)/(2M) for x <= 2M (M the row's largest
        # statistical logit error): the first-order propagation times kappa
        xk = Tl + np.sum(s * Tl, -1, keepdims=True)
        M = np.max(Tl, -1, keepdims=True)
        chord = np.where(M > 0, np.expm1(np.minimum(M, 700.0)) / np.where(M > 0, M, 1.0), 1.0)
        kap = np.maximum(np.where(xk > 0, np.expm1(np.minimum(xk, 700.0)) / np.where(xk > 0, xk, 1.0), 1.0), chord)
        sum_s2V = np.sum(s2 * V, -1, keepdims=True)
        st.V = st.V + kap * kap * s2 * np.maximum((1 - s) ** 2 * V + sum_s2V - s2 * V, 0.0)
        st.D = st.D + kap * s * (D + np.sum(s * D, -1, keepdims=True))
        # the token-shared part of the logit errors (weight errors of W_K) is correlated across keys
        sw = np.sqrt(np.where(allowed, Sl.W, 0.0))
        sws = kap * s * (sw + np.sum(s * sw, -1, keepdims=True))
        st.W = st.W + sws * sws
        # a probability is in [0, 1]: an error bound beyond max(s, 1 - s) says nothing more
        sh = self.val(name)
        cap = np.maximum(np.abs(sh), np.abs(1 - sh))
        big = st.total(self.lam, s) > cap
        st.V = np.where(big, 0.0, st.V)
        st.W = np.where(big, 0.0, st.W)
        st.D = np.where(big, cap + 2.0 ** -20, st.D)
        st.R = np.where(np.any(big, -1, keepdims=True), 0.0, st.R)
        # the reference: shifted float64 softmax of the reference scores
        ch.ref64 = self._softmax_ref64(np.asarray(self.ref[sn], dtype=np.float64), allowed)
        ch.map(lambda a: np.where(allowed, a, False if a.dtype == bool else 0.0))
        st.map(lambda a: np.where(allowed, a, 0.0), lambda r: r)
        self.finish(rec, ch, st, shared_events=2 * int(np.prod(l.shape[:-1])))

    @staticmethod
    def _softmax_ref64(lr: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """The float64 reference's own error (``Float64Ops.softmax``, shifted), closed form with
        u = 2^-53: relative exp-argument error ``u a_j`` and ``exp`` within 2u, ``eps_j = 1.01 u a_j +
        2u``; ``|ds_j| <= s_j (eps_j + s.eps + g_(n+1))``, padded by 2x."""
        if not np.all(np.isfinite(np.where(allowed, lr, 0.0))):
            return np.where(allowed, np.inf, 0.0)
        lk = np.where(allowed, lr, -np.inf)
        m = np.max(lk, -1, keepdims=True)
        a = np.where(allowed, m - lr, 0.0)
        w = np.where(allowed, np.exp(-a), 0.0)
        s = w / np.sum(w, -1, keepdims=True)
        n = int(np.max(np.sum(allowed, -1)))
        eps = 1.01 * U64 * a + 2 * U64
        return np.where(allowed, 2.0 * s * (eps + np.sum(s * eps, -1, keepdims=True) + _gamma(n + 1)), 0.0)

    def _softmax_local_stat(self, l: np.ndarray, s: np.ndarray, allowed: np.ndarray, shifted: bool,
                            steps: SoftmaxSteps) -> _Stat:
        """Local roundings of a float softmax, first order: per-element relative exp errors
        (argument and result rounding: independent), the denominator's accumulation error (a
        relative error shared by the row), the output rounding."""
        keep = allowed
        lk = np.where(keep, l, -np.inf)
        m = np.max(lk, -1, keepdims=True)
        a = np.where(keep, m - l, 0.0)
        w = np.where(keep, np.exp(np.where(keep, l - m, 0.0)), 0.0) if shifted else \
            np.where(keep, np.exp(np.where(keep, l, 0.0)), 0.0)
        Wsum = np.sum(w, -1, keepdims=True)
        sub, ex = steps.sub, steps.exp
        c = np.where(keep, (sub.rel * a + sub.abs if shifted else 0.0) + ex.rel, 0.0)
        s2 = s * s
        unb = sub.unbiased and ex.unbiased
        rel_part = s2 * np.maximum((1 - s) ** 2 * c * c + np.sum(s2 * c * c, -1, keepdims=True) - s2 * c * c, 0.0)
        st = _Stat(l.shape)
        if unb:
            st.V = st.V + rel_part
        else:
            st.D = st.D + s * (c + np.sum(s * c, -1, keepdims=True))
        n = np.sum(keep, -1, keepdims=True)
        st.D = st.D + np.where(keep, ex.abs * (1 + n * s) / Wsum, 0.0)
        # the denominator: accumulation error relative to the sum, shared by the row
        ps = PartialSums(_rows(l), steps.acc)
        ps.feed(w[..., None, :])
        A = np.sum(w * (1 + ex.rel), -1, keepdims=True) + n * ex.abs
        accV, accD = steps.acc.proxy(int(np.max(n)), A, ss_outer=ps.ss_outer, ss_inner=ps.ss_inner)
        st.set_R((self.lam * np.sqrt(accV) + accD) / Wsum, s)
        st.add_local(np.where(keep, steps.out.err(s), 0.0), steps.out.unbiased)
        return st

    def _fixed_softmax(self, rec, l, Er, allowed):
        p = rec.details["softmax"]
        ew = p.e_w
        fe = FixedFormat(ew, ew - 1, signed=False)
        fr = FixedFormat(p.k + 2, p.k - (ew - 1), signed=False)
        out_fmt = FixedFormat(p.out_w, p.out_f, signed=False)
        exp_m = RoundingModel(_prefloor(p.exp2), fe.lsb, fe.max, 0.0, "saturate", False, "exp2 LUT rel+floor")
        steps = SoftmaxSteps(EXACT, 0.0, exp_m, Accum.fixed(FixedFormat(p.s_w + 1, ew - 1, False), "saturate"),
                             "reciprocal", RoundingModel.measured(1.0, fr), _fixed_model(out_fmt, "half_up"))
        B = softmax_bound(l, None, steps=steps, shifted=True, mask=allowed, alpha=self.alpha, what=f"{rec.name} unit")
        n_row = np.sum(allowed, axis=-1, keepdims=True)
        unit = np.zeros(n_row.shape)
        for n in np.unique(n_row):
            unit = np.where(n_row == n, _softmax_unit_bound(p, int(n)) * math.ldexp(1.0, -p.out_f), unit)
        gen = np.where(np.isfinite(B.rig), B.parts["local"], np.inf)
        Lr = np.minimum(gen, unit)
        s = B.parts["s"]
        Pr, _ = softmax_propagation(s, np.where(allowed, Er, 0.0))
        ch = _Chain(s, Lr, Pr)
        if not np.all(np.isfinite(Lr)):
            ch.reasons += B.reasons
        return ch, s, np.where(np.isfinite(Lr), Lr, np.inf)

    # ---- elementwise ------------------------------------------------------------------------------
    def _elementwise_out(self, tp: Any) -> tuple[RoundingModel, bool]:
        """(output model, MX?) of a value computed in float64 and stored into the tensor."""
        if is_mx_spec(tp.format):
            return EXACT, True
        if tp.format == "float64":
            return F64, False
        if self.fixed:
            return _fixed_model(parse_format(tp.format), tp.rounding, tp.overflow), False
        return _model(tp.format, tp.rounding, tp.overflow), False

    def _mx_tail(self, ch: _Chain, st: _Stat, tp: Any, name: str) -> None:
        v0, d0 = ch.sV.copy(), ch.sD.copy()
        ch.round_mx(tp.format, tp.rounding, self.stored_X(name), -1, f"{name} output")
        st.V = st.V + (ch.sV - v0)
        st.D = st.D + (ch.sD - d0)

    def op_act(self, rec: Any) -> None:
        name = rec.name
        hn = rec.inputs[0]
        tp = self.tp(name)
        kind = rec.details["act"]
        h = self.val(hn)
        Er = self.err(hn)
        cst = activation_constants(kind)
        Sh = self.stat_of(hn)
        Th = Sh.total(self.lam, h)
        if self.fixed:
            ch, xc, cast, unit = self._fixed_act(rec, h, Er, kind)
            d1 = np.abs(activation_derivative(kind, xc))
            rh = Sh.rel()
            st = _Stat(h.shape, d1 * d1 * (Sh.V + rh * rh + cast * cast) + unit.err(0.0) ** 2, d1 * Sh.D, 0.0, 0.0,
                       d1 * d1 * Sh.W)
            Tin = Th + cast
        else:
            out, mx_out = self._elementwise_out(tp)
            unit = out.widened(rel=ACT_FUNC, abs=1e-300) if not out.exact else RoundingModel(ACT_FUNC, 1e-300)
            B = activation_bound(h, _rig_only(Er), fn=kind, unit=unit, what=f"{name} ({tp.format})")
            ch = _Chain.from_bound(B)
            d1 = np.abs(activation_derivative(kind, h))
            z = B.parts["z"]
            rh = Sh.rel()
            st = _Stat(h.shape, d1 * d1 * (Sh.V + rh * rh), d1 * Sh.D, 0.0, 0.0, d1 * d1 * Sh.W)
            st.add_local(out.step_err(z), out.unbiased)
            st.D = st.D + ACT_FUNC * np.abs(z)
            if mx_out:
                self._mx_tail(ch, st, tp, name)
            Tin = Th
        so = 0.5 * cst.M2 * Tin * Tin  # second order, into V
        st.V = st.V + so * so
        ch.ref64 = ACT_FUNC * (np.abs(activation(kind, h)) + cst.L * self.mag(hn)) + 1e-300
        self.finish(rec, ch, st)

    def _fixed_act(self, rec, h, Er, kind):
        prm = rec.details["act_params"]
        tin = prm.in_fmt
        tp = self.tp(rec.name)
        hq = self.qt(rec.inputs[0])
        # the requantising shift into the table input (deterministic replay), then saturation
        if hq.fmt.frac >= tin.frac:
            c = round_shift(hq.codes, hq.fmt.frac - tin.frac, tp.rounding)
        else:
            c = hq.codes << np.int64(tin.frac - hq.fmt.frac)
        sat = (c > tin.max_code) | (c < tin.min_code)
        c = np.clip(c, tin.min_code, tin.max_code)
        xc = np.ldexp(c.astype(np.float64), -tin.frac)
        m = rounding_model(tin, tp.rounding)
        cast = np.where(xc == h, 0.0, m.abs)
        unit = _act_table_model(kind, tin, prm.out_fmt)
        B = activation_bound(xc, _rig_only(Er + cast), fn=kind, unit=unit, what=f"{rec.name} table")
        ch = _Chain.from_bound(B)
        if np.any(sat):
            ch.nog |= sat
            ch.reasons.append(f"no guarantee: {rec.name}: input {rec.inputs[0]} saturates the table input {tin} "
                              f"(|value| up to {float(np.max(np.abs(h[sat]))):.6g} > {tin.max:g}, {int(sat.sum())} element(s))")
        return ch, xc, cast, unit

    def op_mul(self, rec: Any) -> None:
        self._binary(rec, "mul")

    def op_add(self, rec: Any) -> None:
        self._binary(rec, "add")

    def _binary(self, rec: Any, op: str) -> None:
        name = rec.name
        an, bn = rec.inputs
        tp = self.tp(name)
        a, b = self.val(an), self.val(bn)
        Ear = self.err(an)
        Ebr = self.err(bn)
        out, mx_out = self._elementwise_out(tp)
        fn = mul_bound if op == "mul" else add_bound
        B = fn(a, b, E_a=_rig_only(Ear), E_b=_rig_only(Ebr), out=out, what=f"{name} ({tp.format})")
        ch = _Chain.from_bound(B)
        Sa, Sb = self.stat_of(an), self.stat_of(bn)
        z = B.parts["z"]
        if op == "mul":
            V2 = Sa.VW * (Sb.VW + Sb.D ** 2) + Sa.D ** 2 * Sb.VW  # second order (see _mm_stat)
            st = _Stat(z.shape, b * b * Sa.V + a * a * Sb.V + V2, np.abs(b) * Sa.D + np.abs(a) * Sb.D + Sa.D * Sb.D,
                       0.0, 0.0, b * b * Sa.W + a * a * Sb.W)
            ha, hb = bool(np.any(Sa.R > 0)), bool(np.any(Sb.R > 0))
            if ha and hb:  # two different row factors: both end here
                ra, rb = Sa.rel() * np.abs(b), Sb.rel() * np.abs(a)
                st.V = st.V + ra * ra + rb * rb
            elif ha:
                st.set_R(Sa.R, Sa.B * b)
            elif hb:
                st.set_R(Sb.R, a * Sb.B)
            ch.ref64 = 2.0 ** -52 * (np.abs(a) + self.mag(an)) * (np.abs(b) + self.mag(bn))
        else:
            ra, rb = Sa.rel(), Sb.rel()
            st = _Stat(z.shape, Sa.V + Sb.V + ra * ra + rb * rb, Sa.D + Sb.D, 0.0, 0.0, Sa.W + Sb.W)
            ch.ref64 = 2.0 ** -52 * (np.abs(a) + np.abs(b) + self.mag(an) + self.mag(bn))
        st.add_local(out.step_err(z), out.unbiased)
        if mx_out:
            self._mx_tail(ch, st, tp, name)
        self.finish(rec, ch, st)

    def op_rope(self, rec: Any) -> None:
        name = rec.name
        xn = rec.inputs[0]
        tp = self.tp(name)
        x = self.val(xn)
        Er = self.err(xn)
        pos = rec.details.get("positions")
        pos = np.arange(x.shape[-2]) if pos is None else np.asarray(pos)
        out, mx_out = self._elementwise_out(tp)
        base = float(rec.details["base"])
        # float64 tables and float64 evaluation (products, sum): modelled as table errors of 2^-51
        B = rope_bound(x, _rig_only(Er), positions=pos, base=base, out=out, layout="half",
                       const=RoundingModel(2.0 ** -51), what=f"{name} ({tp.format})")
        ch = _Chain.from_bound(B)
        hd = x.shape[-1]
        ax = np.abs(x) + self.mag(xn)
        pair = ax[..., : hd // 2] + ax[..., hd // 2:]
        ch.ref64 = 2.0 ** -50 * np.concatenate([pair, pair], axis=-1)
        Sx = self.stat_of(xn)
        ang = rope_angles(pos, hd, base)
        cs, sn = np.cos(ang), np.sin(ang)
        h2 = hd // 2

        def rot(Aa, f):
            a1, a2 = Aa[..., :h2], Aa[..., h2:]
            return np.concatenate([f(cs) * a1 + f(sn) * a2, f(cs) * a2 + f(sn) * a1], axis=-1)

        B1, B2 = Sx.B[..., :h2], Sx.B[..., h2:]
        Brot = np.concatenate([cs * B1 - sn * B2, cs * B2 + sn * B1], axis=-1)  # the rotation is linear
        st = _Stat(x.shape, rot(Sx.V, lambda t: t * t), rot(Sx.D, np.abs) + 2.0 ** -51 * 2 * np.concatenate(
            [pair, pair], axis=-1), Sx.R, Brot, rot(Sx.W, lambda t: t * t))
        st.add_local(out.step_err(B.parts["z"]), out.unbiased)
        if mx_out:
            self._mx_tail(ch, st, tp, name)
        self.finish(rec, ch, st)


def _fixed_softmax_stat(l: np.ndarray, s: np.ndarray, allowed: np.ndarray, p: Any) -> _Stat:
    """First-order local roundings of the fixed softmax unit (``units.softmax``), for the
    statistical tier: the exp2 LUT's relative error (index and table roundings: pseudo-random per
    element, ``prefloor_rel_error`` as the bound) in ``V``; the log2(e) constant's error (a
    coherent relative error ``a_j |eps|``) and the floors of ``e`` in ``D``; the truncated
    reciprocal as a row-relative ``R``; the half-up output rounding in ``V``."""
    keep = allowed
    lk = np.where(keep, l, -np.inf)
    m = np.max(lk, -1, keepdims=True)
    a = np.where(keep, m - l, 0.0)
    w = np.where(keep, np.exp(-a), 0.0)
    W = np.sum(w, -1, keepdims=True)
    n = np.sum(keep, -1, keepdims=True)
    rho = _prefloor(p.exp2)
    eps_c = abs(p.exp2.log2e / 2.0 ** p.log2e_f / math.log2(math.e) - 1.0)
    s2 = s * s
    c2 = np.where(keep, rho * rho, 0.0)
    st = _Stat(l.shape)
    st.V = s2 * np.maximum((1 - s) ** 2 * c2 + np.sum(s2 * c2, -1, keepdims=True) - s2 * c2, 0.0)
    coh = np.where(keep, a * eps_c, 0.0)
    lsb_e = math.ldexp(1.0, -(p.e_w - 1))
    st.D = s * (coh + np.sum(s * coh, -1, keepdims=True)) + np.where(keep, lsb_e * (1 + n * s) / W, 0.0)
    st.set_R(W * math.ldexp(1.0, p.e_w - 1 - p.k) * (1 + 1e-12), s)
    half = math.ldexp(0.5, -p.out_f)
    st.V = st.V + np.where(keep, half * half, 0.0)
    return st


def _fixed_norm_split(x_codes: np.ndarray, prm: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Pieces of :func:`refmodel.numerics.units.norm.norm_error_bound` (real units, before the
    gain): ``|Delta| / s_u`` per element, the row-shared relative ``rms(Delta)/s_u + |eta|`` and the
    n rounding ``2^-(N_F+1)``."""
    from ..numerics.units.norm import norm_stats_int

    stt = norm_stats_int(x_codes, prm)
    x = np.ldexp(np.asarray(x_codes, dtype=np.float64), -prm.in_fmt.frac)
    a = x if prm.rms else x - x.mean(axis=-1, keepdims=True)
    u = np.ldexp(stt.y.astype(np.float64), prm.shift - prm.in_fmt.frac - prm.g)
    delta = u - a
    s_u = np.sqrt(np.mean(u * u, axis=-1, keepdims=True) + prm.eps_real)
    rms_d = np.sqrt(np.mean(delta * delta, axis=-1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        dl = np.where(s_u > 0, np.abs(delta) / np.where(s_u > 0, s_u, 1.0), np.inf)
        exact_rs = np.sqrt(float(prm.d)) * np.ldexp(1.0, prm.k_eff) / np.sqrt(stt.a_norm.astype(np.float64))
        eta = np.where(stt.a > 0, stt.rs.astype(np.float64) / np.where(stt.a > 0, exact_rs, 1.0) - 1.0, 0.0)
        rel = np.where(s_u > 0, rms_d / np.where(s_u > 0, s_u, 1.0), np.inf) + np.abs(eta[..., None]) + 1e-12
    return dl, rel, math.ldexp(0.5, -prm.n_f)


@functools.lru_cache(maxsize=64)
def _prefloor(p: Any) -> float:
    """``units.exp2.prefloor_rel_error`` (exhaustive over the input codes), cached per unit."""
    from ..numerics.units.exp2 import prefloor_rel_error

    return prefloor_rel_error(p)


@functools.lru_cache(maxsize=4096)
def _softmax_unit_bound(p: Any, n: int) -> float:
    """``units.softmax.softmax_error_bound`` (LSB), cached per unit and row length."""
    from ..numerics.units.softmax import softmax_error_bound

    return softmax_error_bound(p, n)


_ACT_TABLE_CACHE: dict[tuple[str, str, str], RoundingModel] = {}


def _act_table_model(kind: str, tin: FixedFormat, tout: FixedFormat) -> RoundingModel:
    """The activation table's error, measured exhaustively over every input code against the
    reference layer's own float64 activation (``refmodel.layer.ops.activation``), clamped entries
    included, plus 1e-9 LSB for the float64 evaluation."""
    key = (kind, str(tin), str(tout))
    if key not in _ACT_TABLE_CACHE:
        from ..layer.ops import activation as ref_act
        from ..numerics.units.activation import act_table

        table = act_table(kind, tin, tout)
        addr = np.arange(1 << tin.width, dtype=np.int64)
        if tin.signed:
            sign = np.int64(1) << np.int64(tin.width - 1)
            codes = (addr ^ sign) - sign
        else:
            codes = addr
        x = np.ldexp(codes.astype(np.float64), -tin.frac)
        err = np.abs(np.ldexp(table.astype(np.float64), -tout.frac) - ref_act(kind, x))
        lsb = float(np.max(err)) / tout.lsb
        _ACT_TABLE_CACHE[key] = RoundingModel.measured(lsb + 1e-9, tout, label=f"{kind} table {tin}->{tout} "
                                                       f"({lsb:.4f} LSB)")
    return _ACT_TABLE_CACHE[key]


def layer_bounds(run: Any, ref: Mapping[str, np.ndarray], *, weights: Any = None,
                 alpha: float = DEFAULT_ALPHA, isolate: bool = True) -> dict[str, TensorBound]:
    """Error bound of every tensor of ``run`` against ``ref`` (module docstring).

    ``run``: :func:`refmodel.layer.quantized.run_quantized` result; ``ref``:
    :func:`refmodel.layer.reference.run_reference` of the same config, UNQUANTISED weights and input
    (default ``softmax_shifted=True``, no SLaNC); ``weights``: the unquantised
    :class:`LayerWeights` (optional: exact ``|w_hat - w|`` instead of the format's model);
    ``alpha``: failure probability of one statistical term; ``isolate``: also bound each tensor
    as (its distance to the float64 layer on the quantised weights and input, the arithmetic
    roundings alone) + (that layer's exact distance to ``ref``: the quantisation effect) and keep
    the smaller bound (module docstring). Returns ``{tensor name: TensorBound}``
    in forward order; ``|run.tensors[n].values - ref[n]| <= rigorous`` everywhere.
    """
    missing = [n for n in run.tensors if n not in ref]
    if missing:
        raise ValueError(f"layer_bounds: the reference has no tensor {missing[0]!r} (pass run_reference of the "
                         f"same config)")
    for n, t in run.tensors.items():
        if np.shape(ref[n]) != t.values.shape:
            raise ValueError(f"layer_bounds: reference tensor {n!r} has shape {list(np.shape(ref[n]))}, the run "
                             f"{list(t.values.shape)}")
    iso = ref_q = None
    if isolate:
        got = _isolation_reference(run)
        if got is not None:
            ref_q, qw = got
            zero = {n: (np.zeros(np.shape(t.values)), [], np.zeros(np.shape(t.values), bool)) for n, t in run.weights.items()}
            iso = _Walk(run, ref_q, qw, alpha, Ew=zero).run_all()
    return _Walk(run, ref, weights, alpha, iso=iso, ref_q=ref_q).run_all()


def _isolation_reference(run: Any) -> tuple[dict[str, np.ndarray], Any] | None:
    """The float64 layer on the run's QUANTISED weights and input (same mask and positions), or
    None when it cannot be built (non-finite quantised values, a mask that is not causal/padding)."""
    from ..layer.forward import attention_mask
    from ..layer.reference import run_reference
    from ..layer.weights import LayerWeights

    cfg = run.config
    x = np.asarray(run.tensors["x"].values, dtype=np.float64)
    s = x.shape[0]
    mask = positions = None
    for rec in run.records:
        if rec.kind == "scores":
            mask = rec.details.get("mask")
        if rec.kind == "rope" and rec.details.get("positions") is not None:
            positions = np.asarray(rec.details["positions"])
    pad = None
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        pad = m[-1] if cfg.causal else m[0]
        if pad.all():
            pad = None
        want = attention_mask(cfg, s, pad)
        if not np.array_equal(np.broadcast_to(m, (s, s)), np.ones((s, s), bool) if want is None else want):
            return None
    try:
        qw = LayerWeights({n: np.asarray(t.values, dtype=np.float64) for n, t in run.weights.items()})
        with np.errstate(all="ignore"):
            ref_q = run_reference(cfg, qw, x, pad_mask=pad, positions=positions)
    except ValueError:
        return None
    if not all(np.all(np.isfinite(v)) for v in ref_q.values()):
        return None
    return ref_q, qw
