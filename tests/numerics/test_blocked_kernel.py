"""The compiled Blocked(F, k) kernel (refmodel/numerics/_seqkernels.py ``blocked``) gives the bits of
the plain statement of the contract, ``accumulate._blocked_loop`` (exact block sums, one rounding
each into F, then acc <- round_F(acc + r) with TwoSum / round to odd / one encode), and on small
finite cases the bits of an exact Fraction oracle written from the definition.

Operands mix random values with a wide exponent spread and the hard values of the format: signed
zeros, +-max (block sums and accumulators overflow to inf, saturate, or give NaN), the smallest
subnormals (results underflow to subnormals and to -0), and values that put block sums and
accumulator adds on exact ties; block sums whose dynamic range exceeds two float64 TwoSum levels
exercise the fall-back rows. Every accumulation format the kernel handles is covered: fp32 (fused
multiply-add step), fp16 (F16C step), bf16 / e5m2 / fp16:sat / e4m3fn (grid-rounding step).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import encode_oracle

from refmodel.numerics import _seqkernels as sk
from refmodel.numerics import accumulate as acc
from refmodel.numerics import minifloat as mf
from refmodel.numerics.minifloat import FloatArray, FloatFormat
from refmodel.numerics.rounding import Overflow, Rounding

OPS = ("bf16", "fp16", "e4m3fn", "fp32")
ACCS = ("fp32", "fp16", "bf16", "e5m2", "fp16:sat", "e4m3fn")


def _desc(f: FloatFormat) -> tuple[int, int, int]:
    return f.man + 1, f.emin - f.man, f.emax + 1


def hard_values(rng: np.random.Generator, shape: tuple[int, ...], f: FloatFormat, acc_fmt: FloatFormat,
                mix: float, spread: int = 30) -> FloatArray:
    """Values of ``f``: a fraction ``mix`` drawn from the format's hard cases (signed zeros, +-max,
    smallest subnormal and normal, 1, 1 + ulp, the accumulator's half-ulp of 1 and its neighbours,
    tiny and huge powers of two), the rest random with exponents spread over [-spread, spread)."""
    sub = 2.0 ** (f.emin - f.man)
    half = 2.0 ** -(acc_fmt.man + 1)  # 1 + half is a tie in the accumulator format
    pool = np.array([0.0, -0.0, f.max, -f.max, sub, -sub, 2.0**f.emin, 1.0, -1.0, 1.0 + 2.0**-f.man,
                     half, -half, half * (1 + 2.0**-f.man), half * (1 - 2.0**-(f.man + 1)), 2.0 ** (f.emin // 2),
                     2.0 ** (f.emax // 2), -(2.0 ** (f.emax // 2)), 3.0, 0.75])
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-spread, spread, shape))
    pick = rng.random(shape) < mix
    x = np.where(pick, rng.choice(pool, shape), x)
    return mf.encode(np.clip(x, -f.max, f.max), f)


def loop(a: FloatArray, b: FloatArray, fmt: FloatFormat, k: int) -> FloatArray:
    """The plain statement: accumulate._blocked_loop on the same operands."""
    r = acc._blocked_loop(acc._as_op(a, "a"), acc._as_op(b, "b"), fmt, k, Rounding.RNE, Overflow.SATURATE, "test")
    assert isinstance(r, FloatArray)
    return r


def same_codes(got: FloatArray, want: FloatArray) -> None:
    assert got.fmt == want.fmt
    bad = got.codes != want.codes
    assert not bad.any(), f"{int(bad.sum())} codes differ, first at {np.argwhere(bad)[0]}: " \
                          f"{got.to_float()[tuple(np.argwhere(bad)[0])]} vs {want.to_float()[tuple(np.argwhere(bad)[0])]}"


def kernel(a: FloatArray, b: FloatArray, fmt: FloatFormat, k: int) -> tuple[FloatArray, np.ndarray]:
    """The kernel alone (values, rows it defers), then matmul's result (kernel + fall-back rows)."""
    how = sk.blocked_plan(fmt, "rne", (_desc(a.fmt), _desc(b.fmt)), k)
    assert how is not None
    vals, bad = sk.blocked(a.to_float(), b.to_float(), fmt, k, how)
    got = acc.matmul(a, b, f"blocked:{fmt}:{k}")
    return got, bad


@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.sampled_from(OPS), acc_spec=st.sampled_from(ACCS), seed=st.integers(0, 2**32 - 1),
       m=st.integers(1, 9), kk=st.integers(1, 70), n=st.integers(1, 12), k=st.integers(1, 40),
       mix=st.sampled_from([0.0, 0.05, 0.2, 0.6]), spread=st.sampled_from([2, 8, 16, 30]))
def test_blocked_kernel_matches_loop(ops, acc_spec, seed, m, kk, n, k, mix, spread):
    """Narrow spreads keep block sums on the plain-sum and TwoSum paths; wide ones and the hard
    values reach the fall-back rows, overflow and NaN."""
    rng = np.random.default_rng(seed)
    f, fmt = mf.PRESETS[ops], FloatFormat.parse(acc_spec)
    a, b = hard_values(rng, (m, kk), f, fmt, mix, spread), hard_values(rng, (kk, n), f, fmt, mix, spread)
    got, _ = kernel(a, b, fmt, k)
    same_codes(got, loop(a, b, fmt, k))


@pytest.mark.parametrize("acc_spec", ACCS)
def test_blocked_kernel_panels_threads_and_row_groups(acc_spec):
    """9 x 300 @ 300 x 261 (a partial row group, two column panels) and a threaded split, on values
    whose block sums stay exact in the kernel (no fall-back rows)."""
    rng = np.random.default_rng(11)
    f, fmt = mf.PRESETS["bf16"], FloatFormat.parse(acc_spec)
    for (m, kk, n), k in (((9, 300, 261), 32), ((37, 400, 300), 7)):
        a = mf.encode(rng.standard_normal((m, kk)) * 0.5, f)
        b = mf.encode(rng.standard_normal((kk, n)) * 0.25, f)
        got, bad = kernel(a, b, fmt, k)
        assert not bad.any()
        same_codes(got, loop(a, b, fmt, k))
    assert 37 * 400 * 300 >= sk._PARALLEL_MIN


def _oracle_blocked(a: np.ndarray, b: np.ndarray, fmt: FloatFormat, k: int) -> float:
    """Blocked(fmt, k) of one dot product from the definition, in Fractions (finite results only)."""
    acc_v: Fraction | None = None
    for j0 in range(0, len(a), k):
        s = sum((Fraction(x) * Fraction(y) for x, y in zip(a[j0:j0 + k], b[j0:j0 + k], strict=True)), Fraction(0))
        r = Fraction(mf.decode(np.array([encode_oracle(s, fmt)]), fmt)[0])
        acc_v = r if acc_v is None else Fraction(mf.decode(np.array([encode_oracle(acc_v + r, fmt)]), fmt)[0])
    assert acc_v is not None
    return float(acc_v)


@settings(deadline=None, max_examples=40)
@given(acc_spec=st.sampled_from(("fp32", "fp16", "bf16")), seed=st.integers(0, 2**32 - 1),
       kk=st.integers(1, 24), k=st.integers(1, 9))
def test_blocked_kernel_matches_fraction_oracle(acc_spec, seed, kk, k):
    """Magnitudes only (the oracle here tracks no zero signs), finite results."""
    rng = np.random.default_rng(seed)
    f, fmt = mf.PRESETS["bf16"], FloatFormat.parse(acc_spec)
    a = hard_values(rng, (1, kk), f, fmt, 0.3)
    b = hard_values(rng, (kk, 1), f, fmt, 0.3)
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(np.abs(a.to_float()) @ np.abs(b.to_float())).all() or \
                np.abs(a.to_float()).max(initial=0) * np.abs(b.to_float()).max(initial=0) * kk >= fmt.max / 2:
            return  # the Fraction oracle here covers finite results
    got, _ = kernel(a, b, fmt, k)
    want = _oracle_blocked(a.to_float()[0], b.to_float()[:, 0], fmt, k)
    assert float(got.to_float()[0, 0]) == want


def test_blocked_ties_double_rounding_and_fallback():
    f32 = mf.PRESETS["fp32"]
    bf = mf.PRESETS["bf16"]
    # row 0: one block 1 + 2^-24, an exact fp32 tie -> 1 (even)
    # row 1: 1 + 2^-24 + 2^-80: 80 bits of range, past the plain-sum bound (TwoSum chains); the
    #        exact sum is above the tie -> 1 + 2^-23 (a float64 sum first would give the tie, then 1)
    # row 2: 1 + 2^-60 + 2^-120 (then 2^-24): the errors of the first chain span 60 bits, so the
    #        second chain is inexact -> the row falls back to the numpy loop; result 1 + 2^-23
    # row 3: blocks of 1: acc 1, then + 2^-24 (tie -> 1), + 2^-24 again (tie -> 1)
    # row 4: 1 + 2^-24 + 2^-56: 56 bits, just past the plain-sum bound 2^53 / k (a plain float64 sum
    #        would drop 2^-56 and land on the tie); the exact sum rounds up to 1 + 2^-23
    a = mf.encode([[1.0, 2.0**-24, 0.0, 0.0], [1.0, 2.0**-24, 2.0**-80, 0.0],
                   [1.0, 2.0**-60, 2.0**-120, 2.0**-24], [1.0, 2.0**-24, 2.0**-24, 0.0],
                   [1.0, 2.0**-24, 2.0**-56, 0.0]], bf)
    b = mf.encode(np.ones((4, 1)), bf)
    got, bad = kernel(a, b, f32, 4)
    v = got.to_float()[:, 0]
    assert v[0] == 1.0 and v[1] == 1.0 + 2.0**-23 and v[2] == 1.0 + 2.0**-23 and v[4] == 1.0 + 2.0**-23
    assert bad.tolist() == [False, False, True, False, False]
    same_codes(got, loop(a, b, f32, 4))
    got1, _ = kernel(a, b, f32, 1)
    assert got1.to_float()[3, 0] == 1.0
    same_codes(got1, loop(a, b, f32, 1))


def test_blocked_overflow_nan_zeros_subnormals():
    f32 = mf.PRESETS["fp32"]
    bf = mf.PRESETS["bf16"]
    t = 2.0**-70
    # row 0: 2^100 * 2^100 overflows fp32 in its block -> inf, later blocks finite: inf
    # row 1: +inf block then -inf block: NaN (the kernel defers the row; NaN code from the loop)
    # row 2: -2^-266 (bf16 2^-133 squared) rounds to -0 in fp32; -0 + -0 stays -0
    # row 3: 2^-70 * 2^-70 = 2^-140, an fp32 subnormal, twice: 2^-139
    a = mf.encode([[2.0**100, 1.0, 1.0, 1.0], [2.0**100, 1.0, -(2.0**100), 1.0],
                   [-(2.0**-133), 0.0, -(2.0**-133), 0.0], [t, 0.0, t, 0.0]], bf)
    b = mf.encode([[2.0**100], [1.0], [2.0**100], [1.0]], bf)
    b2 = mf.encode([[2.0**-133], [1.0], [2.0**-133], [1.0]], bf)
    got, bad = kernel(a, b, f32, 2)
    v = got.to_float()[:, 0]
    assert np.isposinf(v[0]) and np.isnan(v[1]) and bad[1]
    same_codes(got, loop(a, b, f32, 2))
    got2, _ = kernel(a, b2, f32, 2)
    w = got2.to_float()[:, 0]
    assert w[2] == 0 and np.signbit(w[2])
    same_codes(got2, loop(a, b2, f32, 2))
    b3 = mf.encode([[t], [1.0], [t], [1.0]], bf)
    got3, _ = kernel(a, b3, f32, 2)
    assert got3.to_float()[3, 0] == 2.0**-139
    same_codes(got3, loop(a, b3, f32, 2))
    # saturating and NaN-on-overflow accumulators
    for spec in ("fp16:sat", "e4m3fn", "fp16"):
        fmt = FloatFormat.parse(spec)
        big = mf.encode(np.full((3, 8), 200.0), bf)
        got4, _ = kernel(big, mf.encode(np.full((8, 2), 300.0), bf), fmt, 3)
        same_codes(got4, loop(big, mf.encode(np.full((8, 2), 300.0), bf), fmt, 3))


def test_blocked_plan_declines():
    f32, f16 = mf.PRESETS["fp32"], mf.PRESETS["fp16"]
    assert sk.blocked_plan(f32, "rtz", (_desc(f16), _desc(f16)), 32) is None
    # products of 40-bit operands are not exact in float64
    assert sk.blocked_plan(f32, "rne", ((40, 0, 40), (40, 0, 40)), 32) is None
    assert sk.blocked_plan(f32, "rne", (_desc(f32), _desc(f32)), 32) == (sk.FMA32, np.float32)
