"""Accumulation policies of a reduction (sum / inner product) and their error bounds.

A reduction of ``K`` terms ``p_1..p_K`` (already rounded products, exact values given) into an
accumulator, optionally started from an initial value ``b`` (a bias added inside the
accumulator). Policies (:class:`Accum`):

* ``exact``: the sum is exact (Kulisch / wide accumulator); 0 error.
* ``rounded(fmt)``: the sum is exact, then rounded ONCE into ``fmt`` (``numerics.accumulate``'s
  ``exact`` policy with a float output format, e.g. a norm's mean sum held in fp32):
  ``u |S| + eta <= u A + eta``.
* ``sequential(fmt)``: ``acc = fl(acc + p_k)`` for k = 1..K; K roundings (K+1 with an initial
  value; the first add is counted as a rounding, which is conservative by at most one).
* ``blocked(fmt, block, inner=None, round_block=False)``: blocks of ``block`` terms are summed
  exactly (``inner=None``) or recursively in ``inner`` (``block`` roundings each), and each block
  sum is added to the accumulator with one rounding: ``ceil(K/block)`` outer roundings. With
  ``round_block`` the exact block sum is first rounded into ``fmt`` (one more rounding per block):
  this is :class:`refmodel.numerics.accumulate.Blocked` (``acc_j = round(acc + round(B_j))``).
* ``fixed(fmt, overflow)``: two's-complement accumulator, exact adds. Products enter exactly when
  their fraction fits, else with one rounding each (``term``). Overflow is checked against the data
  (wrap: only the final sum must fit, because modular adds are exact; saturate/error: every
  partial sum must fit).

Rigorous bound (rounding model ``fl(z) = z(1+d) + e``, ``|d| <= u``, ``|e| <= eta``; ``A = sum|p_k|``
plus ``|b|``; ``n`` outer roundings; ``g_m = gamma_m``):

    sequential:  g_n(u) A + n eta (1 + g_n)
    blocked:     (1 + g_nb) I + g_nb A + nb eta (1 + g_nb),   I = g_block(u_in) A + K eta_in (1 + g_block)
                 (I = u A + nb eta with round_block; I = 0 for exact blocks)
    fixed:       K * term.abs

Statistical bound (first order, probabilistic): the error is the sum of the local rounding errors
``e_k`` with ``|e_k| <= u |t_k|`` where ``t_k`` is the value being rounded (the partial sum at a
rounding point). Under the mean-independence model (Higham & Mary 2019) Azuma-Hoeffding gives
``|sum e_k| <= lam sqrt(sum (u t_k)^2)`` with probability ``>= 1 - 2 exp(-lam^2/2)``.
:class:`PartialSums` computes ``sqrt(sum t_k^2)`` from the exact partial sums (first order: the
computed partial sums differ from them by O(u)). Without partial sums the HM form
``gamma_tilde_n(u) A`` is used instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..numerics.fixed import FixedFormat
from ..numerics.minifloat import FloatFormat
from ..numerics.rounding import Overflow, Rounding
from .model import DEFAULT_ALPHA, EXACT, RoundingModel, gamma, gamma_tilde, lambda_azuma, lambda_hm, rounding_model

__all__ = ["Accum", "PartialSums", "RunningSum", "running_error", "MatmulTerms", "LastAxisTerms", "matmul_coherent"]


@dataclass(frozen=True)
class Accum:
    """Accumulation policy; build with :meth:`exact`, :meth:`sequential`, :meth:`blocked`, :meth:`fixed`."""

    kind: str
    model: RoundingModel = EXACT
    block: int = 1
    inner: RoundingModel | None = None
    term: RoundingModel = EXACT
    fmt: Any = None
    inner_fmt: Any = None
    rounding: str = "rne"
    round_block: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("exact", "rounded", "sequential", "blocked", "fixed"):
            raise ValueError(f"Accum kind must be exact|rounded|sequential|blocked|fixed, got {self.kind!r}")
        if self.block < 1:
            raise ValueError(f"Accum block size must be >= 1, got {self.block}")

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def exact(cls) -> Accum:
        """Exact sum (one rounding happens later, into the output)."""
        return cls("exact")

    @classmethod
    def rounded(cls, fmt: Any, rounding: Rounding | str = "rne") -> Accum:
        """Exact sum, then one rounding into ``fmt`` (``fmt`` may be a :class:`RoundingModel`)."""
        r = Rounding.parse(rounding).value
        m = fmt if isinstance(fmt, RoundingModel) else rounding_model(fmt, r)
        return cls("rounded", m, 1, None, EXACT, None if isinstance(fmt, RoundingModel) else _parse(fmt), None, r)

    @classmethod
    def sequential(cls, fmt: Any, rounding: Rounding | str = "rne") -> Accum:
        """Recursive summation, one rounding into ``fmt`` per add (FMA-style when products are exact)."""
        r = Rounding.parse(rounding).value
        return cls("sequential", rounding_model(fmt, r), 1, None, EXACT, _parse(fmt), None, r)

    @classmethod
    def blocked(cls, fmt: Any, block: int, inner: Any = None, rounding: Rounding | str = "rne",
                round_block: bool = False) -> Accum:
        """Blocks of ``block`` terms summed exactly (``inner=None``) or recursively in ``inner``,
        then added to the ``fmt`` accumulator with one rounding per block (``round_block``: the
        exact block sum is rounded into ``fmt`` first, as ``numerics.accumulate.Blocked``)."""
        r = Rounding.parse(rounding).value
        if inner is not None and round_block:
            raise ValueError("Accum.blocked: round_block applies to exact block sums (inner=None)")
        inner_m = None if inner is None else rounding_model(inner, r)
        return cls("blocked", rounding_model(fmt, r), int(block), inner_m, EXACT, _parse(fmt),
                   None if inner is None else _parse(inner), r, bool(round_block))

    @classmethod
    def from_policy(cls, policy: Any, *, product_frac: int | None = None,
                    rounding: Rounding | str = "rne") -> Accum:
        """The :class:`Accum` of a :mod:`refmodel.numerics.accumulate` policy (object or spec
        string such as ``sequential:fp16``, ``blocked:fp32:32``, ``acc:s48.24:sat``).
        ``product_frac``: fraction bits of fixed-point products (needed for ``acc:<w>`` without a
        fraction, and to know whether products are rounded on entry)."""
        from ..numerics import accumulate as _acc

        p = _acc.parse_policy(policy)
        if isinstance(p, _acc.Exact):
            return cls.exact()
        if isinstance(p, _acc.Sequential):
            return cls.sequential(p.fmt, rounding)
        if isinstance(p, _acc.Blocked):
            return cls.blocked(p.fmt, p.k, None, rounding, round_block=True)
        if p.frac is None and product_frac is None:
            raise ValueError(f"Accum.from_policy: {p} has no fraction; pass product_frac")
        fmt = p.format_for(product_frac if p.frac is None else p.frac)
        return cls.fixed(fmt, p.overflow, product_frac=product_frac, rounding=rounding)

    @classmethod
    def fixed(cls, fmt: FixedFormat | str, overflow: Overflow | str = "saturate", *,
              product_frac: int | None = None, rounding: Rounding | str = "rne") -> Accum:
        """Fixed-point accumulator ``fmt`` (exact adds). ``product_frac``: fraction bits of the
        incoming products; when larger than ``fmt.frac`` each product is rounded on entry."""
        fmt = FixedFormat.parse(fmt)
        ov = Overflow.parse(overflow).value
        r = Rounding.parse(rounding).value
        rng = RoundingModel(0.0, 0.0, fmt.max, fmt.min, ov, True, f"acc {fmt}/{ov}")
        term = EXACT
        if product_frac is not None and product_frac > fmt.frac:
            term = rounding_model(fmt, r, overflow=ov)
        return cls("fixed", rng, 1, None, term, fmt, None, r)

    # ---- counts ---------------------------------------------------------------------------
    def outer_roundings(self, K: int, init: bool = False) -> int:
        if self.kind == "sequential":
            return K + int(init)
        if self.kind == "blocked":
            return -(-K // self.block) + int(init)
        if self.kind == "rounded":
            return 1
        return 0

    @property
    def label(self) -> str:
        if self.kind == "exact":
            return "exact"
        if self.kind == "rounded":
            return f"exact->{self.fmt if self.fmt is not None else self.model.label}"
        if self.kind == "sequential":
            return f"seq({self.fmt})"
        if self.kind == "blocked":
            tail = ", in " + str(self.inner_fmt) if self.inner_fmt is not None else (", rb" if self.round_block else "")
            return f"blk{self.block}({self.fmt}{tail})"
        return f"fixacc({self.fmt},{self.model.overflow})"

    @property
    def needs_partial_sums(self) -> bool:
        """True when the statistical tier uses partial sums (float accumulators with unbiased rounding)."""
        return self.kind in ("sequential", "blocked", "rounded") and self.model.unbiased and (
            self.inner is None or self.inner.unbiased)

    # ---- bounds ---------------------------------------------------------------------------
    def error(self, K: int, A: Any, *, init: bool = False, ss_outer: Any = None, ss_inner: Any = None,
              alpha: float = DEFAULT_ALPHA) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(rigorous, statistical, reasons) bound on ``|computed sum - exact sum of the terms|``.

        ``K``: number of terms (products); ``init``: an initial value (bias) enters the
        accumulator too; ``A``: ``sum |terms|`` including ``|init|`` (array, broadcast);
        ``ss_outer``/``ss_inner``: ``sqrt(sum t_k^2)`` over the outer/inner rounding points
        (from :class:`PartialSums`), or None for the HM form of the statistical tier.
        Overflow is not checked here (see :meth:`range_reasons`).
        """
        A = np.asarray(A, dtype=np.float64)
        zero = np.zeros_like(A)
        if self.kind == "exact":
            return zero, zero, []
        if self.kind == "rounded":
            # one rounding of the exact sum S, |S| <= A (the terms' exact sum is only first-order
            # known to the caller, so the rigorous tier uses A; the statistical one |S| when given)
            u, eta = self.model.rel, self.model.abs
            rig = u * A + eta
            stat = rig if ss_outer is None else np.minimum(u * np.asarray(ss_outer, dtype=np.float64) + eta, rig)
            return rig, stat, []
        if self.kind == "fixed":
            rig = zero + K * self.term.abs
            if self.term.unbiased and self.term.abs > 0:
                stat = zero + lambda_azuma(alpha) * math.sqrt(K) * self.term.abs
            else:
                stat = rig
            return rig, stat, []
        reasons: list[str] = []
        u, eta = self.model.rel, self.model.abs
        n = self.outer_roundings(K, init)
        g = gamma(n, u)
        if g.reason:
            reasons.append(f"{g.reason} [accumulation {self.label}, {n} roundings]")
        inner_rig = zero
        inner_abs = 0.0
        if self.kind == "blocked" and self.inner is not None:
            gi = gamma(min(self.block, K), self.inner.rel)
            if gi.reason:
                reasons.append(f"{gi.reason} [in-block accumulation {self.inner.label}, block {self.block}]")
            inner_abs = K * self.inner.abs * (1 + gi.value) if gi.ok else math.inf
            inner_rig = gi.value * A + inner_abs if gi.ok else zero + math.inf
        elif self.kind == "blocked" and self.round_block:
            inner_rig = u * A + (n - int(init)) * eta
        if reasons:
            rig = zero + math.inf
        else:
            rig = (1 + g.value) * inner_rig + g.value * A + n * eta * (1 + g.value)
        # statistical tier
        unb = self.model.unbiased and (self.inner is None or self.inner.unbiased)
        lin_abs = n * eta + (K * self.inner.abs if (self.kind == "blocked" and self.inner is not None) else 0.0)
        if self.kind == "blocked" and self.round_block:
            lin_abs += (n - int(init)) * eta
        if not unb:
            stat = rig
        elif ss_outer is not None:
            var = (u * np.asarray(ss_outer, dtype=np.float64)) ** 2
            if self.kind == "blocked" and (self.inner is not None or self.round_block):
                if ss_inner is None:
                    raise ValueError("Accum.error: blocked with inner roundings needs ss_inner")
                ui = self.inner.rel if self.inner is not None else u
                var = var + (ui * np.asarray(ss_inner, dtype=np.float64)) ** 2
            stat = lambda_azuma(alpha) * np.sqrt(var) + lin_abs
        else:
            lam = lambda_hm(n, u, alpha)
            gt = gamma_tilde(n, u, lam)
            st_inner = zero
            if self.kind == "blocked" and self.inner is not None:
                b = min(self.block, K)
                st_inner = gamma_tilde(b, self.inner.rel, lambda_hm(b, self.inner.rel, alpha)) * A
            elif self.kind == "blocked" and self.round_block:
                st_inner = u * A
            stat = (1 + gt) * st_inner + gt * A + lin_abs
        return rig, np.minimum(stat, rig), reasons

    def proxy(self, K: int, A: Any, *, init: bool = False, ss_outer: Any = None, ss_inner: Any = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """First-order split of the accumulation error for the statistical tier of a propagation:
        ``(V, D)`` with ``V`` the sub-Gaussian variance proxy of the mean-zero, independent part
        (``sum (u t_k)^2`` over the rounding points, from :class:`PartialSums`) and ``D`` a
        deterministic bound on the rest (subnormal quanta, biased roundings: their rigorous bound).
        Without partial sums, an unbiased accumulation falls back to ``D`` = the HM form."""
        A = np.asarray(A, dtype=np.float64)
        zero = np.zeros_like(A)
        if self.kind == "exact":
            return zero, zero
        if self.kind == "fixed":
            if self.term.abs == 0:
                return zero, zero
            if self.term.unbiased:
                return zero + K * self.term.abs ** 2, zero
            return zero, zero + K * self.term.abs
        rig, stat, _ = self.error(K, A, init=init, ss_outer=ss_outer, ss_inner=ss_inner)
        u, eta = self.model.rel, self.model.abs
        if self.kind == "rounded":
            if not self.model.unbiased:
                return zero, rig
            S = A if ss_outer is None else np.asarray(ss_outer, dtype=np.float64)
            return (u * S) ** 2 + zero, zero + eta
        if not self.needs_partial_sums or ss_outer is None:
            return zero, np.where(np.isfinite(rig), stat, stat)
        n = self.outer_roundings(K, init)
        V = (u * np.asarray(ss_outer, dtype=np.float64)) ** 2
        lin = n * eta
        if self.kind == "blocked" and self.inner is not None:
            V = V + (self.inner.rel * np.asarray(ss_inner, dtype=np.float64)) ** 2
            lin += K * self.inner.abs
        elif self.kind == "blocked" and self.round_block:
            V = V + (u * np.asarray(ss_inner, dtype=np.float64)) ** 2
            lin += (n - int(init)) * eta
        return V + zero, zero + lin

    def range_reasons(self, what: str, A: Any, err: Any, *, final: Any = None,
                      max_partial: Any = None) -> tuple[np.ndarray, list[str]]:
        """Overflow check of the accumulator: mask of components that may overflow, and reasons.

        ``A``: bound on every exact partial sum magnitude (sum |terms|); ``err``: rigorous
        accumulation error bound; ``final``: exact final sum (wrap accumulators only need it to
        fit); ``max_partial``: exact max |partial sum| (saturating fixed accumulators).
        """
        A = np.asarray(A, dtype=np.float64)
        if self.kind == "exact":
            return np.zeros(A.shape, bool), []
        err = np.asarray(err, dtype=np.float64)
        # a vacuous (inf) error bound voids the rigorous tier elsewhere; check the range on the exact sums
        err = np.where(np.isfinite(err), err, 0.0)
        top = A + err
        mx = self.model.max
        if self.kind == "fixed":
            ov = self.model.overflow
            mask = top > mx
            if np.any(mask):
                if ov == "wrap" and final is not None:
                    mask = mask & (np.abs(np.asarray(final)) + err > mx)
                elif max_partial is not None:
                    mask = mask & (np.asarray(max_partial) + err > mx)
            if np.any(mask):
                return mask, [f"no guarantee: {what} accumulator {self.fmt} ({ov}) may overflow: partial sums up to "
                              f"{float(np.max(np.where(mask, top, 0))):.6g} > max {mx:.6g} "
                              f"({int(mask.sum())} component(s))"]
            return mask, []
        mask = ~(top <= mx)
        if np.any(mask):
            return mask, [f"no guarantee: {what} accumulator {self.fmt} may overflow: sum|terms| + error up to "
                          f"{float(np.max(np.where(mask & np.isfinite(top), top, 0))):.6g} > max {mx:.6g} "
                          f"({int(mask.sum())} component(s))"]
        return mask, []


def _parse(fmt: Any) -> Any:
    if isinstance(fmt, (FloatFormat, FixedFormat)) or fmt is None:
        return fmt
    if isinstance(fmt, str):
        from ..numerics.formats import parse_format

        return parse_format(fmt)
    return fmt


class PartialSums:
    """Exact (float64) partial sums of a reduction fed in chunks along the last axis.

    Tracks, for the statistical tier and the overflow check: ``ss_outer`` = sqrt(sum of squared
    partial sums at the accumulator's rounding points), ``ss_inner`` = the same for in-block
    rounding points (blocked with a recursive inner sum), ``max_abs`` = max |partial sum| over
    every prefix, ``total`` = the sum. Chunks must be whole blocks except the last one.

    Coherent terms (``feed(chunk, coherent=mask)``): rounding points where the term duplicates
    another term of the same sum (a repeated token) need not have independent rounding errors:
    adding the same value to a partial sum in the same binade gives the same error every time. Their
    partial sums enter ``ss_outer`` / ``ss_inner`` linearly, as one fully correlated group:
    ``sqrt(sum_indep t_k^2 + (sum_coherent |t_k|)^2)``.
    """

    def __init__(self, shape: tuple[int, ...], acc: Accum, init: Any = None) -> None:
        self.acc = acc
        self.total = np.zeros(shape, dtype=np.float64)
        self._so = np.zeros(shape, dtype=np.float64)
        self._si = np.zeros(shape, dtype=np.float64)
        self._co = np.zeros(shape, dtype=np.float64)
        self._ci = np.zeros(shape, dtype=np.float64)
        self.max_abs = np.zeros(shape, dtype=np.float64)
        if init is not None:
            b = np.broadcast_to(np.asarray(init, dtype=np.float64), shape)
            self.total = self.total + b
            self.max_abs = np.abs(self.total)
            if acc.kind in ("sequential", "blocked"):
                self._so += b * b

    @property
    def ss_outer(self) -> np.ndarray:
        if self.acc.kind == "rounded":
            return np.abs(self.total)  # the one rounding point: the final sum
        return np.sqrt(self._so + self._co * self._co)

    @property
    def ss_inner(self) -> np.ndarray:
        return np.sqrt(self._si + self._ci * self._ci)

    @staticmethod
    def _split(points: np.ndarray, coh: np.ndarray | None, axis: Any) -> tuple[Any, Any]:
        """(sum of squares of the independent rounding points, sum of |coherent| ones)."""
        if coh is None:
            return np.sum(points * points, axis=axis), 0.0
        return (np.sum(np.where(coh, 0.0, points * points), axis=axis),
                np.sum(np.where(coh, np.abs(points), 0.0), axis=axis))

    def feed(self, chunk: np.ndarray, coherent: np.ndarray | None = None) -> None:
        chunk = np.asarray(chunk, dtype=np.float64)
        c = chunk.shape[-1]
        if c == 0:
            return
        coh = None if coherent is None else np.broadcast_to(np.asarray(coherent, dtype=bool), chunk.shape)
        if self.acc.kind == "blocked":
            b = self.acc.block
            full = (c // b) * b
            parts = [(0, full)] if full else []
            if full < c:
                parts.append((full, c))
            for k0, k1 in parts:
                part = chunk[..., k0:k1]
                bb = min(b, part.shape[-1])
                shp = part.shape[:-1] + (part.shape[-1] // bb, bb)
                blocks = part.reshape(shp)
                cb = None if coh is None else coh[..., k0:k1].reshape(shp)
                cblk = None if cb is None else np.any(cb, axis=-1)  # a block with a repeated term
                inner = np.cumsum(blocks, axis=-1)
                bsum = inner[..., -1]
                if self.acc.inner is not None:
                    a, lin = self._split(inner, cb, (-1, -2))
                    self._si += a
                    self._ci += lin
                elif self.acc.round_block:
                    a, lin = self._split(bsum, cblk, -1)
                    self._si += a
                    self._ci += lin
                outer = np.cumsum(bsum, axis=-1) + self.total[..., None]
                a, lin = self._split(outer, cblk, -1)
                self._so += a
                self._co += lin
                prefix = inner + (outer - bsum)[..., None]
                self.max_abs = np.maximum(self.max_abs, np.max(np.abs(prefix), axis=(-1, -2)))
                self.total = outer[..., -1]
            return
        cs = np.cumsum(chunk, axis=-1) + self.total[..., None]
        if self.acc.kind == "sequential":
            a, lin = self._split(cs, coh, -1)
            self._so += a
            self._co += lin
        self.max_abs = np.maximum(self.max_abs, np.max(np.abs(cs), axis=-1))
        self.total = cs[..., -1]


def _hulp(m: np.ndarray, model: RoundingModel) -> np.ndarray:
    """``rel 2^floor(log2 m) + abs`` for ``m >= 0`` (0 at ``m = 0``): the largest error of one
    rounding of a value of magnitude at most ``m`` (half an ulp of ``m``'s binade for a nearest
    rounding, one ulp for a directed one; ``abs`` covers the subnormal range)."""
    _, e = np.frexp(m)
    h = np.ldexp(model.rel, e - 1)
    return np.where(m > 0, h, 0.0) + model.abs


@dataclass
class RunningSum:
    """Result of :func:`running_error`: the rigorous bound ``error`` on ``|computed - exact|``, the
    largest exact partial sum magnitude ``peak`` (range check), and ``ss_outer`` / ``ss_inner``
    as :class:`PartialSums` gives them (statistical tier), from the same pass over the terms."""

    error: np.ndarray
    peak: np.ndarray
    ss_outer: np.ndarray
    ss_inner: np.ndarray


def running_error(terms: Any, acc: Accum, *, init: Any = None, A: Any = None, coherent: Any = None,
                  compiled: bool = True) -> RunningSum | None:
    """A posteriori rigorous bound on ``|computed sum - exact sum|`` of a float accumulation,
    from the exact partial sums of the data (Higham 2002, section 4.2, running error analysis).

    ``terms``: a sequence of ``K`` arrays (the exact terms, all of the output's shape; e.g.
    :class:`MatmulTerms`, :class:`LastAxisTerms`); ``init``: an initial value (bias) in the
    accumulator; ``A``: a bound on ``sum |terms| (+ |init|)`` per output (for the float64
    evaluation slack; computed when None); ``coherent``: a parallel sequence of masks marking
    repeated terms (:class:`PartialSums`); ``compiled``: a matrix product with a sequential
    accumulator runs the same operations as a compiled loop (:mod:`._running_kernels`,
    bit-identical; False: this numpy loop, the oracle). Returns a :class:`RunningSum`, or None for
    policies without a running bound (exact, fixed, blocked with a recursive inner sum).

    The error of a recursive sum is exactly the sum of its local rounding errors,
    ``s_hat_K - s_K = sum_k delta_k``; each ``|delta_k| <= h(|x_k|)`` with ``x_k`` the value
    rounded at step k and ``h`` the half-ulp (one ulp for directed rounding) of its binade
    (:func:`_hulp`); ``|x_k| <= |s_k| + E_(k-1)`` with ``s_k`` the exact partial sum and
    ``E_(k-1)`` the bound so far (an exact zero term adds no rounding), so
    ``E_k = E_(k-1) + h(|s_k| + E_(k-1) + slack)`` is rigorous for the declared order
    (``slack = gamma_(K+2)(2^-53) A`` covers the float64 evaluation of ``s_k``). Blocked
    (``numerics.accumulate.Blocked``): the exact block sum ``B_j`` is rounded (``h(|B_j|)``) and
    then added (``h(|S_j| + E + h(|B_j|))``). Compared with ``gamma_n A`` it replaces
    ``sum |terms|`` at every step by the actual partial sum: about ``sqrt(K)`` tighter on
    mean-zero data, and finite for any ``K`` (no ``n u < 1`` condition).
    """
    if acc.kind not in ("sequential", "blocked", "rounded") or (acc.kind == "blocked" and acc.inner is not None):
        return None
    K = len(terms)
    if K == 0:
        return None
    shape = np.shape(terms[0])
    if A is None:
        A = np.zeros(shape)
        for k in range(K):
            A = A + np.abs(np.asarray(terms[k], dtype=np.float64))
        if init is not None:
            A = A + np.abs(np.asarray(init, dtype=np.float64))
    slack = gamma(K + 2, 2.0 ** -53).value * np.asarray(A, dtype=np.float64)
    m = acc.model
    if acc.kind == "sequential" and init is None and isinstance(terms, MatmulTerms) and compiled:
        from ._running_kernels import sequential_running  # the same operations, compiled

        coh_mask = None if coherent is None else np.asarray(coherent.mask, dtype=bool)
        E_c, peak_c, ss_c = sequential_running(terms.a, terms.b, m.rel, m.abs, slack, coh_mask)
        return RunningSum(E_c, peak_c + slack, ss_c, np.zeros(shape))
    S = np.zeros(shape) if init is None else np.broadcast_to(np.asarray(init, dtype=np.float64), shape).copy()
    E = np.zeros(shape)
    peak = np.abs(S)
    so = S * S  # sum of squares of the independent rounding points (outer / inner)
    si = np.zeros(shape)
    co = np.zeros(shape)  # sum of |coherent| rounding points
    ci = np.zeros(shape)

    def coh(k: int) -> Any:
        return None if coherent is None else coherent[k]

    if acc.kind == "rounded":
        for k in range(K):
            S = S + np.asarray(terms[k], dtype=np.float64)
            peak = np.maximum(peak, np.abs(S))
        return RunningSum(_hulp(np.abs(S) + slack, m), peak + slack, np.abs(S), np.zeros(shape))
    if acc.kind == "sequential":
        started = init is not None
        for k in range(K):
            t = np.asarray(terms[k], dtype=np.float64)
            S = S + t
            aS = np.abs(S)
            peak = np.maximum(peak, aS)
            if k == 0 and not started:  # acc_0 = round(p_0)
                E = _hulp(aS + slack, m)
            else:  # adding an exact zero to the (representable) accumulator does not round
                E = E + np.where(t != 0, _hulp(aS + E + slack, m), 0.0)
            c = coh(k)
            if c is None:
                so = so + S * S
            else:
                so = so + np.where(c, 0.0, S * S)
                co = co + np.where(c, aS, 0.0)
        return RunningSum(E, peak + slack, np.sqrt(so + co * co), np.zeros(shape))
    # blocked: blocks of acc.block terms summed exactly, rounded, added with one rounding
    b = acc.block
    first = init is None
    for j0 in range(0, K, b):
        B = np.zeros(shape)
        cb: Any = False
        for k in range(j0, min(K, j0 + b)):
            B = B + np.asarray(terms[k], dtype=np.float64)
            peak = np.maximum(peak, np.abs(S + B))
            c = coh(k)
            if c is not None:
                cb = cb | np.asarray(c, bool)
        S = S + B
        beta = _hulp(np.abs(B) + slack, m)
        if first:  # acc_0 = round(B_0)
            E = beta
            first = False
        else:
            E = E + beta + _hulp(np.abs(S) + E + beta + slack, m)
        so = so + np.where(cb, 0.0, S * S)
        co = co + np.where(cb, np.abs(S), 0.0)
        si = si + np.where(cb, 0.0, B * B)
        ci = ci + np.where(cb, np.abs(B), 0.0)
    return RunningSum(E, peak + slack, np.sqrt(so + co * co), np.sqrt(si + ci * ci))


class _Coherent:
    """``mask[..., :, k, None]`` of a ``(..., M, K)`` mask, as a sequence over ``k``."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask

    def __len__(self) -> int:
        return int(self.mask.shape[-1])

    def __getitem__(self, k: int) -> np.ndarray:
        return self.mask[..., :, k, None]


class MatmulTerms:
    """The terms ``a[..., m, k] b[..., k, n]`` of ``a @ b`` as a sequence over ``k`` (for
    :func:`running_error`): ``len`` is K, item ``k`` the ``(..., M, N)`` array of products."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)

    def __len__(self) -> int:
        return int(self.a.shape[-1])

    def __getitem__(self, k: int) -> np.ndarray:
        return self.a[..., :, k, None] * self.b[..., None, k, :]


class LastAxisTerms:
    """The terms ``t[..., k]`` of a sum over the last axis, as a sequence over ``k`` (item ``k``
    is ``t[..., k:k+1]``: the per-row result keeps a length-1 last axis)."""

    def __init__(self, t: np.ndarray) -> None:
        self.t = np.moveaxis(np.asarray(t, dtype=np.float64), -1, 0).copy()

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def __getitem__(self, k: int) -> np.ndarray:
        return self.t[k][..., None]


def matmul_coherent(mask: np.ndarray) -> _Coherent:
    """The coherent-term masks of ``a @ b`` from a ``(..., M, K)`` mask over ``a``'s terms (broadcast
    over the output columns), as :func:`running_error` takes them."""
    return _Coherent(np.asarray(mask, dtype=bool))
