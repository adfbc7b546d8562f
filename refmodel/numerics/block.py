"""OCP Microscaling (MX v1.0) block formats: a shared E8M0 scale per block of 32 elements.

An MX block is ``k = 32`` element codes plus one scale code ``X`` (E8M0: ``2**(code - 127)``, code
``0xFF`` = NaN); element ``i`` decodes to ``X * P_i``. Element formats are kept apart from the
block formats (as in ml_dtypes): a :class:`BlockFormat` names its element format and block size.

=============  ===========================  =========  =========================================
preset         element                      emax_elem  element values
=============  ===========================  =========  =========================================
mxfp8_e4m3     e4m3fn (saturating)           8         +-448 max, subnormals down to 2^-9
mxfp8_e5m2     e5m2 (saturating)            15         +-57344 max, subnormals down to 2^-16
mxfp6_e3m2     e3m2                          4         +-28 max, down to 2^-4
mxfp6_e2m3     e2m3                          2         +-7.5 max, down to 2^-3
mxfp4          e2m1                          2         +-6 max, down to 0.5
mxint8         int8, code / 64 (s8.6)        0         -127/64 .. 127/64 (code -128 unused)
=============  ===========================  =========  =========================================

Quantisation (:func:`mx_quantize`, per block along ``axis``; the axis is zero-padded to a
multiple of the block size, reshaped to blocks, and both are undone afterwards):

1. ``amax = max |v|`` over the block. NaN or +-inf anywhere: scale = NaN (``0xFF``), the whole block
   decodes to NaN, element codes are stored as 0.
2. ``X = floor(log2(amax)) - emax_elem`` (exact, from the float64 exponent bits), clamped to the
   E8M0 range ``[-127, 127]``; an all-zero block gets ``X = -127`` (code 0).
3. ``P_i = encode(v_i / 2**X, element, rounding)`` with saturation to +-max of the element format
   (the division is exact: it is done in the exponent, never as a float64 operation). mxint8:
   ``round(v_i * 2**(6 - X))`` clamped to ``[-127, 127]``.

Departures from microsoft/microxcaling (``mx/mx_ops.py``, ``_quantize_mx``), stated on purpose:
  * a shared exponent above the E8M0 range (only float64 inputs beyond float32's range can reach
    it) is clamped to 127 and the elements saturate; microxcaling makes that scale NaN;
  * ``floor(log2(amax))`` is exact; microxcaling takes ``torch.log2`` in float32, whose rounding
    gives one too many for ``amax`` just below a large power of two (e.g. ``2**100 * (1 - 2**-24)``);
  * inputs are exact float64 values and elements are integer codes, rounded once; microxcaling
    fake-quantises in float32 (values, no codes);
  * the default element rounding is ``rne``; microxcaling's default ``round="nearest"`` is ties
    away from zero (its ``"even"`` is rne). Any :class:`~refmodel.numerics.rounding.Rounding` mode
    may be passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .minifloat import PRESETS, FloatFormat, _as_float_input, _encode_kernel, _table_ok, decode, encode
from .rounding import STOCHASTIC_BITS, Rounding, _resolve_random, round_float_to_int

__all__ = ["BlockFormat", "MXArray", "BLOCK_PRESETS", "mx_quantize", "INT8"]

#: element spec for MXINT8: 8-bit two's complement, value = code * 2**-6
INT8 = "int8"
_INT8_FRAC = 6
_INT8_MAX = 127  # the spec leaves -128 unused: elements are symmetric


@dataclass(frozen=True)
class BlockFormat:
    """MX block format: ``element`` (a :class:`FloatFormat`, stored with ``overflow='saturate'`` as
    the MX spec requires, or ``"int8"``), ``scale`` (E8M0: an unsigned power-of-two format) and
    ``block`` (elements per shared scale, 32 in OCP MX v1.0). ``name`` is a display label only."""

    element: FloatFormat | str  # a FloatFormat, or "int8" (INT8)
    scale: FloatFormat = field(default_factory=lambda: PRESETS["e8m0"])  # a name ("e8m0") is parsed
    block: int = 32
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        el = self.element
        if isinstance(el, str) and el.strip().lower() == INT8:
            el = INT8
        else:
            el = FloatFormat.parse(el)
            if el.overflow != "saturate":
                el = el.with_overflow("saturate")
        object.__setattr__(self, "element", el)
        sc = FloatFormat.parse(self.scale)
        if sc.man != 0 or sc.signed or sc.has_zero:
            raise ValueError(f"BlockFormat scale must be an unsigned power-of-two format like e8m0, got {sc}")
        object.__setattr__(self, "scale", sc)
        if isinstance(self.block, bool) or not isinstance(self.block, (int, np.integer)) or self.block < 1:
            raise ValueError(f"BlockFormat block must be a positive int, got {self.block!r}")

    # ---- derived quantities -------------------------------------------------------------
    @property
    def is_int(self) -> bool:
        return self.element == INT8

    @property
    def emax_elem(self) -> int:
        """Exponent of the element format's largest normal (int8: 0, since 127/64 < 2)."""
        el = self.element
        return el.emax if isinstance(el, FloatFormat) else 0

    @property
    def element_bits(self) -> int:
        el = self.element
        return el.bits if isinstance(el, FloatFormat) else 8

    @property
    def bits_per_element(self) -> float:
        return self.element_bits + self.scale.bits / self.block

    @property
    def scale_emin(self) -> int:
        return self.scale.emin

    @property
    def scale_emax(self) -> int:
        return self.scale.emax

    @property
    def element_max(self) -> float:
        el = self.element
        return el.max if isinstance(el, FloatFormat) else _INT8_MAX / (1 << _INT8_FRAC)

    # ---- spec strings -------------------------------------------------------------------
    def __str__(self) -> str:
        base = self.name
        if base is None:
            for n, f in BLOCK_PRESETS.items():
                if f.element == self.element and f.scale == self.scale:
                    base = n
                    break
        if base is None:
            return f"mx(element={self.element}, scale={self.scale}, block={self.block})"
        return base if self.block == 32 else f"{base}@{self.block}"

    @property
    def spec(self) -> str:
        return str(self)

    @classmethod
    def parse(cls, spec: str | BlockFormat) -> BlockFormat:
        """``mxfp8_e4m3``, ``mxfp8_e5m2``, ``mxfp6_e3m2``, ``mxfp6_e2m3``, ``mxfp4``, ``mxint8``,
        optionally ``@<block>`` for a block size other than 32 (``mxfp4@16``)."""
        if isinstance(spec, BlockFormat):
            return spec
        text = str(spec).strip().lower()
        m = re.fullmatch(r"([a-z0-9_]+)(?:@(\d+))?", text)
        if not m or m.group(1) not in BLOCK_PRESETS:
            raise ValueError(
                f"unknown MX block format {spec!r}; expected one of {', '.join(BLOCK_PRESETS)} "
                f"(optionally @<block size>)"
            )
        f = BLOCK_PRESETS[m.group(1)]
        if m.group(2) is not None:
            b = int(m.group(2))
            if b < 1:
                raise ValueError(f"bad MX block format {spec!r}: block size must be >= 1")
            f = BlockFormat(f.element, f.scale, b, name=f.name)
        return f


#: OCP MX v1.0 concrete formats (block 32, E8M0 scale).
BLOCK_PRESETS: dict[str, BlockFormat] = {
    "mxfp8_e4m3": BlockFormat(PRESETS["e4m3fn"], name="mxfp8_e4m3"),
    "mxfp8_e5m2": BlockFormat(PRESETS["e5m2"], name="mxfp8_e5m2"),
    "mxfp6_e3m2": BlockFormat(PRESETS["e3m2"], name="mxfp6_e3m2"),
    "mxfp6_e2m3": BlockFormat(PRESETS["e2m3"], name="mxfp6_e2m3"),
    "mxfp4": BlockFormat(PRESETS["e2m1"], name="mxfp4"),
    "mxint8": BlockFormat(INT8, name="mxint8"),
}


@dataclass(frozen=True, eq=False)
class MXArray:
    """Quantised MX tensor.

    ``scales``: E8M0 codes (uint8), ``shape`` with ``shape[axis]`` replaced by the number of
    blocks ``ceil(shape[axis] / block)``; ``elements``: element codes in the original ``shape``
    (uint8 raw codes for float elements, int8 two's complement codes for mxint8); ``axis``: the
    blocked axis (non-negative). Block ``j`` covers indices ``j*block .. j*block + block - 1`` of
    that axis (the last block was zero-padded).
    """

    scales: np.ndarray
    elements: np.ndarray
    fmt: BlockFormat
    axis: int
    shape: tuple[int, ...]

    def scale_values(self) -> np.ndarray:
        """float64 per block: ``2**X``, or NaN for a poisoned block."""
        return decode(self.scales, self.fmt.scale)

    def element_values(self) -> np.ndarray:
        """float64 per element, before scaling (``P_i``)."""
        if self.fmt.is_int:
            return np.ldexp(self.elements.astype(np.float64), -_INT8_FRAC)
        return decode(self.elements, self.fmt.element)

    def to_float(self) -> np.ndarray:
        """Decoded values ``2**X * P_i`` (exact float64); NaN blocks decode to NaN everywhere."""
        s = np.repeat(self.scale_values(), self.fmt.block, axis=self.axis)
        s = np.take(s, np.arange(self.shape[self.axis]), axis=self.axis)
        return self.element_values() * s

    def identical(self, other: MXArray) -> bool:
        return (
            isinstance(other, MXArray)
            and self.fmt == other.fmt
            and self.axis == other.axis
            and self.shape == other.shape
            and np.array_equal(self.scales, other.scales)
            and np.array_equal(self.elements, other.elements)
        )

    def __repr__(self) -> str:
        return (
            f"MXArray(fmt={self.fmt}, shape={self.shape}, axis={self.axis}, "
            f"scales={self.scales.ravel()[:4].tolist()}{'...' if self.scales.size > 4 else ''}, "
            f"elements={self.elements.ravel()[:8].tolist()}{'...' if self.elements.size > 8 else ''})"
        )


def _to_blocks(a: np.ndarray, axis: int, block: int) -> tuple[np.ndarray, int]:
    """Move ``axis`` last, zero-pad it to a multiple of ``block``, reshape to (..., nb, block)."""
    m = np.moveaxis(a, axis, -1)
    n = m.shape[-1]
    nb = max(1, -(-n // block))
    pad = nb * block - n
    if pad:
        m = np.concatenate([m, np.zeros(m.shape[:-1] + (pad,), dtype=m.dtype)], axis=-1)
    return m.reshape(m.shape[:-1] + (nb, block)), n


def _from_blocks(b: np.ndarray, axis: int, n: int) -> np.ndarray:
    m = b.reshape(b.shape[:-2] + (-1,))[..., :n]
    return np.ascontiguousarray(np.moveaxis(m, -1, axis))


def mx_quantize(
    x: np.ndarray | Iterable[float],
    fmt: BlockFormat | str,
    axis: int = -1,
    rounding: Rounding | str = Rounding.RNE,
    *,
    seed: int | np.random.Generator | None = None,
    random_bits: np.ndarray | None = None,
) -> MXArray:
    """Real values -> :class:`MXArray` with a shared scale per block of ``fmt.block`` along ``axis``.

    Numeric contract (module docstring for the rules and the departures from microxcaling):
      * input: float64 / float32 / float16 values, taken exactly; any shape with ``ndim >= 1``;
      * scale: ``X = clamp(floor(log2(max|v|)) - emax_elem, -127, 127)``, exact; all-zero block
        -> ``2**-127``; NaN or inf in a block -> scale NaN (``0xFF``) and element codes 0;
      * elements: ``v / 2**X`` rounded once under ``rounding`` (default rne) to the element format,
        saturating at +-max; mxint8 rounds ``v * 2**(6 - X)`` to an integer and clamps to
        ``[-127, 127]`` (``-128`` is never produced);
      * stochastic rounding: one random integer per element (``STOCHASTIC_BITS`` bits), from
        ``random_bits`` (shape of ``x``) or ``seed``; padding elements draw bits too when seeded.
    Raises ``ValueError`` for an unknown format, a bad axis or a 0-d input.
    """
    fmt = BlockFormat.parse(fmt)
    mode = Rounding.parse(rounding)
    el_fmt = fmt.element if isinstance(fmt.element, FloatFormat) else None  # None: int8 elements
    a = _as_float_input(x, fmt)
    with np.errstate(invalid="ignore"):
        a = a.astype(np.float64, copy=False)
    if a.ndim == 0:
        raise ValueError("mx_quantize needs an array with at least one axis, got a scalar")
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(f"mx_quantize: axis {axis} is out of range for an array of shape {a.shape}")
    axis = axis % a.ndim
    B = fmt.block
    blocks, n = _to_blocks(a, axis, B)

    amax = np.max(np.abs(blocks), axis=-1)  # NaN propagates
    bad = ~np.isfinite(amax)
    _, e = np.frexp(np.where(bad, 1.0, amax))  # amax = m * 2^e, m in [0.5, 1): floor(log2) = e - 1
    X = np.where(amax > 0, e.astype(np.int64) - 1 - fmt.emax_elem, fmt.scale_emin)
    X = np.clip(X, fmt.scale_emin, fmt.scale_emax)
    scale_codes = np.where(bad, (1 << fmt.scale.bits) - 1, X + fmt.scale.bias).astype(fmt.scale.code_dtype)

    v = np.where(bad[..., None], 0.0, blocks)
    rbits = None
    if mode is Rounding.STOCHASTIC:
        if random_bits is not None:
            r = np.broadcast_to(np.asarray(random_bits, dtype=np.int64), a.shape)
            rbits, _ = _to_blocks(r, axis, B)
        rbits = _resolve_random(blocks.shape, STOCHASTIC_BITS, seed, rbits)

    if el_fmt is None:  # int8 elements
        y = np.ldexp(v, (_INT8_FRAC - X[..., None]).astype(np.int32))  # exact unless below 2^-1074
        lost = (y == 0) & (v != 0)  # only a far-below-the-LSB value; keep its sign for floor/ceil
        y = np.where(lost, np.copysign(5e-324, v), y)
        q = round_float_to_int(y, mode, seed=seed, random_bits=rbits)
        codes = np.clip(q, -_INT8_MAX, _INT8_MAX).astype(np.int8)
    elif mode is not Rounding.STOCHASTIC and _table_ok(el_fmt):
        # fast path: scale in float64 (exact: a power of two, no overflow since |v / 2^X| <
        # 2^(emax_elem + 1) or X = 127), then the float64 encoder (round-to-odd + table). A
        # result below 2^-1074 underflows to 0: those are far below half the element's smallest
        # subnormal, so keeping them as +-2^-1074 preserves sign and sticky bit for floor/ceil.
        y = np.ldexp(v, (-X[..., None]).astype(np.int32))
        y = np.where((y == 0) & (v != 0), np.copysign(5e-324, v), y)
        codes = encode(y, el_fmt, mode).codes
    else:
        eoff = np.broadcast_to(-X[..., None], blocks.shape).reshape(-1)
        flat_r = None if rbits is None else rbits.reshape(-1)
        codes = _encode_kernel(v.reshape(-1), el_fmt, mode, flat_r, STOCHASTIC_BITS, eoff)
        codes = codes.reshape(blocks.shape).astype(el_fmt.code_dtype)
    codes = np.where(bad[..., None], 0, codes).astype(codes.dtype)
    elements = _from_blocks(codes, axis, n)
    scales = np.ascontiguousarray(np.moveaxis(scale_codes, -1, axis))
    return MXArray(scales, elements, fmt, axis, tuple(a.shape))
