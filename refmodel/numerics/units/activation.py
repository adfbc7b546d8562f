"""Activation table unit: GELU (tanh and erf forms) and SiLU as one full lookup table.

Model of ``rtl/act_table.v``. The unit maps every input code of a fixed-point format with at most
16 bits to an output code through a ROM holding *every* input's result, so the table is the whole
numeric contract and verification is exhaustive (2^IN_W vectors).

Numeric contract (one entry per input code ``q``):

* input ``in_fmt`` (e.g. ``s16.12``, width <= 16), value ``x = q * 2^-IN_F``;
* ``f(x)`` in float64 (formulas in :func:`act_ref`), scaled by ``2^OUT_F`` (exact);
* ONE rounding, ``half_up`` (ties toward +inf, ``floor(v + 1/2)``), then saturation to
  ``out_fmt`` (e.g. ``s16.8``): error <= 0.5 output LSB (+ float64 evaluation error, < 1e-9 LSB
  for these formats) wherever the result is not clamped; clamped entries are counted by
  :func:`table_error`;
* the table is indexed by the input's *bit pattern* ``q & (2^IN_W - 1)`` (two's complement for
  signed inputs), which is the ``$readmemh`` word address in the RTL.

Why a full table and not the TOSA 513-entry interpolated table: at IN_W <= 16 the full table is
at most 64 Ki words (1 Mbit at 16-bit output), it is exact to 0.5 LSB, has no interpolation
rounding to specify, and one unit serves GELU and SiLU by loading a different file. The
interpolated variant (9-bit index + 7-bit fraction, 23-bit result) is not implemented.

RTL latency: one clock (one output register per lane), one beat per clock at full rate, ``last``
passed through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from refmodel.numerics import f64math
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.rounding import Rounding, round_float_to_int
from refmodel.numerics.units.reciprocal import UnitError
from refmodel.numerics.units.table import UnitTable

__all__ = [
    "KINDS",
    "ActParams",
    "act_ref",
    "act_table",
    "act_lookup",
    "table_error",
]

#: Supported functions (``gelu_tanh``: GPT-2 ``gelu_new``; ``gelu_erf``: BERT; ``silu``: Llama).
KINDS = ("gelu_tanh", "gelu_erf", "silu")
#: Largest input width with a full table (2^16 words).
MAX_IN_W = 16

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown activation kind {kind!r}; expected one of: {', '.join(KINDS)}")
    return kind


@dataclass(frozen=True)
class ActParams:
    """Configuration of the table unit.

    ``kind`` in :data:`KINDS`; ``in_fmt`` fixed-point input, width 1..16; ``out_fmt`` fixed-point
    output, width 1..32; ``lanes`` elements per beat (each lane has its own read port on the
    same table contents).
    """

    kind: str
    in_fmt: FixedFormat
    out_fmt: FixedFormat
    lanes: int = 1

    def __post_init__(self) -> None:
        _kind(self.kind)
        object.__setattr__(self, "in_fmt", FixedFormat.parse(self.in_fmt))
        object.__setattr__(self, "out_fmt", FixedFormat.parse(self.out_fmt))
        if self.in_fmt.width > MAX_IN_W:
            raise ValueError(
                f"act_table: input format {self.in_fmt} is wider than {MAX_IN_W} bits "
                f"(a full table would need 2^{self.in_fmt.width} words)"
            )
        if self.out_fmt.width > 32:
            raise ValueError(f"act_table: output format {self.out_fmt} is wider than 32 bits")
        if not 1 <= int(self.lanes) <= 64:
            raise ValueError(f"act_table: lanes must be in 1..64, got {self.lanes}")

    @property
    def depth(self) -> int:
        """Number of table words, 2^IN_W."""
        return 1 << self.in_fmt.width

    def to_hdl(self) -> dict[str, int]:
        """Integer parameters of ``rtl/act_table.v`` (the table file is the string parameter
        ``TABLE_MEMFILE``, passed separately)."""
        return {"IN_W": self.in_fmt.width, "OUT_W": self.out_fmt.width, "LANES": int(self.lanes)}

    def table(self) -> UnitTable:
        """The ROM contents (:func:`act_table`) in ``out_fmt``, one word per input bit pattern."""
        return UnitTable("act_table", act_table(self.kind, self.in_fmt, self.out_fmt), self.out_fmt)


def act_ref(kind: str, x: np.ndarray) -> np.ndarray:
    """float64 reference of the activation ``kind`` at ``x`` (float64 array), with the
    reproducible tanh / erf of :mod:`refmodel.numerics.f64math` (the same table on every machine).

    * ``gelu_tanh``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
    * ``gelu_erf``:  ``0.5 x (1 + erf(x / sqrt 2))``
    * ``silu``:      ``x sigmoid(x) = 0.5 x (1 + tanh(x / 2))`` (the tanh form never overflows)
    """
    kind = _kind(kind)
    x = np.asarray(x, dtype=np.float64)
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + f64math.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    if kind == "gelu_erf":
        return 0.5 * x * (1.0 + f64math.erf(x / math.sqrt(2.0)))
    return 0.5 * x * (1.0 + f64math.tanh(0.5 * x))


def _input_codes(in_fmt: FixedFormat) -> np.ndarray:
    """Signed (or unsigned) input code of every table address 0 .. 2^IN_W - 1."""
    addr = np.arange(1 << in_fmt.width, dtype=np.int64)
    if in_fmt.signed:
        sign = np.int64(1) << np.int64(in_fmt.width - 1)
        return (addr ^ sign) - sign
    return addr


def act_table(kind: str, in_fmt: FixedFormat | str, out_fmt: FixedFormat | str) -> np.ndarray:
    """The full table: int64 output codes, one per input bit pattern (address 0 .. 2^IN_W - 1).

    Entry ``a`` holds ``sat_out(round_half_up(f(q * 2^-IN_F) * 2^OUT_F))`` where ``q`` is the
    code whose bit pattern is ``a``. See the module docstring for the contract.
    """
    p = ActParams(kind, FixedFormat.parse(in_fmt), FixedFormat.parse(out_fmt))
    q = _input_codes(p.in_fmt)
    x = np.ldexp(q.astype(np.float64), -p.in_fmt.frac)
    y = np.ldexp(act_ref(p.kind, x), p.out_fmt.frac)
    r = round_float_to_int(y, Rounding.HALF_UP)
    r = np.clip(r, float(p.out_fmt.min_code), float(p.out_fmt.max_code))
    return r.astype(np.int64)


def act_lookup(x_codes: np.ndarray, table: np.ndarray, params: ActParams) -> np.ndarray:
    """Model of the RTL lookup: ``table[x & (2^IN_W - 1)]`` as int64 output codes, any shape.

    ``x_codes`` must lie in ``params.in_fmt``'s code range (ValueError naming the first bad code);
    ``table`` must have ``2^IN_W`` entries. Latency in RTL: 1 clock.
    """
    x = np.asarray(x_codes, dtype=np.int64)
    table = np.asarray(table, dtype=np.int64)
    if table.shape != (params.depth,):
        raise ValueError(f"act_lookup: table has shape {table.shape}, expected ({params.depth},)")
    if x.size:
        lo, hi = params.in_fmt.min_code, params.in_fmt.max_code
        bad = (x < lo) | (x > hi)
        if bad.any():
            raise ValueError(
                f"act_lookup: input code {int(x[bad].ravel()[0])} outside {params.in_fmt} ({lo}..{hi})"
            )
    return table[x & np.int64(params.depth - 1)]


def table_error(
    kind: str, in_fmt: FixedFormat | str, out_fmt: FixedFormat | str, table: np.ndarray | None = None
) -> UnitError:
    """Exhaustive error of ``table`` (default: :func:`act_table`) against float64 ``f``, in
    output LSB, as the shared :class:`~refmodel.numerics.units.reciprocal.UnitError`:

    ``max_abs_err`` is the max of ``|table - f * 2^OUT_F|`` over the entries whose rounded value
    is inside the output range (<= 0.5 by construction), ``where`` the input code attaining it,
    ``max_rel_err`` the max relative error where ``|f| >= 1`` output LSB, ``n = 2^IN_W``,
    ``exhaustive = True``; ``note`` gives the number of clamped entries and the max error
    including them (the saturation error)."""
    in_fmt = FixedFormat.parse(in_fmt)
    out_fmt = FixedFormat.parse(out_fmt)
    if table is None:
        table = act_table(kind, in_fmt, out_fmt)
    q = _input_codes(in_fmt)
    x = np.ldexp(q.astype(np.float64), -in_fmt.frac)
    exact = np.ldexp(act_ref(kind, x), out_fmt.frac)
    err = np.abs(np.asarray(table, dtype=np.float64) - exact)
    # half_up clamps exactly these entries
    sat = (exact >= out_fmt.max_code + 0.5) | (exact < out_fmt.min_code - 0.5)
    inside = ~sat
    if inside.any():
        e_in = np.where(inside, err, -1.0)
        i = int(np.argmax(e_in))
        max_lsb, worst = float(e_in[i]), int(q[i])
    else:
        max_lsb, worst = 0.0, 0
    big = inside & (np.abs(exact) >= 1.0)
    rel = float((err[big] / np.abs(exact[big])).max()) if big.any() else 0.0
    return UnitError(
        f"act_table[{kind}]", max_lsb, rel, worst, int(q.size), True, 1.0,
        note=f"{int(sat.sum())} clamped entries; max error including them {float(err.max()):.6g} LSB; "
        f"{in_fmt} -> {out_fmt}",
    )
