"""Exact integer reciprocal square root: integer model of ``rtl/rsqrt.v`` (serial divider followed
by a bit-serial integer square root, ``rtl/rsqrt_isqrt.v``).

Numeric contract of :func:`rsqrt` (``RsqrtParams(v_w, k)``)
-----------------------------------------------------------
* input ``V``: unsigned ``v_w``-bit code (e.g. a variance or a sum of squares);
* output ``y = floor(2**k / sqrt(V))`` exactly, for ``V >= 1``: unsigned ``k + 1`` bits
  (``y = 2**k`` at ``V = 1``), value ``2**k / sqrt(V)`` truncated, error in ``(-1, 0]`` LSB;
* computed as ``isqrt(floor(2**(2k) / V))``, which equals ``floor(2**k / sqrt(V))`` exactly:
  ``floor(sqrt(floor(z))) = floor(sqrt(z))`` for every real ``z >= 0`` (``m**2 <= z`` iff
  ``m**2 <= floor(z)`` for an integer ``m``);
* ``V = 0``: ``y = 2**(k+1) - 1`` (all ones, "saturated infinity");
* ``k <= 31`` so that ``2**(2k)`` fits the int64 model and a 63-bit divider;
* RTL latency ``3k + 3`` cycles from the input transfer to ``m_valid`` (divide ``2k + 1``,
  handoff 1, square root ``k + 1``); a new input every ``2k + 2`` cycles.

:func:`isqrt` is a vectorised exact integer square root (``math.isqrt`` semantics) for int64
inputs up to ``2**63 - 1``: a float64 estimate then an exact integer fix-up in uint64.

>>> rsqrt([0, 1, 2, 4, 5], RsqrtParams(v_w=4, k=8)).tolist()
[511, 256, 181, 128, 114]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from refmodel.numerics.units.reciprocal import DividerParams, UnitError

__all__ = ["RsqrtParams", "IsqrtParams", "isqrt", "rsqrt", "exhaustive_error"]


def isqrt(n: npt.ArrayLike) -> np.ndarray:
    """``floor(sqrt(n))`` exactly, elementwise, for int64 ``0 <= n <= 2**63 - 1`` (any shape).
    ``ValueError`` for negative input."""
    n = np.asarray(n, dtype=np.int64)
    if n.size and int(n.min()) < 0:
        raise ValueError(f"isqrt: negative input {int(n.min())}")
    u = n.astype(np.uint64)
    # float64 rounds n to 53 bits; sqrt of that is within 1 of the true root for n < 2^63
    s = np.floor(np.sqrt(n.astype(np.float64))).astype(np.uint64)
    one = np.uint64(1)
    s = np.minimum(s, np.uint64(3037000499))  # isqrt(2^63 - 1): keeps s*s and (s+1)^2 in uint64
    for _ in range(2):
        s = np.where(s * s > u, s - one, s)
    for _ in range(2):
        s1 = s + one
        s = np.where(s1 * s1 <= u, s1, s)
    s1 = s + one
    if not bool(np.all((s * s <= u) & (s1 * s1 > u))):  # cannot happen; guards the argument above
        raise RuntimeError("isqrt: fix-up did not converge")
    return s.astype(np.int64)


@dataclass(frozen=True)
class IsqrtParams:
    """``rtl/rsqrt_isqrt.v``: input ``in_w`` bits (1..63), root ``ceil(in_w / 2)`` bits."""

    in_w: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.in_w <= 63:
            raise ValueError(f"isqrt in_w must be in 1..63, got {self.in_w}")

    @property
    def out_w(self) -> int:
        return (self.in_w + 1) // 2

    def to_hdl(self) -> dict[str, int]:
        return {"IN_W": self.in_w}

    @property
    def latency(self) -> int:
        """RTL cycles from input transfer to ``m_valid``."""
        return self.out_w


@dataclass(frozen=True)
class RsqrtParams:
    """``y = floor(2**k / sqrt(V))`` for unsigned ``v_w``-bit ``V`` (1..62), ``k`` in 1..31."""

    v_w: int = 32
    k: int = 31

    def __post_init__(self) -> None:
        if not 1 <= self.v_w <= 62:
            raise ValueError(f"rsqrt v_w must be in 1..62, got {self.v_w}")
        if not 1 <= self.k <= 31:
            raise ValueError(f"rsqrt k must be in 1..31 (2^(2k) must fit int64), got {self.k}")

    @property
    def out_w(self) -> int:
        return self.k + 1

    @property
    def divider(self) -> DividerParams:
        return DividerParams(num_w=2 * self.k + 1, den_w=self.v_w)

    @property
    def sqrt(self) -> IsqrtParams:
        return IsqrtParams(in_w=2 * self.k + 1)

    def to_hdl(self) -> dict[str, int]:
        """Verilog parameters of ``rtl/rsqrt.v``."""
        return {"V_W": self.v_w, "K": self.k}

    @property
    def latency(self) -> int:
        """RTL cycles from the input transfer to ``m_valid``."""
        return self.divider.latency + 1 + self.sqrt.latency

    @property
    def interval(self) -> int:
        """RTL cycles between accepted inputs at full rate."""
        return self.divider.latency + 1


def rsqrt(v: npt.ArrayLike, params: RsqrtParams) -> np.ndarray:
    """``floor(2**k / sqrt(v))`` exactly, elementwise (int64, any shape); ``v = 0`` gives
    ``2**(k+1) - 1``. ``ValueError`` for ``v`` outside ``0 .. 2**v_w - 1``."""
    p = params
    v = np.asarray(v, dtype=np.int64)
    if v.size and (int(v.min()) < 0 or int(v.max()) >= (1 << p.v_w)):
        raise ValueError(f"rsqrt: V must be an unsigned {p.v_w}-bit code, got range {int(v.min())}..{int(v.max())}")
    q = (np.int64(1) << np.int64(2 * p.k)) // np.maximum(v, 1)
    return np.where(v == 0, np.int64((1 << (p.k + 1)) - 1), isqrt(q)).astype(np.int64)


def exhaustive_error(params: RsqrtParams, max_exhaustive: int = 1 << 20, n_random: int = 1 << 18,
                     seed: int = 0) -> UnitError:
    """Max error of :func:`rsqrt` against float64 ``2**k / sqrt(V)`` for ``V >= 1``, in output
    LSB (the floor gives ``[0, 1)``); relative error over exact >= 1 LSB. Exhaustive when
    ``2**v_w <= max_exhaustive``; otherwise every ``V < max_exhaustive / 2``, ``n_random`` uniform
    ``V``, the top 1024 codes and every power of two and its neighbours."""
    p = params
    top = 1 << p.v_w
    if top <= max_exhaustive:
        v = np.arange(1, top, dtype=np.int64)
        exhaustive = True
    else:
        rng = np.random.default_rng(seed)
        pw = np.array([(1 << i) + dlt for i in range(1, p.v_w) for dlt in (-1, 0, 1)], dtype=np.int64)
        v = np.concatenate([
            np.arange(1, max_exhaustive // 2, dtype=np.int64),
            rng.integers(1, top, size=n_random, dtype=np.int64),
            np.arange(top - 1024, top, dtype=np.int64),
            pw,
        ])
        exhaustive = False
    y = rsqrt(v, p).astype(np.float64)
    exact = np.ldexp(1.0 / np.sqrt(v.astype(np.float64)), p.k)
    err = np.abs(exact - y)
    i = int(np.argmax(err))
    big = exact >= 1.0
    rel = float((err[big] / exact[big]).max()) if big.any() else 0.0
    return UnitError("rsqrt", float(err[i]), rel, int(v[i]), int(v.size), exhaustive, 1.0,
                     note=f"floor(2^{p.k}/sqrt(V)), V in 1..2^{p.v_w}-1")
