"""Base-2 exponential of a non-positive fixed-point argument: the per-element exp of the softmax
unit (``rtl/softmax_row.v``), with its LUT generated here.

Numeric contract of :func:`exp_neg` (``Exp2Params``)
----------------------------------------------------
* input ``d``: unsigned code, ``d = xmax - x >= 0`` with ``in_f`` fraction bits (u{in_w}.{in_f}:
  the difference of two s{in_w}.{in_f} scores fits ``in_w`` unsigned bits);
* ``t = d * LOG2E`` exact, ``LOG2E = round_half_up(log2(e) * 2**log2e_f)`` (23637 for 14 bits);
  ``t`` has ``in_f + log2e_f`` fraction bits;
* ``t`` rounded half-up to ``lut_bits = L`` fraction bits: ``tq = (t + 2**(sh-1)) >> sh`` with
  ``sh = in_f + log2e_f - L`` (>= 1);
* ``q = tq >> L`` (integer part), ``k = tq & (2**L - 1)`` (fraction index);
* ``e = (EXP2_LUT[k] << G) >> q`` (floor), and ``0`` when ``q >= lut_w + G``; ``EXP2_LUT[k] =
  round_half_up(2**(-k / 2**L) * 2**(lut_w - 1))`` (:func:`exp2_lut`, UQ1.(lut_w-1), values in
  (0.5, 1]);
* output ``e``: unsigned ``e_w = lut_w + G`` bits, format u{e_w}.{lut_w-1+G}, value
  ``~= exp(-d / 2**in_f)``; ``e(0) = 2**(lut_w-1+G)`` exactly (1.0).

:func:`exhaustive_error` measures ``e`` against float64 ``exp(-d/2**in_f)`` over every ``d``.

>>> exp2_lut(2, 16).tolist()   # 2^0, 2^-1/4, 2^-1/2, 2^-3/4 in UQ1.15
[32768, 27554, 23170, 19484]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.units.reciprocal import UnitError
from refmodel.numerics.units.table import UnitTable

__all__ = ["Exp2Params", "log2e_code", "exp2_lut", "exp_neg", "exhaustive_error", "prefloor_rel_error"]

# log2(e) to 40 decimal places (OEIS A007525), so the constant's rounding is decided exactly
_LOG2E = Fraction("1.4426950408889634073599246810018921374266")


def _round_half_up_checked(v: np.ndarray, what: str) -> np.ndarray:
    """round_half_up of positive float64 values whose exact value is irrational: refuse any
    value within 2^-20 of a tie (where float64 error could decide the rounding)."""
    fl = np.floor(v)
    frac = v - fl
    if np.any(np.abs(frac - 0.5) < 2.0 ** -20):
        i = int(np.argmax(np.abs(frac - 0.5) < 2.0 ** -20))
        raise ValueError(f"{what}: entry {i} ({v[i]!r}) is too close to a rounding tie to round from float64")
    return (fl + (frac >= 0.5)).astype(np.int64)


def log2e_code(frac_bits: int = 14) -> int:
    """``round_half_up(log2(e) * 2**frac_bits)``; 23637 for 14 bits (Q2.14)."""
    if not 1 <= frac_bits <= 40:
        raise ValueError(f"log2e_code: frac_bits must be in 1..40, got {frac_bits}")
    return math.floor(_LOG2E * (1 << frac_bits) + Fraction(1, 2))


def exp2_lut(lut_bits: int, width: int) -> np.ndarray:
    """EXP2_LUT codes: ``round_half_up(2**(-k / 2**lut_bits) * 2**(width-1))`` for ``k`` in
    ``0 .. 2**lut_bits - 1``, as int64 (UQ1.(width-1); entry 0 is ``2**(width-1)``)."""
    if not 0 <= lut_bits <= 16:
        raise ValueError(f"exp2_lut: lut_bits must be in 0..16, got {lut_bits}")
    if not 2 <= width <= 40:
        raise ValueError(f"exp2_lut: width must be in 2..40, got {width}")
    k = np.arange(1 << lut_bits, dtype=np.float64)
    v = np.exp2(-k / float(1 << lut_bits) + (width - 1))
    codes = _round_half_up_checked(v, f"exp2_lut({lut_bits}, {width})")
    codes[0] = 1 << (width - 1)  # exact
    return codes


@dataclass(frozen=True)
class Exp2Params:
    """Parameters of the exp path (module docstring): input s{in_w}.{in_f} scores, LUT of
    ``2**lut_bits`` x ``lut_w`` bits, ``guard`` extra output bits, log2(e) with ``log2e_f`` bits."""

    in_w: int = 16
    in_f: int = 8
    lut_bits: int = 6
    lut_w: int = 16
    guard: int = 4
    log2e_f: int = 14

    def __post_init__(self) -> None:
        if not 2 <= self.in_w <= 32:
            raise ValueError(f"exp2 in_w must be in 2..32, got {self.in_w}")
        if not 0 <= self.in_f <= self.in_w + 8:
            raise ValueError(f"exp2 in_f must be in 0..in_w+8, got {self.in_f}")
        if not 0 <= self.lut_bits <= 12:
            raise ValueError(f"exp2 lut_bits must be in 0..12, got {self.lut_bits}")
        if not 2 <= self.lut_w <= 30 or not 0 <= self.guard <= 16:
            raise ValueError(f"exp2 lut_w must be in 2..30 and guard in 0..16, got {self.lut_w}, {self.guard}")
        if not 1 <= self.log2e_f <= 24:
            raise ValueError(f"exp2 log2e_f must be in 1..24, got {self.log2e_f}")
        if self.round_shift < 1:
            raise ValueError(
                f"exp2: in_f + log2e_f ({self.in_f + self.log2e_f}) must exceed lut_bits ({self.lut_bits})"
            )

    @property
    def log2e(self) -> int:
        return log2e_code(self.log2e_f)

    @property
    def round_shift(self) -> int:
        """Bits dropped when rounding t to lut_bits fraction bits."""
        return self.in_f + self.log2e_f - self.lut_bits

    @property
    def e_w(self) -> int:
        """Width of e (unsigned), format u{e_w}.{e_w-1}."""
        return self.lut_w + self.guard

    @property
    def one(self) -> int:
        """Code of e = 1.0 (d = 0)."""
        return 1 << (self.e_w - 1)

    def lut(self) -> np.ndarray:
        return exp2_lut(self.lut_bits, self.lut_w)

    def table(self) -> UnitTable:
        """The EXP2_LUT the RTL loads: ``2**lut_bits`` codes in u{lut_w}.{lut_w-1}."""
        return UnitTable("exp2_lut", self.lut(), FixedFormat(self.lut_w, self.lut_w - 1, signed=False))


def exp_neg(d: npt.ArrayLike, params: Exp2Params, lut: np.ndarray | None = None) -> np.ndarray:
    """``e ~= exp(-d / 2**in_f)`` as u{e_w}.{e_w-1} codes for unsigned codes ``d`` (any shape,
    int64), bit-exact with the RTL (module docstring). ``ValueError`` for ``d`` outside
    ``0 .. 2**in_w - 1``."""
    p = params
    d = np.asarray(d, dtype=np.int64)
    if d.size and (int(d.min()) < 0 or int(d.max()) >= (1 << p.in_w)):
        raise ValueError(f"exp_neg: d must be in 0..{(1 << p.in_w) - 1}, got range {int(d.min())}..{int(d.max())}")
    lut = p.lut() if lut is None else lut
    sh = np.int64(p.round_shift)
    tq = (d * np.int64(p.log2e) + (np.int64(1) << (sh - 1))) >> sh
    q = tq >> np.int64(p.lut_bits)
    k = tq & np.int64((1 << p.lut_bits) - 1)
    under = q >= p.e_w
    e = (lut[k] << np.int64(p.guard)) >> np.where(under, 0, q)
    return np.where(under, 0, e).astype(np.int64)


def _exact(d: np.ndarray, p: Exp2Params) -> np.ndarray:
    return np.ldexp(np.exp(-np.ldexp(d.astype(np.float64), -p.in_f)), p.e_w - 1)


def exhaustive_error(params: Exp2Params, rel_min_lsb: float = 1024.0) -> UnitError:
    """Max error of :func:`exp_neg` against float64 ``2**(e_w-1) * exp(-d / 2**in_f)`` over every
    ``d`` in ``0 .. 2**in_w - 1``, in e LSB; relative error over exact values >= ``rel_min_lsb``
    LSB (below that the final floor dominates)."""
    p = params
    d = np.arange(1 << p.in_w, dtype=np.int64)
    e = exp_neg(d, p).astype(np.float64)
    exact = _exact(d, p)
    err = np.abs(e - exact)
    i = int(np.argmax(err))
    big = exact >= rel_min_lsb
    rel = float((err[big] / exact[big]).max()) if big.any() else 0.0
    return UnitError("exp2", float(err[i]), rel, int(d[i]), int(d.size), True, rel_min_lsb,
                     note=f"e = 2^(-d*log2e) u{p.e_w}.{p.e_w - 1}, L={p.lut_bits}, G={p.guard}")


def prefloor_rel_error(params: Exp2Params) -> float:
    """``max_d |e~(d) / exact(d) - 1|`` where ``e~ = LUT[k] * 2**(G - q)`` is e before the final
    floor shift (exact rational), over every ``d`` with ``q < e_w`` (exhaustive; float64 exact
    values are good to ~1e-15 relative, and 1e-12 is added for safety). This is the relative
    error of the LUT rounding, the t rounding and the log2(e) constant together; the floor adds
    an absolute error in [0, 1) LSB on top. Used by the softmax error bound."""
    p = params
    d = np.arange(1 << p.in_w, dtype=np.int64)
    sh = np.int64(p.round_shift)
    tq = (d * np.int64(p.log2e) + (np.int64(1) << (sh - 1))) >> sh
    q = tq >> np.int64(p.lut_bits)
    k = tq & np.int64((1 << p.lut_bits) - 1)
    ok = q < p.e_w
    pre = np.ldexp(p.lut()[k[ok]].astype(np.float64), (p.guard - q[ok]).astype(np.int64))
    rel = np.abs(pre / _exact(d[ok], p) - 1.0)
    return float(rel.max()) + 1e-12
