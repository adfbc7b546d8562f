"""Rounding and overflow modes shared by every format, and the integer rounding kernels.

Rounding modes (one enum, IEEE / TestFloat meanings; never a bare "nearest"):

============  =====================================  ====  ====  ====  ====  ====  ====
mode          definition                              -2.5  -1.5  -0.5  +0.5  +1.5  +2.5
============  =====================================  ====  ====  ====  ====  ====  ====
rne           nearest, ties to even                   -2    -2    -0    +0    +2    +2
rtz           toward zero (truncate magnitude)        -2    -1    -0    +0    +1    +2
floor         toward -inf                             -3    -2    -1    +0    +1    +2
ceil          toward +inf                             -2    -1    -0    +1    +2    +3
half_up       nearest, ties toward +inf               -2    -1    -0    +1    +2    +3
half_away     nearest, ties away from zero            -3    -2    -1    +1    +2    +3
stochastic    floor(x + r), r uniform in [0, 1)        (random; see below)
============  =====================================  ====  ====  ====  ====  ====  ====

Stochastic rounding is defined on integers so RTL can reproduce it: when ``s`` low bits are
discarded, an ``s``-bit uniform random integer ``r`` is added to the discarded part and the carry
out rounds up, i.e. ``result = (code + r) >> s`` (floor shift). From float64 the discarded fraction is
first truncated to ``STOCHASTIC_BITS`` bits. The random integers come from
:func:`stochastic_bits` (seeded, reproducible) or are passed in explicitly.

Overflow modes for fixed point: ``wrap`` (two's complement modulo 2^width), ``saturate`` (clamp to
the format's range), ``error`` (raise ``OverflowError``). Float formats have their own overflow
policy (``inf | saturate | nan``) in :class:`refmodel.numerics.minifloat.FloatFormat`.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import numpy.typing as npt

__all__ = [
    "Rounding",
    "Overflow",
    "STOCHASTIC_BITS",
    "stochastic_bits",
    "round_float_to_int",
    "round_shift",
]

#: Random bits used by stochastic rounding from float64 (the discarded fraction is truncated to this).
STOCHASTIC_BITS = 32


class Rounding(str, Enum):
    """Rounding mode. See the module docstring for the table of ties."""

    RNE = "rne"
    RTZ = "rtz"
    FLOOR = "floor"
    CEIL = "ceil"
    HALF_UP = "half_up"
    HALF_AWAY = "half_away"
    STOCHASTIC = "stochastic"

    @classmethod
    def parse(cls, value: Rounding | str) -> Rounding:
        if isinstance(value, Rounding):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown rounding mode {value!r}; expected one of: {names}") from None


class Overflow(str, Enum):
    """Fixed-point overflow policy: wrap (mod 2^width), saturate (clamp), error (raise)."""

    WRAP = "wrap"
    SATURATE = "saturate"
    ERROR = "error"

    @classmethod
    def parse(cls, value: Overflow | str) -> Overflow:
        if isinstance(value, Overflow):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown overflow mode {value!r}; expected one of: {names}") from None


def stochastic_bits(shape: tuple[int, ...] | int, nbits: int, seed: int | np.random.Generator) -> np.ndarray:
    """Uniform random integers in ``[0, 2**nbits)`` as int64, reproducible from ``seed``.

    These are exactly the bits stochastic rounding adds below the kept LSB; an RTL implementation
    fed the same array produces the same codes.
    """
    if not 1 <= nbits <= 62:
        raise ValueError(f"stochastic_bits: nbits must be in 1..62, got {nbits}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.integers(0, 1 << nbits, size=shape, dtype=np.int64)


def _resolve_random(shape: tuple[int, ...], nbits: int, seed: int | np.random.Generator | None,
                    random_bits: npt.ArrayLike | None) -> np.ndarray:
    if random_bits is not None:
        r = np.asarray(random_bits, dtype=np.int64)
        if r.shape != tuple(shape):
            try:
                r = np.broadcast_to(r, shape)
            except ValueError:
                raise ValueError(f"random_bits of shape {r.shape} does not broadcast to the input shape {tuple(shape)}") from None
        if r.size and (r.min() < 0 or r.max() >= (1 << nbits)):
            raise ValueError(f"random_bits must lie in [0, 2**{nbits}), got range [{r.min()}, {r.max()}]")
        return r
    if seed is None:
        raise ValueError("stochastic rounding needs a seed (or explicit random_bits) to be reproducible")
    return stochastic_bits(shape, nbits, seed)


def round_float_to_int(
    y: np.ndarray,
    mode: Rounding | str,
    *,
    seed: int | np.random.Generator | None = None,
    random_bits: np.ndarray | None = None,
) -> np.ndarray:
    """Round float64 values to integer-valued float64, exactly, under ``mode``.

    Numeric contract: the result is the correctly rounded integer for every finite input (every
    operation used is exact in IEEE double, see the comments); NaN and +-inf pass through.
    Stochastic: ``floor(y) + (trunc(frac(y) * 2^32) + r >= 2^32)`` with ``r`` 32 random bits and
    ``frac(y) = y - floor(y)`` taken exactly.
    """
    mode = Rounding.parse(mode)
    y = np.asarray(y, dtype=np.float64)
    if mode is Rounding.RNE:
        return np.rint(y)
    if mode is Rounding.RTZ:
        return np.trunc(y)
    if mode is Rounding.FLOOR:
        return np.floor(y)
    if mode is Rounding.CEIL:
        return np.ceil(y)
    # inf - floor(inf) is NaN: inf passes through (comparisons with NaN are False), quietly.
    with np.errstate(invalid="ignore"):
        if mode is Rounding.HALF_AWAY:
            # on the magnitude, where |y| - floor(|y|) is exact (|y| >= 0); then restore the sign
            a = np.abs(y)
            fa = np.floor(a)
            return np.copysign(fa + ((a - fa) >= 0.5), y)
        fl = np.floor(y)
        # y - floor(y) is exact for y >= 0 and y <= -1 (it is a multiple of ulp(y) below 1).
        # For -1 < y < 0 it is 1 + y, which float64 may round (|y| < 2^-53 or low bits below
        # 2^-53); ">= 0.5" is still decided correctly there (1 + y >= 0.5 iff y >= -0.5, and
        # rounding is monotone with 0.5 representable; below -0.5 the difference is exact).
        frac = y - fl
        if mode is Rounding.HALF_UP:
            return fl + (frac >= 0.5)
        # stochastic: trunc(frac * 2^32) must be exact, so for -1 < y < 0 use
        # floor((1 + y) * 2^32) = 2^32 + floor(y * 2^32) (y * 2^32 is an exact power-of-two scaling)
        r = _resolve_random(y.shape, STOCHASTIC_BITS, seed, random_bits)
        one = float(1 << STOCHASTIC_BITS)
        scaled = np.floor(frac * one)
        small_neg = (y < 0) & (y > -1)
        if small_neg.any():
            scaled[small_neg] = one + np.floor(y[small_neg] * one)
        return fl + ((scaled + r.astype(np.float64)) >= one)


def round_shift(
    codes: np.ndarray,
    shift: int,
    mode: Rounding | str,
    *,
    seed: int | np.random.Generator | None = None,
    random_bits: np.ndarray | None = None,
) -> np.ndarray:
    """Arithmetic right shift of int64 ``codes`` by ``shift`` bits with rounding ``mode``: the
    integer model of an RTL rounding shifter (round bit + sticky bit).

    ``shift <= 0`` is an exact left shift by ``-shift`` (the caller checks the width). The result
    is ``round(codes / 2**shift)`` as int64, with ties resolved per ``mode``, exact for every int64
    code and every ``shift`` (shifts of 63 or more leave only -1, 0 or +1). Stochastic rounding
    adds ``shift`` random bits below the kept LSB: ``(codes + r) >> shift``; it needs
    ``shift <= 62`` (:func:`stochastic_bits` draws at most 62 bits).
    """
    mode = Rounding.parse(mode)
    c = np.asarray(codes, dtype=np.int64)
    if shift <= 0:
        return c << np.int64(-shift)
    if mode is Rounding.STOCHASTIC and shift > 62:
        raise ValueError(f"stochastic round_shift supports shift <= 62, got {shift}")
    if shift >= 64:
        # |codes / 2^shift| <= 2^63 / 2^64 = 1/2, with equality only for code -2^63 at shift 64
        zero = np.zeros_like(c)
        if mode is Rounding.FLOOR:
            return np.where(c < 0, -1, 0).astype(np.int64)
        if mode is Rounding.CEIL:
            return np.where(c > 0, 1, 0).astype(np.int64)
        if mode is Rounding.HALF_AWAY and shift == 64:
            return np.where(c == np.iinfo(np.int64).min, -1, 0).astype(np.int64)
        return zero
    s = np.int64(shift)
    fl = c >> s  # floor
    # low bits as a non-negative int64: c - (fl << s), computed without overflow for shift 63 too
    rem = c & np.int64((1 << shift) - 1)
    half = np.int64(1 << (shift - 1))
    if mode is Rounding.FLOOR:
        return fl
    if mode is Rounding.CEIL:
        return fl + (rem != 0)
    if mode is Rounding.RTZ:
        return fl + ((rem != 0) & (c < 0))
    if mode is Rounding.HALF_UP:
        return fl + (rem >= half)
    if mode is Rounding.HALF_AWAY:
        return fl + ((rem > half) | ((rem == half) & (c >= 0)))
    if mode is Rounding.RNE:
        return fl + ((rem > half) | ((rem == half) & ((fl & 1) == 1)))
    r = _resolve_random(c.shape, shift, seed, random_bits)
    return fl + ((rem + r) >= (np.int64(1) << s))
