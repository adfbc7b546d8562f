"""Requantiser: integer model of ``rtl/requant.v`` (multiply by an unsigned multiplier, rounding
arithmetic right shift, saturate).

Numeric contract of :func:`requant`
-----------------------------------
* input ``x``: signed ``IN_W``-bit code (format ``s{IN_W}.{f_in}`` for any ``f_in``: the unit is
  scale-agnostic, it works on codes);
* multiplier ``M``: unsigned ``M_W``-bit code (a runtime input, one per beat; tie it to a constant
  for a static scale; ``M = 1`` gives the plain rounding shifter);
* product ``P = x * M`` exact (``IN_W + M_W`` bits, signed);
* ``r = round(P / 2**SHIFT)`` with rounding ``ROUND`` in {``floor``, ``half_up``, ``rne``},
  implemented exactly as :func:`refmodel.numerics.rounding.round_shift` (floor shift, round bit =
  bit ``SHIFT-1``, sticky = OR of the bits below; ``half_up`` adds the round bit, ``rne`` adds
  ``round & (sticky | lsb)``); ties toward +inf for ``half_up`` (-2.5 -> -2);
* ``y = clamp(r, -2**(OUT_W-1), 2**(OUT_W-1) - 1)`` (saturate), ``sat = (y != r)``.
  Output format ``s{OUT_W}.{f_in + f_M - SHIFT}`` where ``f_M`` is the multiplier's fraction bits.
* RTL latency: 2 cycles (product register, result register), one beat per clock, the pipeline
  stalls as a whole when ``m_ready`` is low.

Error against the exact real ``x * M / 2**SHIFT`` before saturation: <= 0.5 LSB (``half_up``,
``rne``), < 1 LSB (``floor``).

>>> p = RequantParams(in_w=16, m_w=8, shift=4, out_w=8, rounding="half_up")
>>> requant([24, -24, 40, 4000], 1, p).tolist()   # 1.5 -> 2, -1.5 -> -1, 2.5 -> 3, saturate
[2, -1, 3, 127]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from refmodel.numerics.rounding import Rounding, round_shift

__all__ = ["RequantParams", "ROUND_MODE_CODES", "requant", "requant_with_flags", "choose_multiplier",
           "choose_channel_multipliers"]

#: RTL ``ROUND_MODE`` parameter value for each supported rounding mode.
ROUND_MODE_CODES: dict[Rounding, int] = {Rounding.FLOOR: 0, Rounding.HALF_UP: 1, Rounding.RNE: 2}


@dataclass(frozen=True)
class RequantParams:
    """Parameters of the requantiser (see module docstring). ``in_w + m_w <= 62``,
    ``0 <= shift <= in_w + m_w``, ``2 <= out_w <= 62``, rounding in floor | half_up | rne."""

    in_w: int = 32
    m_w: int = 16
    shift: int = 16
    out_w: int = 8
    rounding: Rounding = Rounding.HALF_UP  # a name ("rne") is parsed in __post_init__

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounding", Rounding.parse(self.rounding))
        if self.rounding not in ROUND_MODE_CODES:
            names = ", ".join(m.value for m in ROUND_MODE_CODES)
            raise ValueError(f"requant rounding must be one of {names}, got {self.rounding.value!r}")
        if not (2 <= self.in_w and 1 <= self.m_w and self.in_w + self.m_w <= 62):
            raise ValueError(f"requant needs in_w >= 2, m_w >= 1, in_w + m_w <= 62; got in_w={self.in_w}, m_w={self.m_w}")
        if not 0 <= self.shift <= self.in_w + self.m_w:
            raise ValueError(f"requant shift must be in 0..{self.in_w + self.m_w}, got {self.shift}")
        if not 2 <= self.out_w <= 62:
            raise ValueError(f"requant out_w must be in 2..62, got {self.out_w}")

    def to_hdl(self) -> dict[str, int]:
        """Verilog parameters of ``rtl/requant.v``."""
        return {
            "IN_W": self.in_w,
            "M_W": self.m_w,
            "SHIFT": self.shift,
            "OUT_W": self.out_w,
            "ROUND_MODE": ROUND_MODE_CODES[self.rounding],
        }

    @property
    def latency(self) -> int:
        """RTL cycles from input transfer to output valid."""
        return 2


def _check_range(a: np.ndarray, lo: int, hi: int, what: str) -> None:
    if a.size and (int(a.min()) < lo or int(a.max()) > hi):
        bad = (a < lo) | (a > hi)
        idx = np.unravel_index(int(np.argmax(bad)), a.shape) if a.ndim else ()
        raise ValueError(f"requant: {what} {int(a[idx])} at index {tuple(int(i) for i in idx)} is outside {lo}..{hi}")


def requant_with_flags(x: np.ndarray, mult: np.ndarray | int, params: RequantParams) -> tuple[np.ndarray, np.ndarray]:
    """:func:`requant` plus the saturation flag per element (``True`` where clamping changed the
    value; the RTL's ``m_sat``). ``mult`` broadcasts against ``x`` (scalar, per channel, ...)."""
    p = params
    x = np.asarray(x, dtype=np.int64)
    m = np.asarray(mult, dtype=np.int64)
    _check_range(x, -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1, "input code")
    _check_range(m, 0, (1 << p.m_w) - 1, "multiplier")
    prod = x * m  # |prod| < 2**61: exact
    r = round_shift(prod, p.shift, p.rounding)
    lo, hi = -(1 << (p.out_w - 1)), (1 << (p.out_w - 1)) - 1
    y = np.clip(r, lo, hi)
    return y, y != r


def requant(x: np.ndarray, mult: np.ndarray | int, params: RequantParams) -> np.ndarray:
    """Requantise signed ``IN_W``-bit codes: ``clamp(round_shift(x * mult, SHIFT, ROUND))`` to
    signed ``OUT_W`` bits (module docstring). int64 in, int64 out, any shape; ``ValueError`` for
    an input or multiplier outside its width."""
    return requant_with_flags(x, mult, params)[0]


def choose_multiplier(scale: float, m_w: int, max_shift: int = 62) -> tuple[int, int]:
    """Dyadic approximation of a real ``scale > 0``: ``(M, SHIFT)`` with ``M < 2**m_w`` as large
    as possible (``M >= 2**(m_w-1)`` unless ``SHIFT`` hits 0 or ``max_shift``), ``M =
    round_half_up(scale * 2**SHIFT)``. Relative error of ``M / 2**SHIFT`` <= ``2**-m_w``."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"choose_multiplier: scale must be a finite float > 0, got {scale!r}")
    if not 1 <= m_w <= 62:
        raise ValueError(f"choose_multiplier: m_w must be in 1..62, got {m_w}")
    _, e = math.frexp(scale)  # scale = f * 2**e, f in [0.5, 1)
    shift = min(max(m_w - e, 0), max_shift)
    m = _round_half_up_scaled(scale, shift)
    if m >= (1 << m_w):  # rounding carried out of the top bit
        if shift == 0:
            raise ValueError(f"choose_multiplier: scale {scale} needs more than {m_w} multiplier bits")
        shift -= 1
        m = _round_half_up_scaled(scale, shift)
    if m == 0:
        raise ValueError(f"choose_multiplier: scale {scale} underflows with max_shift={max_shift}")
    return int(m), int(shift)


def _round_half_up_scaled(scale: float, shift: int) -> int:
    """floor(scale * 2**shift + 1/2), exactly (Fraction)."""
    return math.floor(Fraction(scale) * (1 << shift) + Fraction(1, 2))


def choose_channel_multipliers(scales: np.ndarray, m_w: int, max_shift: int = 62) -> tuple[np.ndarray, int]:
    """Per-channel multipliers sharing one ``SHIFT`` (one requantiser, a multiplier per output
    channel fed on ``s_mult``): ``SHIFT`` is :func:`choose_multiplier`'s for the largest scale,
    ``M_c = round_half_up(scale_c * 2**SHIFT)`` (exact), every ``M_c < 2**m_w``.

    Error: ``|M_c / 2**SHIFT - scale_c| <= 2**-(SHIFT + 1)``, i.e. relative ``2**-m_w`` for the
    largest scale and proportionally more for smaller ones; scales that are powers of two within
    ``2**(m_w-1)`` of the largest are exact. ``ValueError`` if a scale rounds to ``M = 0``
    (raise ``m_w``).

    >>> choose_channel_multipliers(np.array([0.75, 0.5, 0.1]), 8)
    (array([192, 128,  26]), 8)
    """
    s = np.asarray(scales, dtype=np.float64).ravel()
    if s.size == 0 or not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError("choose_channel_multipliers: scales must be finite and > 0")
    _, shift = choose_multiplier(float(s.max()), m_w, max_shift)
    m = np.array([_round_half_up_scaled(float(v), shift) for v in s], dtype=np.int64)
    if m.max() >= (1 << m_w):  # the largest scale itself carried: choose_multiplier already avoided it
        raise AssertionError("choose_channel_multipliers: multiplier overflow")
    if m.min() == 0:
        i = int(np.argmin(m))
        raise ValueError(f"choose_channel_multipliers: scale {s[i]!r} of channel {i} rounds to multiplier 0 at "
                         f"SHIFT {shift} (largest scale {s.max()!r}); raise the multiplier width above {m_w}")
    return m.reshape(np.shape(scales)), int(shift)
