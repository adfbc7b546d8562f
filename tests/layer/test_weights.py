"""LayerWeights naming/validation, random weights and random inputs."""

import numpy as np
import pytest

from refmodel.layer.config import LayerConfig
from refmodel.layer.forward import layer_forward
from refmodel.layer.ops import Float64Ops
from refmodel.layer.reference import run_reference
from refmodel.layer.weights import (
    LayerWeights,
    padding_mask,
    random_inputs,
    random_weights,
    weight_names,
    weight_shapes,
)

CFGS = ["tiny", "tiny-bert", "tiny-llama"]


def test_names_per_arch():
    gpt2 = ["wq", "wk", "wv", "wo", "bq", "bk", "bv", "bo", "w_up", "w_down", "b_up", "b_down",
            "ln1_g", "ln1_b", "ln2_g", "ln2_b"]
    assert weight_names(LayerConfig.from_name("tiny")) == gpt2
    assert weight_names(LayerConfig.from_name("tiny-bert")) == gpt2
    assert weight_names(LayerConfig.from_name("tiny-llama")) == ["wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down",
                                                                "ln1_g", "ln2_g"]


def test_shapes_out_in():
    c = LayerConfig.from_name("smollm2")
    s = weight_shapes(c)
    assert s["wq"] == (576, 576) and s["wk"] == (192, 576) and s["wv"] == (192, 576) and s["wo"] == (576, 576)
    assert s["w_gate"] == (1536, 576) and s["w_up"] == (1536, 576) and s["w_down"] == (576, 1536)
    assert s["ln1_g"] == (576,)


@pytest.mark.parametrize("name", CFGS)
def test_random_weights_valid_and_seeded(name):
    c = LayerConfig.from_name(name)
    a, b, other = random_weights(c, 3), random_weights(c, 3), random_weights(c, 4)
    assert a.validate(c) is a
    assert list(a) == weight_names(c)
    for n in a:
        assert a[n].dtype == np.float64
        np.testing.assert_array_equal(a[n], b[n])
        assert not np.array_equal(a[n], other[n])


def test_init_rules():
    c = LayerConfig.from_name("gpt2-small")
    w = random_weights(c, 0)
    assert abs(w["wq"].std() * np.sqrt(768) - 1) < 0.01
    assert abs(w["w_down"].std() * np.sqrt(3072) - 1) < 0.01
    g = random_weights(c, 0, init="gpt2")
    assert abs(g["w_up"].std() - 0.02) < 0.0005
    assert abs(g["wo"].std() - 0.02 / np.sqrt(2)) < 0.0005
    assert abs(w["ln1_g"].mean() - 1) < 0.02 and 0.05 < w["ln1_g"].std() < 0.15
    with pytest.raises(ValueError, match="init 'xavier'"):
        random_weights(c, 0, init="xavier")


def test_weights_read_only():
    w = random_weights(LayerConfig.from_name("tiny"), 0)
    with pytest.raises(ValueError):
        w["wq"][0, 0] = 1.0
    with pytest.raises(KeyError, match="no weight named 'w_q'"):
        w["w_q"]


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda d: d.pop("wv"), r"missing wv"),
        (lambda d: d.__setitem__("w_q", d.pop("wq")), r"missing wq; unexpected w_q"),
        (lambda d: d.__setitem__("w_gate", np.zeros((256, 64))), r"unexpected w_gate"),
        (lambda d: d.__setitem__("wk", np.zeros((64, 32))), r"weight 'wk' has shape \[64, 32\], expected \[64, 64\]"),
        (lambda d: d.__setitem__("w_up", np.zeros((64, 256))), r"weight 'w_up' has shape \[64, 256\], expected \[256, 64\]"),
        (lambda d: d["b_down"].__setitem__(5, np.nan), r"weight 'b_down' has a non-finite value nan at index \[5\]"),
    ],
)
def test_validate_names_the_bad_tensor(mutate, msg):
    c = LayerConfig.from_name("tiny")
    d = {k: v.copy() for k, v in random_weights(c, 0).items()}
    mutate(d)
    w = LayerWeights(d)
    with pytest.raises(ValueError, match=msg):
        w.validate(c)
    # the forward validates before doing any work: nothing is recorded on the backend
    ops = Float64Ops()
    with pytest.raises(ValueError, match=msg):
        layer_forward(ops, c, w, random_inputs(c, 0))
    assert ops.tensors == {} and ops.weights == {}


def test_wrong_arch_weights_rejected():
    w = random_weights(LayerConfig.from_name("tiny"), 0)
    with pytest.raises(ValueError, match="arch 'llama'.*missing w_gate.*unexpected bq"):
        run_reference(LayerConfig.from_name("tiny").replace(arch="llama"), w, np.zeros((4, 64)))


def test_random_inputs_plain_and_outliers():
    c = LayerConfig.from_name("gpt2-small")
    x = random_inputs(c, 1)
    assert x.shape == (128, 768) and abs(x.std() - 1) < 0.01
    np.testing.assert_array_equal(x, random_inputs(c, 1))
    xo = random_inputs(c, 1, outliers=[5, 700], outlier_value=1e3)
    for ch in (5, 700):
        col = xo[:, ch]
        assert np.all(np.sign(col) == np.sign(col[0]))  # fixed sign per channel
        assert 600 < np.abs(col).min() and np.abs(col).max() < 1400 and abs(np.abs(col).mean() - 1e3) < 30
    rest = np.delete(xo, [5, 700], axis=1)
    assert np.abs(rest).max() < 7
    xr = random_inputs(c, 2, outliers=3, seq_len=10)
    assert xr.shape == (10, 768) and (np.abs(xr).max(axis=0) > 500).sum() == 3
    with pytest.raises(ValueError, match="outlier channel out of range"):
        random_inputs(c, 1, outliers=[768])
    with pytest.raises(ValueError, match="seq_len"):
        random_inputs(c, 1, seq_len=0)


def test_padding_mask():
    np.testing.assert_array_equal(padding_mask(5, 3), [True, True, True, False, False])
    with pytest.raises(ValueError, match="n_valid"):
        padding_mask(5, 0)
