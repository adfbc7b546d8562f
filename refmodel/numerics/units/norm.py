"""LayerNorm and RMSNorm with the SLaNC input shift: integer model of ``rtl/layernorm.v``.

Every step is an exact integer operation or ONE documented rounding; every width is stated and
checked so nothing can overflow (the RTL uses the same width formulas).

Numeric contract (one row = the last axis, length ``D``; ``clog2(D) = ceil(log2 D)``,
``HALF_LOG_D = ceil(clog2(D) / 2)``):

1. **Input** ``x``: ``s{IN_W}.{IN_F}`` codes.
2. **SLaNC shift** (static scale ``s = 2^SHIFT``, ``SHIFT >= 0``):
   ``x1 = round_half_up(x / 2^SHIFT)`` (add ``2^(SHIFT-1)``, arithmetic shift right).
   ``x1`` is ``s{X1_W}`` with ``X1_W = IN_W`` if ``SHIFT = 0`` else ``IN_W - SHIFT + 1``
   (``round_half_up(max_code / 2^SHIFT) = 2^(IN_W-1-SHIFT)`` needs the extra bit). In SLaNC terms
   ``x1 * 2^-IN_F`` is ``x / s``; LayerNorm is scale invariant apart from ``eps``, which the
   unit takes already divided by ``s^2`` (``EPS`` below).
3. **Sum** ``S = sum x1``: exact, signed ``S_W = X1_W + clog2(D)`` bits.
4. **Mean** (LayerNorm only) with ``G = MEAN_G`` guard bits:
   ``mu = round_half_up(S * 2^G / D) = floor((2 S 2^G + D) / (2 D))``, exact integer division.
   The RTL computes it as ``((U * M) >> MK) - 2^(X1_W-1+G)`` with ``U = 2 S 2^G + D +
   2 D 2^(X1_W-1+G)`` (``0 < U < 2^U_W``, ``U_W = X1_W + G + 1 + clog2(D)``), ``MK = U_W +
   clog2(2D)``, ``M = ceil(2^MK / (2D))``: exact for every ``U < 2^U_W`` because
   ``M*2D - 2^MK < 2D <= 2^(MK-U_W)`` (Granlund-Montgomery; :func:`mean_constants`,
   checked in tests/numerics/test_units_norm.py). RMSNorm: ``G = 0``, ``mu = 0``.
5. **Deviation** ``y = x1 * 2^G - mu``: signed ``Y_W = X1_W + G + 1`` bits (LayerNorm: ``mu`` lies
   between the row's min and max times ``2^G``, so ``|y| <= (2^X1_W - 1) 2^G``);
   RMSNorm ``y = x1``, ``Y_W = X1_W``.
6. **Sum of squares** ``V = sum y^2``: exact, unsigned ``V_W = 2 (X1_W + G) + clog2(D)`` bits
   (``y^2 < 2^(2(X1_W+G))``). The RTL accumulates ``Q = sum x1^2`` on the fly and forms
   ``V = 4^G Q - 2^(G+1) mu S + D mu^2``, the same integer (an identity), so the row is read once.
7. **Variance + eps** ``A = V * 4^EPS_G + D * EPS``, unsigned ``A_W`` bits, ``A_W = V_W + 2 EPS_G
   + 1`` rounded up to even. ``EPS`` is eps/s^2 as an integer in units of
   ``2^-2(IN_F + G + EPS_G)`` of ``x/s`` (:func:`eps_code`): ``V/D + EPS/4^EPS_G`` is the
   variance plus eps in squared ``y`` units; the ``1/D`` moves into the constant ``sqrt(D)``
   below, so nothing is divided. ``D * EPS < 2^(V_W + 2 EPS_G)`` is required.
8. **Normalise** ``A`` (left shift by an even amount, exact): ``e = (A_W - bitlen(A)) // 2``,
   ``A' = A << 2e`` so ``2^(A_W-2) <= A' < 2^A_W`` (``A = 0``: ``e = 0``).
9. **Truncate** to the rsqrt input width ``W_R = min(A_W, RSQ_W)`` (even): ``A_t = A' >> TR``,
   ``TR = A_W - W_R`` (floor; exact whenever ``2e >= TR``, i.e. for every ``A < 2^W_R``), so
   ``2^(W_R-2) <= A_t < 2^W_R``. Relative error of ``A_t 2^TR`` vs ``A'``: ``< 2^-(W_R-2)``.
10. **rsqrt** (the exact unit ``refmodel.numerics.units.rsqrt.rsqrt``, ``rtl/rsqrt.v``,
    ``K = RSQ_K <= 31``): ``r = floor(2^RSQ_K / sqrt(A_t))``, so with
    ``RSQ_P = RSQ_K - W_R/2``: ``2^RSQ_P - 1 < r <= 2^(RSQ_P+1)`` (unsigned ``R_W = RSQ_P + 2``
    bits, relative error ``< 2^-RSQ_P``). As a scale of ``A``: ``r ~= 2^K_EFF / sqrt(A')`` with
    ``K_EFF = RSQ_K + TR/2``.
11. **sqrt(D)** folded in once per row: ``rs = round_half_up(r * SQD / 2^SQD_F)`` with the
    constant ``SQD = round_half_up(sqrt(D) 2^SQD_F)`` (``= (isqrt(4 D 4^SQD_F) + 1) >> 1``),
    unsigned ``RS_W = RSQ_P + HALF_LOG_D + 3`` bits. ``A = 0`` (constant row, ``EPS = 0``, so every
    ``y`` is 0) forces ``rs = 0``: the output is then ``round(beta)``.
12. **Normalised value** ``n = round_half_up(y * rs / 2^SH)`` with the per-row shift
    ``SH = K_EFF - e - EPS_G - N_F >= 0`` (needs ``RSQ_P >= N_F + EPS_G``): ``n`` is
    ``s{N_W}.{N_F}``, ``N_W = N_F + HALF_LOG_D + 2`` (``|n| <= sqrt(D) 2^N_F (1 + 2^-(W_R-2))
    + 1`` because ``y^2 <= V``). The product ``y * rs`` has ``Y_W + RS_W`` bits (at most 62).
13. **Gain and bias**: ``z = n * gamma + beta * 2^(P_F - B_F)``, exact, ``P_F = N_F + G_F``,
    signed ``Z_W = max(N_W + G_W, B_W + P_F - B_F) + 1`` bits (``B_F <= P_F``).
14. **Output**: ``out = sat(round(z / 2^(P_F - OUT_F)))``, rounding ``OUT_ROUNDING`` in
    {``half_up``, ``rne``}, saturated to ``s{OUT_W}.{OUT_F}`` (``OUT_F <= P_F``).

Real-valued meaning: ``out ~= (x - mean) / sqrt(var + eps) * gamma + beta`` (LayerNorm) or
``x / sqrt(mean(x^2) + eps) * gamma + beta`` (RMSNorm) with ``eps = EPS * 2^(2(SHIFT - IN_F - G -
EPS_G))`` in ``x``'s units; :func:`norm_error_bound` bounds the difference per element.

Why the truncation (step 9): the shared rsqrt unit divides ``2^(2K)`` by its input with
``K <= 31`` (63-bit divider), so at most ``62 - 2 RSQ_P`` input bits can be used at ``RSQ_P``
result bits. The default balances the two errors: ``RSQ_P = min(N_F + HALF_LOG_D + 4, 20)``,
``RSQ_W = 2 (RSQ_K - RSQ_P)`` (22 at ``RSQ_P = 20``), relative error ``< 2^-RSQ_P + 2^-(W_R-1)``.

RTL timing (``rtl/layernorm.v``, one row at a time): ``D`` input beats; ``m_valid`` rises
``3 RSQ_K + 10`` cycles after the last input transfer (the rsqrt unit takes ``3 RSQ_K + 3`` of
them); then ``D`` output beats, one per clock while ``m_ready`` is high. About
``2 D + 3 RSQ_K + 10`` cycles per row at full rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.rounding import Rounding, round_shift
from refmodel.numerics.units.reciprocal import UnitError
from refmodel.numerics.units.rsqrt import RsqrtParams, rsqrt

__all__ = [
    "NormParams",
    "eps_code",
    "mean_constants",
    "norm_stats_int",
    "layernorm_int",
    "rmsnorm_int",
    "norm_int",
    "norm_ref",
    "norm_error_bound",
    "norm_error",
    "random_rows",
    "with_eps",
    "NormStats",
]

_OUT_ROUNDINGS = (Rounding.HALF_UP, Rounding.RNE)


def clog2(n: int) -> int:
    """ceil(log2 n) for n >= 1 (0 for n = 1), the Verilog ``$clog2``."""
    return (int(n) - 1).bit_length()


@dataclass(frozen=True)
class NormParams:
    """Configuration of the norm unit; every derived width is a property (module docstring).

    Fields: ``d`` row length (2..4096, any value); ``in_fmt`` input (signed, width 2..32);
    ``shift`` SLaNC shift (0 .. IN_W-1); ``rms`` RMSNorm instead of LayerNorm; ``mean_g`` mean
    guard bits (LayerNorm; 0..8); ``eps`` the EPS code (>= 0); ``eps_g`` extra eps fraction
    bit pairs (0..16); ``n_f`` fraction bits of the normalised value (0..30); ``rsq_k`` the
    rsqrt unit's K (1..31); ``rsq_w`` its input width (even, 2..62; default ``2 (rsq_k -
    min(n_f + HALF_LOG_D + 4, 20))``); ``sqd_f`` fraction bits of the ``sqrt(D)`` constant
    (default ``RSQ_P + 2``); ``gamma_fmt``/``beta_fmt``/``out_fmt``
    signed fixed-point formats; ``out_rounding`` ``half_up`` or ``rne``.
    """

    # the constructor also takes the spec strings and None (derive) that __post_init__ resolves; the
    # annotations give the attribute types after construction
    d: int
    in_fmt: FixedFormat = FixedFormat.parse("s16.8")
    shift: int = 0
    rms: bool = False
    mean_g: int = 4
    eps: int = 0
    eps_g: int = 0
    n_f: int = 12
    rsq_k: int = 31
    rsq_w: int = None  # type: ignore[assignment]  # None: derived from rsq_k, n_f and d in __post_init__
    sqd_f: int = None  # type: ignore[assignment]  # None: rsq_p + 2, set in __post_init__
    gamma_fmt: FixedFormat = FixedFormat.parse("s16.12")
    beta_fmt: FixedFormat = FixedFormat.parse("s16.12")
    out_fmt: FixedFormat = FixedFormat.parse("s16.12")
    out_rounding: Rounding = Rounding.HALF_UP

    def __post_init__(self) -> None:
        for name in ("in_fmt", "gamma_fmt", "beta_fmt", "out_fmt"):
            f = FixedFormat.parse(getattr(self, name))
            if not f.signed:
                raise ValueError(f"NormParams {name} must be signed, got {f}")
            object.__setattr__(self, name, f)
        object.__setattr__(self, "out_rounding", Rounding.parse(self.out_rounding))
        if self.out_rounding not in _OUT_ROUNDINGS:
            raise ValueError(f"NormParams out_rounding must be half_up or rne, got {self.out_rounding.value!r}")
        d = int(self.d)
        if not 2 <= d <= 4096:
            raise ValueError(f"NormParams d (row length) must be in 2..4096, got {self.d}")
        if not 2 <= self.in_fmt.width <= 32:
            raise ValueError(f"NormParams in_fmt width must be in 2..32, got {self.in_fmt}")
        if not 0 <= self.shift <= self.in_fmt.width - 1:
            raise ValueError(f"NormParams shift must be in 0..{self.in_fmt.width - 1}, got {self.shift}")
        if not 0 <= self.mean_g <= 8:
            raise ValueError(f"NormParams mean_g must be in 0..8, got {self.mean_g}")
        if not 0 <= self.eps_g <= 16:
            raise ValueError(f"NormParams eps_g must be in 0..16, got {self.eps_g}")
        if not 0 <= self.n_f <= 30:
            raise ValueError(f"NormParams n_f must be in 0..30, got {self.n_f}")
        if not 1 <= self.rsq_k <= 31:
            raise ValueError(f"NormParams rsq_k must be in 1..31 (rsqrt unit limit), got {self.rsq_k}")
        if self.rsq_w is None:
            target = min(self.n_f + self.half_log_d + 4, 20)
            object.__setattr__(self, "rsq_w", max(2, min(62, 2 * (self.rsq_k - target))))
        if not (2 <= self.rsq_w <= 62 and self.rsq_w % 2 == 0):
            raise ValueError(f"NormParams rsq_w must be even and in 2..62, got {self.rsq_w}")
        if self.sqd_f is None:
            object.__setattr__(self, "sqd_f", self.rsq_p + 2)
        if self.rsq_p < self.n_f + self.eps_g:
            raise ValueError(
                f"NormParams: rsqrt precision RSQ_P = rsq_k - min(A_W, rsq_w)/2 = {self.rsq_p} must be "
                f">= n_f + eps_g = {self.n_f + self.eps_g} (the per-row shift SH would go negative); "
                f"lower rsq_w or n_f"
            )
        if not 1 <= self.sqd_f <= 40:
            raise ValueError(f"NormParams sqd_f must be in 1..40, got {self.sqd_f}")
        if int(self.eps) < 0:
            raise ValueError(f"NormParams eps code must be >= 0, got {self.eps}")
        if d * int(self.eps) >= 1 << (self.v_w + 2 * self.eps_g):
            raise ValueError(
                f"NormParams eps code {self.eps} too large: D*EPS must be < 2^{self.v_w + 2 * self.eps_g}"
            )
        if self.a_w > 62:
            raise ValueError(f"NormParams: variance term needs A_W={self.a_w} bits > 62; lower IN_W, mean_g or eps_g")
        if self.y_w + self.rs_w > 62:
            raise ValueError(
                f"NormParams: y*rs needs {self.y_w + self.rs_w} bits > 62; lower rsq_p ({self.rsq_p}) or n_f"
            )
        if self.b_f > self.p_f or self.out_fmt.frac > self.p_f:
            raise ValueError(
                f"NormParams: beta frac {self.beta_fmt.frac} and out frac {self.out_fmt.frac} must be "
                f"<= n_f + gamma frac = {self.p_f}"
            )
        if self.z_w > 62:
            raise ValueError(f"NormParams: gain/bias sum needs Z_W={self.z_w} bits > 62")

    # ---- derived widths (same formulas as rtl/layernorm.v) -----------------------------------
    @property
    def clog2_d(self) -> int:
        return clog2(self.d)

    @property
    def half_log_d(self) -> int:
        """ceil(clog2(D) / 2): sqrt(D) <= 2^HALF_LOG_D."""
        return (self.clog2_d + 1) // 2

    @property
    def g(self) -> int:
        """Guard bits actually used: MEAN_G for LayerNorm, 0 for RMSNorm."""
        return 0 if self.rms else int(self.mean_g)

    @property
    def x1_w(self) -> int:
        return self.in_fmt.width if self.shift == 0 else self.in_fmt.width - self.shift + 1

    @property
    def s_w(self) -> int:
        return self.x1_w + self.clog2_d

    @property
    def y_w(self) -> int:
        return self.x1_w if self.rms else self.x1_w + self.g + 1

    @property
    def v_w(self) -> int:
        return 2 * (self.x1_w + self.g) + self.clog2_d

    @property
    def a_w(self) -> int:
        w = self.v_w + 2 * self.eps_g + 1
        return w + (w & 1)

    @property
    def w_r(self) -> int:
        """Width of the rsqrt unit's input, min(A_W, RSQ_W)."""
        return min(self.a_w, self.rsq_w)

    @property
    def tr(self) -> int:
        """Bits truncated from the normalised A before the rsqrt, A_W - W_R (even)."""
        return self.a_w - self.w_r

    @property
    def rsq_p(self) -> int:
        """rsqrt result precision: RSQ_K - W_R/2 (r in (2^RSQ_P - 1, 2^(RSQ_P+1)])."""
        return self.rsq_k - self.w_r // 2

    @property
    def k_eff(self) -> int:
        """r ~= 2^K_EFF / sqrt(A'), K_EFF = RSQ_K + TR/2."""
        return self.rsq_k + self.tr // 2

    @property
    def r_w(self) -> int:
        return self.rsq_p + 2

    @property
    def sqd(self) -> int:
        """round_half_up(sqrt(D) * 2^SQD_F), exact integer arithmetic."""
        return (math.isqrt(4 * self.d << (2 * self.sqd_f)) + 1) >> 1

    @property
    def rs_w(self) -> int:
        return self.rsq_p + self.half_log_d + 3

    @property
    def n_w(self) -> int:
        return self.n_f + self.half_log_d + 2

    @property
    def b_f(self) -> int:
        return self.beta_fmt.frac

    @property
    def p_f(self) -> int:
        return self.n_f + self.gamma_fmt.frac

    @property
    def z_w(self) -> int:
        return max(self.n_w + self.gamma_fmt.width, self.beta_fmt.width + self.p_f - self.b_f) + 1

    @property
    def out_shift(self) -> int:
        return self.p_f - self.out_fmt.frac

    @property
    def eps_real(self) -> float:
        """The eps the unit adds, in x's real units (EPS decoded; SLaNC: times s^2)."""
        return math.ldexp(float(self.eps), 2 * (self.shift - self.in_fmt.frac - self.g - self.eps_g))

    def to_hdl(self) -> dict[str, int]:
        """Integer parameters of ``rtl/layernorm.v`` (GAMMA_MEMFILE / BETA_MEMFILE, the ``$readmemh``
        paths, are string parameters passed separately)."""
        return {
            "D": int(self.d),
            "IN_W": self.in_fmt.width,
            "SHIFT": int(self.shift),
            "RMS": int(bool(self.rms)),
            "MEAN_G": int(self.mean_g),
            "EPS": int(self.eps),
            "EPS_G": int(self.eps_g),
            "N_F": int(self.n_f),
            "RSQ_K": int(self.rsq_k),
            "RSQ_W": int(self.rsq_w),
            "SQD_F": int(self.sqd_f),
            "SQD": self.sqd,
            "G_W": self.gamma_fmt.width,
            "G_F": self.gamma_fmt.frac,
            "B_W": self.beta_fmt.width,
            "B_F": self.beta_fmt.frac,
            "OUT_W": self.out_fmt.width,
            "OUT_F": self.out_fmt.frac,
            "OUT_RNE": int(self.out_rounding is Rounding.RNE),
        }

    def rsqrt_params(self) -> RsqrtParams:
        """The rsqrt unit this configuration instantiates (input W_R bits, K = RSQ_K)."""
        return RsqrtParams(v_w=self.w_r, k=self.rsq_k)


def eps_code(eps: float, params: NormParams) -> int:
    """The EPS code for a real ``eps`` (in x's units) under ``params``' SHIFT, G and EPS_G:
    ``round_half_up(eps / 2^(2 SHIFT) * 2^(2 (IN_F + G + EPS_G)))`` (SLaNC: eps / s^2, held wide)."""
    if not eps >= 0 or not math.isfinite(eps):
        raise ValueError(f"eps_code: eps must be a finite value >= 0, got {eps!r}")
    p = params
    scaled = math.ldexp(eps, 2 * (p.in_fmt.frac + p.g + p.eps_g - p.shift))
    return int(math.floor(scaled + 0.5))


def mean_constants(params: NormParams) -> dict[str, int]:
    """Constants of the RTL's exact mean (module docstring step 4): ``U_W``, ``MK``, ``M``, ``OFF``.

    For ``0 <= U < 2^U_W``: ``(U * M) >> MK == U // (2 D)`` (proved by ``M*2D - 2^MK < 2D <=
    2^(MK - U_W)``), and ``mu = ((U * M) >> MK) - OFF``."""
    p = params
    u_w = p.x1_w + p.g + 1 + p.clog2_d
    mk = u_w + clog2(2 * p.d)
    m = -((-(1 << mk)) // (2 * p.d))  # ceil
    return {"U_W": u_w, "MK": mk, "M": m, "OFF": 1 << (p.x1_w - 1 + p.g)}


# ---- the integer model ---------------------------------------------------------------------


def _check_row(x_codes: npt.ArrayLike, params: NormParams) -> np.ndarray:
    x = np.asarray(x_codes, dtype=np.int64)
    if x.ndim == 0 or x.shape[-1] != params.d:
        raise ValueError(f"norm: rows must have length D={params.d} on the last axis, got shape {x.shape}")
    f = params.in_fmt
    if x.size and (int(x.min()) < f.min_code or int(x.max()) > f.max_code):
        bad = (x < f.min_code) | (x > f.max_code)
        raise ValueError(f"norm: input code {int(x[bad].ravel()[0])} outside {f} ({f.min_code}..{f.max_code})")
    return x


def _check_vec(v: npt.ArrayLike, fmt: FixedFormat, d: int, what: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.int64)
    if a.shape != (d,):
        raise ValueError(f"norm: {what} must have shape ({d},), got {a.shape}")
    if a.size and (int(a.min()) < fmt.min_code or int(a.max()) > fmt.max_code):
        bad = (a < fmt.min_code) | (a > fmt.max_code)
        raise ValueError(f"norm: {what} code {int(a[bad][0])} outside {fmt}")
    return a


def _shift_sum_half_up(hi: np.ndarray, lo: np.ndarray, f: int) -> np.ndarray:
    """round_half_up((hi * 2^31 + lo) / 2^f) for int64 hi, lo >= 0 without forming the sum:
    exact as long as the result fits int64 (f >= 1)."""
    if f >= 31:
        # (hi 2^31 + lo + 2^(f-1)) >> f = (hi + ((lo + 2^(f-1)) >> 31)) >> (f - 31), exact floor steps
        carry = (lo + (np.int64(1) << np.int64(f - 1))) >> np.int64(31)
        return (hi + carry) >> np.int64(f - 31)
    # f < 31: hi 2^(31-f) is exact, the low part rounds
    return (hi << np.int64(31 - f)) + ((lo + (np.int64(1) << np.int64(f - 1))) >> np.int64(f))


def _bitlen(a: np.ndarray) -> np.ndarray:
    """Exact bit length of non-negative int64 values (0 for 0), any shape."""
    a = np.asarray(a, dtype=np.int64)
    bl = np.zeros(a.shape, dtype=np.int64)
    for k in range(63):
        bl += (a >> np.int64(k)) != 0
    return bl


@dataclass
class NormStats:
    """Per-row integers of the model (arrays over the leading axes; ``x1``/``y`` keep the row).
    Wide quantities are int64 (every width <= 62 by construction)."""

    x1: np.ndarray
    s: np.ndarray
    mu: np.ndarray
    y: np.ndarray
    v: np.ndarray
    a: np.ndarray
    e: np.ndarray
    a_norm: np.ndarray
    r: np.ndarray
    rs: np.ndarray
    sh: np.ndarray
    n: np.ndarray


def norm_stats_int(x_codes: npt.ArrayLike, params: NormParams) -> NormStats:
    """Steps 2-12 of the contract: every intermediate integer, for tests and RTL debugging.
    ``r`` and ``rs`` are 0 for rows with ``A = 0`` (their ``y`` are all 0; the RTL's rsqrt returns
    all ones there, which ``rs = 0`` makes irrelevant)."""
    p = params
    x = _check_row(x_codes, p)
    x1 = round_shift(x, p.shift, Rounding.HALF_UP)
    s = x1.sum(axis=-1)
    g = np.int64(p.g)
    if p.rms:
        mu = np.zeros_like(s)
        y = x1
    else:
        mu = ((s << np.int64(p.g + 1)) + np.int64(p.d)) // np.int64(2 * p.d)  # floor: half_up of S 2^G / D
        y = (x1 << g) - mu[..., None]
    v = (y * y).sum(axis=-1)
    a = (v << np.int64(2 * p.eps_g)) + np.int64(p.d * int(p.eps))
    e = np.where(a == 0, np.int64(0), (np.int64(p.a_w) - _bitlen(a)) // 2)
    a_norm = a << (2 * e)
    a_t = a_norm >> np.int64(p.tr)
    # exact floor(2^RSQ_K / sqrt(A_t)); A_t = 0 only when A = 0, where r is unused: forced to 0
    r = np.where(a == 0, np.int64(0), rsqrt(a_t, p.rsqrt_params()))
    # r * SQD can pass 2^63: split SQD = hi 2^31 + lo so each partial product stays in int64
    lo_mask = (1 << 31) - 1
    t = r * np.int64(p.sqd >> 31)  # r <= 2^(RSQ_P+1) <= 2^31: both partial products < 2^62
    t_lo = r * np.int64(p.sqd & lo_mask)
    rs = _shift_sum_half_up(t, t_lo, p.sqd_f)
    sh = np.int64(p.k_eff - p.eps_g - p.n_f) - e
    shb = sh[..., None]
    prod = y * rs[..., None]
    rnd = np.where(shb > 0, np.int64(1) << np.maximum(shb - 1, 0), 0)
    n = (prod + rnd) >> shb
    return NormStats(x1, s, mu, y, v, a, e, a_norm, r, rs, sh, n)


def norm_int(x_codes: npt.ArrayLike, gamma_codes: npt.ArrayLike, beta_codes: npt.ArrayLike | None,
             params: NormParams) -> np.ndarray:
    """LayerNorm (``params.rms`` False) or RMSNorm (True) of every row: int64 ``s{OUT_W}.{OUT_F}``
    codes, same shape as ``x_codes``. ``gamma_codes``/``beta_codes``: shape ``(D,)`` in
    ``gamma_fmt``/``beta_fmt`` (``beta_codes=None``: zeros). Contract: module docstring."""
    p = params
    st = norm_stats_int(x_codes, p)
    gam = _check_vec(gamma_codes, p.gamma_fmt, p.d, "gamma")
    bet = np.zeros(p.d, dtype=np.int64) if beta_codes is None else _check_vec(beta_codes, p.beta_fmt, p.d, "beta")
    z = st.n * gam + (bet << np.int64(p.p_f - p.b_f))
    out = round_shift(z, p.out_shift, p.out_rounding)
    return np.clip(out, p.out_fmt.min_code, p.out_fmt.max_code)


def layernorm_int(x_codes: npt.ArrayLike, gamma_codes: npt.ArrayLike, beta_codes: npt.ArrayLike | None,
                  params: NormParams) -> np.ndarray:
    """LayerNorm with the SLaNC shift (``params.rms`` must be False). See :func:`norm_int`."""
    if params.rms:
        raise ValueError("layernorm_int: params.rms is True; use rmsnorm_int")
    return norm_int(x_codes, gamma_codes, beta_codes, params)


def rmsnorm_int(x_codes: npt.ArrayLike, gamma_codes: npt.ArrayLike, beta_codes: npt.ArrayLike | None,
                params: NormParams) -> np.ndarray:
    """RMSNorm with the SLaNC shift (``params.rms`` must be True; ``beta_codes`` may be None).
    See :func:`norm_int`."""
    if not params.rms:
        raise ValueError("rmsnorm_int: params.rms is False; use layernorm_int")
    return norm_int(x_codes, gamma_codes, beta_codes, params)


# ---- float64 reference and error -------------------------------------------------------------


def norm_ref(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None, eps: float, rms: bool) -> np.ndarray:
    """float64 LayerNorm ``(x - mean)/sqrt(var + eps) * gamma + beta`` (population variance) or
    RMSNorm ``x / sqrt(mean(x^2) + eps) * gamma + beta`` over the last axis."""
    x = np.asarray(x, dtype=np.float64)
    a = x if rms else x - x.mean(axis=-1, keepdims=True)
    s = np.sqrt(np.mean(a * a, axis=-1, keepdims=True) + eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.where(s > 0, a / np.where(s > 0, s, 1.0), 0.0)
    out = n * np.asarray(gamma, dtype=np.float64)
    return out if beta is None else out + np.asarray(beta, dtype=np.float64)


def _decoded(x_codes: npt.ArrayLike, gamma_codes: npt.ArrayLike, beta_codes: npt.ArrayLike | None,
             p: NormParams) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x = np.ldexp(np.asarray(x_codes, dtype=np.float64), -p.in_fmt.frac)
    gam = np.ldexp(np.asarray(gamma_codes, dtype=np.float64), -p.gamma_fmt.frac)
    bet = None if beta_codes is None else np.ldexp(np.asarray(beta_codes, dtype=np.float64), -p.beta_fmt.frac)
    return x, gam, bet


def norm_error_bound(x_codes: npt.ArrayLike, gamma_codes: npt.ArrayLike, beta_codes: npt.ArrayLike | None,
                     params: NormParams) -> np.ndarray:
    """Per-element bound, in output LSB, on ``|out_int - clamp(out_ref)|`` where ``out_ref`` is
    :func:`norm_ref` of the decoded inputs with the eps the unit adds (``params.eps_real``).

    Derivation (real units; ``a`` the exact deviation, ``u`` the integer model's ``y`` decoded,
    ``Delta = u - a`` (SLaNC rounding of x and the rounded mean), ``s = sqrt(mean(a^2) + eps)``,
    ``s_u = sqrt(mean(u^2) + eps) >= s - rms(Delta)``, ``n = a/s``, ``n_u = u/s_u``):

    * ``|n_u - n| <= (|Delta_i| + |n_i| rms(Delta)) / s_u`` (triangle inequality);
    * rsqrt floor, the ``rs`` rounding and the ``SQD`` constant: ``rs = (1 + eta) sqrt(D)
      2^K / sqrt(A')`` with ``eta`` evaluated per row from the integers;
    * ``n`` rounding: ``2^-(N_F+1)``; output rounding: ``2^-(OUT_F+1)``;
    * total ``|gamma| (|n_u - n| + |n_u eta| + 2^-(N_F+1)) + 2^-(OUT_F+1)``, plus float64 slack;
      clamping to the output range cannot increase it.
    """
    p = params
    st = norm_stats_int(x_codes, p)
    x, gam, _ = _decoded(x_codes, gamma_codes, beta_codes, p)
    a = x if p.rms else x - x.mean(axis=-1, keepdims=True)
    u = np.ldexp(st.y.astype(np.float64), p.shift - p.in_fmt.frac - p.g)
    delta = u - a
    eps = p.eps_real
    s_u = np.sqrt(np.mean(u * u, axis=-1, keepdims=True) + eps)
    s = np.sqrt(np.mean(a * a, axis=-1, keepdims=True) + eps)
    rms_d = np.sqrt(np.mean(delta * delta, axis=-1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        n_ref = np.where(s > 0, a / np.where(s > 0, s, 1.0), 0.0)
        n_u = np.where(s_u > 0, u / np.where(s_u > 0, s_u, 1.0), 0.0)
        b1 = np.where(s_u > 0, (np.abs(delta) + np.abs(n_ref) * rms_d) / np.where(s_u > 0, s_u, 1.0), 0.0)
        # s_u = 0 means u = 0: the unit outputs beta; then |n_u - n| = |n| <= sqrt(D)
        b1 = np.where(s_u > 0, b1, np.abs(n_ref))
        exact_rs = np.sqrt(float(p.d)) * np.ldexp(1.0, p.k_eff) / np.sqrt(st.a_norm.astype(np.float64))
        eta = np.where(st.a > 0, st.rs.astype(np.float64) / np.where(st.a > 0, exact_rs, 1.0) - 1.0, 0.0)
    bn = b1 + np.abs(n_u) * (np.abs(eta[..., None]) + 1e-12) + math.ldexp(0.5, -p.n_f)
    bound = np.abs(gam) * bn * (1 + 1e-12) + math.ldexp(0.5, -p.out_fmt.frac)
    return np.ldexp(bound, p.out_fmt.frac) + 1e-9


def random_rows(params: NormParams, rows: int, seed: int = 0, outliers: float = 0.0) -> np.ndarray:
    """Random input rows (int64 codes, shape ``(rows, D)``): per row a random mean and a
    log-uniform standard deviation spanning 1 LSB .. 1/8 of the input range, quantised with
    saturation; ``outliers`` > 0 puts that real magnitude (+-, random sign) on a few fixed
    channels (LLM "massive activation" channels, the SLaNC motivation)."""
    p = params
    rng = np.random.default_rng(seed)
    f = p.in_fmt
    lsb = math.ldexp(1.0, -f.frac)
    hi = f.max
    sig = np.exp(rng.uniform(np.log(lsb), np.log(hi / 8), size=(rows, 1)))
    mean = rng.uniform(-0.5, 0.5, size=(rows, 1)) * hi * rng.uniform(0, 1, size=(rows, 1))
    x = mean + sig * rng.standard_normal((rows, p.d))
    if outliers > 0:
        ch = rng.choice(p.d, size=max(1, p.d // 64), replace=False)
        x[:, ch] = outliers * rng.choice([-1.0, 1.0], size=(rows, ch.size)) * rng.uniform(0.5, 1.0, (rows, ch.size))
    codes = np.round(x / lsb)
    return np.clip(codes, f.min_code, f.max_code).astype(np.int64)


def norm_error(
    params: NormParams,
    gamma_codes: npt.ArrayLike | None = None,
    beta_codes: npt.ArrayLike | None = None,
    rows: int = 256,
    seed: int = 0,
    x_codes: npt.ArrayLike | None = None,
    outliers: float = 0.0,
) -> UnitError:
    """Measured error of the integer model against float64 :func:`norm_ref` of the same quantised
    inputs (eps = ``params.eps_real``), in output LSB, over ``x_codes`` or ``rows`` random rows
    (:func:`random_rows`). Defaults: gamma = 1, beta = 0 (when representable). Outputs are
    compared with the clamped reference. ``note`` reports the largest bound
    (:func:`norm_error_bound`) and the largest error/bound ratio (must be <= 1)."""
    p = params
    if x_codes is None:
        x_codes = random_rows(p, rows, seed, outliers)
    x_codes = np.asarray(x_codes, dtype=np.int64)
    if gamma_codes is None:
        one = min(1 << p.gamma_fmt.frac, p.gamma_fmt.max_code) if p.gamma_fmt.frac >= 0 else 1
        gamma_codes = np.full(p.d, one, dtype=np.int64)
    got = norm_int(x_codes, gamma_codes, beta_codes, p).astype(np.float64)
    x, gam, bet = _decoded(x_codes, gamma_codes, beta_codes, p)
    ref = np.ldexp(norm_ref(x, gam, bet, p.eps_real, p.rms), p.out_fmt.frac)
    ref_c = np.clip(ref, p.out_fmt.min_code, p.out_fmt.max_code)
    err = np.abs(got - ref_c)
    bound = norm_error_bound(x_codes, gamma_codes, beta_codes, p)
    flat = int(np.argmax(err))
    where = np.unravel_index(flat, err.shape)
    big = np.abs(ref_c) >= 1.0
    rel = float((err[big] / np.abs(ref_c[big])).max()) if big.any() else 0.0
    ratio = float((err / bound).max()) if err.size else 0.0
    kind = "rmsnorm" if p.rms else "layernorm"
    return UnitError(
        kind, float(err.max()) if err.size else 0.0, rel, tuple(int(i) for i in where), int(err.size), False, 1.0,
        note=f"max bound {float(bound.max()):.4g} LSB, max err/bound {ratio:.4f}, rms err "
        f"{float(np.sqrt(np.mean(err ** 2))):.4g} LSB, D={p.d}, shift={p.shift}",
    )


def with_eps(params: NormParams, eps: float) -> NormParams:
    """``params`` with ``eps`` replaced by :func:`eps_code` of the real ``eps``."""
    return replace(params, eps=eps_code(eps, params))
