"""Plans for real datapaths: scaled weights (plan syntax, scale rules, the matmul epilogue of float
and fixed plans checked against independent scalar models), the s8.0 warning, and the accumulator
widths checked per tensor when a plan meets a config."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from refmodel.layer.clipping import count_clipping
from refmodel.layer.config import LayerConfig
from refmodel.layer.plan import PrecisionPlan, WeightPrecision
from refmodel.layer.quantized import QuantizedLayer, quantize_weight, run_quantized
from refmodel.layer.weights import LayerWeights, random_inputs, random_weights
from refmodel.layer.weightscale import choose_scale
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.minifloat import FloatFormat

MATS = ("wq", "wk", "wv", "wo", "w_up", "w_down")
INT8_CHANNEL = Path(__file__).with_name("int8_channel.toml")


def _int8_plan(base: str, kind: str = "float", gran: str = "channel", rule: str = "maxabs") -> PrecisionPlan:
    return PrecisionPlan.from_dict({"base": base, "name": f"{base}-int8",
                                    "weights": {m: {"format": "s8.0", "scale": gran, "scale_kind": kind,
                                                    "scale_rule": rule} for m in MATS}})


@pytest.fixture(scope="module")
def tiny():
    c = LayerConfig.from_name("tiny")
    return c, random_weights(c, seed=2), random_inputs(c, seed=3)


# ---- plan syntax ---------------------------------------------------------------------------
def test_plan_file_int8_per_channel_round_trips():
    p = PrecisionPlan.load(INT8_CHANNEL)
    assert p.weight("wq") == WeightPrecision("s8.0", scale="channel", scale_kind="float", scale_rule="maxabs")
    assert p.weight("wq").describe() == "s8.0 x fp32 per channel (maxabs)"
    assert PrecisionPlan.from_toml(p.to_toml()) == p and PrecisionPlan.from_json(p.to_json()) == p
    assert "s8.0 x fp32 per channel (maxabs)" in p.render(LayerConfig.from_name("tiny"))
    # unscaled entries keep their old three keys: older plan files and manifests stay byte-identical
    assert set(p.to_dict()["weights"]["bq"]) == {"format", "rounding", "overflow"}


@pytest.mark.parametrize("entry, where", [
    ({"format": "s8.0", "scale": "row"}, r"weights\.wq\.scale: 'row' is not one of none, tensor, channel"),
    ({"format": "s8.0", "scale": "tensor", "scale_kind": "log"}, r"weights\.wq\.scale_kind: 'log' is not one of"),
    ({"format": "s8.0", "scale": "tensor", "scale_rule": "median"}, r"weights\.wq\.scale_rule: unknown scale rule"),
    ({"format": "s8.0", "scale": "tensor", "scale_rule": "p101"}, r"weights\.wq\.scale_rule: .*percentile"),
    ({"format": "mxfp8_e4m3", "scale": "tensor"}, r"weights\.wq\.scale: .*MX formats carry their own"),
    ({"format": "float64", "scale": "channel"}, r"weights\.wq\.scale: a scale needs a fixed-point or minifloat"),
])
def test_bad_scale_entries_name_the_key(entry, where):
    with pytest.raises(ValueError, match=where):
        PrecisionPlan.from_dict({"base": "fp32", "weights": {"wq": entry}})


def test_scales_only_on_matrices():
    with pytest.raises(ValueError, match=r"weights\.bq\.scale: scales apply to the matrix weights"):
        PrecisionPlan.from_dict({"base": "fp32", "weights": {"bq": {"format": "s8.0", "scale": "tensor"}}})


# ---- scale rules -----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["s8.0", "s8.7", "s4.0", "e4m3fn"])
def test_scale_rules(spec):
    from refmodel.numerics.formats import parse_format

    rng = np.random.default_rng(4)
    w = rng.standard_t(3, size=(24, 200)) * 0.05
    w[3] = 0.0  # an all-zero channel gets s = 1
    fmt = parse_format(spec)
    top = fmt.max
    mag = np.abs(w).max(axis=1)
    f = choose_scale(w, fmt, "channel", "float", "maxabs")
    assert f.values[3] == 1.0
    nz = mag > 0
    s = f.values[nz]
    assert np.all(s.astype(np.float32).astype(np.float64) == s)  # fp32 values
    assert np.all(mag[nz] <= s * top)  # nothing saturates ...
    below = np.nextafter(s.astype(np.float32), np.float32(0)).astype(np.float64)
    assert np.all(mag[nz] > below * top)  # ... and s is the smallest fp32 that achieves it
    p2 = choose_scale(w, fmt, "channel", "pow2", "maxabs")
    e = p2.exponents[nz]
    assert np.all(mag[nz] <= np.ldexp(top, e)) and np.all(mag[nz] > np.ldexp(top, e - 1))
    assert np.array_equal(p2.values, np.ldexp(1.0, p2.exponents))
    fit = choose_scale(w, fmt, "tensor", "pow2", "fit")
    assert fit.exponents[0] == max(0, math.ceil(math.log2(np.abs(w).max() / top)))
    pct = choose_scale(w, fmt, "tensor", "float", "p99")
    m = np.sort(np.abs(w).ravel())[math.ceil(0.99 * (w.size - 1))]  # numpy method="higher"
    assert pct.values[0] == np.float32(m / top) or pct.values[0] * top >= m > float(
        np.nextafter(np.float32(pct.values[0]), np.float32(0))) * top


def test_percentile_rule_saturates_and_counts():
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.05, size=(64, 256))
    plan = PrecisionPlan.from_dict({"base": "fp32", "weights": {"wq": {"format": "s8.0", "scale": "tensor",
                                                                       "scale_rule": "p99"}}})
    q = quantize_weight(plan, "wq", w)
    s = q.scale.values[0]
    r = np.round(w / s)  # independent count (no ties in practice): rounds outside s8.0's -128..127
    over = int(np.count_nonzero((r > 127) | (r < -128)))
    assert q.clip.saturated == over > 0 and over < 0.011 * w.size
    assert np.all((q.values <= 127 * s) & (q.values >= -128 * s))


def test_unscaled_s8_0_warns_with_counts(tiny):
    """The issue's case: wq = "s8.0" without a scale rounds almost every weight to 0. It is still
    accepted, but the run counts it and its warning lines name the weight and the counts."""
    rng = np.random.default_rng(6)
    w = rng.normal(0, 0.2, size=(32, 32))
    flushed = int(np.count_nonzero(np.abs(w) < 0.5))  # |w| < 0.5 rounds to 0 in s8.0 (no ties in practice)
    plan = PrecisionPlan.from_dict({"base": "fp32", "weights": {"wq": "s8.0"}})
    q = quantize_weight(plan, "wq", w)
    assert q.clip.underflow == q.clip.zero == flushed > 1000
    assert q.clip.warnings("weight wq (s8.0)") == [
        f"weight wq (s8.0): {flushed} of 1024 stored as zero ({100 * flushed / 1024:.3g} % > 50 %, "
        f"{flushed} flushed from nonzero)"]
    c, wt, x = tiny
    run = run_quantized(c, wt, x, plan)
    assert run.clipping_warnings()[0].startswith("weight wq (s8.0): 4096 of 4096 stored as zero")
    assert plan.notes() == ["weights.wq: s8.0 holds integers without a scale: weights below 0.5 round to 0 "
                            "(add scale = \"tensor\" or \"channel\")"]


# ---- epilogues ---------------------------------------------------------------------------------
def test_scaled_weight_tensor_exposes_codes_format_scale(tiny):
    c, w, x = tiny
    run = run_quantized(c, w, x, _int8_plan("fp16"))
    t = run.weights["wq"]
    assert t.fmt == FixedFormat.parse("s8.0") and t.codes.min() >= -127 and t.codes.max() <= 127
    assert t.scale.granularity == "channel" and t.scale.values.shape == (c.d_model,)
    assert np.array_equal(t.values, t.codes * t.scale.values[:, None])  # decoded, scaled values
    assert np.array_equal(t.elements, t.codes.astype(np.float64))
    assert np.abs(t.codes).max(axis=1).tolist() == [127] * c.d_model  # maxabs: each row reaches the top code
    rec = next(r for r in run.records if r.name == "q")
    assert rec.details["weight_scale"]["granularity"] == "channel" and rec.details["weight_scale"]["acc_format"] == "fp32"


def test_float_plan_epilogue_matches_scalar_model(tiny):
    """fp16 plan (sequential fp32 accumulation), int8 weights with fp32 per-channel scales:
    q = fp16(fp16(fp32-sequential sum of x * code) * s ...): exactly a = fp32 loop over k,
    y = fp16(a * s_c) (a * s_c exact in float64), then fp16(y + b)."""
    c, w, x = tiny
    run = run_quantized(c, w, x, _int8_plan("fp16"))
    ln1 = run.tensors["ln1"].values
    wq, bq = run.weights["wq"], run.weights["bq"].values
    hd = c.head_dim
    rng = np.random.default_rng(0)
    for _ in range(25):
        i, o = int(rng.integers(c.seq_len)), int(rng.integers(c.d_model))
        acc = np.float32(0.0)
        for k in range(c.d_model):
            acc = np.float32(float(acc) + float(ln1[i, k]) * float(wq.codes[o, k]))  # exact product, one rounding
        y = np.float16(float(acc) * float(wq.scale.values[o]))
        want = np.float16(float(y) + float(bq[o]))
        assert run.tensors["q"].values[o // hd, i, o % hd] == float(want), (i, o)


@pytest.mark.parametrize("kind", ["float", "pow2"])
def test_fixed_plan_per_channel_requant_matches_python_integers(tiny, kind):
    """fixed16 with int8 per-channel weights: acc = sum x*q + round_rne(b 2^pf / s_c) exactly, then
    y = sat(round_rne(acc * M_c / 2^SHIFT)); M_c / 2^SHIFT approximates s_c 2^(out_frac - pf)
    within half a unit of 2^-SHIFT, and the largest uses the full multiplier width."""
    c, w, x = tiny
    plan = _int8_plan("fixed16", kind=kind)
    run = run_quantized(c, w, x, plan)
    a, wq, bq, out = run.tensors["ln1"], run.weights["wq"], run.weights["bq"], run.tensors["q"]
    rec = next(r for r in run.records if r.name == "q")
    M, SH = rec.details["multipliers"], rec.details["requant"].shift
    pf = a.fmt.frac + wq.fmt.frac
    m_w = plan.units.requant_m_w
    real = wq.scale.values * 2.0 ** (out.fmt.frac - pf)
    assert np.all(np.abs(M / 2.0**SH - real) <= 2.0 ** -(SH + 1))
    assert (1 << (m_w - 1)) <= int(M.max()) < (1 << m_w)
    if kind == "pow2":
        assert np.array_equal(M / 2.0**SH, real)  # powers of two: exact
    hd = c.head_dim
    for i in range(0, c.seq_len, 3):
        for o in range(0, c.d_model, 5):
            s_c = Fraction(float(wq.scale.values[o]))
            b = Fraction(int(bq.codes[o]), 1 << bq.fmt.frac) * (1 << pf) / s_c
            fl = b.numerator // b.denominator
            b_acc = fl + (1 if (b - fl > Fraction(1, 2) or (b - fl == Fraction(1, 2) and fl % 2)) else 0)
            acc = sum(int(a.codes[i, k]) * int(wq.codes[o, k]) for k in range(c.d_model)) + b_acc
            q, r = divmod(acc * int(M[o]), 1 << SH)
            half = 1 << (SH - 1)
            q += 1 if (r > half or (r == half and q % 2)) else 0
            q = max(out.fmt.min_code, min(out.fmt.max_code, q))
            assert out.codes[o // hd, i, o % hd] == q, (i, o)


def test_pow2_tensor_scale_is_a_shift_in_fixed_plans(tiny):
    """hw with weights that need 2^2: the codes are those of s8.7 x 4 = s8.5, and the MAC's
    requant shift is two smaller than unscaled -- recomputed with Python ints."""
    c, w0, x = tiny
    w = LayerWeights({**dict(w0), "wq": w0["wq"] * 6.0})
    run = run_quantized(c, w, x, "hw")
    a, wq, bq, out = run.tensors["ln1"], run.weights["wq"], run.weights["bq"], run.tensors["q"]
    e = int(wq.scale.exponents[0])
    assert e == math.ceil(math.log2(np.abs(w["wq"]).max() / FixedFormat.parse("s8.7").max)) == 2
    assert wq.clip.saturated == 0 and np.array_equal(wq.values, wq.codes * 2.0 ** (e - 7))
    rec = next(r for r in run.records if r.name == "q")
    pf = a.fmt.frac + 7 - e
    assert rec.details["mac"].shift == pf - out.fmt.frac and rec.details["weight_scale"]["exponent"] == e
    hd = c.head_dim
    for i in range(0, c.seq_len, 5):
        for o in range(0, c.d_model, 7):
            s = sum(int(a.codes[i, k]) * int(wq.codes[o, k]) for k in range(c.d_model))
            s += int(bq.codes[o]) << (pf - bq.fmt.frac)
            q, r = divmod(s, 1 << (pf - out.fmt.frac))
            half = 1 << (pf - out.fmt.frac - 1)
            q += 1 if (r > half or (r == half and q % 2)) else 0
            assert out.codes[o // hd, i, o % hd] == max(out.fmt.min_code, min(out.fmt.max_code, q)), (i, o)


def test_int8_per_channel_beats_unscaled_s8_7_on_outlier_rows(tiny):
    """Where one output row holds a large weight, a per-channel scale keeps the other rows' resolution."""
    c, w0, x = tiny
    d = dict(w0)
    d["w_down"] = d["w_down"].copy()
    d["w_down"][5, 7] = 7.5  # one outlier, as MiniLM's w_down has
    w = LayerWeights(d)
    from refmodel.layer.reference import run_reference

    ref = run_reference(c, w, x)
    err = {}
    hw = PrecisionPlan.from_name("hw")
    per_row = hw.replace(weights={**hw.weights, "w_down": WeightPrecision("s8.7", scale="channel", scale_kind="pow2",
                                                                          scale_rule="fit")})
    for name, plan in (("tensor", hw), ("channel", per_row)):
        run = run_quantized(c, w, x, plan)
        err[name] = float(np.abs(run.tensors["down"].values - ref["down"]).max())
        assert run.clipping["w_down"].saturated == 0
    assert err["channel"] < err["tensor"]


# ---- counters ------------------------------------------------------------------------------------
def test_clipping_counts_against_independent_counts(tiny):
    c, w, x = tiny
    big = x.copy()
    big[:, 3] = 500.0  # s16.8 holds |x| < 128: 16 elements saturate
    run = run_quantized(c, w, big, "hw")
    cx = run.clipping["x"]
    assert (cx.n, cx.saturated, cx.underflow) == (big.size, c.seq_len, int(np.count_nonzero(
        (np.abs(big) < 2.0**-9) & (big != 0))))
    # causal probs: the masked half is excluded from n
    assert run.clipping["probs"].n == c.n_heads * c.seq_len * (c.seq_len + 1) // 2
    assert set(run.clipping) == set(run.tensors) | set(run.weights)
    fmt = FloatFormat.parse("fp16")
    from refmodel.layer.qtensor import store

    v = np.array([70000.0, 1e-9, 0.0, -65520.0, 3.0])
    c16 = count_clipping(store(v, "fp16"), v)
    assert (c16.saturated, c16.nonfinite, c16.underflow, c16.zero) == (0, 2, 1, 2)  # fp16 overflows to inf
    sat = count_clipping(store(v, "e4m3fn:sat"), v)
    assert sat.saturated == 2 and fmt.max == 65504.0


# ---- accumulators --------------------------------------------------------------------------------
def _acc_plan(policy: str) -> PrecisionPlan:
    return PrecisionPlan.from_dict({"base": "hw", "tensors": {"down": {"acc": policy}},
                                    "weights": {"w_down": "s16.12"}})


def test_narrow_accumulator_refused_when_the_plan_meets_the_config():
    cfg = LayerConfig.from_name("gpt2-small")  # d_ff 3072: 16x16-bit products over K=3072 need 44 bits
    p = _acc_plan("acc:s32:error")
    with pytest.raises(ValueError, match=r"tensor down: accumulator acc:s32:error has 32 bits, 16x16-bit products "
                                         r"\(act s16.10 x w_down s16.12\) over K=3072 need 44"):
        p.check(cfg)
    w = random_weights(cfg, seed=0)
    with pytest.raises(ValueError, match="tensor down: accumulator acc:s32:error"):
        QuantizedLayer(cfg, w, p)  # before any weight is quantized
    with pytest.raises(ValueError, match=r"tensor down: accumulator acc:s16:wrap has 16 bits and cannot hold one of "
                                         r"the 16x16-bit products .* that needs 32"):
        _acc_plan("acc:s16:wrap").check(cfg)


@pytest.mark.parametrize("ov, how", [("sat", "saturates"), ("wrap", "wraps")])
def test_wrapping_or_saturating_accumulator_accepted_with_risk(ov, how):
    cfg = LayerConfig.from_name("gpt2-small")
    p = _acc_plan(f"acc:s32:{ov}")
    assert p.check(cfg) is p
    risk = [c for c in p.accumulator_checks(cfg) if c.status != "ok"]
    assert [(c.tensor, c.k, c.needed, c.width) for c in risk] == [("down", 3072, 44, 32)]
    assert f"it {how} once |sum| >= 2^31 (worst case 2^43)" in risk[0].message
    assert all(c.status == "ok" for c in PrecisionPlan.from_name("hw").accumulator_checks(cfg))
