"""SLaNC: exactness of the scaled norm, the formulas on hand-checkable matrices, GQA expansion,
per-arch rules, pow2 shifts, and the fp16 overflow demonstration."""

import math

import numpy as np
import pytest

from refmodel.layer.config import LayerConfig
from refmodel.layer.ops import Float64Ops
from refmodel.layer.reference import run_reference
from refmodel.layer.slanc import (
    SlancScales,
    compute_slanc,
    expand_kv_rows,
    model_slanc,
    pow2_shift,
    s_attn,
    s_input,
    s_mlp_gated,
    s_mlp_standard,
    spectral_norm,
)
from refmodel.layer.weights import random_inputs, random_weights


# =========================================================================================
# exactness: norm(x / s; eps / s^2) == norm(x; eps)
# =========================================================================================
@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("s", [37.0, 64.0, 1234.5, 0.01])
def test_scaled_norm_equals_unscaled(kind, s):
    rng = np.random.default_rng(1)
    x = 50 * rng.normal(size=(200, 64))
    x[:, 3] += 3e3  # an outlier channel
    g, b = 1 + 0.1 * rng.normal(size=64), 0.1 * rng.normal(size=64)
    beta = b if kind == "layernorm" else None
    ops = Float64Ops()
    ref = ops.norm("a", x, g, beta, kind=kind, eps=1e-5)
    scaled = ops.norm("b", x, g, beta, kind=kind, eps=1e-5, scale=s)
    rel = np.max(np.abs(scaled - ref)) / np.max(np.abs(ref))
    assert rel < 1e-14, rel


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_eps_must_be_divided_by_s_squared(kind):
    # slanc.md section 3 toy case: d = 64, s = 37, inputs of scale 50; leaving eps unchanged is visible
    rng = np.random.default_rng(0)
    x = 50 * rng.normal(size=(100, 64))
    g = np.ones(64)
    ops = Float64Ops()
    ref = ops.norm("a", x, g, None, kind=kind, eps=1e-5)
    right = ops.norm("b", x, g, None, kind=kind, eps=1e-5, scale=37.0)
    wrong = ops.norm("c", x / 37.0, g, None, kind=kind, eps=1e-5)  # x/s but eps not rescaled
    assert np.max(np.abs(right - ref)) < 1e-14
    assert np.max(np.abs(wrong - ref)) > 1e-7


# =========================================================================================
# formulas on matrices checkable by hand (d = 2)
# =========================================================================================
def test_s_attn_hand():
    wv = np.eye(2)
    wo = np.array([[0.0, 1], [1, 0]])
    # I + Wo Wv = [[1, 1], [1, 1]]; times diag(1, 2) -> [[1, 2], [1, 2]]; ||.||_F = sqrt(10)
    assert s_attn(wv, wo, np.array([1.0, 2.0])) == pytest.approx(math.sqrt(10), rel=1e-15)


def test_s_mlp_standard_hand():
    g = np.array([1.0, 3.0])
    w1 = np.diag([2.0, 1.0])  # spectral norm 2
    w2 = np.array([[0.0, 3.0], [0.0, 0.0]])  # spectral norm 3
    # dmx: (|g|_1 / d) * 2 * 3 = 2 * 6 = 12
    assert s_mlp_standard(w1, w2, g, "dmx") == pytest.approx(12.0, rel=1e-14)
    # auth: I + W2 W1 = [[1, 3], [0, 1]]; times diag(1, 3) = [[1, 9], [0, 3]]; F = sqrt(91)
    assert s_mlp_standard(w1, w2, g, "auth") == pytest.approx(math.sqrt(91), rel=1e-15)
    with pytest.raises(ValueError, match="variant 'opt'"):
        s_mlp_standard(w1, w2, g, "opt")


def test_s_mlp_gated_hand():
    w_up = np.eye(2)
    w_down = np.array([[2.0, 0], [0, 0]])
    w_gate = np.array([[3.0, 0], [0, 4]])
    # g = 1: ||Wd Wu||_F = 2, ||Wg||_2 = 4 -> 8; g = (1, 2): 2 * ||diag(3, 8)||_2 = 16
    assert s_mlp_gated(w_gate, w_up, w_down, np.ones(2)) == pytest.approx(8.0, rel=1e-14)
    assert s_mlp_gated(w_gate, w_up, w_down, np.array([1.0, 2.0])) == pytest.approx(16.0, rel=1e-14)


def test_spectral_norm_against_svd():
    rng = np.random.default_rng(3)
    for shape in [(300, 40), (40, 300), (7, 7), (5, 1)]:
        a = rng.normal(size=shape)
        assert spectral_norm(a) == pytest.approx(np.linalg.svd(a, compute_uv=False)[0], rel=1e-13)
    assert spectral_norm(np.diag([3.0, -4.0])) == 4.0


def test_s_input():
    assert s_input(np.array([[3.0, 4.0], [1.0, 0.0]])) == 5.0
    assert s_input(np.zeros((2, 3))) == 1.0


# =========================================================================================
# GQA expansion
# =========================================================================================
def test_gqa_interleave_vs_tile():
    # slanc.md 2.2: 8 query heads, 2 kv heads, d = 32; the two expansions give different scales
    rng = np.random.default_rng(0)
    d, hd = 32, 4
    wv = rng.normal(size=(2 * hd, d))
    wo = rng.normal(size=(d, 8 * hd))
    g = 1 + 0.1 * rng.normal(size=d)
    inter = s_attn(wv, wo, g, n_heads=8, n_kv_heads=2, gqa_expand="interleave")
    tile = s_attn(wv, wo, g, n_heads=8, n_kv_heads=2, gqa_expand="tile")
    assert abs(inter - tile) / inter > 1e-3  # different matrices, different scale (0.3% for this draw)
    # interleave: query head h reads kv head h // 4 (HF repeat_kv); tile: kv head h % 2
    e_i, e_t = expand_kv_rows(wv, 8, 2, "interleave"), expand_kv_rows(wv, 8, 2, "tile")
    for h in range(8):
        np.testing.assert_array_equal(e_i[h * hd:(h + 1) * hd], wv[(h // 4) * hd:(h // 4 + 1) * hd])
        np.testing.assert_array_equal(e_t[h * hd:(h + 1) * hd], wv[(h % 2) * hd:(h % 2 + 1) * hd])
    m = np.eye(d) + wo @ e_i
    assert inter == pytest.approx(np.linalg.norm(m * g, "fro"), rel=1e-14)
    with pytest.raises(ValueError, match="pass n_heads"):
        s_attn(wv, wo, g)


# =========================================================================================
# per-arch rules
# =========================================================================================
def _attn_explicit(w, gamma, heads, kv):
    hd = w["wo"].shape[1] // heads
    blocks = [w["wv"][(h // (heads // kv)) * hd:(h // (heads // kv) + 1) * hd] for h in range(heads)]
    m = np.eye(w["wo"].shape[0]) + w["wo"] @ np.vstack(blocks)
    return np.sqrt(np.sum((m * gamma[None, :]) ** 2))


def test_rules_gpt2():
    c = LayerConfig.from_name("tiny")
    w, prev = random_weights(c, 0), random_weights(c, 1)
    x = random_inputs(c, 2)
    sc = compute_slanc(c, w)
    assert sc.entries["ln1"].s == 1.0 and sc.entries["ln1"].k == 0
    assert sc.entries["ln2"].s == pytest.approx(_attn_explicit(w, w["ln1_g"], 4, 4), rel=1e-13)
    assert compute_slanc(c, w, first="input", x=x).entries["ln1"].s == pytest.approx(
        np.max(np.sqrt(np.sum(x**2, axis=1))), rel=1e-14)
    s_prev = compute_slanc(c, w, first="prev", prev=prev).entries["ln1"].s
    g = prev["ln2_g"]
    expect = np.sum(np.abs(g)) / 64 * np.linalg.svd(prev["w_up"], compute_uv=False)[0] * np.linalg.svd(
        prev["w_down"], compute_uv=False)[0]
    assert s_prev == pytest.approx(expect, rel=1e-12)
    s_auth = compute_slanc(c, w, first="prev", prev=prev, mlp="auth").entries["ln1"].s
    m = np.eye(64) + prev["w_down"] @ prev["w_up"]
    assert s_auth == pytest.approx(np.linalg.norm(m * g[None, :]), rel=1e-13)
    assert compute_slanc(c, w, first=8.5).entries["ln1"].s == 8.5
    with pytest.raises(ValueError, match="needs the inputs x"):
        compute_slanc(c, w, first="input")
    with pytest.raises(ValueError, match="needs the previous layer"):
        compute_slanc(c, w, first="prev")
    with pytest.raises(ValueError, match="unknown first='last'"):
        compute_slanc(c, w, first="last")


def test_rules_llama_gqa():
    c = LayerConfig.from_name("tiny-llama")  # 4 heads, 2 kv heads
    w, prev = random_weights(c, 0), random_weights(c, 1)
    sc = compute_slanc(c, w, first="prev", prev=prev)
    assert sc.entries["ln2"].s == pytest.approx(_attn_explicit(w, w["ln1_g"], 4, 2), rel=1e-13)
    g = prev["ln2_g"]
    expect = np.linalg.norm(prev["w_down"] @ prev["w_up"] * g) * np.linalg.svd(prev["w_gate"] * g,
                                                                               compute_uv=False)[0]
    assert sc.entries["ln1"].s == pytest.approx(expect, rel=1e-12)
    tiled = compute_slanc(c, w, gqa_expand="tile").entries["ln2"].s
    assert tiled != pytest.approx(sc.entries["ln2"].s, rel=1e-3)


def test_rules_bert():
    c = LayerConfig.from_name("tiny-bert")
    w, prev = random_weights(c, 0), random_weights(c, 1)
    sc = compute_slanc(c, w)
    assert sc.entries["ln1"].s == pytest.approx(_attn_explicit(w, np.ones(64), 4, 4), rel=1e-13)
    g = w["ln1_g"]
    assert sc.entries["ln2"].s == pytest.approx(
        np.abs(g).mean() * np.linalg.norm(w["w_up"], 2) * np.linalg.norm(w["w_down"], 2), rel=1e-12)
    assert compute_slanc(c, w, prev=prev).entries["ln1"].s == pytest.approx(
        _attn_explicit(w, prev["ln2_g"], 4, 4), rel=1e-13)
    gain = np.full(64, 0.5)
    assert compute_slanc(c, w, input_gain=gain).entries["ln1"].s == pytest.approx(
        _attn_explicit(w, gain, 4, 4), rel=1e-13)
    with pytest.raises(ValueError, match="first= applies to pre-norm"):
        compute_slanc(c, w, first="input", x=np.ones((2, 64)))


def test_model_slanc_chains_previous_layer():
    c = LayerConfig.from_name("tiny-llama")
    layers = [random_weights(c, i) for i in range(3)]
    scs = model_slanc(c, layers)
    assert scs[0].entries["ln1"].s == 1.0
    for i in (1, 2):
        assert scs[i].entries["ln1"].s == compute_slanc(c, layers[i], first="prev", prev=layers[i - 1]).entries["ln1"].s


def test_scale_is_expected_size_of_norm_input():
    # s estimates ||norm input||: with random weights and N(0,1) inputs, ||res1|| / s_ln2 ~ 1
    c = LayerConfig.from_name("gpt2-small")
    w, x = random_weights(c, 0), random_inputs(c, 1)
    sc = compute_slanc(c, w)
    r = run_reference(c, w, x)
    ratio = np.mean(np.sum(r["res1"] ** 2, axis=1)) / sc.entries["ln2"].s ** 2
    assert 0.25 < ratio < 4, ratio


# =========================================================================================
# powers of two and the scales object
# =========================================================================================
def test_pow2_shift():
    assert [pow2_shift(s) for s in (1.0, 2.0, 3.0, 4.0, 0.5, 0.75, 0.25, 37.0, 1024.0)] == [0, 1, 2, 2, -1, 0, -2, 6, 10]
    for k in range(-20, 40):
        p = 2.0**k
        assert pow2_shift(p) == k
        assert pow2_shift(np.nextafter(p, np.inf)) == k + 1
        assert pow2_shift(np.nextafter(p, 0)) == k
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="pow2_shift"):
            pow2_shift(bad)


def test_scales_object():
    c = LayerConfig.from_name("tiny")
    sc = compute_slanc(c, random_weights(c, 0), pow2=True)
    e = sc.entries["ln2"]
    assert sc.scale("ln2") == 2.0**e.k and 2.0 ** (e.k - 1) < e.s <= 2.0**e.k
    assert sc.with_pow2(False).scale("ln2") == e.s and sc.shift("ln2") == e.k
    back = SlancScales.from_dict(sc.to_dict())
    assert back == sc
    d = sc.to_dict()
    d["scales"]["ln2"]["k"] += 1
    with pytest.raises(ValueError, match="not ceil"):
        SlancScales.from_dict(d)
    with pytest.raises(ValueError, match="no entry for norm 'ln3'"):
        sc.scale("ln3")


# =========================================================================================
# fp16 overflow demonstration (numpy float16 arithmetic emulating an fp16 norm unit)
# =========================================================================================
def fp16_layernorm(x, gamma, beta, eps, k):
    """LayerNorm with fp16 storage and SEQUENTIAL fp16 accumulation of the sums, the input scaled by
    2^-k first (exact), eps/2^2k and the rsqrt kept in float32 (slanc.md section 3).
    Returns (output, V = the fp16 sum of squares per row)."""
    h = np.float16
    with np.errstate(over="ignore", invalid="ignore"):
        xs = (x * 2.0**-k).astype(h)
        d = xs.shape[-1]
        acc = np.zeros(xs.shape[0], dtype=h)
        for i in range(d):
            acc = (acc + xs[:, i]).astype(h)
        mu = (acc / h(d)).astype(h)
        c = (xs - mu[:, None]).astype(h)
        sq = (c * c).astype(h)
        v = np.zeros(xs.shape[0], dtype=h)
        for i in range(d):
            v = (v + sq[:, i]).astype(h)
        var = (v / h(d)).astype(h)
        r = (1.0 / np.sqrt(var.astype(np.float32) + np.float32(eps * 2.0 ** (-2 * k)))).astype(np.float32)
        y = (c.astype(np.float32) * r[:, None]).astype(h)
        return (y.astype(np.float32) * gamma.astype(np.float16) + beta.astype(np.float16)).astype(h), v


def test_fp16_overflow_without_slanc_not_with():
    c = LayerConfig.from_name("gpt2-small")
    w = random_weights(c, 0)
    x = random_inputs(c, 1, outliers=3, outlier_value=1e3)  # massive activations ~1e3 in 3 channels
    r = run_reference(c, w, x)
    sc = compute_slanc(c, w, pow2=True)
    k = sc.shift("ln2")
    res1 = r["res1"]
    plain, v_plain = fp16_layernorm(res1, w["ln2_g"], w["ln2_b"], c.eps, 0)
    scaled, v_scaled = fp16_layernorm(res1, w["ln2_g"], w["ln2_b"], c.eps, k)
    # plain fp16: the sum of squares overflows (> 65504) in every row; rsqrt(inf) = 0 then collapses
    # the output to beta: finite but wrong
    assert int(np.sum(np.isinf(v_plain))) == c.seq_len
    assert np.max(np.abs(plain.astype(np.float64) - r["ln2"])) > 1.0
    # SLaNC (x * 2^-k, eps * 2^-2k): no overflow, fp16-level agreement with the float64 reference
    assert int(np.sum(~np.isfinite(v_scaled))) == 0 and np.isfinite(scaled).all()
    assert float(np.max(v_scaled)) < 65504 / 4
    err = np.max(np.abs(scaled.astype(np.float64) - r["ln2"]))
    assert err < 0.05, err
    # without the outliers plain fp16 does not overflow: the outliers cause it
    r0 = run_reference(c, w, random_inputs(c, 1))
    assert np.isfinite(fp16_layernorm(r0["res1"], w["ln2_g"], w["ln2_b"], c.eps, 0)[1]).all()
