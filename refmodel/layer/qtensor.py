"""QTensor: a tensor of the quantized layer -- its codes, its format and its exact decoded values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..numerics.fixed import FixedArray, FixedFormat, quantize
from ..numerics.formats import parse_format
from ..numerics.minifloat import FloatArray, FloatFormat, encode

if TYPE_CHECKING:
    from ..numerics.block import BlockFormat, MXArray
    from .clipping import ClipCount
    from .weightscale import WeightScale

__all__ = ["QTensor", "FLOAT64_FMT", "store", "as_operand", "spec_of"]

#: float64 viewed as a FloatFormat (e11m52, IEEE): used to hand float64 operands to accumulate
FLOAT64_FMT = FloatFormat(11, 52, name="float64")


@dataclass
class QTensor:
    """``values`` are the exact float64 decoding of ``codes`` in ``fmt``.

    * fixed: ``codes`` int64, ``fmt`` :class:`FixedFormat`;
    * minifloat: ``codes`` unsigned raw bit patterns, ``fmt`` :class:`FloatFormat`;
    * MX block: ``mx`` holds the :class:`MXArray` (scales + element codes), ``codes`` is None;
    * float64 (no quantisation): ``fmt`` and ``codes`` are None.

    A scaled weight (:mod:`refmodel.layer.weightscale`) keeps its codes in the element format
    ``fmt``; ``scale`` is its :class:`WeightScale`, ``elements`` the decoded element values and
    ``values`` the decoded, scaled values ``elements * scale`` (what the float64 op sees as the
    quantized weight). A per-tensor power of two on a fixed-point element format is absorbed into
    ``fmt`` (``s8.7`` x 2^3 is stored as ``s8.4``, same codes; ``scale.element_format`` keeps
    ``s8.7``). ``clip`` holds a weight's saturation/underflow counts.
    """

    values: np.ndarray
    fmt: FixedFormat | FloatFormat | BlockFormat | None = None
    codes: np.ndarray | None = None
    mx: MXArray | None = None
    f64_t: np.ndarray | None = None  # weights only: a cached float64 BLAS operand (fixed codes.T / values.T)
    all_finite: bool | None = None  # weights only: cached "no NaN/inf" (None = not known)
    prepared: dict[Any, Any] | None = None  # weights only: operands the matmul kernels derived from it, by key
    scale: WeightScale | None = None  # weights only: WeightScale (codes * scale = values) or None
    elements: np.ndarray | None = None  # weights only, when scaled: decoded element values (unscaled)
    clip: ClipCount | None = None  # weights only: ClipCount of the quantization
    _view: QTensor | None = field(default=None, repr=False, compare=False)  # the cached unscaled() tensor

    def unscaled(self) -> QTensor:
        """The element tensor of a scaled weight (values = decoded codes, no scale; built once,
        with its own ``prepared`` cache); ``self`` when unscaled."""
        if self.scale is None or self.scale.absorbed:
            return self
        if self._view is None:
            ev = self.elements if self.elements is not None else self.values
            self._view = QTensor(ev, self.fmt, self.codes, self.mx, f64_t=self.f64_t, all_finite=self.all_finite,
                                 prepared={})
        return self._view

    def finite(self) -> bool:
        return self.all_finite if self.all_finite is not None else bool(np.all(np.isfinite(self.values)))

    @property
    def spec(self) -> str:
        return "float64" if self.fmt is None else str(self.fmt)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    @property
    def is_fixed(self) -> bool:
        return isinstance(self.fmt, FixedFormat)

    @property
    def fixed_fmt(self) -> FixedFormat:
        """``fmt`` of a fixed-point tensor (TypeError for any other)."""
        if not isinstance(self.fmt, FixedFormat):
            raise TypeError(f"tensor in {self.spec} is not fixed point")
        return self.fmt

    @property
    def raw_codes(self) -> np.ndarray:
        """``codes`` of a fixed-point or minifloat tensor (TypeError for MX and float64, which have none)."""
        if self.codes is None:
            raise TypeError(f"tensor in {self.spec} has no codes")
        return self.codes

    def fixed(self) -> FixedArray:
        fmt = self.fixed_fmt
        return FixedArray(self.raw_codes, fmt)

    def __getitem__(self, idx: Any) -> QTensor:
        return QTensor(self.values[idx], self.fmt, None if self.codes is None else self.codes[idx])


def spec_of(fmt: Any) -> str:
    return "float64" if fmt is None else str(fmt)


def store(values: np.ndarray, spec: str, rounding: str = "rne", overflow: str = "saturate", *,
          mx_axis: int = -1) -> QTensor:
    """Round float64 ``values`` into the format ``spec`` once (the plan's storage step).

    Fixed: :func:`quantize` (NaN is an error, +-inf saturates under ``saturate``); minifloat:
    :func:`encode` (the format's own overflow policy; NaN/inf propagate as the format allows);
    MX: :func:`mx_quantize` along ``mx_axis``; ``float64``: unchanged.
    """
    v = np.asarray(values, dtype=np.float64)
    if spec == "float64":
        return QTensor(v)
    fmt = parse_format(spec)
    if isinstance(fmt, FixedFormat):
        q = quantize(v, fmt, rounding, overflow)
        return QTensor(q.to_float(), fmt, q.codes)
    if isinstance(fmt, FloatFormat):
        a = encode(v, fmt, rounding)
        return QTensor(a.to_float(), fmt, a.codes)
    from ..numerics.block import mx_quantize

    m = mx_quantize(v, fmt, axis=mx_axis, rounding=rounding)
    return QTensor(m.to_float(), fmt, None, m)


def as_operand(t: QTensor) -> FixedArray | FloatArray:
    """The :mod:`accumulate` operand holding exactly ``t.values``: fixed codes, float codes, or
    (float64 / MX values) a float format wide enough to hold every value exactly."""
    if isinstance(t.fmt, FixedFormat):
        return FixedArray(t.raw_codes, t.fmt)
    if isinstance(t.fmt, FloatFormat):
        return FloatArray(t.raw_codes, t.fmt)
    if t.mx is not None:
        el = t.mx.fmt.element
        man = getattr(el, "man", 7)  # mxint8: 7 significant bits
        wide = FloatFormat(11, max(man, 1), name=None)
        return encode(t.values, wide)  # exact: element * 2^X fits e11m<man>
    return encode(t.values, FLOAT64_FMT)
