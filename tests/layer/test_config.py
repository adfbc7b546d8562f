"""LayerConfig: presets, derived per-arch choices, validation messages, (de)serialisation."""

import json

import pytest

from refmodel.layer.config import ARCHS, PRESETS, LayerConfig, preset_names


def test_presets_dimensions():
    t = LayerConfig.from_name("tiny")
    assert (t.arch, t.d_model, t.n_heads, t.d_ff, t.seq_len) == ("gpt2", 64, 4, 256, 16)
    g = LayerConfig.from_name("gpt2-small")
    assert (g.arch, g.d_model, g.n_heads, g.d_ff, g.seq_len, g.head_dim) == ("gpt2", 768, 12, 3072, 128, 64)
    m = LayerConfig.from_name("minilm")
    assert (m.arch, m.d_model, m.n_heads, m.d_ff, m.head_dim, m.eps) == ("bert", 384, 12, 1536, 32, 1e-12)
    s = LayerConfig.from_name("smollm2")
    assert (s.arch, s.d_model, s.n_heads, s.n_kv_heads, s.d_ff, s.head_dim) == ("llama", 576, 9, 3, 1536, 64)
    assert (s.group_size, s.kv_dim, s.rope_base) == (3, 192, 100000.0)
    tl = LayerConfig.from_name("tiny-llama")
    assert tl.n_kv_heads < tl.n_heads  # the tiny llama preset exercises GQA
    assert LayerConfig.from_name("tiny-bert").arch == "bert"
    assert set(preset_names()) >= {"tiny", "tiny-bert", "tiny-llama", "gpt2-small", "minilm", "smollm2"}


@pytest.mark.parametrize(
    "arch, norm, prenorm, act, gated, biases, rope, causal, eps",
    [
        ("gpt2", "layernorm", True, "gelu_tanh", False, True, False, True, 1e-5),
        ("bert", "layernorm", False, "gelu_erf", False, True, False, False, 1e-12),
        ("llama", "rmsnorm", True, "silu", True, False, True, True, 1e-5),
    ],
)
def test_derived_per_arch(arch, norm, prenorm, act, gated, biases, rope, causal, eps):
    c = LayerConfig(arch, d_model=32, n_heads=4, d_ff=64, seq_len=8)
    assert (c.norm, c.prenorm, c.activation, c.gated, c.biases, c.rope, c.causal, c.eps) == (
        norm, prenorm, act, gated, biases, rope, causal, eps)
    assert c.n_kv_heads == 4 and c.head_dim == 8 and c.group_size == 1
    assert (c.rope_base == 10000.0) if rope else (c.rope_base is None)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(arch="gpt3"), "arch"),
        (dict(d_model=30), "d_model"),  # 30 % 4 != 0
        (dict(d_model=0), "d_model"),
        (dict(n_heads=-1), "n_heads"),
        (dict(d_ff=2.5), "d_ff"),
        (dict(seq_len=True), "seq_len"),
        (dict(arch="llama", n_kv_heads=3), "n_kv_heads"),  # 4 % 3
        (dict(arch="gpt2", n_kv_heads=2), "n_kv_heads"),  # GQA only for llama
        (dict(eps=0.0), "eps"),
        (dict(eps=float("nan")), "eps"),
        (dict(causal="yes"), "causal"),
        (dict(arch="gpt2", rope_base=10000.0), "rope_base"),
        (dict(arch="llama", rope_base=1.0), "rope_base"),
        (dict(arch="llama", d_model=12, n_heads=4), "d_model"),  # head_dim 3 is odd: no RoPE pairs
    ],
)
def test_validation_names_the_field(kwargs, field):
    base = dict(arch="gpt2", d_model=32, n_heads=4, d_ff=64, seq_len=8)
    base.update(kwargs)
    with pytest.raises(ValueError, match=rf"LayerConfig\.{field}"):
        LayerConfig(**base)


def test_causal_override_and_replace():
    c = LayerConfig("bert", 32, 4, 64, 8, causal=True)
    assert c.causal is True
    tiny = LayerConfig.from_name("tiny")
    ll = tiny.replace(arch="llama")
    assert (ll.eps, ll.causal, ll.rope_base, ll.n_kv_heads) == (1e-5, True, 10000.0, 4)
    assert tiny.replace(seq_len=3).seq_len == 3 and tiny.seq_len == 16


@pytest.mark.parametrize("name", list(PRESETS))
def test_json_round_trip(name):
    c = LayerConfig.from_name(name)
    text = c.to_json()
    d = json.loads(text)
    assert d["arch"] in ARCHS and d["n_kv_heads"] == c.n_kv_heads  # resolved values are serialised
    assert LayerConfig.from_json(text) == c
    assert LayerConfig.from_dict(c.to_dict()) == c


def test_from_dict_errors():
    d = LayerConfig.from_name("tiny").to_dict()
    with pytest.raises(ValueError, match="unknown key.*'heads'"):
        LayerConfig.from_dict({**d, "heads": 4})
    d.pop("d_ff")
    with pytest.raises(ValueError, match="missing key.*'d_ff'"):
        LayerConfig.from_dict(d)
    with pytest.raises(ValueError, match="unknown layer config 'huge'.*tiny.*smollm2"):
        LayerConfig.from_name("huge")
