"""Rounding models of a precision plan's steps, as the layer walk uses them.

Every step a :class:`~refmodel.layer.quantized.QuantOps` op performs is one rounding into a
format (``refmodel/layer/quantized.py`` module docstring). This module turns the plan's format,
rounding and overflow strings into :class:`~refmodel.bounds.model.RoundingModel` objects and
:class:`~refmodel.bounds.accum.Accum` policies, with two project conventions:

* **saturation is bounded, not voided** (``saturation_ok=True``): a value known to lie within
  ``L`` of ``z`` that is clamped into ``[min, max]`` moves by at most the overshoot
  ``max(|z| + L - max, 0)`` (:func:`refmodel.bounds.model.output_rounding`), so a run that
  saturates still gets a finite bound, with a note naming the tensor and the format; only an
  overflow to inf / NaN / a wrapped value voids it;
* **double rounding** of a value computed in float64 and then rounded into a narrower float is
  covered by widening the relative error by ``WIDEN = 2^-52`` (the float64 step's own error).

Float64 itself is the reference: its arithmetic is modelled by :data:`F64` (u = 2^-53) where the
reference's own rounding error must be bounded (``ref64`` terms of the walk).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import numpy as np

from ...layer.qtensor import FLOAT64_FMT
from ...numerics import accumulate as _acc
from ...numerics.fixed import FixedFormat
from ...numerics.formats import parse_format
from ...numerics.minifloat import FloatFormat
from ...numerics.rounding import Rounding
from ..accum import Accum
from ..model import EXACT, RoundingModel, gamma, rounding_model

__all__ = [
    "U64", "F64", "WIDEN", "FUNC", "ACT_FUNC", "FORMULA_REL", "F64_SUM", "Unsupported",
    "plan_model", "fixed_model", "gamma64", "matmul_models", "internal_sum", "compose", "full", "row_shape",
]

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


class Unsupported(Exception):
    """An op / policy the walk has no model for: the tensor gets no guarantee with this reason."""


@functools.lru_cache(maxsize=512)
def plan_model(spec: str, rounding: str = "rne", overflow: str = "saturate", *, widen: float = WIDEN,
               saturation_ok: bool = True) -> RoundingModel:
    """One rounding into ``spec`` (fixed / minifloat / float64) of a float64-computed value.

    Saturation into the format is a bounded overshoot (``saturation_ok``, module docstring) or, with
    ``saturation_ok=False``, voids the guarantee; float targets are
    widened by ``widen`` for the double rounding (float64 evaluation, then the format)."""
    if spec == "float64":
        return F64
    fmt = parse_format(spec)
    if isinstance(fmt, FixedFormat):
        return replace(rounding_model(fmt, rounding, overflow=overflow), saturation_ok=saturation_ok)
    if isinstance(fmt, FloatFormat):
        m = replace(rounding_model(fmt, rounding), saturation_ok=saturation_ok)
        return m.widened(rel=widen) if widen else m
    raise Unsupported(f"format {spec} has no scalar rounding model (MX is handled per block)")


@functools.lru_cache(maxsize=512)
def fixed_model(fmt: FixedFormat, rounding: Any, overflow: str = "saturate", saturation_ok: bool = True
                ) -> RoundingModel:
    """One rounding into the fixed-point ``fmt`` under ``rounding`` (a :class:`Rounding` or its name)."""
    r = rounding.value if isinstance(rounding, Rounding) else str(rounding)
    return replace(rounding_model(fmt, r, overflow=overflow), saturation_ok=saturation_ok)


#: the reference's own float64 sums (numpy, any order): rigorous gamma only, no partial sums
F64_SUM = Accum("sequential", replace(F64, unbiased=False), 1, None, EXACT, FLOAT64_FMT, None, "rne")


def gamma64(n: int) -> float:
    """``gamma_n(2^-53)``: ``n`` float64 roundings in a row (Higham 2002, Lemma 3.1)."""
    return gamma(n, U64).value


@functools.lru_cache(maxsize=256)
def matmul_models(policy: str, out_spec: str, rounding: str, saturation_ok: bool = True
                  ) -> tuple[Accum, RoundingModel, RoundingModel]:
    """(accumulation, output rounding, product rounding) of a float-plan matrix product whose
    result is stored in ``out_spec`` (``numerics.accumulate.matmul`` semantics); ``saturation_ok``
    as :func:`plan_model` for the output rounding."""
    pol = _acc.parse_policy(policy)
    if out_spec == "float64":
        if isinstance(pol, _acc.Exact):
            # float64 BLAS (any order, FMA or not): products rounded + recursive sum
            return Accum.sequential(FLOAT64_FMT), EXACT, F64
        raise Unsupported(f"policy {policy} with a float64 output is not modelled")
    out = parse_format(out_spec)
    if isinstance(pol, _acc.Exact):
        return Accum.exact(), plan_model(out_spec, rounding, widen=0.0, saturation_ok=saturation_ok), EXACT
    if isinstance(pol, (_acc.Sequential, _acc.Blocked)):
        if isinstance(pol.fmt, FixedFormat):
            raise Unsupported(f"fixed-point accumulation policy {policy} with float operands is not modelled")
        a = Accum.from_policy(pol, rounding=rounding)
        a = replace(a, model=replace(a.model, saturation_ok=False))
        o = EXACT if pol.fmt == out else plan_model(out_spec, rounding, widen=0.0, saturation_ok=saturation_ok)
        return a, o, EXACT
    raise Unsupported(f"accumulation policy {policy} with float operands is not modelled")


@functools.lru_cache(maxsize=256)
def internal_sum(policy: str, work: str, rounding: str) -> Accum:
    """The sum inside a float norm / softmax: ``_mm(v, ones, work, policy)``."""
    if work == "float64":
        return Accum.sequential(FLOAT64_FMT)
    pol = _acc.parse_policy(policy)
    if isinstance(pol, _acc.Exact):
        return Accum.rounded(plan_model(work, rounding, widen=0.0), rounding)
    if isinstance(pol, (_acc.Sequential, _acc.Blocked)) and not isinstance(pol.fmt, FixedFormat):
        return Accum.from_policy(pol, rounding=rounding)
    raise Unsupported(f"accumulation policy {policy} inside a float norm/softmax is not modelled")


def compose(m1: RoundingModel, m2: RoundingModel) -> RoundingModel:
    """Two roundings in a row (``m1`` then ``m2``) as one model: ``(1+u1)(1+u2) - 1`` and
    ``eta1 (1 + u2) + eta2``; range and overflow of the tighter / the last step."""
    return RoundingModel((1 + m1.rel) * (1 + m2.rel) - 1, m1.abs * (1 + m2.rel) + m2.abs, min(m1.max, m2.max),
                         max(m1.min, m2.min), m2.overflow, m1.unbiased and m2.unbiased, f"{m1.label} then {m2.label}",
                         m2.fmt, m2.mode, m1.saturation_ok and m2.saturation_ok)


def row_shape(a: np.ndarray) -> tuple[int, ...]:
    """The shape of a per-row quantity of ``a`` (last axis kept as length 1)."""
    return a.shape[:-1] + (1,)


def full(a: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` as a float64 array of ``shape`` (a fresh array: callers update in place)."""
    if isinstance(a, (int, float)):
        return np.full(shape, float(a))
    a = np.asarray(a, dtype=np.float64)
    return a.copy() if a.shape == shape else np.broadcast_to(a, shape).copy()
