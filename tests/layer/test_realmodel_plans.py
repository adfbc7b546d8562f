"""The fixed16 / hw presets on the real models: no weight saturates (issue: s8.7 clipped MiniLM's
w_down at 7.9 and SmolLM2's wq at 5.25 silently), and why SLaNC costs accuracy in the integer norm."""

from __future__ import annotations

import numpy as np
import pytest

from refmodel.layer import realweights as rw
from refmodel.layer.plan import PrecisionPlan, WeightPrecision
from refmodel.layer.quantized import QuantOps, quantize_weight, run_quantized
from refmodel.layer.reference import run_reference
from refmodel.layer.slanc import compute_slanc


def _saturated_weights(model, plans):
    """(plan, layer, weight, saturated count, max |w|) for every weight that saturates; each
    distinct weight precision is quantized once."""
    out = []
    for i in range(model.n_layers):
        w = model.load_layer(i)
        for name in w:
            clip = {}
            for pn in plans:
                plan = PrecisionPlan.from_name(pn)
                wp = plan.weight(name)
                if wp not in clip:
                    clip[wp] = quantize_weight(plan, name, w[name]).clip
                if clip[wp].saturated:
                    out.append((pn, i, name, clip[wp].saturated, float(np.abs(w[name]).max())))
    return out


@pytest.mark.models
@pytest.mark.parametrize("loader", ["minilm", "smollm2"])
def test_real_model_weights_do_not_saturate_under_fixed16_and_hw(loader):
    model = rw.load_minilm(layers=[]) if loader == "minilm" else rw.load_smollm2(layers=[])
    bad = _saturated_weights(model, ("fixed16", "hw"))
    assert bad == [], "saturated weights (plan, layer, weight, count, max|w|): " + "; ".join(map(str, bad))


@pytest.mark.models
def test_unscaled_s8_7_saturated_them():
    """The defect the scales fix: the same MiniLM weights in plain s8.7 clip (w_down reaches 7.9)."""
    m = rw.load_minilm(layers=[0])
    plan = PrecisionPlan.from_name("hw")
    plain = plan.replace(weights={**plan.weights, "w_down": WeightPrecision("s8.7")})
    w = m.layers[0]["w_down"]
    assert quantize_weight(plain, "w_down", w).clip.saturated == 2  # 2 of 589824: below the warning threshold
    q = quantize_weight(plan, "w_down", w)
    assert q.clip.saturated == 0 and int(q.scale.exponents[0]) == 3 and np.abs(q.values).max() > 7.9


@pytest.mark.models
def test_slanc_shift_drops_input_bits_of_the_integer_norm():
    """MiniLM layer 0 under fixed16: the same quantized res2 through the integer LayerNorm with the
    SLaNC shift (k = 6) and without. The unit's sums are exact either way; the shift rounds 6 of
    s16.8's 8 fraction bits away first, and the norm's error grows tenfold or more."""
    m = rw.load_minilm(layers=[0])
    c, w = m.config, m.layers[0]
    x = m.embed("Fixed point numerics, checked.")
    plan = PrecisionPlan.from_name("fixed16")
    assert not plan.slanc
    run = run_quantized(c, w, x, plan)
    k = compute_slanc(c, w, pow2=True).shift("ln2")
    assert k == 6
    xin = run.tensors["res2"]
    v = xin.values
    mu = v.mean(-1, keepdims=True)
    exact = (v - mu) / np.sqrt(((v - mu) ** 2).mean(-1, keepdims=True) + c.eps) * w["ln2_g"] + w["ln2_b"]
    err = {}
    for shift in (0, k):
        y, _ = QuantOps(plan, c)._fixed_norm("out", xin, run.weights["ln2_g"], run.weights["ln2_b"], kind="layernorm",
                                             eps=c.eps, scale=2.0**shift)
        err[shift] = float(np.abs(y.values - exact).max())
    print(f"MiniLM layer 0 out norm, max abs error vs float64 on the same input: shift 0 {err[0]:.3g}, "
          f"shift {k} {err[k]:.3g}")
    assert err[k] > 10 * err[0]
    # and through the whole layer: SLaNC on is the less accurate one
    ref = run_reference(c, w, x)["out"]
    on = run_quantized(c, w, x, plan.replace(slanc=True, slanc_pow2=True)).tensors["out"].values
    assert np.abs(on - ref).max() > np.abs(run.tensors["out"].values - ref).max()
