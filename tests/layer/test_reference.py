"""The float64 reference layer: hand-computed cases, an independent scalar implementation, and
invariants (causality, permutation equivariance, padding, norms, softmax, GQA, RoPE)."""

import math

import numpy as np
import pytest

from refmodel.layer.config import LayerConfig
from refmodel.layer.forward import attention_mask, norm_sites, tensor_names, tensor_shapes
from refmodel.layer.ops import Float64Ops, erf, erfc, gelu_erf, gelu_tanh, rope_half, rope_pairs, silu
from refmodel.layer.realweights import permute_rope_rows
from refmodel.layer.reference import run_reference
from refmodel.layer.slanc import compute_slanc, expand_kv_rows
from refmodel.layer.weights import LayerWeights, padding_mask, random_inputs, random_weights

SMALL = {
    "gpt2": LayerConfig("gpt2", d_model=8, n_heads=2, d_ff=12, seq_len=4),
    "bert": LayerConfig("bert", d_model=8, n_heads=2, d_ff=12, seq_len=4),
    "llama": LayerConfig("llama", d_model=16, n_heads=4, d_ff=12, seq_len=5, n_kv_heads=2, rope_base=500.0),
}
PRESET_CFGS = ["tiny", "tiny-bert", "tiny-llama"]


# =========================================================================================
# names and shapes
# =========================================================================================
def test_tensor_name_lists():
    assert tensor_names(LayerConfig.from_name("tiny")) == [
        "x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down", "out"]
    assert tensor_names(LayerConfig.from_name("tiny-bert")) == [
        "x", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln1", "up", "act", "down", "res2", "out"]
    assert tensor_names(LayerConfig.from_name("tiny-llama")) == [
        "x", "ln1", "q", "k", "v", "q_rope", "k_rope", "scores", "probs", "attn", "proj", "res1", "ln2", "gate",
        "up", "act", "mul", "down", "out"]


@pytest.mark.parametrize("name", PRESET_CFGS + ["smollm2"])
def test_outputs_match_names_and_shapes(name):
    c = LayerConfig.from_name(name)
    r = run_reference(c, random_weights(c, 0), random_inputs(c, 1, seq_len=7))
    shapes = tensor_shapes(c, 7)
    assert list(r) == tensor_names(c) == list(shapes)
    for n, a in r.items():
        assert a.shape == shapes[n] and a.dtype == np.float64 and np.isfinite(a).all(), n
    if c.arch == "llama":
        assert shapes["k"] == (c.n_kv_heads, 7, c.head_dim) and shapes["q"] == (c.n_heads, 7, c.head_dim)


def test_input_validation():
    c = LayerConfig.from_name("tiny")
    w = random_weights(c, 0)
    with pytest.raises(ValueError, match=r"input x must have shape \[seq, 64\], got \[4, 63\]"):
        run_reference(c, w, np.zeros((4, 63)))
    x = np.zeros((4, 64))
    x[2, 3] = np.inf
    with pytest.raises(ValueError, match=r"non-finite value inf at index \[2, 3\]"):
        run_reference(c, w, x)
    with pytest.raises(ValueError, match="pad_mask"):
        run_reference(c, w, np.zeros((4, 64)), pad_mask=np.ones(3, dtype=bool))


# =========================================================================================
# hand-computed cases (seq 2, d 4, one head)
# =========================================================================================
GT2, GT1, GTM1 = 1.954597694087775, 0.8411919906082768, -0.15880800939172324  # gelu_tanh(2), (1), (-1)
GE1, GEM1, GE2 = 0.8413447460685429, -0.15865525393145707, 1.9544997361036416  # gelu_erf(1), (-1), (2)


def _hand_weights(arch, **over):
    eye, zero = np.eye(4), np.zeros((4, 4))
    w = dict(wq=zero, wk=zero, wv=eye, wo=eye, bq=np.zeros(4), bk=np.zeros(4), bv=np.zeros(4), bo=np.zeros(4),
             w_up=eye, b_up=np.zeros(4), w_down=eye, b_down=np.zeros(4),
             ln1_g=np.ones(4), ln1_b=np.zeros(4), ln2_g=np.ones(4), ln2_b=np.zeros(4))
    w.update(over)
    return LayerWeights(w)


def test_hand_gpt2():
    # q = k = 0 -> uniform attention over allowed keys; v, o, up, down identities.
    c = LayerConfig("gpt2", d_model=4, n_heads=1, d_ff=4, seq_len=2, eps=1e-12)
    w = _hand_weights("gpt2", b_down=np.array([0.5, 0, 0, 0]), ln2_g=np.array([2.0, 1, 1, 1]),
                      ln2_b=np.array([0, 0, 0, 1.0]))
    x = np.array([[1.0, -1, 1, -1], [3, 1, 3, 1]])
    r = run_reference(c, w, x)
    tol = dict(rtol=0, atol=1e-9)
    np.testing.assert_allclose(r["ln1"], [[1, -1, 1, -1], [1, -1, 1, -1]], **tol)  # both rows: c = +-1, var 1
    np.testing.assert_allclose(r["scores"][0], [[0, 0], [0, 0]], **tol)
    np.testing.assert_allclose(r["probs"][0], [[1, 0], [0.5, 0.5]], **tol)  # causal
    np.testing.assert_allclose(r["attn"], [[1, -1, 1, -1], [1, -1, 1, -1]], **tol)
    np.testing.assert_allclose(r["res1"], [[2, -2, 2, -2], [4, 0, 4, 0]], **tol)
    np.testing.assert_allclose(r["ln2"], [[2, -1, 1, 0], [2, -1, 1, 0]], **tol)  # n = +-1, then g*n + b
    np.testing.assert_allclose(r["act"], [[GT2, GTM1, GT1, 0]] * 2, **tol)
    np.testing.assert_allclose(r["down"], [[GT2 + 0.5, GTM1, GT1, 0]] * 2, **tol)
    np.testing.assert_allclose(r["out"], [[2 + GT2 + 0.5, -2 + GTM1, 2 + GT1, -2],
                                          [4 + GT2 + 0.5, GTM1, 4 + GT1, 0]], **tol)


def test_hand_bert():
    # bidirectional uniform attention: attn = mean of the rows; post-LN; MLP output = gelu_erf(b_up)
    c = LayerConfig("bert", d_model=4, n_heads=1, d_ff=4, seq_len=2, eps=1e-12)
    w = _hand_weights("bert", w_up=np.zeros((4, 4)), b_up=np.array([1.0, -1, 0, 2]))
    x = np.array([[1.0, -1, 1, -1], [3, 1, 3, 1]])
    r = run_reference(c, w, x)
    tol = dict(rtol=0, atol=1e-9)
    np.testing.assert_allclose(r["probs"][0], [[0.5, 0.5], [0.5, 0.5]], **tol)
    np.testing.assert_allclose(r["attn"], [[2, 0, 2, 0], [2, 0, 2, 0]], **tol)
    np.testing.assert_allclose(r["res1"], [[3, -1, 3, -1], [5, 1, 5, 1]], **tol)
    np.testing.assert_allclose(r["ln1"], [[1, -1, 1, -1], [1, -1, 1, -1]], **tol)
    np.testing.assert_allclose(r["act"], [[GE1, GEM1, 0, GE2]] * 2, **tol)
    res2 = [1 + GE1, -1 + GEM1, 1, -1 + GE2]
    np.testing.assert_allclose(r["res2"], [res2] * 2, **tol)
    mu = sum(res2) / 4
    sd = math.sqrt(sum((v - mu) ** 2 for v in res2) / 4)
    np.testing.assert_allclose(r["out"], [[(v - mu) / sd for v in res2]] * 2, **tol)


def test_hand_llama_rmsnorm_and_rope():
    # one head of dim 4, identity projections: q = k = v = rmsnorm(x); RoPE by hand at positions 0, 1
    c = LayerConfig("llama", d_model=4, n_heads=1, d_ff=4, seq_len=2, eps=1e-12, rope_base=100.0)
    eye = np.eye(4)
    w = LayerWeights(dict(wq=eye, wk=eye, wv=eye, wo=eye, w_gate=eye, w_up=eye, w_down=eye,
                          ln1_g=np.ones(4), ln2_g=np.ones(4)))
    x = np.array([[3.0, 4, 0, 0], [0, 0, 2, 0]])
    r = run_reference(c, w, x)
    # rms(row0) = sqrt(25/4) = 2.5; rms(row1) = sqrt(4/4) = 1
    n0, n1 = [1.2, 1.6, 0, 0], [0, 0, 2, 0]
    np.testing.assert_allclose(r["ln1"], [n0, n1], atol=1e-9)
    # half-split pairs (0,2), (1,3); angles pos * 100^(-2i/4) = pos * [1, 0.1]
    c1, s1, c2, s2 = math.cos(1), math.sin(1), math.cos(0.1), math.sin(0.1)
    q1 = [0 * c1 - 2 * s1, 0 * c2 - 0 * s2, 2 * c1 + 0 * s1, 0 * c2 + 0 * s2]
    np.testing.assert_allclose(r["q_rope"][0], [n0, q1], atol=1e-9)  # position 0 unchanged
    sc = (n0[0] * q1[0] + n0[1] * q1[1]) / 2  # q_rope(1) . k_rope(0) / sqrt(4)
    np.testing.assert_allclose(r["scores"][0], [[(1.2**2 + 1.6**2) / 2, 0], [sc, 4 / 2]], atol=1e-9)
    e = math.exp(sc - 2)
    np.testing.assert_allclose(r["probs"][0], [[1, 0], [e / (1 + e), 1 / (1 + e)]], atol=1e-9)
    np.testing.assert_allclose(r["mul"], silu(r["gate"]) * r["up"], rtol=1e-15)


# =========================================================================================
# an independent scalar implementation (plain Python loops, math module) on small configs
# =========================================================================================
def naive_layer(cfg, weights, x, pad=None):
    W = {k: v.tolist() for k, v in weights.items()}
    X = x.tolist()
    s, d, H, KV, hd = len(X), cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    out = {"x": X}

    def lin(rows, w, b):
        return [[sum(r[i] * w[o][i] for i in range(len(r))) + (b[o] if b else 0.0) for o in range(len(w))]
                for r in rows]

    def norm(rows, g, b):
        res = []
        for r in rows:
            if cfg.norm == "layernorm":
                mu = sum(r) / d
                var = sum((v - mu) ** 2 for v in r) / d
                res.append([(r[i] - mu) / math.sqrt(var + cfg.eps) * g[i] + (b[i] if b else 0.0) for i in range(d)])
            else:
                ms = sum(v * v for v in r) / d
                res.append([r[i] / math.sqrt(ms + cfg.eps) * g[i] for i in range(d)])
        return res

    def act(v):
        if cfg.activation == "gelu_erf":
            return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))
        if cfg.activation == "gelu_tanh":
            return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
        return v / (1 + math.exp(-v))

    def heads(rows, n):
        return [[rows[t][h * hd:(h + 1) * hd] for t in range(s)] for h in range(n)]

    def rope(vec, pos):
        half = hd // 2
        o = [0.0] * hd
        for i in range(half):
            th = pos * cfg.rope_base ** (-2 * i / hd)
            o[i] = vec[i] * math.cos(th) - vec[i + half] * math.sin(th)
            o[i + half] = vec[i + half] * math.cos(th) + vec[i] * math.sin(th)
        return o

    def allowed(i, j):
        return (not cfg.causal or j <= i) and (pad is None or pad[j])

    h_in = X
    if cfg.prenorm:
        h_in = out["ln1"] = norm(X, W["ln1_g"], W.get("ln1_b"))
    q = heads(lin(h_in, W["wq"], W.get("bq")), H)
    k = heads(lin(h_in, W["wk"], W.get("bk")), KV)
    v = heads(lin(h_in, W["wv"], W.get("bv")), KV)
    out.update(q=q, k=k, v=v)
    if cfg.rope:
        q = out["q_rope"] = [[rope(q[h][t], t) for t in range(s)] for h in range(H)]
        k = out["k_rope"] = [[rope(k[h][t], t) for t in range(s)] for h in range(KV)]
    g = H // KV
    sc = [[[sum(a * b for a, b in zip(q[h][i], k[h // g][j], strict=True)) / math.sqrt(hd) if allowed(i, j) else 0.0
            for j in range(s)] for i in range(s)] for h in range(H)]
    pr = []
    for h in range(H):
        rows = []
        for i in range(s):
            m = max(sc[h][i][j] for j in range(s) if allowed(i, j))
            e = [math.exp(sc[h][i][j] - m) if allowed(i, j) else 0.0 for j in range(s)]
            rows.append([v_ / sum(e) for v_ in e])
        pr.append(rows)
    attn = [[sum(pr[h][i][j] * v[h // g][j][c] for j in range(s)) for h in range(H) for c in range(hd)]
            for i in range(s)]
    out.update(scores=sc, probs=pr, attn=attn)
    proj = out["proj"] = lin(attn, W["wo"], W.get("bo"))
    res1 = out["res1"] = [[a + b for a, b in zip(r1, r2, strict=True)] for r1, r2 in zip(X, proj, strict=True)]
    if cfg.prenorm:
        h2 = out["ln2"] = norm(res1, W["ln2_g"], W.get("ln2_b"))
    else:
        h2 = out["ln1"] = norm(res1, W["ln1_g"], W.get("ln1_b"))
    if cfg.gated:
        gate = out["gate"] = lin(h2, W["w_gate"], None)
        up = out["up"] = lin(h2, W["w_up"], None)
        a = out["act"] = [[act(v_) for v_ in r] for r in gate]
        mid = out["mul"] = [[p * u for p, u in zip(ra, ru, strict=True)] for ra, ru in zip(a, up, strict=True)]
    else:
        up = out["up"] = lin(h2, W["w_up"], W.get("b_up"))
        mid = out["act"] = [[act(v_) for v_ in r] for r in up]
    down = out["down"] = lin(mid, W["w_down"], W.get("b_down"))
    if cfg.prenorm:
        out["out"] = [[a + b for a, b in zip(r1, r2, strict=True)] for r1, r2 in zip(res1, down, strict=True)]
    else:
        res2 = out["res2"] = [[a + b for a, b in zip(r1, r2, strict=True)] for r1, r2 in zip(h2, down, strict=True)]
        out["out"] = norm(res2, W["ln2_g"], W.get("ln2_b"))
    return {n: np.array(t) for n, t in out.items()}


@pytest.mark.parametrize("arch", ["gpt2", "bert", "llama"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_independent_scalar_implementation(arch, seed):
    c = SMALL[arch]
    w = random_weights(c, seed, gain_std=0.3, bias_std=0.2)
    x = random_inputs(c, seed + 10, scale=2.0)
    pad = padding_mask(c.seq_len, c.seq_len - 1) if arch == "bert" else None
    r = run_reference(c, w, x, pad_mask=pad)
    n = naive_layer(c, w, x, pad)
    assert set(r) == set(n)
    for name in r:
        np.testing.assert_allclose(r[name], n[name], rtol=1e-12, atol=1e-12, err_msg=name)


# =========================================================================================
# invariants
# =========================================================================================
def _rows(name, a, t):
    """The part of tensor ``a`` that belongs to query/token rows < t."""
    return a[:, :t] if a.ndim == 3 else a[:t]


@pytest.mark.parametrize("name", ["tiny", "tiny-llama"])
def test_causal_every_tensor(name):
    c = LayerConfig.from_name(name)
    w = random_weights(c, 2)
    x = random_inputs(c, 3)
    r = run_reference(c, w, x)
    for t in (1, 7, c.seq_len - 1):
        x2 = x.copy()
        x2[t:] = random_inputs(c, 99, seq_len=c.seq_len - t) * 3
        r2 = run_reference(c, w, x2)
        for n in r:
            np.testing.assert_allclose(_rows(n, r2[n], t), _rows(n, r[n], t), rtol=1e-13, atol=1e-13, err_msg=n)
            assert not np.allclose(r2[n][..., t:, :] if r2[n].ndim == 3 else r2[n][t:],
                                   r[n][..., t:, :] if r[n].ndim == 3 else r[n][t:]), n  # later rows did change
        assert np.all(r["probs"][:, np.triu_indices(c.seq_len, 1)[0], np.triu_indices(c.seq_len, 1)[1]] == 0)


def test_bert_is_not_causal():
    c = LayerConfig.from_name("tiny-bert")
    w, x = random_weights(c, 2), random_inputs(c, 3)
    x2 = x.copy()
    x2[-1] += 1.0
    r, r2 = run_reference(c, w, x), run_reference(c, w, x2)
    assert not np.allclose(r["out"][0], r2["out"][0])


def test_bert_permutation_equivariant():
    c = LayerConfig.from_name("tiny-bert")
    w, x = random_weights(c, 4), random_inputs(c, 5)
    perm = np.random.default_rng(0).permutation(c.seq_len)
    r, rp = run_reference(c, w, x), run_reference(c, w, x[perm])
    for n in r:
        a = r[n]
        expect = a[:, perm][:, :, perm] if n in ("scores", "probs") else a[:, perm] if a.ndim == 3 else a[perm]
        np.testing.assert_allclose(rp[n], expect, rtol=1e-12, atol=1e-12, err_msg=n)


def test_bert_padding_mask():
    c = LayerConfig.from_name("tiny-bert")
    w, x = random_weights(c, 6), random_inputs(c, 7)
    nv = 11
    pad = padding_mask(c.seq_len, nv)
    r = run_reference(c, w, x, pad_mask=pad)
    assert np.all(r["probs"][..., nv:] == 0) and np.all(r["scores"][..., nv:] == 0)
    x2 = x.copy()
    x2[nv:] = 50.0  # change only the padding tokens
    r2 = run_reference(c, w, x2, pad_mask=pad)
    np.testing.assert_allclose(r2["out"][:nv], r["out"][:nv], rtol=1e-13, atol=1e-13)
    # equals running the real tokens alone
    alone = run_reference(c, w, x[:nv])
    np.testing.assert_allclose(r["out"][:nv], alone["out"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", PRESET_CFGS)
def test_norm_rows_standardised(name):
    c = LayerConfig.from_name(name)
    w = random_weights(c, 8)
    r = run_reference(c, w, random_inputs(c, 9, scale=3.0))
    for site in norm_sites(c):
        y = r[site.output]
        g = w[f"{site.key}_g"]
        n = (y - w[f"{site.key}_b"]) / g if c.biases else y / g
        if c.norm == "layernorm":
            np.testing.assert_allclose(n.mean(axis=1), 0, atol=1e-12)
            np.testing.assert_allclose(n.var(axis=1), 1, atol=1e-4)  # var/(var + eps)
        else:
            np.testing.assert_allclose(np.mean(n * n, axis=1), 1, atol=1e-4)


@pytest.mark.parametrize("name", PRESET_CFGS)
def test_softmax_rows(name):
    c = LayerConfig.from_name(name)
    r = run_reference(c, random_weights(c, 1), random_inputs(c, 2))
    p = r["probs"]
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-14)
    assert p.min() >= 0
    mask = attention_mask(c, c.seq_len)
    if mask is not None:
        assert np.all(p[:, ~mask] == 0)


def test_softmax_unshifted():
    c = LayerConfig.from_name("tiny")
    w, x = random_weights(c, 1), random_inputs(c, 2)
    a = run_reference(c, w, x)
    b = run_reference(c, w, x, softmax_shifted=False)
    np.testing.assert_allclose(b["probs"], a["probs"], rtol=1e-13, atol=1e-15)
    ops = Float64Ops()
    big = np.array([[[800.0, 790.0, 0.0]]])  # exp(800) overflows float64
    assert np.isnan(ops.softmax("u", big, mask=None, shifted=False)).any()
    p = Float64Ops().softmax("s", big, mask=None, shifted=True)
    np.testing.assert_allclose(p[0, 0], [1 / (1 + math.exp(-10)), math.exp(-10) / (1 + math.exp(-10)), 0], atol=1e-15)


def test_gqa_equals_mha_with_interleaved_kv():
    g = LayerConfig.from_name("tiny-llama")  # 4 heads, 2 kv heads
    m = g.replace(n_kv_heads=g.n_heads)
    w = random_weights(g, 3)
    x = random_inputs(g, 4)
    wm = w.replace(wk=expand_kv_rows(w["wk"], 4, 2, "interleave"), wv=expand_kv_rows(w["wv"], 4, 2, "interleave"))
    rg, rm = run_reference(g, w, x), run_reference(m, wm, x)
    for n in rg:
        if n in ("k", "v", "k_rope"):
            np.testing.assert_allclose(rm[n][::2], rg[n], rtol=1e-13, atol=1e-13)  # kv head j = MHA heads 2j, 2j+1
            np.testing.assert_allclose(rm[n][1::2], rg[n], rtol=1e-13, atol=1e-13)
        else:
            np.testing.assert_allclose(rm[n], rg[n], rtol=1e-12, atol=1e-12, err_msg=n)
    wt = w.replace(wk=expand_kv_rows(w["wk"], 4, 2, "tile"), wv=expand_kv_rows(w["wv"], 4, 2, "tile"))
    assert not np.allclose(run_reference(m, wt, x)["out"], rg["out"])  # tiling is a different layer


def test_mha_llama_default_kv():
    c = LayerConfig("llama", 32, 4, 48, 6)
    assert c.n_kv_heads == 4
    w, x = random_weights(c, 0), random_inputs(c, 0)
    np.testing.assert_array_equal(run_reference(c, w, x)["out"], run_reference(c.replace(n_kv_heads=4), w, x)["out"])


def test_rope_properties():
    rng = np.random.default_rng(0)
    hd, base = 16, 10000.0
    q = rng.normal(size=(3, 9, hd))
    pos = np.arange(9)
    qr = rope_half(q, pos, base)
    np.testing.assert_allclose(np.linalg.norm(qr, axis=-1), np.linalg.norm(q, axis=-1), rtol=1e-14)  # rotation
    np.testing.assert_allclose(qr[:, 0], q[:, 0], rtol=0, atol=0)  # position 0: identity
    # relative position: <R_m q, R_n k> depends only on m - n
    a, b = rng.normal(size=hd), rng.normal(size=hd)
    for m, n, t in [(5, 2, 7), (0, 3, 11), (4, 4, 100)]:
        d1 = rope_half(a[None], [m], base)[0] @ rope_half(b[None], [n], base)[0]
        d2 = rope_half(a[None], [m + t], base)[0] @ rope_half(b[None], [n + t], base)[0]
        assert abs(d1 - d2) < 1e-12
    # adjacent-pair RoPE on the GGUF row order == half-split RoPE on the HF order (permuted)
    perm = permute_rope_rows(np.arange(hd)[:, None], 1)[:, 0]
    np.testing.assert_allclose(rope_pairs(q[..., perm], pos, base), qr[..., perm], rtol=1e-14, atol=1e-15)
    assert not np.allclose(rope_pairs(q, pos, base), qr)


def test_layer_rope_position_shift_invariance():
    c = LayerConfig.from_name("tiny-llama")
    w, x = random_weights(c, 5), random_inputs(c, 6)
    a = run_reference(c, w, x)
    b = run_reference(c, w, x, positions=np.arange(c.seq_len) + 37)
    np.testing.assert_allclose(b["scores"], a["scores"], rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(b["out"], a["out"], rtol=1e-11, atol=1e-11)
    assert not np.allclose(b["q_rope"], a["q_rope"])


@pytest.mark.parametrize("name", PRESET_CFGS)
def test_slanc_scaled_forward_equal(name):
    c = LayerConfig.from_name(name)
    w, x = random_weights(c, 1), random_inputs(c, 2, outliers=2)
    sc = compute_slanc(c, w, first="input" if c.prenorm else "none", x=x)
    assert sc.scale("ln1") != 1.0 and sc.scale("ln2") != 1.0
    a, b = run_reference(c, w, x), run_reference(c, w, x, slanc=sc)
    for n in a:
        np.testing.assert_allclose(b[n], a[n], rtol=1e-12, atol=1e-12, err_msg=n)
    b2 = run_reference(c, w, x, slanc={"ln1": 3.0, "ln2": 1000.0})
    np.testing.assert_allclose(b2["out"], a["out"], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="no entry for norm 'ln2'"):
        run_reference(c, w, x, slanc={"ln1": 3.0})


# =========================================================================================
# special functions and speed
# =========================================================================================
def test_erf_erfc_gelu_against_math():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 1.5, -1.5, 30.0, -30.0, 1e-300]])
    e_ref = np.array([math.erf(v) for v in x])
    ec_ref = np.array([math.erfc(v) for v in x])
    np.testing.assert_allclose(erf(x), e_ref, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(erfc(x), ec_ref, rtol=2e-14, atol=0)
    assert erf(np.inf) == 1.0 and erf(-np.inf) == -1.0 and np.isnan(erf(np.nan))
    g_ref = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])
    np.testing.assert_allclose(gelu_erf(x), g_ref, rtol=3e-14, atol=0)
    t_ref = np.array([0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))) for v in x])
    np.testing.assert_allclose(gelu_tanh(x), t_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(silu(x), x / (1 + np.exp(-x)), rtol=1e-15)
    assert gelu_tanh(-1e4) == 0.0 and silu(-1e4) == 0.0  # no overflow warning turned error

