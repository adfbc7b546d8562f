"""The fast paths give the same bits as the plain statements of their contracts.

* sequential float accumulation: the compiled kernels (refmodel/numerics/_seqkernels.py) against
  the numpy loop ``accumulate._seq_float_loop`` (float64 TwoSum, round to odd, one encode per step),
  on random operands with a wide exponent spread and on hard cases: a double-rounding trap, exact
  ties, overflow to inf and saturation, NaN-producing overflow (the kernel defers), subnormal
  results, signed zeros, exact cancellation, empty and single-step sums, shapes that exercise the
  row groups, column panels and threads;
* decode of fp32 / fp16 / bf16 through numpy's widening casts against the field-by-field decode;
* the quantized layer's exact products from one BLAS call (per-element exactness bound, certified
  rounding, exact recompute) against ``accumulate.matmul``;
* whole layers with every fast path on against the same layers with them off.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from refmodel.layer import quantized as qz
from refmodel.layer.config import LayerConfig
from refmodel.layer.qtensor import QTensor, as_operand, store
from refmodel.layer.weights import random_inputs, random_weights
from refmodel.numerics import _seqkernels as sk
from refmodel.numerics import accumulate as acc
from refmodel.numerics import minifloat as mf
from refmodel.numerics.minifloat import FloatArray, FloatFormat
from refmodel.numerics.rounding import Rounding


def wide(rng, shape, fmt: FloatFormat, lo: int = -12, hi: int = 8) -> FloatArray:
    """Values of ``fmt`` with exponents spread over [lo, hi) (clipped to the format's range)."""
    x = rng.standard_normal(shape) * np.exp2(rng.integers(lo, hi, shape))
    return mf.encode(np.clip(x, -fmt.max, fmt.max), fmt)


def desc(f: FloatFormat) -> tuple[int, int, int]:
    return f.man + 1, f.emin - f.man, f.emax + 1


def check_seq(a: FloatArray, b: FloatArray, acc_spec: str, expect_kernel: bool = True) -> FloatArray:
    fmt = FloatFormat.parse(acc_spec)
    if expect_kernel:
        assert sk.plan(fmt, "rne", (desc(a.fmt), desc(b.fmt))) is not None
    got = acc.matmul(a, b, f"sequential:{acc_spec}")
    want = acc._seq_float_loop(a.to_float(), b.to_float(), fmt, Rounding.RNE)
    assert got.fmt == want.fmt
    bad = got.codes != want.codes
    assert not bad.any(), f"{int(bad.sum())} codes differ, first at {np.argwhere(bad)[0]}"
    return got


# ---- sequential kernels ------------------------------------------------------------------------
@pytest.mark.parametrize(("ops", "acc_spec"), [
    ("fp32", "fp32"), ("fp16", "fp32"), ("bf16", "fp32"), ("e4m3fn", "fp32"),  # fma32
    ("fp16", "fp16"), ("e4m3fn", "fp16"),                                       # HALF (F16C)
    ("bf16", "bf16"), ("fp32", "fp16"), ("fp16", "e5m2"), ("fp16", "fp16:sat"),  # ROUND
    ("fp16", "tf32"), ("fp32", "bf16"),
])
def test_sequential_kernels_random(ops, acc_spec):
    rng = np.random.default_rng(hash((ops, acc_spec)) % 2**32)
    f = FloatFormat.parse(ops)
    # 9 x 300 @ 300 x 261: a partial row group, two column panels (256 + 5), K long enough to overflow
    check_seq(wide(rng, (9, 300), f), wide(rng, (300, 261), f), acc_spec)


def test_sequential_kernels_threads_and_panels():
    """Enough work for the threaded split, rows not a multiple of the thread share."""
    rng = np.random.default_rng(7)
    f = mf.PRESETS["fp16"]
    a, b = wide(rng, (37, 400), f, -6, 2), wide(rng, (400, 300), f, -6, 2)
    assert 37 * 400 * 300 >= sk._PARALLEL_MIN
    for spec in ("fp32", "fp16"):
        check_seq(a, b, spec)


def test_fp16_double_rounding_trap():
    """acc = 1 + 2^-10 (fp16), p = 2^-11 (1 - 2^-20) (a product of two fp16 values): the exact sum
    1 + 3 * 2^-11 - 2^-31 rounds DOWN to 1 + 2^-10, but rounded first to fp32 it lands on the tie
    1 + 3 * 2^-11, which goes to the even neighbour 1 + 2^-9."""
    f = mf.PRESETS["fp16"]
    a = mf.encode([[1.0, 1025 / 1024 * 2.0**-6]], f)
    b = mf.encode([[1.0 + 2.0**-10], [1023 / 1024 * 2.0**-5]], f)
    got = check_seq(a, b, "fp16")
    assert got.to_float()[0, 0] == 1.0 + 2.0**-10
    single = np.float16(np.float32(1.0 + 2.0**-10) + np.float32(1025 / 1024 * 2.0**-6) * np.float32(1023 / 1024 * 2.0**-5))
    assert float(single) == 1.0 + 2.0**-9  # what the fp32 detour would give


def test_sequential_ties_zeros_cancellation():
    f = mf.PRESETS["fp16"]
    # row 0: 1 + 2^-11 is an exact fp16 tie (goes to even 1); row 1: x - x = +0;
    # row 2: -0 * 1 = -0 and -0 + -0 stays -0; row 3: 2048 + 1 is a tie at fp16's spacing 2 (-> 2048,
    # twice); row 4: 2050 + 1 is a tie that goes up (2052)
    a = mf.encode([[1.0, 2.0**-11, 0.0], [3.5, -3.5, 0.0], [-0.0, -0.0, -0.0], [2048.0, 1.0, 1.0],
                   [2050.0, 1.0, 0.0]], f)
    b = mf.encode([[1.0], [1.0], [1.0]], f)
    got = check_seq(a, b, "fp16").to_float()[:, 0]
    assert got[0] == 1.0 and got[3] == 2048.0 and got[4] == 2052.0
    assert got[1] == 0 and not np.signbit(got[1])
    assert got[2] == 0 and np.signbit(got[2])
    check_seq(a, b, "fp32")


def test_sequential_overflow_saturation_subnormals():
    f = mf.PRESETS["fp16"]
    big = mf.encode(np.full((4, 6), 250.0), f)
    ones = mf.encode(np.full((6, 3), 300.0), f)
    assert np.isinf(check_seq(big, ones, "fp16").to_float()).all()  # 75000 per step: inf, then stays inf
    assert (check_seq(big, ones, "fp16:sat").to_float() == 65504.0).all()
    tiny = mf.encode(np.full((3, 5), 2.0**-12), f)
    sub = check_seq(tiny, mf.encode(np.full((5, 2), 2.0**-11), f), "fp16").to_float()
    assert (sub == 5 * 2.0**-23).all()  # fp16 subnormals, exact
    # fp32 accumulator overflow through the FMA kernel
    f32 = mf.PRESETS["fp32"]
    huge = mf.encode(np.full((2, 3), 2.0**100), f32)
    assert np.isinf(check_seq(huge, huge.__class__(huge.codes.T.copy(), f32), "fp32").to_float()).all()


def test_sequential_nan_overflow_defers_to_loop():
    """e4m3fn overflows to NaN: the kernel reports it and the numpy loop gives the codes."""
    f = mf.PRESETS["fp16"]
    a = mf.encode(np.full((2, 4), 30.0), f)
    b = mf.encode(np.full((4, 3), 5.0), f)
    fmt = FloatFormat.parse("e4m3fn")
    how = sk.plan(fmt, "rne", (desc(f), desc(f)))
    assert how is not None and sk.sequential(a.to_float(), b.to_float(), fmt, how) is None
    assert np.isnan(check_seq(a, b, "e4m3fn").to_float()).all()


def test_sequential_empty_and_single_step():
    f = mf.PRESETS["fp32"]
    a = mf.encode(np.zeros((3, 0)), f)
    b = mf.encode(np.zeros((0, 2)), f)
    r = acc.matmul(a, b, "sequential:fp32")
    assert r.codes.shape == (3, 2) and (r.codes == 0).all()
    rng = np.random.default_rng(3)
    check_seq(wide(rng, (5, 1), f), wide(rng, (1, 7), f), "fp16")


def test_kernel_plan_declines_what_it_cannot_do():
    f16 = mf.PRESETS["fp16"]
    assert sk.plan(f16, "rtz", (desc(f16), desc(f16))) is None  # only round to nearest even
    assert sk.plan(FloatFormat.parse("e5m2:sat").__class__(5, 2, subnormals=False), "rne", (desc(f16), desc(f16))) is None
    f32 = mf.PRESETS["fp32"]
    # fp32 products are not fp32 numbers: a float64 ROUND kernel, not the fma one, for fp16 sums
    assert sk.plan(f16, "rne", (desc(f32), desc(f32)))[1] is np.float64


# ---- decode ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_native_decode_every_code(name):
    f = mf.PRESETS[name]
    c = np.arange(1 << 16, dtype=np.uint16)
    assert np.array_equal(mf.decode(c, f).view(np.uint64), mf._decode_arith(c, f).view(np.uint64))


def test_native_decode_fp32():
    f = mf.PRESETS["fp32"]
    rng = np.random.default_rng(0)
    special = [0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x7F800000, 0xFF800000,
               0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7FBFFFFF]
    c = np.concatenate([rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32), np.array(special, np.uint32)])
    assert np.array_equal(mf.decode(c, f).view(np.uint64), mf._decode_arith(c, f).view(np.uint64))


# ---- encode ----------------------------------------------------------------------------------------
def test_bf16_encode_fast_path():
    """float64 -> bf16 (rne) through round-to-odd float32 and the bit-16 rounding equals the integer
    kernel on every kind of hard value (exact bf16 values, exact ties, a hair on either side of a
    tie, the float64 values a float32 RNE detour would move onto a tie, overflow edges, subnormals,
    NaN of both signs, infinities, signed zeros), more than one 2^20 slice, and the Fraction
    oracle on a sample."""
    from oracle import encode_oracle

    f = mf.PRESETS["bf16"]
    rng = np.random.default_rng(5)
    b = rng.integers(0, 2**16, 150_000, dtype=np.uint64).astype(np.uint32) << np.uint32(16)
    with np.errstate(invalid="ignore"):
        parts = [(b | np.uint32(o)).view(np.float32).astype(np.float64) for o in (0, 0x8000, 0x7FFF, 0x8001, 0xFFFF, 1)]
        tie = (b | np.uint32(0x8000)).view(np.float32).astype(np.float64)
    parts += [tie * (1 + 2.0**-30), tie * (1 - 2.0**-40), tie * (1 + 2.0**-52), tie * (1 - 2.0**-53),
              rng.standard_normal(100_000) * np.exp2(rng.integers(-150, 130, 100_000))]
    special = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 3.4e38, 3.5e38, -3.4e38, 2.0**128 * (1 - 2.0**-9),
               2.0**128 * (1 - 2.0**-9) * (1 - 2.0**-50), -(2.0**128) * (1 - 2.0**-9), 1e-45, 2.0**-134,
               -(2.0**-134), 2.0**-133 * 1.5, 2.0**-134 * (1 + 2.0**-40), 1e300, -1e300, 5e-324]
    x = np.concatenate(parts + [np.array(special)])
    assert x.size > 1 << 20
    got = mf.encode(x, f)
    want = mf._encode_kernel(x, f, Rounding.RNE, None, 32).astype(np.uint16)
    bad = got.codes != want
    assert not bad.any(), f"{int(bad.sum())} differ, first {x[bad][0]!r}"
    idx = np.concatenate([np.arange(x.size - len(special), x.size), rng.integers(0, x.size, 3000)])
    for i in idx:
        if not np.isnan(x[i]):
            assert int(got.codes[i]) == encode_oracle(float(x[i]), f), x[i]


# ---- exact products in the quantized layer ------------------------------------------------------
def qt(arr: FloatArray) -> QTensor:
    return QTensor(arr.to_float(), arr.fmt, arr.codes)


def certified(a: QTensor, b: QTensor, out: str = "fp32") -> None:
    got = qz._certified_exact_product(a, b, "exact", FloatFormat.parse(out), "rne")
    assert got is not None
    want = acc.matmul(as_operand(a), as_operand(b), "exact", out)
    assert np.array_equal(got.codes, want.codes)


@pytest.mark.parametrize("spec", ["mxfp8_e4m3", "mxfp4", "mxint8"])
def test_certified_product_mx(spec):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((20, 96)) * np.exp2(rng.integers(-20, 20, (20, 96)))  # block scales far apart
    w = rng.standard_normal((96, 40)) * np.exp2(rng.integers(-20, 20, (96, 40)))
    certified(store(x, spec, mx_axis=-1), store(w, spec, mx_axis=0))


def test_certified_product_settles_ties_by_exact_recompute():
    """S = 1 + 2^-24 + 2^-80: the float64 BLAS sum drops 2^-80 and sits on the fp32 tie
    1 + 2^-24 (which would go down to 1); the exact sum is above it (1 + 2^-23). Neither the
    exactness bound nor the certified interval settles it: the exact recompute must."""
    f = mf.PRESETS["bf16"]
    a = qt(mf.encode([[1.0, 2.0**-24, 2.0**-80], [0.5, 0.25, 0.0]], f))
    b = qt(mf.encode([[1.0, 2.0], [1.0, 0.0], [1.0, 4.0]], f))
    got = qz._certified_exact_product(a, b, "exact", mf.PRESETS["fp32"], "rne")
    assert got.values[0, 0] == 1.0 + 2.0**-23
    certified(a, b)
    rng = np.random.default_rng(5)
    certified(qt(wide(rng, (17, 70), f, -60, 40)), qt(wide(rng, (70, 23), f, -60, 40)))
    certified(qt(wide(rng, (17, 70), mf.PRESETS["fp16"], -20, 10)), qt(wide(rng, (70, 23), mf.PRESETS["fp16"], -20, 10)), "fp16")


# ---- whole layers: fast paths on vs off -------------------------------------------------------------
def _run(cfg: str, plan: str) -> dict:
    c = dataclasses.replace(LayerConfig.from_name(cfg), seq_len=12)
    w = random_weights(c, seed=2)
    x = random_inputs(c, seed=3, outliers=1, outlier_value=200.0)
    r = qz.QuantizedLayer(c, w, plan).run(x)
    return {n: (t.values, t.codes) for n, t in r.tensors.items()}


@pytest.mark.parametrize(("cfg", "plan"), [("tiny", "fp32"), ("tiny-llama", "fp16"), ("tiny", "mxfp8"),
                                           ("tiny-bert", "bf16"), ("tiny-llama", "fp8")])
def test_layer_fast_paths_match_slow_paths(cfg, plan, monkeypatch):
    fast = _run(cfg, plan)
    monkeypatch.setattr(qz, "_sequential_product", lambda *a, **k: None)
    monkeypatch.setattr(qz, "_blocked_product", lambda *a, **k: None)
    monkeypatch.setattr(qz, "_certified_exact_product", lambda *a, **k: None)
    monkeypatch.setattr(sk, "plan", lambda *a, **k: None)
    monkeypatch.setattr(sk, "blocked_plan", lambda *a, **k: None)
    slow = _run(cfg, plan)
    for n, (v, c) in slow.items():
        assert np.array_equal(fast[n][0].view(np.uint64), v.view(np.uint64)), n
        assert (c is None) == (fast[n][1] is None) and (c is None or np.array_equal(fast[n][1], c)), n
