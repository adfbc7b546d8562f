"""Each study's central claim, asserted on a small configuration. The predictions come from the
analysis (stability.md, slanc.md and each study's module docstring), computed independently of
the measured op; where a claim of the paper did not hold, the test asserts what we measured and
says why."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refmodel.layer.config import LayerConfig
from refmodel.layer.model import ModelWeights, PreparedModel, reference_forward
from refmodel.layer.plan import PRESET_NAMES, PrecisionPlan
from refmodel.layer.weights import random_inputs, random_weights
from refmodel.study import norms, residual, softmax
from refmodel.study import slanc as slanc_study
from refmodel.study.lipschitz import layer_factors


# ---- norms ---------------------------------------------------------------------------------------
def _rows(d: int = 384, n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.5, size=(n, d))
    g = rng.normal(1.0, 0.1, size=d)
    bg = np.ones_like(x, dtype=bool)
    bg[:, 7] = False
    return x, g, bg


def _bg_error(x, g, bg, kind, m):
    xo = norms.outlier_rows(x, 7, m)
    s = norms.overflow_free_scale(xo, kind)
    out = norms.norm_forward(xo, g, None, kind=kind, eps=1e-5, fmt="fp16", acc="sequential:fp16", scale=s)
    meas = norms._errors(out, kind, 1e-5, bg, 7)["bg_median"]
    pred = norms.predict_background_error(out["x"] / s, out["g"], kind=kind, eps=1e-5 / s**2, work="fp16",
                                          store_fmt="fp16", background=bg)
    return meas, pred


def test_rmsnorm_beats_layernorm_under_a_1e3_outlier_by_the_predicted_factor():
    x, g, bg = _rows()
    ln, ln_pred = _bg_error(x, g, bg, "layernorm", 1e3)
    rms, rms_pred = _bg_error(x, g, bg, "rmsnorm", 1e3)
    assert ln / rms > 3  # RMSNorm is clearly better on the background entries
    assert 0.5 <= (ln / rms) / (ln_pred / rms_pred) <= 2


def test_layernorm_error_does_not_grow_tenfold_from_1e2_to_1e3_swamping():
    # stability.md 3.4's worst-case mechanism predicts x10 (the mean's error ~ u M / d). Measured in fp16
    # accumulation it is not: once the outlier makes the running sum's ulp larger than the background
    # entries, they are lost whole (swamping) and the mean's error stops scaling with M. The rounding
    # model with swamping predicts the measured ratio.
    x, g, bg = _rows()
    l2, p2 = _bg_error(x, g, bg, "layernorm", 1e2)
    l3, p3 = _bg_error(x, g, bg, "layernorm", 1e3)
    assert l3 / l2 < 5
    assert 0.5 <= (l3 / l2) / (p3 / p2) <= 2


def test_rmsnorm_condition_number_is_at_most_two():
    x, g, bg = _rows(d=128, n=6)
    for m in (0.0, 1e2, 1e4):
        cn = norms.condition_numbers(norms.outlier_rows(x, 7, m), g, None, "rmsnorm", 1e-5, bg)
        assert cn["max"] <= 2 * (1 + 1e-9)
    # LayerNorm: unbounded on entries near the mean (M = 1e2 puts the mean, M rms / d, inside the
    # background's range; at M = 1e3 every background entry is far below the mean and well conditioned)
    ln = norms.condition_numbers(norms.outlier_rows(x, 7, 1e2), g, None, "layernorm", 1e-5, bg)
    assert ln["max"] > 10


def test_fp16_norm_overflows_exactly_where_the_sum_of_squares_leaves_the_range():
    x, g, _ = _rows(d=256, n=8)
    for m in (1e2, 1e3):
        xo = norms.outlier_rows(x, 7, m)
        out = norms.norm_forward(xo, g, None, kind="rmsnorm", eps=1e-5, fmt="fp16", acc="sequential:fp16")
        predicted = int(np.count_nonzero(np.sum(xo * xo, axis=1) >= 65520.0))
        assert out["overflow_rows"] == predicted
        s = norms.overflow_free_scale(xo, "rmsnorm")
        assert norms.norm_forward(xo, g, None, kind="rmsnorm", eps=1e-5, fmt="fp16", acc="sequential:fp16",
                                  scale=s)["overflow_rows"] == 0
    assert predicted > 0  # M = 1e3 does overflow


# ---- softmax -------------------------------------------------------------------------------------
def test_softmax_with_a_sink_saturates_at_the_lost_tail_mass_below_the_sink_bound():
    rng = np.random.default_rng(1)
    errs = {}
    for n in (16, 1024):
        logits = softmax._synthetic(rng, 8, n, 1.5, sink=True)
        p, ls = softmax.softmax_op(logits, "fp16", "sequential:fp16")
        b = softmax.softmax_bounds(ls, "fp16", "fp16")
        err = np.abs(p - b["s"])
        assert np.all(err <= 1.01 * b["sink"])
        errs[n] = float(err.max())
        if n == 1024:
            assert not math.isfinite(b["generic"].max()) or b["generic"].max() > 10 * b["sink"].max()
    # predicted: every tail term is swamped by the sink's partial sum at n = 1024: error ~ 1 - s_0
    assert 0.5 <= errs[1024] / (1 - softmax.SINK_MASS) <= 2
    assert errs[16] < 0.5 * errs[1024]


def test_unshifted_softmax_fails_exactly_where_predicted_shifted_never():
    rng = np.random.default_rng(2)
    base = rng.normal(0.0, 2.0, size=(12, 32))
    lo, hi = softmax.overflow_limits("fp16")
    for T in (-20.0, 0.0, 10.5, 11.5):
        lg = base - base.max(axis=1, keepdims=True) + T
        for shifted in (True, False):
            p, ls = softmax.softmax_op(lg, "fp16", "sequential:fp16", shifted=shifted)
            failed = ~np.isfinite(p).all(axis=1) | ~(np.abs(np.nan_to_num(p).sum(axis=1) - 1) < 0.5)
            m = ls.max(axis=1)
            lse = m + np.log(np.exp(ls - m[:, None]).sum(axis=1))
            want = (lse >= hi) | (m < lo)
            np.testing.assert_array_equal(failed, want if not shifted else np.zeros_like(want))
    assert hi == pytest.approx(math.log(65520.0))


# ---- slanc ---------------------------------------------------------------------------------------
def _fp16_acc16() -> PrecisionPlan:
    """fp16 storage with fp16 accumulation (the preset named for it, or the fp16 preset that was it)."""
    p = PrecisionPlan.from_name("fp16-acc16" if "fp16-acc16" in PRESET_NAMES else "fp16")
    assert p.tensor("ln1").acc == "sequential:fp16"
    return p


@pytest.mark.models
def test_smollm2_fp16_stream_overflows_at_layer_3_without_slanc_and_not_with_it():
    from refmodel.study.models import load_study_model

    sm = load_study_model("smollm2", tokens=4, n_layers=4)
    ref = reference_forward(sm.weights, sm.x)
    # prediction from float64 alone: the first norm input whose row sum of squares reaches fp16's
    # overflow threshold (65504 + half an ulp)
    first = next((i, k) for i, r in enumerate(ref) for k, t in (("ln1", "x"), ("ln2", "res1"))
                 if np.max(np.sum(r[t] ** 2, axis=1)) >= 65520.0)
    assert first == (3, "ln1")
    plan = _fp16_acc16()
    off = slanc_study._run(sm, slanc_study._with_slanc(plan, False), ref, lambda n=1: None)
    on = slanc_study._run(sm, slanc_study._with_slanc(plan, True), ref, lambda n=1: None)
    assert off["first_overflow"] == first == off["predicted_overflow"]
    assert on["first_overflow"] is None and on["overflow_rows"] == 0 and on["predicted_overflow"] is None
    assert on["final_rel"] < off["final_rel"]


def test_fixed_point_slanc_shift_only_costs_precision():
    # the integer norm unit sums exactly (no overflow possible); SLaNC's shift round_half_up(x / 2^k)
    # drops k fraction bits of the input, so the unit's own error grows
    cfg = LayerConfig.from_name("tiny-llama")
    w = random_weights(cfg, seed=3)
    x = random_inputs(cfg, seed=4, scale=4.0)
    plan = PrecisionPlan.from_name("fixed16")
    from refmodel.layer.qtensor import store
    from refmodel.layer.quantized import quantize_weight

    xq = store(x, plan.tensor("x").format)
    g = quantize_weight(plan, "ln1_g", w["ln1_g"])
    off, on = slanc_study.shift_cost(plan, "rmsnorm", cfg.eps, "ln1", xq, g, None, 5)
    assert on > 4 * off


# ---- residual ------------------------------------------------------------------------------------
def _small_llama(n: int = 4) -> tuple[ModelWeights, np.ndarray]:
    cfg = LayerConfig.from_name("tiny-llama")
    return ModelWeights("tiny-llama", cfg, tuple(random_weights(cfg, seed=i) for i in range(n))), \
        random_inputs(cfg, seed=50)


def test_residual_scaling_that_keeps_the_dynamics_keeps_the_relative_error():
    # pre-norm model, residual projections and input both x c (power of two): the float64 stream is
    # c times the unscaled one at every layer (norms remove c), so a float plan's relative error is
    # unchanged (within 2x); a fixed-point plan's is not (its quantum is absolute)
    m, x = _small_llama()
    base = reference_forward(m, x)
    rel = {}
    for c in (1.0, 1 / 16, 16.0):
        mc = m.scale_residual(c)
        ref = reference_forward(mc, x * c)
        assert residual.stream_change(ref, base) < 1e-2  # not 0 only through eps in the norms
        for plan in ("bf16", "fixed16"):
            rel[plan, c] = PreparedModel(mc, plan).run(x * c, reference=ref, local=False).stream_rel()[-1]
    for c in (1 / 16, 16.0):
        assert 0.5 <= rel["bf16", c] / rel["bf16", 1.0] <= 2
    assert rel["fixed16", 1 / 16] > 4 * rel["fixed16", 1.0]


def test_worst_case_bound_is_above_the_measured_stream_error():
    m, x = _small_llama()
    ref = reference_forward(m, x)
    factors = [layer_factors(m.config, w, r) for w, r in zip(m.layers, ref, strict=True)]
    run = PreparedModel(m, "fp16").run(x, reference=ref)
    lb = residual.worst_case_bound(run.tensor(0, "x").max_abs, factors,
                                   np.array([r.local for r in run.layers]))
    err = np.array([r.max_abs for r in run.layers])
    assert np.all(np.log10(err) <= lb)
    assert all(f.total > 1 for f in factors)  # a worst-case factor never shrinks the error
