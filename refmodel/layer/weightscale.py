"""Weight scales: weight codes in an element format times a per-tensor or per-output-channel
scale chosen offline from the weights (the int8-with-scales datapath of most accelerators).

A scaled weight is ``w ~= s_c * q``: ``q`` in the element format (``s8.0``, ``s8.7``, ``s4.0``,
``e4m3fn`` ...), one scale ``s`` per tensor (``granularity = "tensor"``) or one per output channel
``s_c`` (a row of a linear weight ``[out, in]``, ``granularity = "channel"``).

Scale kinds (``kind``):

* ``float``: each ``s`` is an fp32 number (held in a float64 array). fp32 so that ``q * s`` (``q``
  has at most 24 significant bits) and ``acc * s`` (``acc`` in fp32 / bf16 / fp16) are exact in
  float64 and the epilogue of a float plan rounds once.
* ``pow2``: ``s = 2^e`` with an integer ``e`` (``exponents``). In fixed point a per-tensor power of
  two is a shift the requantiser already has: ``s8.7`` times ``2^3`` is exactly ``s8.4``, so such a
  weight is stored as ``s8.4`` codes (``absorbed``; the same codes as ``s8.7``) and computes as an
  unscaled fixed-point weight.

Rules (``rule``), with ``top`` the element format's largest finite value and ``m`` a group's
reference magnitude (the tensor, or one output channel):

* ``maxabs``: ``m = max |w|``; ``s = m / top`` (float; then rounded up to fp32 so that
  ``m / s <= top``) or the smallest ``2^e`` with ``m <= top * 2^e`` (pow2). Nothing saturates.
* ``fit``: as ``maxabs`` but never below 1 (``s = max(1, .)``): weights that already fit the element
  format keep its resolution and only tensors that would saturate are scaled. The ``fixed16`` and
  ``hw`` presets use it (the tiny random-weight layer keeps ``s = 1``: its codes do not change).
* ``p<q>`` (``p99.9``, ``p99``): ``m`` = the q-th percentile of ``|w|`` in the group (numpy
  ``method="higher"``: an actual ``|w|`` value with at least q % of the group at or below it).
  Larger weights saturate at ``+-top * s``; they are counted (:mod:`refmodel.layer.clipping`).

A group whose ``m`` is 0 (all zeros) gets ``s = 1``.

Quantization (:func:`quantize_scaled`): ``codes = round(w / s)`` into the element format with the
weight entry's rounding and overflow (``w / s`` evaluated in float64: exact for ``pow2``; for
``float`` one float64 rounding precedes the format's rounding); decoded values = element value
times ``s``, exact in float64.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SCALE_GRANULARITIES", "SCALE_KINDS", "WeightScale", "parse_scale_rule", "validate_scale_rule",
           "format_top", "choose_scale", "quantize_scaled"]

SCALE_GRANULARITIES = ("none", "tensor", "channel")
SCALE_KINDS = ("float", "pow2")
_PCT = re.compile(r"^p(\d+(?:\.\d+)?)$")


def parse_scale_rule(rule: str) -> tuple[str, float | None]:
    """``"maxabs"`` -> ("maxabs", None); ``"fit"`` -> ("fit", None); ``"p99.9"`` ->
    ("percentile", 99.9). ``ValueError`` naming the rule otherwise."""
    r = str(rule).strip().lower()
    if r in ("maxabs", "fit"):
        return r, None
    m = _PCT.match(r)
    if m is not None:
        q = float(m.group(1))
        if 0.0 < q <= 100.0:
            return "percentile", q
        raise ValueError(f"scale rule {rule!r}: percentile must be in (0, 100]")
    raise ValueError(f"unknown scale rule {rule!r}; expected maxabs, fit or p<percentile> (e.g. p99.9)")


def validate_scale_rule(rule: str, where: str) -> str:
    try:
        parse_scale_rule(rule)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return str(rule).strip().lower()


def format_top(fmt: Any) -> float:
    """The largest finite value of a fixed or minifloat element format."""
    return float(fmt.max)


@dataclass
class WeightScale:
    """The scale of one weight: ``values`` float64 ``[1]`` (tensor) or ``[out]`` (channel);
    ``exponents`` int64 (same shape) for ``pow2``, else None. ``w ~= q * values[c]``."""

    granularity: str
    kind: str
    rule: str
    values: np.ndarray
    exponents: np.ndarray | None = None
    element_format: str = ""
    absorbed: bool = False  # a per-tensor 2^e on a fixed format: the tensor's fmt is s<W>.<F-e> (same codes)

    def along_rows(self, ndim: int) -> np.ndarray:
        """The scale shaped to broadcast against a weight of ``ndim`` dims (rows = channels)."""
        if self.granularity == "tensor":
            return self.values.reshape((1,) * ndim)
        return self.values.reshape((-1,) + (1,) * (ndim - 1))

    @property
    def is_unit(self) -> bool:
        """True when every scale is exactly 1 (the codes are those of the unscaled format)."""
        return bool(np.all(self.values == 1.0))

    def summary(self) -> dict[str, Any]:
        """Small JSON-ready description (kind, granularity, rule, count, min, max; pow2 exponents)."""
        d: dict[str, Any] = {"granularity": self.granularity, "kind": self.kind, "rule": self.rule,
                             "element_format": self.element_format,
                             "n": int(self.values.size), "min": float(self.values.min()),
                             "max": float(self.values.max())}
        if self.exponents is not None:
            d["exp_min"], d["exp_max"] = int(self.exponents.min()), int(self.exponents.max())
        return d


def _group_magnitude(a: np.ndarray, granularity: str, rule: str) -> np.ndarray:
    kind, q = parse_scale_rule(rule)
    mag = np.abs(a)
    flat = mag.reshape(1, -1) if granularity == "tensor" or a.ndim < 2 else mag.reshape(a.shape[0], -1)
    if kind == "percentile" and q is not None:
        return np.asarray(np.percentile(flat, float(q), axis=1, method="higher"), dtype=np.float64)
    return flat.max(axis=1)


def _fp32_at_least(s: np.ndarray, m: np.ndarray, top: float) -> np.ndarray:
    """fp32 values >= ``s`` with ``m <= s * top`` (exact test: fp32 * top is exact in float64 for
    the element formats used here, top having <= 24 significant bits)."""
    s32 = np.maximum(s.astype(np.float32), np.finfo(np.float32).tiny)
    low = s32.astype(np.float64) * top < m
    s32 = np.where(low, np.nextafter(s32, np.float32(np.inf)), s32)
    return s32.astype(np.float64)


def _pow2_exponent(m: np.ndarray, top: float) -> np.ndarray:
    """Smallest integer e with m <= top * 2^e (exact comparisons; m > 0)."""
    e = np.ceil(np.log2(m / top)).astype(np.int64)
    e = np.where(m > np.ldexp(top, e), e + 1, e)
    e = np.where(m <= np.ldexp(top, e - 1), e - 1, e)
    return e


def choose_scale(w: np.ndarray, fmt: Any, granularity: str, kind: str, rule: str) -> WeightScale:
    """The scale of ``w`` (float64, ``[out, ...]``) for element format ``fmt`` by ``rule`` (module
    docstring). ``granularity`` is ``tensor`` or ``channel`` (rows)."""
    if granularity not in ("tensor", "channel"):
        raise ValueError(f"choose_scale: granularity must be tensor or channel, got {granularity!r}")
    if kind not in SCALE_KINDS:
        raise ValueError(f"choose_scale: kind must be one of {', '.join(SCALE_KINDS)}, got {kind!r}")
    a = np.asarray(w, dtype=np.float64)
    if granularity == "channel" and a.ndim < 2:
        raise ValueError(f"choose_scale: per-channel scales need a matrix [out, in], got shape {list(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise ValueError("choose_scale: the weight has non-finite values")
    top = format_top(fmt)
    m = _group_magnitude(a, granularity, rule)
    fit = parse_scale_rule(rule)[0] == "fit"
    pos = m > 0
    mm = np.where(pos, m, top)  # zero groups: s = 1
    if kind == "pow2":
        e = np.where(pos, _pow2_exponent(mm, top), 0)
        if fit:
            e = np.maximum(e, 0)
        return WeightScale(granularity, kind, rule, np.ldexp(1.0, e), e.astype(np.int64))
    s = np.where(pos, mm / top, 1.0)
    if fit:
        s = np.maximum(s, 1.0)
    s = np.where(pos, _fp32_at_least(s, np.where(pos, mm, 0.0), top), 1.0)
    return WeightScale(granularity, kind, rule, s)


def quantize_scaled(w: np.ndarray, spec: str, rounding: str, overflow: str, granularity: str, kind: str,
                    rule: str) -> tuple[Any, WeightScale, np.ndarray]:
    """Round ``w / s`` into the element format ``spec``; returns ``(element QTensor, scale, w / s)``
    (the last is the pre-rounding value the clipping counters compare against)."""
    from ..numerics.formats import parse_format
    from .qtensor import store

    fmt = parse_format(spec)
    sc = choose_scale(w, fmt, granularity, kind, rule)
    sc.element_format = str(fmt)
    a = np.asarray(w, dtype=np.float64)
    pre = a / sc.along_rows(a.ndim)
    return store(pre, spec, rounding, overflow), sc, pre
