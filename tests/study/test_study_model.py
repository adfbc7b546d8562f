"""Whole-model forward (refmodel.layer.model): the quantized stream is carried from layer to layer,
weights are quantized once per plan, SLaNC is static over the stack, errors are recorded against
the float64 whole-model run."""

from __future__ import annotations

import numpy as np
import pytest

from refmodel.layer import quantized
from refmodel.layer.config import LayerConfig
from refmodel.layer.model import ModelWeights, PreparedModel, reference_forward, run_model, tensor_error
from refmodel.layer.plan import PrecisionPlan
from refmodel.layer.qtensor import store
from refmodel.layer.reference import run_reference
from refmodel.layer.slanc import compute_slanc
from refmodel.layer.weights import random_inputs, random_weights, weight_names


def stack(name: str, n: int = 3, seed: int = 0) -> tuple[ModelWeights, np.ndarray]:
    cfg = LayerConfig.from_name(name)
    layers = tuple(random_weights(cfg, seed=seed + i) for i in range(n))
    return ModelWeights(name, cfg, layers), random_inputs(cfg, seed=seed + 100)


def test_reference_forward_chains_float64_layers():
    m, x = stack("tiny-llama")
    ref = reference_forward(m, x)
    h = x
    for i, w in enumerate(m.layers):
        h = run_reference(m.config, w, h)["out"]
        np.testing.assert_array_equal(ref[i]["out"], h)


@pytest.mark.parametrize("cfg", ["tiny", "tiny-bert", "tiny-llama"])
def test_quantized_stream_is_carried_not_requantized(cfg):
    m, x = stack(cfg)
    seen = []
    run = PreparedModel(m, "fixed16").run(x, hook=lambda i, r, ref: seen.append(r))
    assert run.stopped_at is None and len(run.layers) == 3
    for prev, nxt in zip(seen, seen[1:], strict=False):
        # layer l+1's input IS layer l's quantized output (same s16.8 codes)
        np.testing.assert_array_equal(nxt.tensors["x"].codes, prev.tensors["out"].codes)
    ref = reference_forward(m, x)
    requant = store(ref[0]["out"], "s16.8").values
    assert not np.array_equal(seen[1].tensors["x"].values, requant)  # not the float64 stream re-rounded
    # the error records compare against the float64 whole-model run
    e = run.tensor(2, "out")
    np.testing.assert_allclose(e.max_abs, np.max(np.abs(seen[2].tensors["out"].values - ref[2]["out"])), rtol=0)


def test_weights_are_quantized_once_per_plan(monkeypatch):
    m, x = stack("tiny-llama")
    calls = []
    real = quantized.quantize_weight
    monkeypatch.setattr(quantized, "quantize_weight", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    pm = PreparedModel(m, "bf16")
    assert len(calls) == 3 * len(weight_names(m.config))
    pm.run(x)
    pm.run(x[:5])
    assert len(calls) == 3 * len(weight_names(m.config))


def test_float64_plan_matches_the_reference():
    m, x = stack("tiny")
    run = run_model(m, x, "float64")
    worst = max(t.max_rel for t in run.tensors)
    assert worst < 1e-11  # same algebra in float64; only evaluation order differs


def test_error_splits_into_local_and_propagated():
    m, x = stack("tiny-bert")
    run = run_model(m, x, "fp8")
    for r in run.layers:
        assert r.max_abs <= (r.local + r.propagated) * (1 + 1e-12)
        assert r.local > 0 and r.max_rel > 0


def test_static_slanc_uses_the_previous_layer():
    m, x = stack("tiny-llama")
    plan = PrecisionPlan.from_name("fixed16").replace(slanc=True, slanc_pow2=True, slanc_first="none")
    seen = []
    PreparedModel(m, plan).run(x, hook=lambda i, r, ref: seen.append(r.slanc))
    want = compute_slanc(m.config, m.layers[1], first="prev", prev=m.layers[0], pow2=True)
    assert seen[1].scale("ln1") == want.scale("ln1") and seen[1].scale("ln1") != 1.0
    assert seen[0].scale("ln1") == 1.0  # layer 0, rule "none"


def test_a_non_finite_stream_stops_the_run():
    m, x = stack("tiny")
    run = run_model(m, x * 1e5, "fp16")  # the input itself overflows fp16
    assert run.stopped_at == 1
    assert "layer 0 output has" in run.stop_reason and "non-finite" in run.stop_reason
    assert all(np.isnan(r.max_rel) for r in run.layers[1:])
    assert run.layers[0].nonfinite > 0


def test_scale_residual_scales_the_residual_projections_only():
    m, _ = stack("tiny")
    s = m.scale_residual(4.0)
    for a, b in zip(m.layers, s.layers, strict=True):
        for n in weight_names(m.config):
            np.testing.assert_array_equal(b[n], a[n] * 4.0 if n in ("wo", "bo", "w_down", "b_down") else a[n])
    with pytest.raises(ValueError, match="finite and > 0"):
        m.scale_residual(0.0)


def test_tensor_error_counts_nonfinite_and_excludes_them():
    e = tensor_error(0, "t", np.array([1.0, np.inf, 2.5]), np.array([1.0, 1.0, 2.0]))
    assert e.nonfinite == 1 and e.max_abs == 0.5 and e.max_rel == 0.25 and e.overflow == 1


@pytest.mark.models
def test_real_models_run_whole():
    from refmodel.layer import realweights as rw

    mini = rw.load_minilm()
    m = ModelWeights.from_real(mini)
    x = mini.embed_ids(mini.tokenize("Numerics engineers check every rounding.")[:8])
    run = run_model(m, x, "fp8")
    assert len(run.layers) == 6 and run.stopped_at is None
    assert 0 < run.layers[-1].max_rel < 0.1
    assert m.input_gain is not None  # bert's layer 0 SLaNC uses the embedding LayerNorm gain
