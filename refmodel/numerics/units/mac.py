"""Integer model of ``rtl/mac_dot.v``: a signed fixed-point dot-product unit with a wide
accumulator and an output requantiser, plus a fast matrix helper built on the same contract.

Numeric contract (one output per dot product of length K)
---------------------------------------------------------
* inputs: activation codes ``a`` in ``s{A_W}.fa`` and weight codes ``w`` in ``s{W_W}.fw`` (two's
  complement; the fractional bits ``fa``/``fw`` do not change the integer arithmetic, they only
  name the scale), optional bias codes ``b`` in ``s{B_W}.(fa+fw-BIAS_LSH)``;
* products ``a*w`` are exact (``A_W + W_W`` bits);
* accumulator ``s{ACC_W}.(fa+fw)``: it starts at ``b << BIAS_LSH`` (exact, ``B_W + BIAS_LSH <=
  ACC_W``), then each *beat* of ``LANES`` products is summed exactly (lane adder tree) and added
  to the accumulator with the overflow policy applied at every add: ``wrap`` (mod 2**ACC_W) or
  ``saturate`` (clamp to ``[-2**(ACC_W-1), 2**(ACC_W-1)-1]``). Beats are taken in index order:
  beat ``j`` holds products ``j*LANES .. j*LANES+LANES-1``; a K that is not a multiple of LANES is
  padded with zero products at the end (the RTL driver sends zero codes in unused lanes).
  With ``wrap`` the result is the exact sum mod 2**ACC_W (independent of order and LANES);
  with ``saturate`` it depends on LANES and on the order, which is why the model loops over beats;
* output ``s{OUT_W}.(fa+fw-SHIFT)``: ``round_shift(acc, SHIFT, ROUNDING)`` (arithmetic right shift,
  rounding ``rne | half_up | floor`` from :mod:`refmodel.numerics.rounding`), then saturate to
  OUT_W signed bits. The accumulator value itself is also an output of the RTL (``m_acc``).

RTL latency: the result of a dot product is presented on the output one clock after its last beat
is accepted (``s_valid & s_ready & s_last``); throughput one beat per clock while the output side
is ready. See ``rtl/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from refmodel.numerics import accumulate as _acc
from refmodel.numerics.fixed import FixedArray, FixedFormat, apply_overflow
from refmodel.numerics.rounding import Overflow, Rounding, round_shift
from refmodel.numerics.units.requant import ROUND_MODE_CODES as REQUANT_ROUND_MODE_CODES

__all__ = ["MacParams", "dot_acc_int", "requantize_int", "dot_int", "matmul_acc_int", "matmul_int"]

#: Rounding modes the RTL requantiser implements, and their ROUND_MODE parameter values (the same
#: codes as rtl/requant.v: 0 = floor, 1 = half_up, 2 = rne).
ROUND_MODES = dict(REQUANT_ROUND_MODE_CODES)
#: Accumulator overflow policies the RTL implements, and their ACC_SAT parameter values.
ACC_OVERFLOWS = {Overflow.WRAP: 0, Overflow.SATURATE: 1}
MAX_ACC_W = 62  # round_shift needs |codes| < 2**62


def _clog2(n: int) -> int:
    return max(0, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class MacParams:
    """Parameters of ``mac_dot`` (names as in the RTL via :meth:`to_hdl`).

    ``a_w``/``w_w``: signed input widths; ``acc_w``: accumulator width (``a_w + w_w +
    clog2(lanes) <= acc_w <= 62``); ``out_w``: signed output width (2..62); ``shift``: requant right
    shift (0..acc_w-1); ``rounding``: ``rne | half_up | floor``; ``acc_overflow``: ``wrap |
    saturate``; ``lanes``: products per beat (>= 1); ``b_w``: bias width (default
    ``acc_w - bias_lsh``);
    ``bias_lsh``: left shift aligning the bias to the accumulator LSB (``b_w + bias_lsh <= acc_w``).
    """

    # the constructor also takes the spec strings and None (derive) that __post_init__ resolves; the
    # annotations give the attribute types after construction
    a_w: int = 8
    w_w: int = 8
    acc_w: int = 32
    out_w: int = 8
    shift: int = 0
    rounding: Rounding = Rounding.RNE
    acc_overflow: Overflow = Overflow.WRAP
    lanes: int = 1
    b_w: int = None  # type: ignore[assignment]  # None: acc_w - bias_lsh, set in __post_init__
    bias_lsh: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounding", Rounding.parse(self.rounding))
        object.__setattr__(self, "acc_overflow", Overflow.parse(self.acc_overflow))
        if self.b_w is None:
            object.__setattr__(self, "b_w", int(self.acc_w) - int(self.bias_lsh))
        for name in ("a_w", "w_w", "acc_w", "out_w", "shift", "lanes", "b_w", "bias_lsh"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"MacParams.{name} must be an int, got {v!r}")
        if self.rounding not in ROUND_MODES:
            raise ValueError(
                f"MacParams.rounding {self.rounding.value!r} is not implemented by mac_dot; "
                f"use one of {[m.value for m in ROUND_MODES]}"
            )
        if self.acc_overflow not in ACC_OVERFLOWS:
            raise ValueError(f"MacParams.acc_overflow must be wrap or saturate, got {self.acc_overflow.value!r}")
        if not (1 <= self.a_w <= 31 and 1 <= self.w_w <= 31):
            raise ValueError(f"MacParams: a_w and w_w must be in 1..31, got a_w={self.a_w}, w_w={self.w_w}")
        if self.lanes < 1:
            raise ValueError(f"MacParams.lanes must be >= 1, got {self.lanes}")
        need = self.a_w + self.w_w + _clog2(self.lanes)
        if not need <= self.acc_w <= MAX_ACC_W:
            raise ValueError(
                f"MacParams.acc_w={self.acc_w} must be in a_w+w_w+clog2(lanes)={need}..{MAX_ACC_W}"
            )
        if not 2 <= self.out_w <= MAX_ACC_W:
            raise ValueError(f"MacParams.out_w must be in 2..{MAX_ACC_W}, got {self.out_w}")
        if not 0 <= self.shift < self.acc_w:
            raise ValueError(f"MacParams.shift must be in 0..acc_w-1={self.acc_w - 1}, got {self.shift}")
        if not (1 <= self.b_w and self.bias_lsh >= 0 and self.b_w + self.bias_lsh <= self.acc_w):
            raise ValueError(
                f"MacParams: need b_w >= 1, bias_lsh >= 0 and b_w + bias_lsh <= acc_w={self.acc_w}, "
                f"got b_w={self.b_w}, bias_lsh={self.bias_lsh}"
            )

    # ---- derived ----------------------------------------------------------------------------
    @property
    def beat_w(self) -> int:
        """Width of the exact sum of one beat's products: A_W + W_W + clog2(LANES)."""
        return self.a_w + self.w_w + _clog2(self.lanes)

    def acc_format(self, a_frac: int = 0, w_frac: int = 0) -> FixedFormat:
        """Accumulator format ``s{ACC_W}.(a_frac+w_frac)``."""
        return FixedFormat(self.acc_w, a_frac + w_frac, True)

    def out_format(self, a_frac: int = 0, w_frac: int = 0) -> FixedFormat:
        """Output format ``s{OUT_W}.(a_frac+w_frac-SHIFT)``."""
        return FixedFormat(self.out_w, a_frac + w_frac - self.shift, True)

    def to_hdl(self) -> dict[str, int]:
        """Verilog parameters of ``mac_dot`` (ROUND_MODE 0=floor 1=half_up 2=rne; ACC_SAT 0/1)."""
        return {
            "A_W": int(self.a_w),
            "W_W": int(self.w_w),
            "ACC_W": int(self.acc_w),
            "OUT_W": int(self.out_w),
            "SHIFT": int(self.shift),
            "ROUND_MODE": ROUND_MODES[self.rounding],
            "ACC_SAT": ACC_OVERFLOWS[self.acc_overflow],
            "LANES": int(self.lanes),
            "B_W": int(self.b_w),
            "BIAS_LSH": int(self.bias_lsh),
        }


# ---- helpers ---------------------------------------------------------------------------------


def _codes(x: npt.ArrayLike, width: int, what: str) -> np.ndarray:
    c = np.asarray(x)
    if c.dtype.kind not in "iub":
        raise ValueError(f"{what}: expected integer codes, got dtype {c.dtype}")
    c = c.astype(np.int64)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if c.size and (int(c.min()) < lo or int(c.max()) > hi):
        bad = (c < lo) | (c > hi)
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), c.shape))
        raise ValueError(f"{what}: code {int(c[idx])} at index {idx} is outside s{width} ({lo}..{hi})")
    return c


def _acc_fmt(p: MacParams) -> FixedFormat:
    return FixedFormat(p.acc_w, 0, True)


def _bias_start(bias: npt.ArrayLike | None, shape: tuple[int, ...], p: MacParams) -> np.ndarray:
    if bias is None:
        return np.zeros(shape, dtype=np.int64)
    b = _codes(bias, p.b_w, "bias")
    return np.broadcast_to(b << np.int64(p.bias_lsh), shape).astype(np.int64)


def requantize_int(acc: npt.ArrayLike, p: MacParams) -> np.ndarray:
    """Output requantiser of ``mac_dot``: ``s{ACC_W}`` accumulator codes -> ``s{OUT_W}`` codes.

    ``round_shift(acc, SHIFT, ROUNDING)`` (``rne``/``half_up``/``floor`` on the discarded SHIFT
    bits), then saturation to ``[-2**(OUT_W-1), 2**(OUT_W-1)-1]``. Exact int64 arithmetic.
    """
    acc = _codes(acc, p.acc_w, "requantize_int: acc")
    r = round_shift(acc, p.shift, p.rounding)
    return np.clip(r, -(1 << (p.out_w - 1)), (1 << (p.out_w - 1)) - 1).astype(np.int64)


def dot_acc_int(a_codes: npt.ArrayLike, w_codes: npt.ArrayLike, p: MacParams,
                bias: npt.ArrayLike | None = None) -> np.ndarray:
    """Accumulator of ``mac_dot`` for dot products over the last axis (see module contract).

    ``a_codes``/``w_codes``: int ``s{A_W}``/``s{W_W}`` codes broadcastable to ``(..., K)``, K >= 1;
    ``bias``: ``s{B_W}`` codes broadcastable to the leading shape ``(...)`` or None (zero).
    Returns int64 ``s{ACC_W}`` codes of shape ``(...)``. Wrap: exact sum mod 2**ACC_W (int64
    sums wrap mod 2**64, a multiple of 2**ACC_W, so the result is exact). Saturate: a loop over the
    ceil(K/LANES) beats, vectorised over the leading axes.
    """
    a = _codes(a_codes, p.a_w, "dot_acc_int: a")
    w = _codes(w_codes, p.w_w, "dot_acc_int: w")
    a, w = np.broadcast_arrays(a, w)
    if a.ndim == 0 or a.shape[-1] < 1:
        raise ValueError(f"dot_acc_int: need at least one product on the last axis, got shape {a.shape}")
    lead = a.shape[:-1]
    acc = _bias_start(bias, lead, p)
    prod = a * w  # exact: |a*w| <= 2**(A_W+W_W-2) < 2**62
    if p.acc_overflow is Overflow.WRAP:
        total = acc + prod.sum(axis=-1, dtype=np.int64)  # mod 2**64 at worst: harmless under wrap
        return apply_overflow(total, _acc_fmt(p), Overflow.WRAP)
    k = prod.shape[-1]
    nb = -(-k // p.lanes)
    pad = nb * p.lanes - k
    if pad:
        prod = np.concatenate([prod, np.zeros(lead + (pad,), dtype=np.int64)], axis=-1)
    beats = prod.reshape(lead + (nb, p.lanes)).sum(axis=-1)  # exact lane-tree sums
    lo, hi = -(1 << (p.acc_w - 1)), (1 << (p.acc_w - 1)) - 1
    acc = acc.copy()
    for j in range(nb):  # loop over the reduction axis only
        acc = np.clip(acc + beats[..., j], lo, hi)
    return acc


def dot_int(a_codes: npt.ArrayLike, w_codes: npt.ArrayLike, p: MacParams,
            bias: npt.ArrayLike | None = None) -> np.ndarray:
    """``mac_dot`` output codes: :func:`requantize_int` of :func:`dot_acc_int` (see module docstring).

    >>> p = MacParams(a_w=8, w_w=8, acc_w=20, out_w=8, shift=4, rounding="rne")
    >>> dot_int([[10, -20, 30], [127, 127, 127]], [[5, 5, 5], [127, 127, 127]], p).tolist()
    [6, 127]
    """
    return requantize_int(dot_acc_int(a_codes, w_codes, p, bias), p)


# ---- matrix helper -----------------------------------------------------------------------------


def _matmul_mod_acc(a: np.ndarray, w: np.ndarray, p: MacParams) -> np.ndarray:
    """Exact ``a @ w`` modulo 2**ACC_W (signed ACC_W-bit codes), batched over leading axes of
    ``a``, through :func:`refmodel.numerics.accumulate.matmul` with a wrapping ``s{ACC_W}``
    accumulator (float64 BLAS where provably exact, int64 limbs otherwise)."""
    k, n = w.shape
    a2 = a.reshape(-1, k)
    r = _acc.matmul(FixedArray(a2, FixedFormat(p.a_w, 0)), FixedArray(w, FixedFormat(p.w_w, 0)),
                    _acc.FixedAccumulator(p.acc_w, 0, Overflow.WRAP))
    return np.asarray(r.codes, dtype=np.int64).reshape(a.shape[:-1] + (n,))


def matmul_acc_int(a_codes: npt.ArrayLike, w_codes: npt.ArrayLike, p: MacParams,
                   bias: npt.ArrayLike | None = None) -> np.ndarray:
    """Accumulators of ``a @ w`` under the ``mac_dot`` contract: ``out[..., m, n]`` equals
    ``dot_acc_int(a[..., m, :], w[:, n], p, bias[n])`` bit for bit.

    ``a_codes``: ``(..., M, K)`` ``s{A_W}`` codes; ``w_codes``: ``(K, N)`` ``s{W_W}`` codes;
    ``bias``: ``(N,)`` ``s{B_W}`` codes or None. Fast path: the exact sum mod 2**ACC_W from
    :func:`refmodel.numerics.accumulate.matmul` (wrapping ``s{ACC_W}`` accumulator; float64 BLAS
    when provably exact) plus the bias, wrapped (wrap is modular, so order and beats do not
    matter). Saturate: the same exact sum is used when a bound ``|bias| + sum_k |a_mk| * max|w|
    <= 2**(ACC_W-1) - 1`` proves that no partial sum can clamp; rows at risk run a loop over the
    beats, vectorised over (rows, N) (mac_dot starts at the bias and clamps per beat of LANES
    products, which accumulate's per-product ``FixedAccumulator`` does not model).
    """
    a = _codes(a_codes, p.a_w, "matmul_int: a")
    w = _codes(w_codes, p.w_w, "matmul_int: w")
    if a.ndim < 2 or w.ndim != 2 or a.shape[-1] != w.shape[0] or w.shape[0] < 1:
        raise ValueError(f"matmul_int: shapes {a.shape} @ {w.shape} do not form (..., M, K) @ (K, N) with K >= 1")
    n = w.shape[1]
    b0 = _bias_start(bias, (n,), p)
    exact = apply_overflow(_matmul_mod_acc(a, w, p) + b0, _acc_fmt(p), Overflow.WRAP)
    if p.acc_overflow is Overflow.WRAP:
        return exact
    hi = (1 << (p.acc_w - 1)) - 1
    wmax = int(np.abs(w).max())
    bmax = int(np.abs(b0).max()) if b0.size else 0
    rowsum = np.abs(a).sum(axis=-1)  # exact: K * 2**30 < 2**63
    safe_rows = rowsum <= (hi - bmax) // max(wmax, 1)
    if bool(np.all(safe_rows)):
        return exact
    # rows whose partial sums may saturate: exact beat-by-beat loop
    out = exact.copy()
    a2 = a.reshape(-1, a.shape[-2], a.shape[-1])
    o2 = out.reshape(-1, out.shape[-2], n)
    risk = ~safe_rows.reshape(a2.shape[0], a2.shape[1])
    bi, mi = np.nonzero(risk)
    ar = a2[bi, mi]  # (R, K)
    k = ar.shape[-1]
    lo = -(1 << (p.acc_w - 1))
    acc = np.broadcast_to(b0, (ar.shape[0], n)).copy()
    for j in range(0, k, p.lanes):  # loop over beats only
        beat = ar[:, j : j + p.lanes] @ w[j : j + p.lanes, :]  # exact int64: lanes * 2**60 fits
        acc = np.clip(acc + beat, lo, hi)
    o2[bi, mi] = acc
    return o2.reshape(out.shape)


def matmul_int(a_codes: npt.ArrayLike, w_codes: npt.ArrayLike, p: MacParams,
               bias: npt.ArrayLike | None = None) -> np.ndarray:
    """``mac_dot`` outputs for ``a @ w``: :func:`requantize_int` of :func:`matmul_acc_int`.

    Shapes ``(..., M, K) @ (K, N) -> (..., M, N)``; bit-identical to :func:`dot_int` row by row.
    """
    return requantize_int(matmul_acc_int(a_codes, w_codes, p, bias), p)
