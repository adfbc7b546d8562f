"""Exact unsigned divider / reciprocal: integer model of ``rtl/reciprocal.v`` (serial restoring
division, one quotient bit per clock).

Numeric contract
----------------
:func:`divide` (``DividerParams(num_w, den_w)``):
  * ``A``: unsigned ``num_w``-bit code, ``B``: unsigned ``den_w``-bit code;
  * ``Q = floor(A / B)`` (``num_w`` bits), ``R = A - Q*B`` (``den_w`` bits): exact, the model is
    Python/numpy ``//`` and ``%``;
  * ``B = 0``: ``Q = 2**num_w - 1`` (all ones, "saturated infinity"), ``R = A mod 2**den_w`` (what
    the restoring recurrence leaves in the remainder register);
  * RTL latency ``num_w`` cycles from the input transfer to ``m_valid``; one division at a time.

:func:`reciprocal` (``ReciprocalParams(k, den_w)``): ``Q = floor(2**k / D)`` for unsigned
``den_w``-bit ``D``, i.e. the divider with ``num_w = k + 1`` and ``A = 2**k``. Output format: an
unsigned code whose value is ``2**k / D`` truncated (u{k+1}.0 relative to ``D``'s scale); error
in ``(-1, 0]`` LSB. ``D = 0`` gives ``2**(k+1) - 1``.

:func:`exhaustive_error` measures the reciprocal's error against float64 ``2**k / D`` over the
whole input domain (exhaustive for ``2**den_w <= max_exhaustive``, else a documented sample).
:class:`UnitError` is the common result type of every unit's error sweep.

>>> reciprocal([1, 3, 0], ReciprocalParams(k=8, den_w=4)).tolist()
[256, 85, 511]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "UnitError",
    "DividerParams",
    "ReciprocalParams",
    "divide",
    "reciprocal",
    "exhaustive_error",
]


@dataclass(frozen=True)
class UnitError:
    """Error of a hardware unit's integer output against float64 math over an input domain.

    ``max_abs_err`` is in output LSB, ``max_rel_err`` is ``|y - exact| / |exact|`` over the
    inputs whose exact value is at least ``rel_min_lsb`` LSB (relative error is meaningless near
    an underflow), ``where`` is the input (or row description) attaining ``max_abs_err``, ``n``
    how many inputs were evaluated and ``exhaustive`` whether that was the whole domain."""

    unit: str
    max_abs_err: float
    max_rel_err: float
    where: object
    n: int
    exhaustive: bool
    rel_min_lsb: float = 1.0
    note: str = ""


@dataclass(frozen=True)
class DividerParams:
    """Divider widths: dividend/quotient ``num_w`` (1..63), divisor/remainder ``den_w`` (1..62)."""

    num_w: int = 32
    den_w: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.num_w <= 63:
            raise ValueError(f"divider num_w must be in 1..63, got {self.num_w}")
        if not 1 <= self.den_w <= 62:
            raise ValueError(f"divider den_w must be in 1..62, got {self.den_w}")

    def to_hdl(self) -> dict[str, int]:
        """Verilog parameters of ``rtl/reciprocal.v``."""
        return {"NUM_W": self.num_w, "DEN_W": self.den_w}

    @property
    def latency(self) -> int:
        """RTL cycles from input transfer to ``m_valid``."""
        return self.num_w


@dataclass(frozen=True)
class ReciprocalParams:
    """Reciprocal ``floor(2**k / D)``: ``k`` in 0..62, divisor width ``den_w`` in 1..62."""

    k: int = 31
    den_w: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.k <= 62:
            raise ValueError(f"reciprocal k must be in 0..62, got {self.k}")
        if not 1 <= self.den_w <= 62:
            raise ValueError(f"reciprocal den_w must be in 1..62, got {self.den_w}")

    @property
    def divider(self) -> DividerParams:
        return DividerParams(num_w=self.k + 1, den_w=self.den_w)

    @property
    def out_w(self) -> int:
        return self.k + 1

    def to_hdl(self) -> dict[str, int]:
        """Verilog parameters of ``rtl/reciprocal.v`` (feed ``s_num = 2**k``)."""
        return self.divider.to_hdl()

    @property
    def latency(self) -> int:
        return self.divider.latency


def _as_u(a: npt.ArrayLike, width: int, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    if a.size and (int(a.min()) < 0 or int(a.max()) >> width):
        bad = (a < 0) | ((a >> np.int64(width)) != 0)
        idx = np.unravel_index(int(np.argmax(bad)), a.shape) if a.ndim else ()
        raise ValueError(f"{what} {int(a[idx])} at index {tuple(int(i) for i in idx)} is not an unsigned {width}-bit code")
    return a


def divide(a: npt.ArrayLike, b: npt.ArrayLike, params: DividerParams) -> tuple[np.ndarray, np.ndarray]:
    """``(floor(a / b), a mod b)`` elementwise (broadcasting), int64; ``b = 0`` gives
    ``(2**num_w - 1, a mod 2**den_w)``. See module docstring."""
    p = params
    a = _as_u(a, p.num_w, "divide: dividend")
    b = _as_u(b, p.den_w, "divide: divisor")
    a, b = np.broadcast_arrays(a, b)
    zero = b == 0
    bs = np.where(zero, 1, b)
    q = np.where(zero, np.int64((1 << p.num_w) - 1), a // bs)
    r = np.where(zero, a & np.int64((1 << p.den_w) - 1), a - (a // bs) * bs)
    return q.astype(np.int64), r.astype(np.int64)


def reciprocal(d: npt.ArrayLike, params: ReciprocalParams) -> np.ndarray:
    """``floor(2**k / d)`` elementwise, int64 (``d = 0`` -> ``2**(k+1) - 1``)."""
    return divide(np.int64(1) << np.int64(params.k), d, params.divider)[0]


def exhaustive_error(params: ReciprocalParams, max_exhaustive: int = 1 << 20, n_random: int = 1 << 18,
                     seed: int = 0) -> UnitError:
    """Max error of :func:`reciprocal` against float64 ``2**k / D`` for ``D >= 1`` (``D = 0`` is a
    defined special case, excluded). Exhaustive when ``2**den_w <= max_exhaustive``; otherwise
    every ``D < max_exhaustive/2``, ``n_random`` uniform ``D`` and the top ``1024`` codes. Errors are in
    output LSB (the floor gives ``[0, 1)``); relative error over ``exact >= 1`` LSB."""
    p = params
    top = 1 << p.den_w
    if top <= max_exhaustive:
        d = np.arange(1, top, dtype=np.int64)
        exhaustive = True
    else:
        rng = np.random.default_rng(seed)
        d = np.concatenate([
            np.arange(1, max_exhaustive // 2, dtype=np.int64),
            rng.integers(1, top, size=n_random, dtype=np.int64),
            np.arange(top - 1024, top, dtype=np.int64),
        ])
        exhaustive = False
    q = reciprocal(d, p)
    # exact - q = (2^k - q*d) / d: computed from the integer remainder, so the error itself is
    # exact to float64 precision even where 2^k/D has more than 53 significant bits
    rem = (np.int64(1) << np.int64(p.k)) - q * d
    err = rem.astype(np.float64) / d.astype(np.float64)
    exact = np.ldexp(1.0, p.k) / d.astype(np.float64)
    i = int(np.argmax(err))
    big = exact >= 1.0
    rel = float((err[big] / exact[big]).max()) if big.any() else 0.0
    return UnitError("reciprocal", float(err[i]), rel, int(d[i]), int(d.size), exhaustive, 1.0,
                     note=f"floor(2^{p.k}/D), D in 1..2^{p.den_w}-1")
