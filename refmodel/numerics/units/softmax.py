"""Fixed-point softmax of one row (base-2 exp LUT, exact reciprocal of the sum): integer model of
``rtl/softmax_row.v`` (hw_algorithms.md section 4.2).

Numeric contract of :func:`softmax` (``SoftmaxParams``)
-------------------------------------------------------
Per row of ``N <= n_max`` signed s{in_w}.{in_f} codes ``x`` with an optional ``masked`` flag per
element (``True`` = excluded: output 0, not part of the max or the sum; causal attention):

1. ``xmax`` = max over unmasked elements; ``d = xmax - x`` (unsigned, ``in_w`` bits);
2. ``e = exp_neg(d)`` (:mod:`refmodel.numerics.units.exp2`: ``t = d * LOG2E`` (Q2.14 constant
   23637), rounded half-up to ``lut_bits`` fraction bits, ``e = (EXP2_LUT[k] << G) >> q``, 0 when
   ``q >= e_w``), u{e_w}.{e_w-1} with ``e_w = lut_w + G``; masked elements get ``e = 0``;
3. ``S = sum(e)`` exact (``s_w = e_w + clog2(n_max)`` bits, any summation order);
4. ``R = floor(2**K / S)`` (exact serial divider, :func:`refmodel.numerics.units.reciprocal.divide`
   with ``num_w = K + 1``); ``S = 0`` only for a fully masked row, whose outputs are all 0;
5. ``y = (e * R + 2**(K - out_f - 1)) >> (K - out_f)`` (round half up), saturated to
   ``0 .. 2**out_w - 1``: UQ(out_w-out_f).out_f, e.g. UQ0.8 for ``out_w = out_f = 8`` where a
   probability of 1.0 saturates to 255/256 (documented 1-LSB error; use ``out_w = out_f + 1`` to
   represent 1.0).

Default ``K = (e_w - 1) + clog2(n_max) + 16``: ``R`` keeps at least 16 significant bits.

RTL (``softmax_row``): rows arrive as a valid/ready stream with ``s_last`` on the last element;
the unit buffers the row, so a row takes ``3N + K + 3`` cycles back to back and rows are processed
one at a time. Latency from the last input transfer to the first output valid: ``N + K + 4``
cycles (:meth:`SoftmaxParams.cycles`, :meth:`SoftmaxParams.latency`, checked by the bench).

Error (float64 softmax of the decoded inputs, masked elements excluded): rigorous bound
:func:`softmax_error_bound` (about 1.2 LSB for UQ0.8 with L=6, G=4) and a measured random sweep
:func:`exhaustive_error` (about 0.75 LSB).

>>> p = SoftmaxParams(n_max=8)
>>> softmax([[0, 0, 0, 0], [256, 0, 0, 0]], p).tolist()   # uniform; e/(e+3) = 0.4754 = 121.7/256
[[64, 64, 64, 64], [121, 45, 45, 45]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

import numpy as np
import numpy.typing as npt

from refmodel.numerics.units.exp2 import Exp2Params, exp_neg, prefloor_rel_error
from refmodel.numerics.units.reciprocal import DividerParams, UnitError
from refmodel.numerics.units.table import UnitTable

__all__ = ["SoftmaxParams", "softmax", "softmax_error_bound", "exhaustive_error", "reference_softmax"]


def _clog2(n: int) -> int:
    return max(0, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class SoftmaxParams:
    """Softmax unit parameters (module docstring). ``k = None`` picks the default
    ``(e_w - 1) + clog2(n_max) + 16``."""

    in_w: int = 16
    in_f: int = 8
    n_max: int = 64
    lut_bits: int = 6
    lut_w: int = 16
    guard: int = 4
    out_w: int = 8
    out_f: int = 8
    log2e_f: int = 14
    k: int = None  # type: ignore[assignment]  # None: the default K, set in __post_init__
    exp2: Exp2Params = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exp2", Exp2Params(self.in_w, self.in_f, self.lut_bits, self.lut_w,
                                                    self.guard, self.log2e_f))
        if not 1 <= self.n_max <= 1 << 16:
            raise ValueError(f"softmax n_max must be in 1..65536, got {self.n_max}")
        if not 1 <= self.out_w <= 32 or not 0 <= self.out_f <= 32:
            raise ValueError(f"softmax out_w must be in 1..32 and out_f in 0..32, got {self.out_w}, {self.out_f}")
        if self.k is None:
            object.__setattr__(self, "k", (self.e_w - 1) + _clog2(self.n_max) + 16)
        if not self.out_f < self.k <= 62:
            raise ValueError(f"softmax k must satisfy out_f < k <= 62 (int64 model), got k={self.k}")
        if self.k < self.e_w - 1:
            raise ValueError(f"softmax k={self.k} must be >= e_w - 1 = {self.e_w - 1}")

    @property
    def e_w(self) -> int:
        return self.exp2.e_w

    @property
    def s_w(self) -> int:
        """Width of the exact sum S."""
        return self.e_w + _clog2(self.n_max)

    @property
    def r_w(self) -> int:
        """Width of R = floor(2^K / S) for S >= 2^(e_w-1)."""
        return self.k - self.e_w + 2

    @property
    def divider(self) -> DividerParams:
        return DividerParams(num_w=self.k + 1, den_w=self.s_w)

    def to_hdl(self, lut_path: str | Path | None = None) -> dict[str, int | str]:
        """Verilog parameters of ``rtl/softmax_row.v``; ``lut_path`` (absolute) becomes the quoted
        string parameter ``EXP2_MEMFILE``."""
        hdl: dict[str, int | str] = {
            "IN_W": self.in_w, "IN_F": self.in_f, "N_MAX": self.n_max, "LUT_BITS": self.lut_bits,
            "LUT_W": self.lut_w, "GUARD": self.guard, "OUT_W": self.out_w, "OUT_F": self.out_f,
            "LOG2E_F": self.log2e_f, "LOG2E": self.exp2.log2e, "K": self.k,
        }
        if lut_path is not None:
            hdl["EXP2_MEMFILE"] = '"' + str(Path(lut_path).resolve()) + '"'
        return hdl

    def lut_table(self) -> UnitTable:
        """The EXP2_LUT the RTL loads (codes and format; the memh writer turns it into a file)."""
        return self.exp2.table()

    def cycles(self, n: int) -> int:
        """RTL cycles per row of ``n`` elements back to back at full rate (load n, exp n,
        divide k + 3, output n)."""
        return 3 * n + self.k + 3

    def latency(self, n: int) -> int:
        """RTL cycles from the edge that takes a row's last input to the edge after which the
        first output is valid (exp n, divide k + 3, output register 1)."""
        return n + self.k + 4


def _prep(x: npt.ArrayLike, params: SoftmaxParams, masked: npt.ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    p = params
    x = np.asarray(x, dtype=np.int64)
    if x.ndim == 0:
        raise ValueError("softmax: x must have at least one axis (the row)")
    n = x.shape[-1]
    if not 1 <= n <= p.n_max:
        raise ValueError(f"softmax: row length {n} outside 1..n_max={p.n_max}")
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        raise ValueError(f"softmax: input codes must be s{p.in_w} ({lo}..{hi}), got range {int(x.min())}..{int(x.max())}")
    m = np.zeros(x.shape, dtype=bool) if masked is None else np.broadcast_to(np.asarray(masked, dtype=bool), x.shape)
    return x, m


@overload
def softmax(x: npt.ArrayLike, params: SoftmaxParams, masked: npt.ArrayLike | None = None, *,
            return_parts: Literal[False] = False) -> np.ndarray: ...
@overload
def softmax(x: npt.ArrayLike, params: SoftmaxParams, masked: npt.ArrayLike | None = None, *,
            return_parts: Literal[True]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
def softmax(x: npt.ArrayLike, params: SoftmaxParams, masked: npt.ArrayLike | None = None, *,
            return_parts: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Softmax along the last axis of s{in_w}.{in_f} codes ``x`` (any leading axes), optional
    boolean ``masked`` broadcastable to ``x`` (True = excluded). Returns uint codes
    (int64) of UQ(out_w-out_f).out_f, bit-exact with ``rtl/softmax_row.v``. With
    ``return_parts=True`` returns ``(y, e, S, R)`` for debugging."""
    p = params
    x, m = _prep(x, p, masked)
    lo = -(1 << (p.in_w - 1))
    xmax = np.where(m, lo, x).max(axis=-1, keepdims=True)
    d = np.where(m, 0, xmax - x)
    e = np.where(m, 0, exp_neg(d, p.exp2))
    s = e.sum(axis=-1, keepdims=True)
    num = np.int64(1) << np.int64(p.k)
    r = np.where(s == 0, np.int64((1 << (p.k + 1)) - 1), num // np.maximum(s, 1))
    sh = np.int64(p.k - p.out_f)
    y = (e * r + (np.int64(1) << (sh - 1))) >> sh
    y = np.minimum(y, np.int64((1 << p.out_w) - 1))
    if return_parts:
        return y, e, s, r
    return y


def reference_softmax(x: npt.ArrayLike, params: SoftmaxParams, masked: npt.ArrayLike | None = None) -> np.ndarray:
    """float64 softmax of the decoded inputs (masked elements excluded and 0; a fully masked row
    is all 0), scaled to output LSB (``* 2**out_f``)."""
    p = params
    x, m = _prep(x, p, masked)
    v = np.ldexp(x.astype(np.float64), -p.in_f)
    v = np.where(m, -np.inf, v)
    vmax = v.max(axis=-1, keepdims=True)
    ex = np.where(m, 0.0, np.exp(np.where(m, 0.0, v - np.where(np.isfinite(vmax), vmax, 0.0))))
    s = ex.sum(axis=-1, keepdims=True)
    return np.ldexp(ex / np.where(s == 0, 1.0, s), p.out_f)


def softmax_error_bound(params: SoftmaxParams, n: int) -> float:
    """Rigorous bound, in output LSB, on ``|y - 2**out_f * softmax(x)|`` for rows with ``n``
    unmasked elements. With ``rho`` = :func:`exp2.prefloor_rel_error` (exhaustive):

    * relative exp errors in [-rho, rho] move each probability by <= ``rho / (2 (1 - rho))``;
    * the floor of each ``e`` (< 1 e-LSB, ``n`` of them) moves it by <= ``n / 2**(e_w-1)``
      (``S >= 2**(e_w-1)``: the max element has ``e = 1.0`` exactly);
    * the floor in ``R`` by <= ``2**(e_w-1) / 2**K``;
    * the final rounding by 0.5 LSB, and saturation of 1.0 (when ``2**out_f > 2**out_w - 1``) caps
      the error at ``max(bound, 1)``.
    """
    p = params
    rho = prefloor_rel_error(p.exp2)
    scale = float(1 << (p.e_w - 1))
    prob = rho / (2.0 * (1.0 - rho)) + n / scale + scale / 2.0 ** p.k
    b = float(np.ldexp(prob, p.out_f)) + 0.5
    if (1 << p.out_f) > (1 << p.out_w) - 1:
        b = max(b, 1.0)
    return b


def exhaustive_error(params: SoftmaxParams, rows_per_case: int = 200, seed: int = 0,
                     lengths: tuple[int, ...] | None = None, sigmas: tuple[float, ...] = (0.5, 2.0, 4.0)) -> UnitError:
    """Measured max error of :func:`softmax` in output LSB against :func:`reference_softmax`.

    The exp2 part is exhaustive in :func:`exp2.exhaustive_error`; rows are a seeded random sweep:
    for each length in ``lengths`` (default 1, 2, 8, n_max and n_max//2 when distinct) and each
    sigma, ``rows_per_case`` rows of ``N(0, sigma^2)`` reals quantised (half-up, saturated) to
    s{in_w}.{in_f}, plus one all-equal and one one-hot row per length. ``where`` is
    ``(length, sigma, row, element)`` of the worst element; relative error over exact >= 1 LSB."""
    p = params
    rng = np.random.default_rng(seed)
    if lengths is None:
        lengths = tuple(sorted({1, 2, min(8, p.n_max), max(1, p.n_max // 2), p.n_max}))
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    worst: tuple[float, tuple[int, float, int, int] | None] = (-1.0, None)
    rel_max = 0.0
    n_total = 0
    for n in lengths:
        for sigma in sigmas:
            v = rng.normal(0.0, sigma, size=(rows_per_case, n))
            x = np.clip(np.floor(np.ldexp(v, p.in_f) + 0.5), lo, hi).astype(np.int64)
            extra = np.zeros((2, n), dtype=np.int64)
            extra[1, 0] = hi  # one-hot
            x = np.concatenate([x, extra])
            y = softmax(x, p).astype(np.float64)
            ref = reference_softmax(x, p)
            err = np.abs(y - ref)
            i = int(np.argmax(err))
            if err.flat[i] > worst[0]:
                r, c = np.unravel_index(i, err.shape)
                worst = (float(err.flat[i]), (n, sigma, int(r), int(c)))
            big = ref >= 1.0
            if big.any():
                rel_max = max(rel_max, float((err[big] / ref[big]).max()))
            n_total += x.size
    return UnitError("softmax", worst[0], rel_max, worst[1], n_total, False, 1.0,
                     note=f"random rows, lengths {lengths}, sigmas {sigmas}, seed {seed}; exp2 part exhaustive")
