"""Accumulation policies: exact, sequential, blocked, fixed-point accumulators (wrap / saturate).

References, independent of accumulate.py:
  * Python-int sums (numpy object matmul on Python ints) scaled to exact rationals, rounded by the
    Fraction oracle in tests/oracle.py (``fixed_quantize_oracle``, ``encode_oracle``);
  * scalar loop models of each policy written here on Fractions (one element at a time);
  * numpy float16 / float32 per-step rounding for sequential fp16 / fp32 accumulation.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import decode_oracle, encode_oracle, fixed_quantize_oracle

from refmodel.numerics import minifloat as mf
from refmodel.numerics.accumulate import (
    Blocked,
    Exact,
    FixedAccumulator,
    Sequential,
    dot,
    matmul,
    parse_format,
    parse_policy,
)
from refmodel.numerics.fixed import FixedArray, FixedFormat
from refmodel.numerics.minifloat import FloatArray, FloatFormat

DETERMINISTIC = ["rne", "rtz", "floor", "ceil", "half_up", "half_away"]
F2 = Fraction(2)


# ---- helpers: operands and oracle ------------------------------------------------------------
def fx(codes, spec) -> FixedArray:
    return FixedArray(np.asarray(codes, dtype=np.int64), FixedFormat.parse(spec))


def rand_fx(rng, shape, spec) -> FixedArray:
    f = FixedFormat.parse(spec)
    return FixedArray(rng.integers(f.min_code, f.max_code, shape, dtype=np.int64, endpoint=True), f)


def rand_fp(rng, shape, spec, scale=1.0) -> FloatArray:
    fmt = FloatFormat.parse(spec)
    return mf.encode(np.clip(rng.standard_normal(shape) * scale, -fmt.max, fmt.max), fmt)


def fractions(x) -> np.ndarray:
    """Exact values as an object array of Fractions (fixed: code * 2^-frac; float: decode_oracle)."""
    if isinstance(x, FixedArray):
        flat = [Fraction(int(c)) * F2 ** -x.fmt.frac for c in x.codes.ravel().tolist()]
    else:
        flat = []
        for c in x.codes.ravel().tolist():
            v = decode_oracle(int(c), x.fmt)
            assert v.kind == "finite"
            flat.append(-v.mag if v.sign else v.mag)
    return np.array(flat, dtype=object).reshape(x.codes.shape)


def exact_products_sum(a, b) -> np.ndarray:
    """Exact A @ B as Fractions: values scaled to Python ints with one common power of two, an
    object-dtype matmul on Python ints (exact), then scaled back."""
    fa, fb = fractions(a), fractions(b)

    def to_ints(f):
        e = max([v.denominator.bit_length() for v in f.ravel()] + [1])
        return np.array([int(v * F2**e) for v in f.ravel()], dtype=object).reshape(f.shape), e

    ia, ea = to_ints(fa)
    ib, eb = to_ints(fb)
    s = ia @ ib
    return np.array([Fraction(int(v)) / F2 ** (ea + eb) for v in s.ravel()], dtype=object).reshape(s.shape)


def round_into(v, fmt, rounding="rne", overflow="saturate"):
    """One rounding of the exact value v (Fraction, or float inf/nan) into fmt -> (code, exact value)."""
    if isinstance(fmt, FixedFormat):
        c = fixed_quantize_oracle(v, fmt.width, fmt.frac, fmt.signed, rounding, overflow)
        return c, Fraction(c) * F2 ** -fmt.frac
    c = encode_oracle(v, fmt, rounding)
    d = decode_oracle(c, fmt)
    if d.kind == "finite":
        return c, (-d.mag if d.sign else d.mag)
    return c, (float("nan") if d.kind == "nan" else (float("-inf") if d.sign else float("inf")))


def add_values(x, y):
    """x + y with IEEE special propagation (floats) or exact (Fractions)."""
    if isinstance(x, float) or isinstance(y, float):
        return float(x) + float(y)
    return x + y


def codes_of(res) -> list:
    return np.asarray(res.codes).astype(np.int64).ravel().tolist()


# ---- policy objects and spec strings ---------------------------------------------------------
@pytest.mark.parametrize(
    "spec,canonical",
    [
        ("exact", "exact"), ("EXACT", "exact"), ("sequential:fp16", "sequential:fp16"),
        ("sequential:s32.16", "sequential:s32.16"), ("sequential:e4m3fn:sat", "sequential:e4m3fn:sat"),
        ("blocked:fp32:32", "blocked:fp32:32"), ("blocked:e5m2:sat:4", "blocked:e5m2:sat:4"),
        ("acc:s48.24:sat", "acc:s48.24:sat"), ("acc:s48.24:saturate", "acc:s48.24:sat"),
        ("acc:40:wrap", "acc:s40:wrap"), ("acc:u16.-2:error", "acc:u16.-2:error"), ("acc:s3.0:sat", "acc:s3.0:sat"),
    ],
)
def test_policy_spec_round_trip(spec, canonical):
    p = parse_policy(spec)
    assert str(p) == canonical
    assert parse_policy(str(p)) == p


def test_policy_objects():
    assert parse_policy("sequential:fp16") == Sequential("fp16") == Sequential(mf.PRESETS["fp16"])
    assert parse_policy("blocked:fp32:32") == Blocked("fp32", 32)
    assert parse_policy("acc:s48.24:sat") == FixedAccumulator(48, 24, "saturate")
    assert parse_policy("acc:s40:wrap") == FixedAccumulator(40)
    assert parse_policy(Exact()) == Exact()
    assert isinstance(parse_format("s16.12"), FixedFormat) and isinstance(parse_format("e4m3fn"), FloatFormat)


@pytest.mark.parametrize(
    "spec,msg",
    [
        ("nearest", r"unknown accumulation policy 'nearest'; expected exact \| sequential:<fmt>"),
        ("sequential:", r"unknown accumulation policy 'sequential:'"),
        ("sequential:q8", r"bad accumulation policy 'sequential:q8': unknown float format 'q8'"),
        ("blocked:fp32", r"bad accumulation policy 'blocked:fp32': expected blocked:<fmt>:<k>"),
        ("blocked:fp32:0", r"bad accumulation policy 'blocked:fp32:0': Blocked: block size k must be an int >= 1, got 0"),
        ("acc:s64.0:sat", r"bad accumulation policy 'acc:s64.0:sat': FixedAccumulator width must be in 1..63 \(int64 codes\), got 64"),
        ("acc:s48.24:clip", r"bad accumulation policy 'acc:s48.24:clip': expected acc:<s\|u><width>\[.<frac>\]:<wrap\|sat\|error>"),
        ("sequential:s64.0", r"bad accumulation policy 'sequential:s64.0': bad fixed-point spec 's64.0': FixedFormat width must be in 1..63"),
        ("sequential:fp64x", r"unknown float format 'fp64x'"),
    ],
)
def test_bad_policy_specs(spec, msg):
    with pytest.raises(ValueError, match=msg):
        parse_policy(spec)


def test_policy_constructor_errors():
    with pytest.raises(ValueError, match=r"FixedAccumulator width must be in 1..63 \(int64 codes\), got 70"):
        FixedAccumulator(70, 0)
    with pytest.raises(ValueError, match=r"unknown overflow mode 'clip'"):
        FixedAccumulator(32, 0, "clip")
    with pytest.raises(ValueError, match=r"Sequential accumulator e11m52:inf has 52 mantissa bits; at most 50"):
        Sequential("e11m52")


# ---- exact: fixed point --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sa,sb,shape",
    [
        ("s16.12", "s16.12", (5, 64, 3)), ("s8.4", "u12.3", (4, 33, 6)), ("u8.0", "u8.0", (3, 100, 2)),
        ("s1.0", "s16.-2", (2, 7, 2)), ("s24.10", "s24.10", (3, 2000, 2)), ("s31.0", "s30.5", (2, 3, 2)),
    ],
)
def test_exact_fixed_default_format_equals_python_ints(sa, sb, shape):
    rng = np.random.default_rng(1)
    M, K, N = shape
    a, b = rand_fx(rng, (M, K), sa), rand_fx(rng, (K, N), sb)
    a.codes[0, :] = a.fmt.min_code  # extremes: every product at its largest magnitude
    b.codes[:, 0] = b.fmt.min_code if b.fmt.signed else b.fmt.max_code
    a.codes[-1, :] = a.fmt.max_code
    r = matmul(a, b)
    fa, fb = a.fmt, b.fmt
    grow = (K - 1).bit_length()
    assert r.fmt == FixedFormat(fa.width + fb.width + grow, fa.frac + fb.frac, fa.signed or fb.signed)
    want = a.codes.astype(object) @ b.codes.astype(object)  # Python ints
    assert codes_of(r) == [int(v) for v in want.ravel()]


@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_exact_fixed_rounded_once_into_out_fmt(rounding, overflow):
    rng = np.random.default_rng(2)
    a, b = rand_fx(rng, (4, 50), "s16.12"), rand_fx(rng, (50, 5), "s16.12")
    a.codes[0, :10] = 1  # small sums: rounding below the output LSB matters
    exact = exact_products_sum(a, b)
    for out in ("s16.12", "s20.8", "u12.4", "s40.30"):
        r = matmul(a, b, "exact", out, rounding, overflow)
        f = r.fmt
        assert codes_of(r) == [fixed_quantize_oracle(v, f.width, f.frac, f.signed, rounding, overflow) for v in exact.ravel()]


@pytest.mark.parametrize(
    "sa,sb,K,out",
    [
        ("s32.16", "s32.16", 300, "s40.8"),   # |sum| up to 2^70: limbs, Python-int combination
        ("s40.0", "s40.20", 5, "s63.0"),      # huge products, K small
        ("s28.14", "s30.0", 3000, "s63.20"),  # long K, sum just below 2^62: int64 limbs
        ("u32.0", "s33.0", 64, "s48.-16"),
    ],
)
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_exact_fixed_split_paths(sa, sb, K, out, overflow):
    """Operands too wide for one float64 BLAS call (limb splitting), at max/min codes and random."""
    rng = np.random.default_rng(3)
    a, b = rand_fx(rng, (3, K), sa), rand_fx(rng, (K, 2), sb)
    a.codes[0, :] = a.fmt.max_code
    a.codes[1, :] = a.fmt.min_code
    b.codes[:, 0] = b.fmt.min_code if b.fmt.signed else b.fmt.max_code
    exact = exact_products_sum(a, b)
    for rounding in ("rne", "floor", "half_away"):
        r = matmul(a, b, "exact", out, rounding, overflow)
        f = r.fmt
        assert codes_of(r) == [fixed_quantize_oracle(v, f.width, f.frac, f.signed, rounding, overflow) for v in exact.ravel()]


def test_exact_fixed_rowsum_path():
    """K * max|a| * max|b| >= 2^53 but every row holds one large entry: the row-sum bound proves
    one BLAS call exact; the result must still equal Python ints."""
    rng = np.random.default_rng(4)
    K = 64
    a = np.zeros((8, K), np.int64)
    a[np.arange(8), rng.integers(0, K, 8)] = rng.integers(-(1 << 30), 1 << 30, 8)
    a += rng.integers(-3, 4, a.shape)
    b = rng.integers(-(1 << 30), 1 << 30, (K, 5))
    A, B = fx(a, "s32.0"), fx(b, "s32.0")
    assert codes_of(matmul(A, B, out_fmt="s63.0")) == [int(v) for v in (a.astype(object) @ b.astype(object)).ravel()]


def test_exact_overflow_error_names_value():
    a = fx([[100, 100]], "s8.0")
    b = fx([[100], [100]], "s8.0")
    with pytest.raises(OverflowError, match=r"exact matmul overflows s12.0 \(codes -2048..2047\): code 20000 at index \(0, 0\)"):
        matmul(a, b, "exact", "s12.0", overflow="error")


# ---- exact: floats -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sa,sb,out,scale",
    [
        ("e4m3fn", "e4m3fn", "fp32", 8.0), ("e4m3fn", "e4m3fn", "fp16", 30.0), ("e4m3fn", "e4m3fn", "e4m3fn", 4.0),
        ("e5m2", "e4m3fn", "bf16", 50.0), ("e2m1", "e3m2", "e4m3fn:sat", 2.0), ("fp16", "fp16", "fp32", 3.0),
        ("bf16", "bf16", "fp32", 1.0), ("e4m3fn", "e4m3fn", "s16.8", 2.0), ("e5m2", "e5m2", "e5m2", 1e4),
    ],
)
@pytest.mark.parametrize("rounding", ["rne", "rtz", "floor", "half_away"])
def test_exact_float_equals_fraction_sum(sa, sb, out, scale, rounding):
    rng = np.random.default_rng(5)
    a, b = rand_fp(rng, (3, 40), sa, scale), rand_fp(rng, (40, 4), sb, 1.0)
    exact = exact_products_sum(a, b)
    r = matmul(a, b, "exact", out, rounding)
    of = parse_format(out)
    if isinstance(of, FixedFormat):
        want = [fixed_quantize_oracle(v, of.width, of.frac, of.signed, rounding, "saturate") for v in exact.ravel()]
    else:
        want = [encode_oracle(v, of, rounding) for v in exact.ravel()]
    assert codes_of(r) == want


def test_exact_float_wide_dynamic_range_bands():
    """bf16 / fp32 operands spanning ~2^-120..2^120: exponent bands, Python-int combination, then
    round-to-odd and one rounding into fp32 / bf16."""
    rng = np.random.default_rng(6)
    for spec in ("bf16", "fp32"):
        x = np.ldexp(rng.uniform(1, 2, (3, 24)), rng.integers(-120, 120, (3, 24))) * rng.choice([-1, 1], (3, 24))
        y = np.ldexp(rng.uniform(1, 2, (24, 2)), rng.integers(-120, 0, (24, 2))) * rng.choice([-1, 1], (24, 2))
        a, b = mf.encode(x, spec), mf.encode(y, spec)
        exact = exact_products_sum(a, b)
        for out in ("fp32", "bf16", "fp16"):
            for rounding in ("rne", "ceil", "rtz"):
                assert codes_of(matmul(a, b, "exact", out, rounding)) == [encode_oracle(v, FloatFormat.parse(out), rounding) for v in exact.ravel()]


def test_exact_fp8_long_dot_beyond_blas_bound():
    """e4m3fn: one float64 BLAS call is provably exact for K * 448^2 < 2^53 * 2^-18 (K < 2^17.4);
    K = 2^18 at +-448 with a few smallest subnormals in both operands defeats every bound and forces
    the integer limb path. Sum and rounding checked against Python ints."""
    K = 1 << 18
    rng = np.random.default_rng(7)
    a = mf.encode(448.0 * rng.choice([-1.0, 1.0], K), "e4m3fn")
    b = mf.encode(np.full(K, 448.0), "e4m3fn")
    tiny = mf.encode(2.0**-9, "e4m3fn").codes
    a.codes[5:9] = tiny
    b.codes[:5] = tiny
    ia = [int(v * 2**9) for v in a.to_float().tolist()]  # exact: multiples of 2^-9
    ib = [int(v * 2**9) for v in b.to_float().tolist()]
    exact = Fraction(sum(x * y for x, y in zip(ia, ib, strict=True)), 2**18)
    for out in ("fp32", "fp16", "bf16"):
        r = dot(a, b, "exact", out)
        assert r.codes.shape == ()
        assert int(r.codes) == encode_oracle(exact, FloatFormat.parse(out), "rne")
    r = dot(a, b, "exact", "s40.9", "floor")
    assert int(r.codes) == fixed_quantize_oracle(exact, 40, 9, True, "floor", "saturate")
    r = dot(a, b, "exact", "s63.18")  # the exact sum itself
    assert Fraction(int(r.codes), 2**18) == exact


def test_exact_mixed_fixed_and_float():
    rng = np.random.default_rng(8)
    a, b = rand_fx(rng, (3, 30), "s12.8"), rand_fp(rng, (30, 2), "e4m3fn", 10.0)
    exact = exact_products_sum(a, b)
    assert codes_of(matmul(a, b, "exact", "fp32")) == [encode_oracle(v, mf.PRESETS["fp32"]) for v in exact.ravel()]
    assert codes_of(matmul(a, b, "exact", "s24.10", "half_up")) == [fixed_quantize_oracle(v, 24, 10, True, "half_up") for v in exact.ravel()]


def test_exact_zero_and_empty():
    z = fx(np.zeros((2, 0)), "s8.4")
    r = matmul(z, fx(np.zeros((0, 3)), "s8.4"))
    assert r.codes.shape == (2, 3) and not r.codes.any()
    e = mf.encode(np.zeros((2, 5)), "e4m3fn")
    r = matmul(e, e.__class__(e.codes.T.copy(), e.fmt), "exact", "fp16")
    assert codes_of(r) == [0] * 4


# ---- sequential ------------------------------------------------------------------------------------
def seq_model(a, b, fmt, rounding="rne", overflow="saturate"):
    """Scalar loop model: acc_0 = round(p_0), acc_k = round(acc_{k-1} + p_k)."""
    fa, fb = fractions(a), fractions(b)
    M, K = fa.shape
    N = fb.shape[1]
    out = []
    for i in range(M):
        for j in range(N):
            code, acc = round_into(Fraction(0), fmt, rounding, overflow)
            for k in range(K):
                p = fa[i, k] * fb[k, j]
                code, acc = round_into(p if k == 0 else add_values(acc, p), fmt, rounding, overflow)
            out.append(code)
    return out


@pytest.mark.parametrize("rounding", DETERMINISTIC)
def test_sequential_fp16_equals_loop_model(rounding):
    rng = np.random.default_rng(9)
    a, b = rand_fp(rng, (3, 60), "e4m3fn", 20.0), rand_fp(rng, (60, 2), "e4m3fn", 3.0)
    r = matmul(a, b, "sequential:fp16", rounding=rounding)
    assert r.fmt == mf.PRESETS["fp16"]
    assert codes_of(r) == seq_model(a, b, mf.PRESETS["fp16"], rounding)


def test_sequential_fp16_equals_numpy_float16_steps():
    """acc = float16(acc + p) per step in numpy: the float64 sum of an fp16 value and an e4m3fn
    product is exact (<= 42 significant bits), and numpy rounds float64 -> float16 once (RNE)."""
    rng = np.random.default_rng(10)
    a, b = rand_fp(rng, (4, 200), "e4m3fn", 30.0), rand_fp(rng, (200, 3), "e4m3fn", 2.0)
    va, vb = a.to_float(), b.to_float()
    acc = (va[:, 0, None] * vb[None, 0, :]).astype(np.float16)
    for k in range(1, 200):
        acc = (acc.astype(np.float64) + va[:, k, None] * vb[None, k, :]).astype(np.float16)
    r = matmul(a, b, "sequential:fp16")
    assert np.array_equal(r.codes, acc.view(np.uint16))
    assert not np.array_equal(r.codes, matmul(a, b, "exact", "fp16").codes)  # the order matters here


def test_sequential_fp32_bf16_operands_equals_numpy_float32_steps():
    rng = np.random.default_rng(11)
    a, b = rand_fp(rng, (3, 300), "bf16"), rand_fp(rng, (300, 2), "bf16")
    va, vb = a.to_float(), b.to_float()
    acc = (va[:, 0, None] * vb[None, 0, :]).astype(np.float32)
    for k in range(1, 300):
        acc = (acc.astype(np.float64) + va[:, k, None] * vb[None, k, :]).astype(np.float32)
    assert np.array_equal(matmul(a, b, "sequential:fp32").codes, acc.view(np.uint32))


def test_sequential_float_overflow_and_nan():
    # fp16 accumulator: 60000 + 60000 -> inf, stays inf; e4m3fn accumulator (overflow nan) -> NaN
    a = mf.encode([[240.0, 240.0, 240.0, -240.0]], "e4m3fn")
    b = mf.encode([[250.0], [250.0], [8.0], [1.0]], "e4m3fn")
    assert codes_of(matmul(a, b, "sequential:fp16")) == seq_model(a, b, mf.PRESETS["fp16"])
    assert codes_of(matmul(a, b, "sequential:fp16")) == [0x7C00]
    assert codes_of(matmul(a, b, "sequential:e4m3fn")) == [0x7F]
    assert codes_of(matmul(a, b, "sequential:e4m3fn:sat")) == seq_model(a, b, FloatFormat.parse("e4m3fn:sat"))


@pytest.mark.parametrize("acc_fmt", ["s20.8", "s24.30", "s12.2", "u16.8", "s30.-2"])
@pytest.mark.parametrize("rounding", ["rne", "floor", "half_away", "rtz"])
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_sequential_fixed_equals_loop_model(acc_fmt, rounding, overflow):
    rng = np.random.default_rng(12)
    a, b = rand_fx(rng, (2, 40), "s10.6"), rand_fx(rng, (40, 3), "s8.5")
    fmt = FixedFormat.parse(acc_fmt)
    r = matmul(a, b, Sequential(fmt), rounding=rounding, overflow=overflow)
    assert r.fmt == fmt
    assert codes_of(r) == seq_model(a, b, fmt, rounding, overflow)


def test_sequential_fixed_float_operands_and_error():
    rng = np.random.default_rng(13)
    a, b = rand_fp(rng, (2, 30), "e4m3fn", 5.0), rand_fp(rng, (30, 2), "e5m2", 5.0)
    fmt = FixedFormat.parse("s16.6")
    assert codes_of(matmul(a, b, Sequential(fmt), rounding="half_up")) == seq_model(a, b, fmt, "half_up")
    big = fx([[100] * 4], "s8.0")
    with pytest.raises(OverflowError, match=r"sequential:s10.0 accumulator at k=0 overflows s10.0"):
        matmul(big, fx([[100]] * 4, "s8.0"), "sequential:s10.0", overflow="error")


# ---- blocked ------------------------------------------------------------------------------------------
def blocked_model(a, b, fmt, k, rounding="rne", overflow="saturate"):
    """acc_0 = round(B_0), acc_j = round(acc_{j-1} + round(B_j)), B_j exact block sums."""
    fa, fb = fractions(a), fractions(b)
    M, K = fa.shape
    N = fb.shape[1]
    out = []
    for i in range(M):
        for j in range(N):
            code, acc = round_into(Fraction(0), fmt, rounding, overflow)[0], None  # K == 0: zero
            for j0 in range(0, K, k):
                blk = sum((fa[i, t] * fb[t, j] for t in range(j0, min(j0 + k, K))), Fraction(0))
                _, r = round_into(blk, fmt, rounding, overflow)
                code, acc = round_into(r, fmt, rounding, overflow) if acc is None else round_into(add_values(acc, r), fmt, rounding, overflow)
            out.append(code)
    return out


@pytest.mark.parametrize("k", [1, 7, 32, 100])
def test_blocked_float_equals_loop_model(k):
    rng = np.random.default_rng(14)
    a, b = rand_fp(rng, (2, 70), "e4m3fn", 20.0), rand_fp(rng, (70, 3), "e4m3fn", 3.0)
    r = matmul(a, b, Blocked("fp16", k))
    assert codes_of(r) == blocked_model(a, b, mf.PRESETS["fp16"], k)
    if k == 1:  # one product per block: blocked(fmt, 1) == sequential(fmt)
        assert r.identical(matmul(a, b, "sequential:fp16"))
    if k == 100:  # one block: blocked == exact rounded into fmt
        assert r.identical(matmul(a, b, "exact", "fp16"))


@pytest.mark.parametrize("rounding", ["rne", "floor", "ceil"])
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_blocked_fixed_equals_loop_model(rounding, overflow):
    rng = np.random.default_rng(15)
    a, b = rand_fx(rng, (3, 45), "s12.8"), rand_fx(rng, (45, 2), "s12.8")
    fmt = FixedFormat.parse("s18.6")
    r = matmul(a, b, Blocked(fmt, 8), rounding=rounding, overflow=overflow)
    assert codes_of(r) == blocked_model(a, b, fmt, 8, rounding, overflow)


def test_blocked_bf16_fp32_operands_out_format():
    rng = np.random.default_rng(16)
    a, b = rand_fp(rng, (2, 64), "bf16"), rand_fp(rng, (64, 2), "bf16")
    r = matmul(a, b, "blocked:fp32:16", out_fmt="bf16", rounding="rtz")
    acc = blocked_model(a, b, mf.PRESETS["fp32"], 16, "rtz")
    want = [encode_oracle(decode_oracle(c, mf.PRESETS["fp32"]).mag * (-1 if c >> 31 else 1), mf.PRESETS["bf16"], "rtz") for c in acc]
    assert codes_of(r) == want


# ---- fixed-point accumulators ------------------------------------------------------------------------
def acc_model(a, b, width, frac, signed, overflow, rounding="rne"):
    """Scalar hardware model: p_k rounded to the accumulator LSB, acc = ovf(acc + p_k) every add."""
    fa, fb = fractions(a), fractions(b)
    M, K = fa.shape
    N = fb.shape[1]
    out = []
    for i in range(M):
        for j in range(N):
            acc = 0
            for k in range(K):
                p = fixed_quantize_oracle(fa[i, k] * fb[k, j], 200, frac, True, rounding, "error")
                acc = fixed_quantize_oracle(Fraction(acc + p), width, 0, signed, "rne", overflow)
            out.append(acc)
    return out


def test_issue_apytypes_3bit_saturating_accumulator():
    """APyTypes 0.5.1's 3-bit signed SAT accumulator summing ten 1s returns 10; it holds 3."""
    ones = fx([1] * 10, "s8.0")
    r = dot(ones, ones, FixedAccumulator(3, 0, "saturate"))
    assert r.fmt == FixedFormat(3, 0) and int(r.codes) == 3
    assert int(dot(ones, ones, "acc:s3.0:wrap").codes) == 10 - 8  # 10 mod 8 = 2, in [-4, 3]
    # saturation is applied at every add, not once at the end: 1,1,1,1,-1,-1 -> 1 2 3 3 2 1
    v = fx([1, 1, 1, 1, -1, -1], "s8.0")
    assert int(dot(v, fx([1] * 6, "s8.0"), "acc:s3.0:sat").codes) == 1
    assert int(dot(v, fx([1] * 6, "s8.0"), "exact").codes) == 2


@pytest.mark.parametrize("width", [3, 12, 20, 40])
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_fixed_accumulator_equals_loop_model(width, overflow):
    rng = np.random.default_rng(17 + width)
    a, b = rand_fx(rng, (3, 80), "s10.4"), rand_fx(rng, (80, 2), "s9.3")
    a.codes[0, :] = a.fmt.max_code  # a row that runs into the limit
    r = matmul(a, b, FixedAccumulator(width, None, overflow))
    assert r.fmt == FixedFormat(width, 7)
    assert codes_of(r) == acc_model(a, b, width, 7, True, overflow)


def test_wrap_accumulator_is_exact_sum_modulo():
    rng = np.random.default_rng(18)
    a, b = rand_fx(rng, (4, 1000), "s32.0"), rand_fx(rng, (1000, 3), "s32.0")  # exact sums need ~73 bits
    for width in (16, 40, 63):
        r = matmul(a, b, FixedAccumulator(width, 0, "wrap"))
        exact = a.codes.astype(object) @ b.codes.astype(object)
        want = [((int(v) + (1 << (width - 1))) % (1 << width)) - (1 << (width - 1)) for v in exact.ravel()]
        assert codes_of(r) == want


@pytest.mark.parametrize("rounding", ["rne", "floor", "rtz"])
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_fixed_accumulator_coarser_than_products(rounding, overflow):
    """acc frac 2 < product frac 7: each product is rounded into the accumulator before the add."""
    rng = np.random.default_rng(19)
    a, b = rand_fx(rng, (2, 50), "s10.4"), rand_fx(rng, (50, 3), "s9.3")
    r = matmul(a, b, FixedAccumulator(14, 2, overflow), rounding=rounding)
    assert codes_of(r) == acc_model(a, b, 14, 2, True, overflow, rounding)


def test_fixed_accumulator_finer_than_products_and_out_fmt():
    rng = np.random.default_rng(20)
    a, b = rand_fx(rng, (2, 30), "s8.2"), rand_fx(rng, (30, 2), "s8.2")
    r = matmul(a, b, "acc:s24.10:sat")
    assert codes_of(r) == acc_model(a, b, 24, 10, True, "saturate")
    r2 = matmul(a, b, "acc:s24.10:sat", out_fmt="s8.1", rounding="half_away")
    assert codes_of(r2) == [fixed_quantize_oracle(Fraction(c, 1 << 10), 8, 1, True, "half_away") for c in codes_of(r)]


def test_fixed_accumulator_float_operands():
    rng = np.random.default_rng(21)
    a, b = rand_fp(rng, (2, 40), "e4m3fn", 30.0), rand_fp(rng, (40, 2), "e4m3fn", 30.0)
    r = matmul(a, b, "acc:s24:sat")  # frac = products' grid 2 * (9) = 18
    assert r.fmt == FixedFormat(24, 18)
    assert codes_of(r) == acc_model(a, b, 24, 18, True, "saturate")
    with pytest.raises(ValueError, match=r"products of bf16 x bf16 have no fixed fraction that fits 62 bits"):
        matmul(rand_fp(rng, (2, 4), "bf16"), rand_fp(rng, (4, 2), "bf16"), "acc:s40:wrap")


def test_fixed_accumulator_error_mode():
    ones = fx([1] * 10, "s8.0")
    with pytest.raises(OverflowError, match=r"accumulator acc:s3.0:error at k=3 overflows s3.0"):
        dot(ones, ones, "acc:s3.0:error")
    assert int(dot(ones, ones, "acc:s5.0:error").codes) == 10


def test_unsigned_accumulator():
    a = fx([[3, -2, -2, 1]], "s4.0")
    b = fx([[1], [1], [1], [1]], "u4.0")
    # u3.0 saturating: 3, 1, 0 (clamped from -1), 1
    assert codes_of(matmul(a, b, "acc:u3.0:sat")) == acc_model(a, b, 3, 0, False, "saturate") == [1]


# ---- shapes, dot, bad input --------------------------------------------------------------------------
def test_dot_and_vector_shapes():
    rng = np.random.default_rng(22)
    A, v = rand_fx(rng, (4, 6), "s8.4"), rand_fx(rng, (6,), "s8.4")
    assert matmul(A, v).codes.shape == (4,)
    assert matmul(FixedArray(v.codes, v.fmt), A.__class__(A.codes.T.copy(), A.fmt)).codes.shape == (4,)
    d = dot(v, v)
    assert d.codes.shape == () and int(d.codes) == int((v.codes.astype(object) ** 2).sum())
    assert codes_of(matmul(A, v)) == codes_of(matmul(A, FixedArray(v.codes[:, None], v.fmt)))


def test_bad_inputs():
    a, b = fx(np.ones((3, 4)), "s16.12"), fx(np.ones((5, 2)), "s16.12")
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) \(s16.12\) and \(5, 2\) \(s16.12\) do not align: K = 4 vs 5"):
        matmul(a, b)
    with pytest.raises(ValueError, match=r"dot: operand a must be 1-D, got shape \(3, 4\)"):
        dot(a, b)
    with pytest.raises(ValueError, match=r"the exact sum of s32.16 x s32.16 over K=4 needs 66 bits \(wa \+ wb \+ ceil\(log2 K\)\), above 63; pass out_fmt"):
        matmul(fx(np.ones((2, 4)), "s32.16"), fx(np.ones((4, 2)), "s32.16"))
    with pytest.raises(ValueError, match=r"policy exact with float operands \(e4m3fn x e4m3fn\) needs an out_fmt"):
        e = mf.encode(np.ones((2, 2)), "e4m3fn")
        matmul(e, e)
    with pytest.raises(ValueError, match=r"operand b \(e5m2\) has the non-finite value inf at index \(1, 0\)"):
        matmul(mf.encode(np.ones((1, 2)), "e5m2"), mf.encode([[1.0], [np.inf]], "e5m2"), "exact", "fp32")
    with pytest.raises(ValueError, match=r"stochastic rounding is not supported"):
        matmul(a, fx(np.ones((4, 2)), "s16.12"), rounding="stochastic")
    with pytest.raises(ValueError, match=r"operands must be 1-D or 2-D, got shapes \(1, 2, 2\)"):
        matmul(fx(np.ones((1, 2, 2)), "s8.0"), fx(np.ones((2, 2)), "s8.0"))
    with pytest.raises(TypeError, match=r"operand a must be a FixedArray or FloatArray, got ndarray"):
        matmul(np.ones((2, 2)), b)
    with pytest.raises(ValueError, match=r"unknown rounding mode 'nearest'"):
        matmul(a, fx(np.ones((4, 2)), "s16.12"), rounding="nearest")
    with pytest.raises(ValueError, match=r"operand a \(bf16\) spans more than 62 bits of dynamic range"):
        wide = mf.encode([[2.0**-60, 2.0**60]], "bf16")
        matmul(wide, mf.encode([[1.0], [1.0]], "bf16"), "acc:s40.0:sat")
    with pytest.raises(ValueError, match=r"products of s40.0 x s40.0 need 78 significant bits, not exact in float64"):
        big = fx(np.full((2, 2), (1 << 39) - 1), "s40.0")
        matmul(big, big, "sequential:fp32")


# ---- rounding of inexact float64 intermediates, conversions, corner cases --------------------------
@pytest.mark.parametrize("rounding", DETERMINISTIC)
def test_sequential_fp32_sums_inexact_in_float64(rounding):
    """fp32 operands far apart in magnitude: acc + p is not a float64 (TwoSum error != 0), so each
    step must round the exact sum (round-to-odd at 53 bits, then one rounding into fp32)."""
    x = np.array([[1.0, 2.0**-40, -(2.0**-40), 3.0 * 2.0**-45, 2.0**60, -(2.0**60), 2.0**-70]])
    y = np.array([[1.0], [2.0**-41], [2.0**-43], [-(2.0**-44)], [2.0**-70], [2.0**-70], [1.0]])
    a, b = mf.encode(x, "fp32"), mf.encode(y, "fp32")
    assert codes_of(matmul(a, b, "sequential:fp32", rounding=rounding)) == seq_model(a, b, mf.PRESETS["fp32"], rounding)
    rng = np.random.default_rng(23)
    sx = np.ldexp(rng.uniform(1, 2, (3, 40)), rng.integers(-60, 60, (3, 40))) * rng.choice([-1, 1], (3, 40))
    sy = np.ldexp(rng.uniform(1, 2, (40, 2)), rng.integers(-60, 60, (40, 2)))
    a, b = mf.encode(sx, "fp32"), mf.encode(sy, "fp32")
    for fmt in ("fp32", "bf16"):
        r = matmul(a, b, Sequential(fmt), rounding=rounding)
        assert codes_of(r) == seq_model(a, b, FloatFormat.parse(fmt), rounding)
    r = matmul(a, b, Blocked("fp32", 8), rounding=rounding)
    assert codes_of(r) == blocked_model(a, b, mf.PRESETS["fp32"], 8, rounding)


def test_exact_fixed_operands_float_output():
    rng = np.random.default_rng(24)
    # small sums (exact float64) and sums between 2^53 and 2^62 (rounded to odd first)
    for sa, sb, K in (("s12.6", "s10.4", 20), ("s28.0", "s30.10", 30)):
        a, b = rand_fx(rng, (3, K), sa), rand_fx(rng, (K, 2), sb)
        a.codes[0, :] = a.fmt.max_code
        b.codes[:, 0] = b.fmt.max_code
        exact = exact_products_sum(a, b)
        for out in ("fp32", "fp16", "bf16", "e4m3fn"):
            for rounding in ("rne", "rtz", "ceil"):
                want = [encode_oracle(v, FloatFormat.parse(out), rounding) for v in exact.ravel()]
                assert codes_of(matmul(a, b, "exact", out, rounding)) == want


def test_accumulator_to_other_output_kinds():
    rng = np.random.default_rng(25)
    a, b = rand_fx(rng, (2, 20), "s8.4"), rand_fx(rng, (20, 2), "s8.4")
    acc = matmul(a, b, "acc:s20.8:sat")
    r = matmul(a, b, "acc:s20.8:sat", out_fmt="fp16", rounding="floor")
    assert codes_of(r) == [encode_oracle(Fraction(c, 1 << 8), mf.PRESETS["fp16"], "floor") for c in codes_of(acc)]
    e, f = rand_fp(rng, (2, 20), "e4m3fn", 4.0), rand_fp(rng, (20, 2), "e4m3fn", 4.0)
    acc = matmul(e, f, "sequential:fp16", rounding="half_up")  # rounding applies to every step
    r = matmul(e, f, "sequential:fp16", out_fmt="s12.4", rounding="half_up", overflow="wrap")
    want = [fixed_quantize_oracle(Fraction(float(v)), 12, 4, True, "half_up", "wrap") for v in acc.to_float().ravel()]
    assert codes_of(r) == want


def test_k_zero_and_exact_object_path_errors():
    e = mf.encode(np.zeros((2, 0)), "e4m3fn")
    f = mf.encode(np.zeros((0, 3)), "e4m3fn")
    for pol in ("blocked:fp16:4", "sequential:fp16", "exact"):
        r = matmul(e, f, pol, out_fmt="fp16")
        assert r.codes.shape == (2, 3) and codes_of(r) == [0] * 6
    big = fx(np.full((1, 4), (1 << 39) - 1), "s40.0")
    with pytest.raises(OverflowError, match=r"exact matmul overflows s16.0 \(codes -32768..32767\): code \d+ at index \(0, 0\)"):
        matmul(big, fx(np.full((4, 1), (1 << 39) - 1), "s40.0"), "exact", "s16.0", overflow="error")


def test_loops_beyond_int64_use_python_ints():
    """Accumulator + product wider than int64: the same loops run on Python ints, still exact."""
    rng = np.random.default_rng(26)
    big = fx(np.full((1, 3), (1 << 39) - 1), "s40.0")
    bigT = fx(np.full((3, 1), (1 << 39) - 1), "s40.0")
    assert codes_of(matmul(big, bigT, "acc:s63.0:sat")) == acc_model(big, bigT, 63, 0, True, "saturate")
    assert codes_of(matmul(big, bigT, "acc:s12.-70:sat", rounding="ceil")) == acc_model(big, bigT, 12, -70, True, "saturate", "ceil")
    # wrapping needs no int64 headroom: the exact sum modulo 2^64 is enough
    exact = 3 * ((1 << 39) - 1) ** 2
    assert codes_of(matmul(big, bigT, "acc:s63.0:wrap")) == [((exact + (1 << 62)) % (1 << 63)) - (1 << 62)]
    a, b = rand_fx(rng, (2, 6), "s32.16"), rand_fx(rng, (6, 2), "s32.16")
    for rounding, overflow in (("rne", "saturate"), ("floor", "wrap")):
        fmt = FixedFormat.parse("s60.4")  # acc << 28 plus a 63-bit product: ~92-bit intermediate
        got = matmul(a, b, Sequential(fmt), rounding=rounding, overflow=overflow)
        assert codes_of(got) == seq_model(a, b, fmt, rounding, overflow)
    u = rand_fx(rng, (2, 5), "u32.0")
    u.codes[0, :] = u.fmt.max_code
    uT = FixedArray(u.codes.T.copy(), u.fmt)  # products up to 2^64: beyond int64 even alone
    for pol, args in (("acc:s2.0:sat", (2, 0, True, "saturate")), ("acc:s2.-1:wrap", (2, -1, True, "wrap"))):
        assert codes_of(matmul(u, uT, pol, rounding="half_away")) == acc_model(u, uT, *args, "half_away")
    with pytest.raises(ValueError, match=r"FixedAccumulator width must be an int, got 3.5"):
        FixedAccumulator(3.5)


# ---- random formats and shapes against the models ----------------------------------------------
@st.composite
def fixed_operand(draw, rows, cols):
    signed = draw(st.booleans())
    width = draw(st.integers(1, 40))
    f = FixedFormat(width, draw(st.integers(-4, width + 4)), signed)
    codes = draw(st.lists(st.integers(f.min_code, f.max_code), min_size=rows * cols, max_size=rows * cols))
    return FixedArray(np.array(codes, dtype=np.int64).reshape(rows, cols), f)


@settings(deadline=None, max_examples=60)
@given(data=st.data(), rounding=st.sampled_from(DETERMINISTIC), overflow=st.sampled_from(["saturate", "wrap"]))
def test_random_fixed_policies_match_models(data, rounding, overflow):
    M, K, N = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 12)), data.draw(st.integers(1, 3))
    a, b = data.draw(fixed_operand(M, K)), data.draw(fixed_operand(K, N))
    out = FixedFormat(data.draw(st.integers(2, 63)), data.draw(st.integers(-4, 40)), data.draw(st.booleans()))
    exact = exact_products_sum(a, b)
    r = matmul(a, b, "exact", out, rounding, overflow)
    assert codes_of(r) == [fixed_quantize_oracle(v, out.width, out.frac, out.signed, rounding, overflow) for v in exact.ravel()]
    width = data.draw(st.integers(2, 40))
    frac = a.fmt.frac + b.fmt.frac + data.draw(st.integers(-6, 3))
    r = matmul(a, b, FixedAccumulator(width, frac, overflow), rounding=rounding)
    assert codes_of(r) == acc_model(a, b, width, frac, True, overflow, rounding)
    acc = FixedFormat(data.draw(st.integers(2, 40)), frac, data.draw(st.booleans()))
    assert codes_of(matmul(a, b, Sequential(acc), rounding=rounding, overflow=overflow)) == seq_model(a, b, acc, rounding, overflow)
    k = data.draw(st.integers(1, 5))
    assert codes_of(matmul(a, b, Blocked(acc, k), rounding=rounding, overflow=overflow)) == blocked_model(a, b, acc, k, rounding, overflow)


@settings(deadline=None, max_examples=40)
@given(
    data=st.data(),
    fa=st.sampled_from(["e4m3fn", "e5m2", "e2m1", "fp16", "bf16", "e4m3fnuz"]),
    fb=st.sampled_from(["e4m3fn", "e5m2", "e3m2", "bf16"]),
    acc=st.sampled_from(["fp16", "bf16", "fp32", "e4m3fn:sat", "e5m2"]),
    rounding=st.sampled_from(DETERMINISTIC),
)
def test_random_float_policies_match_models(data, fa, fb, acc, rounding):
    M, K, N = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 10)), data.draw(st.integers(1, 2))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a, b = rand_fp(rng, (M, K), fa, 4.0), rand_fp(rng, (K, N), fb, 4.0)
    accf = FloatFormat.parse(acc)
    exact = exact_products_sum(a, b)
    assert codes_of(matmul(a, b, "exact", accf, rounding)) == [encode_oracle(v, accf, rounding) for v in exact.ravel()]
    assert codes_of(matmul(a, b, Sequential(accf), rounding=rounding)) == seq_model(a, b, accf, rounding)
    k = data.draw(st.integers(1, 4))
    assert codes_of(matmul(a, b, Blocked(accf, k), rounding=rounding)) == blocked_model(a, b, accf, k, rounding)
