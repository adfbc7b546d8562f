"""The quantized layer: codes are exact, ops match independent scalar models, invariants hold,
SLaNC prevents fp16 norm overflow, bad input is refused before any work."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refmodel.layer.config import LayerConfig
from refmodel.layer.plan import PRESET_NAMES, PrecisionPlan
from refmodel.layer.quantized import run_quantized
from refmodel.layer.reference import run_reference
from refmodel.layer.weights import LayerWeights, random_inputs, random_weights
from refmodel.numerics.fixed import FixedFormat, decode
from refmodel.numerics.minifloat import FloatFormat
from refmodel.numerics.minifloat import decode as fdecode

CONFIGS = ["tiny", "tiny-bert", "tiny-llama"]
PLANS = [p for p in PRESET_NAMES if p != "float64"]


@pytest.fixture(scope="module")
def layers():
    out = {}
    for name in CONFIGS:
        c = LayerConfig.from_name(name)
        out[name] = (c, random_weights(c, seed=3), random_inputs(c, seed=4))
    return out


@pytest.mark.parametrize("cname", CONFIGS)
@pytest.mark.parametrize("plan", PLANS)
def test_codes_decode_to_values_and_stay_close(layers, cname, plan):
    c, w, x = layers[cname]
    run = run_quantized(c, w, x, plan)
    ref = run_reference(c, w, x)
    assert list(run.tensors) == list(ref)
    for name, t in run.tensors.items():
        assert t.values.shape == ref[name].shape, name
        if isinstance(t.fmt, FixedFormat):
            assert t.codes.dtype == np.int64
            assert t.codes.min() >= t.fmt.min_code and t.codes.max() <= t.fmt.max_code, name
            assert np.array_equal(decode(t.codes, t.fmt), t.values), name
        elif isinstance(t.fmt, FloatFormat):
            assert np.array_equal(fdecode(t.codes, t.fmt), t.values, equal_nan=True), name
        elif t.mx is not None:
            v = t.values
            if t.mx.shape != v.shape:  # q/k/v keep their MX blocks in the pre-split [s, heads*hd] layout
                v = v.transpose(1, 0, 2).reshape(v.shape[1], -1)
            assert np.array_equal(t.mx.to_float(), v), name
    # drift from float64 is small but non-zero: the plans really quantise
    rel = np.max(np.abs(run.tensors["out"].values - ref["out"])) / np.max(np.abs(ref["out"]))
    limit = {"fp32": 1e-5, "fp16": 2e-2, "bf16": 5e-2}.get(plan, 0.2)
    assert 0 < rel < limit, (plan, rel)


def test_fp16_acc16_linear_is_sequential_fp16_accumulation(layers):
    """q[h, i, j] under the fp16-acc16 plan equals a scalar loop: acc = fp16(acc + ln1*wq) in index
    order (products exact in float64), then fp16(acc + bias)."""
    c, w, x = layers["tiny"]
    run = run_quantized(c, w, x, "fp16-acc16")
    ln1 = run.tensors["ln1"].values
    wq, bq = run.weights["wq"].values, run.weights["bq"].values
    rng = np.random.default_rng(0)
    hd = c.head_dim
    for _ in range(20):
        i, o = int(rng.integers(c.seq_len)), int(rng.integers(c.d_model))
        acc = np.float16(0.0)
        for k in range(c.d_model):
            p = float(ln1[i, k]) * float(wq[o, k])  # exact: 11-bit x 11-bit significands
            acc = np.float16(float(acc) + p) if k else np.float16(p)
        want = np.float16(float(acc) + float(bq[o]))
        got = run.tensors["q"].values[o // hd, i, o % hd]
        assert got == float(want), (i, o)


def test_hw_linear_matches_python_integers(layers):
    """q under the hw plan: exact integer dot product + bias at the accumulator LSB, 40-bit wrap,
    round-half-even shift to s16.8, saturate -- recomputed with Python ints."""
    c, w, x = layers["tiny"]
    run = run_quantized(c, w, x, "hw")
    a, wq, bq = run.tensors["ln1"], run.weights["wq"], run.weights["bq"]
    out = run.tensors["q"]
    pf = a.fmt.frac + wq.fmt.frac
    shift = pf - out.fmt.frac
    hd = c.head_dim
    for i in range(0, c.seq_len, 5):
        for o in range(0, c.d_model, 7):
            s = sum(int(a.codes[i, k]) * int(wq.codes[o, k]) for k in range(c.d_model))
            s += int(bq.codes[o]) << (pf - bq.fmt.frac)
            q, r = divmod(s, 1 << shift)  # floor division, remainder >= 0
            half = 1 << (shift - 1)
            q += 1 if (r > half or (r == half and q % 2 == 1)) else 0
            q = max(out.fmt.min_code, min(out.fmt.max_code, q))
            assert out.codes[o // hd, i, o % hd] == q, (i, o)


@pytest.mark.parametrize("plan", ["hw", "fp16", "fp8"])
@pytest.mark.parametrize("cname", ["tiny", "tiny-llama"])
def test_causal_quantized_bit_identical(layers, cname, plan):
    """Changing later tokens leaves every earlier row of every tensor bit-identical."""
    c, w, x = layers[cname]
    x2 = x.copy()
    x2[10:] = np.random.default_rng(9).normal(size=x2[10:].shape)
    a = run_quantized(c, w, x, plan, slanc=False)
    b = run_quantized(c, w, x2, plan, slanc=False)
    for name, t in a.tensors.items():
        va, vb = t.values, b.tensors[name].values
        if va.ndim == 3:  # [heads, seq, ...]
            va, vb = va[:, :10], vb[:, :10]
        else:
            va, vb = va[:10], vb[:10]
        if name in ("scores", "probs"):
            va, vb = va[..., :10], vb[..., :10]
        assert np.array_equal(va, vb), name


def test_probs_rows_sum_near_one_fixed(layers):
    c, w, x = layers["tiny"]
    run = run_quantized(c, w, x, "hw")
    p = run.tensors["probs"].values
    assert np.all(np.abs(p.sum(axis=-1) - 1) < 16 * 2.0**-15 * c.seq_len / 16 + 2.0**-12)


def test_slanc_prevents_fp16_norm_overflow():
    """Inputs with outlier residual channels (~1e3, as in real LLMs): plain fp16 LayerNorm sums of
    squares overflow (the row collapses to beta), SLaNC's do not and stay close to float64."""
    c = LayerConfig.from_name("tiny")
    w = random_weights(c, seed=5)
    x = random_inputs(c, seed=6, outliers=3, outlier_value=1000.0)
    ref = run_reference(c, w, x)
    plan = PrecisionPlan.from_name("fp16-acc16")  # fp16 sums of squares (fp16 with fp32 sums would not overflow)
    off = run_quantized(c, w, x, plan.replace(slanc=False))
    on = run_quantized(c, w, x, plan.replace(slanc=True, slanc_first="input"))
    ov_off = off.stats["ln1"].get("internal_overflow", 0) + off.stats["ln2"].get("internal_overflow", 0)
    ov_on = on.stats["ln1"].get("internal_overflow", 0) + on.stats["ln2"].get("internal_overflow", 0)
    print(f"fp16 LayerNorm rows whose sum of squares overflowed: without SLaNC {ov_off}/{2 * c.seq_len}, "
          f"with SLaNC {ov_on}/{2 * c.seq_len}")
    assert ov_off == 2 * c.seq_len and ov_on == 0
    err = lambda r, n: np.max(np.abs(r.tensors[n].values - ref[n])) / np.max(np.abs(ref[n]))  # noqa: E731
    assert err(off, "ln1") > 0.5  # collapsed to beta: wrong, silently
    assert err(on, "ln1") < 1e-2 and err(on, "ln2") < 1e-2
    assert np.all(np.isfinite(on.tensors["out"].values))


def test_unshifted_softmax_overflows_in_fp16():
    """The unshifted form exists to show what it breaks: logits above ln(65504) ~ 11.09 overflow
    exp in fp16 (inf/inf = NaN), the shifted form does not."""
    c = LayerConfig.from_name("tiny")
    d = dict(random_weights(c, seed=7))
    d["wq"], d["wk"] = d["wq"] * 4.0, d["wk"] * 4.0  # large logits (the norm would undo a scaled x)
    w = LayerWeights(d)
    x = random_inputs(c, seed=8)
    plan = PrecisionPlan.from_name("fp16-acc16")
    shifted = run_quantized(c, w, x, plan)
    unshifted = run_quantized(c, w, x, plan.replace(softmax_shifted=False))
    assert np.max(shifted.tensors["scores"].values) > math.log(65504)
    assert np.all(np.isfinite(shifted.tensors["probs"].values))
    assert unshifted.stats["probs"]["nonfinite"] > 0


def test_mxfp8_v_blocks_run_along_the_sequence(layers):
    c, w, x = layers["tiny"]
    run = run_quantized(c, w, x, "mxfp8")
    assert run.tensors["v"].mx is not None and run.tensors["v"].mx.axis in (0, -2)
    assert run.tensors["ln1"].mx.axis in (-1, 1)


@pytest.mark.parametrize("bad, match", [
    ("nan", r"non-finite value nan at index \[3, 5\]"),
    ("shape", r"input x must have shape \[seq, 64\], got \[16, 10\]"),
    ("plan", r"unknown precision plan 'fp12'"),
    ("weight", r"weight 'wq' has shape \[3, 64\]"),
])
def test_bad_input_named_before_work(layers, bad, match):
    c, w, x = layers["tiny"]
    plan = "fp16"
    if bad == "nan":
        x = x.copy()
        x[3, 5] = np.nan
    elif bad == "shape":
        x = x[:, :10]
    elif bad == "plan":
        plan = "fp12"
    else:
        d = dict(w)
        d["wq"] = d["wq"][:3]
        w = LayerWeights(d)
    with pytest.raises(ValueError, match=match):
        run_quantized(c, w, x, plan)


@pytest.mark.parametrize("acc_w, sat", [(40, False), (24, False), (24, True), (26, True)])
def test_fast_mac_path_equals_unit_model(acc_w, sat):
    """The BLAS shortcut of the quantized layer equals units.mac.matmul_int bit for bit, including
    accumulators narrow enough to wrap or saturate (where the shortcut must step aside)."""
    from refmodel.layer.plan import WeightPrecision
    from refmodel.layer.quantized import _mac_matmul, quantize_weight
    from refmodel.numerics.units.mac import MacParams, matmul_int

    rng = np.random.default_rng(acc_w)
    a = rng.integers(-(1 << 15), 1 << 15, size=(9, 200))
    wv = rng.normal(0, 0.4, size=(37, 200))
    plan = PrecisionPlan.from_name("hw")
    plan = plan.replace(weights={**plan.weights, "wq": WeightPrecision("s8.7")})
    w = quantize_weight(plan, "wq", wv)
    assert w.clip.saturated > 0  # N(0, 0.4) in s8.7: the extremes clip, counted
    bias = rng.integers(-(1 << 10), 1 << 10, size=37)
    p = MacParams(a_w=16, w_w=8, acc_w=acc_w, out_w=16, shift=9, rounding="rne",
                  acc_overflow="saturate" if sat else "wrap", b_w=12, bias_lsh=3)
    want = matmul_int(a, w.codes.T, p, bias)
    got = _mac_matmul(a, w, p, bias)
    assert np.array_equal(got, want)


def test_exact_blas_shortcut_equals_accumulate():
    """fp8 x fp8 products summed by one float64 BLAS call, then rounded once, equal
    accumulate.matmul's exact policy bit for bit (the shortcut's exactness argument)."""
    from refmodel.layer.qtensor import QTensor, as_operand, store
    from refmodel.layer.quantized import _exact_blas_product
    from refmodel.numerics import accumulate

    rng = np.random.default_rng(1)
    a = store(rng.normal(0, 30, size=(17, 3072)), "e4m3fn")
    b = store(rng.normal(0, 0.05, size=(3072, 29)), "e4m3fn")
    b.values[0, 0] = 448.0  # extremes too
    b = store(b.values, "e4m3fn")
    fast = store(_exact_blas_product(a, b, "exact"), "fp32")
    ref = accumulate.matmul(as_operand(a), as_operand(b), "exact", "fp32")
    assert np.array_equal(fast.codes, ref.codes)
    assert _exact_blas_product(a, b, "sequential:fp16") is None
    assert _exact_blas_product(a, QTensor(b.values), "exact") is None  # float64 operand: no proof
