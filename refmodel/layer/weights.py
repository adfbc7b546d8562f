"""Layer weights: the fixed naming scheme, validation, seeded random weights and random inputs.

Naming scheme (one place; every loader maps to it). Linear weights are stored ``[out, in]`` and a
linear op computes ``x[..., in] @ w.T + b`` (PyTorch / HF ``nn.Linear`` layout).

==========  ===================  ==============  =========================================
name        shape                archs           meaning
==========  ===================  ==============  =========================================
wq, bq      [d, d], [d]          all (b: no llama) query projection (heads concatenated)
wk, bk      [kv*hd, d], [kv*hd]  all              key projection (kv = n_kv_heads)
wv, bv      [kv*hd, d], [kv*hd]  all              value projection
wo, bo      [d, d], [d]          all              attention output projection
w_gate      [d_ff, d]            llama            SwiGLU gate projection
w_up, b_up  [d_ff, d], [d_ff]    all              MLP up projection (fc1)
w_down,     [d, d_ff], [d]       all              MLP down projection (fc2)
b_down
ln1_g/_b    [d]                  all (_b: no llama) first norm gain / bias (beta)
ln2_g/_b    [d]                  all (_b: no llama) second norm gain / bias
==========  ===================  ==============  =========================================

For gpt2/llama (pre-norm) ``ln1`` feeds the attention and ``ln2`` the MLP. For bert (post-LN)
``ln1`` normalises ``x + attention`` and ``ln2`` normalises ``ln1 + MLP`` (the layer output).

Files (:func:`load_weights`, :func:`load_input`): a layer's weights as ``.safetensors`` or ``.npz``
with exactly these names (any float dtype: f64, f32, f16, bf16; converted exactly to float64), and
its input activations ``x [seq, d_model]`` as ``.npy`` or ``.npz`` (array ``x``, or the only array).
See docs/golden.md for the names per arch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from .config import LayerConfig

__all__ = ["LayerWeights", "weight_shapes", "weight_names", "random_weights", "random_inputs", "padding_mask",
           "load_weights", "load_input", "WEIGHT_FILE_SUFFIXES", "INPUT_FILE_SUFFIXES"]

#: file types :func:`load_weights` reads
WEIGHT_FILE_SUFFIXES = (".safetensors", ".npz")
#: file types :func:`load_input` reads
INPUT_FILE_SUFFIXES = (".npy", ".npz")


def weight_shapes(config: LayerConfig) -> dict[str, tuple[int, ...]]:
    """Expected name -> shape for ``config``, in a fixed order (projections, MLP, norms)."""
    d, f, kvd = config.d_model, config.d_ff, config.kv_dim
    s: dict[str, tuple[int, ...]] = {"wq": (d, d), "wk": (kvd, d), "wv": (kvd, d), "wo": (d, d)}
    if config.biases:
        s.update({"bq": (d,), "bk": (kvd,), "bv": (kvd,), "bo": (d,)})
    if config.gated:
        s["w_gate"] = (f, d)
    s.update({"w_up": (f, d), "w_down": (d, f)})
    if config.biases:
        s.update({"b_up": (f,), "b_down": (d,)})
    s["ln1_g"] = (d,)
    if config.biases:
        s["ln1_b"] = (d,)
    s["ln2_g"] = (d,)
    if config.biases:
        s["ln2_b"] = (d,)
    return s


def weight_names(config: LayerConfig) -> list[str]:
    """The weight names ``config``'s layer uses (see the module table)."""
    return list(weight_shapes(config))


class LayerWeights(Mapping[str, np.ndarray]):
    """Read-only mapping of weight name -> float64 array (C-contiguous copies).

    Construction converts every value to float64; it does not check names: call
    :meth:`validate` (every forward does) to get a ``ValueError`` naming the first problem.
    """

    def __init__(self, tensors: Mapping[str, np.ndarray | Sequence[float]]):
        self._t: dict[str, np.ndarray] = {}
        for k, v in tensors.items():
            try:
                a = np.array(v, dtype=np.float64, copy=True, order="C")
            except (TypeError, ValueError) as e:
                raise ValueError(f"weight {k!r}: not convertible to a float64 array ({e})") from None
            a.flags.writeable = False
            self._t[str(k)] = a

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._t[name]
        except KeyError:
            raise KeyError(f"no weight named {name!r}; have: {', '.join(self._t)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}{list(v.shape)}" for k, v in self._t.items())
        return f"LayerWeights({body})"

    def replace(self, **changes: np.ndarray) -> LayerWeights:
        """A copy with some tensors replaced or added."""
        d = dict(self._t)
        d.update(changes)
        return LayerWeights(d)

    def validate(self, config: LayerConfig) -> LayerWeights:
        """Check names, shapes and finiteness against ``config``; return ``self``.

        Raises ``ValueError`` naming the missing, unexpected (misnamed) or misshaped tensor, or
        the first non-finite element. Runs before any arithmetic is done.
        """
        expected = weight_shapes(config)
        missing = [n for n in expected if n not in self._t]
        extra = [n for n in self._t if n not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected {', '.join(extra)}")
            raise ValueError(
                f"weights do not match arch {config.arch!r}: {'; '.join(parts)} "
                f"(expected: {', '.join(expected)})"
            )
        for n, shape in expected.items():
            a = self._t[n]
            if a.shape != shape:
                raise ValueError(f"weight {n!r} has shape {list(a.shape)}, expected {list(shape)} for {config.arch!r} "
                                 f"d_model={config.d_model} d_ff={config.d_ff} kv_dim={config.kv_dim}")
            bad = ~np.isfinite(a)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"weight {n!r} has a non-finite value {float(a[idx])} at index {list(idx)}")
        return self

    def to_dict(self) -> dict[str, np.ndarray]:
        """A plain dict of the (read-only) arrays."""
        return dict(self._t)


def random_weights(
    config: LayerConfig,
    seed: int = 0,
    *,
    init: str = "fan_in",
    bias_std: float = 0.02,
    gain_std: float = 0.1,
) -> LayerWeights:
    """Seeded random weights for ``config`` (float64, deterministic for a given seed).

    Init rules (``init``):
      * ``fan_in`` (default): every matrix N(0, 1/fan_in), so activations stay O(1) through the
        layer (useful for numerics: nothing vanishes).
      * ``gpt2``: N(0, 0.02) for every matrix, output projections (wo, w_down) N(0, 0.02/sqrt(2)),
        the GPT-2 rule for a one-layer model.
    Biases and norm betas are N(0, ``bias_std``) and gains are 1 + N(0, ``gain_std``), deliberately
    non-trivial so that tests exercise every affine term (GPT-2/BERT init them to 0 and 1).
    """
    if init not in ("fan_in", "gpt2"):
        raise ValueError(f"random_weights: unknown init {init!r}; expected fan_in or gpt2")
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(config).items():
        if name.startswith("w"):
            if init == "fan_in":
                std = 1.0 / np.sqrt(shape[1])
            else:
                std = 0.02 / np.sqrt(2.0) if name in ("wo", "w_down") else 0.02
            out[name] = rng.normal(0.0, std, size=shape)
        elif name.endswith("_g"):
            out[name] = 1.0 + rng.normal(0.0, gain_std, size=shape)
        else:  # biases and betas
            out[name] = rng.normal(0.0, bias_std, size=shape)
    return LayerWeights(out)


def random_inputs(
    config: LayerConfig,
    seed: int = 0,
    *,
    seq_len: int | None = None,
    scale: float = 1.0,
    outliers: int | Sequence[int] | None = None,
    outlier_value: float = 1e3,
) -> np.ndarray:
    """Seeded layer input ``x`` of shape ``[seq_len, d_model]`` (float64), entries N(0, scale^2).

    ``outliers`` injects "massive activation" channels as seen in real LLM residual streams: an int
    ``n`` picks ``n`` channels at random (seeded), a sequence gives the channel indices. Every token
    of such a channel gets ``sign_c * outlier_value * (1 + 0.1 N(0, 1))``: a fixed sign per
    channel and magnitude around ``outlier_value``.
    """
    n = config.seq_len if seq_len is None else int(seq_len)
    if n < 1:
        raise ValueError(f"random_inputs: seq_len must be >= 1, got {seq_len}")
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, scale, size=(n, config.d_model))
    if isinstance(outliers, bool):
        raise ValueError("random_inputs: outliers must be a count or channel indices, not a bool")
    if outliers is not None:
        if isinstance(outliers, (int, np.integer)):
            if not 0 <= outliers <= config.d_model:
                raise ValueError(f"random_inputs: outliers={outliers} not in 0..d_model={config.d_model}")
            chans = rng.choice(config.d_model, size=int(outliers), replace=False)
        else:
            chans = np.asarray(outliers, dtype=np.int64).reshape(-1)
            if chans.size and (chans.min() < 0 or chans.max() >= config.d_model):
                raise ValueError(f"random_inputs: outlier channel out of range 0..{config.d_model - 1}: {chans.tolist()}")
        signs = rng.choice([-1.0, 1.0], size=chans.size)
        mags = outlier_value * (1.0 + 0.1 * rng.normal(size=(n, chans.size)))
        x[:, chans] = signs * mags
    return x


def padding_mask(seq_len: int, n_valid: int) -> np.ndarray:
    """Key padding mask ``[seq_len]`` bool: True for the first ``n_valid`` (real) tokens.

    Padded tokens are never attended to (as keys); their own rows are still computed.
    """
    if not 1 <= n_valid <= seq_len:
        raise ValueError(f"padding_mask: n_valid must be in 1..{seq_len}, got {n_valid}")
    m = np.zeros(seq_len, dtype=bool)
    m[:n_valid] = True
    return m


def _float_arrays(path: Path, what: str, suffixes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """name -> array of a .safetensors / .npz / .npy file (``ValueError`` naming the file)."""
    if not path.is_file():
        raise ValueError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise ValueError(f"{what} file {path}: unsupported type {suffix or '(none)'!r}; use {' or '.join(suffixes)}")
    try:
        if suffix == ".safetensors":
            try:
                from safetensors.numpy import load_file
            except ImportError:
                raise ValueError(f"{what} file {path}: reading .safetensors needs the Python package "
                                 f"'safetensors' (pip install safetensors, or the models extra)") from None
            return dict(load_file(str(path)))
        if suffix == ".npy":
            return {"x": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if str(e).startswith(what):
            raise
        raise ValueError(f"{what} file {path}: not readable ({e})") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{what} file {path}: not readable ({e})") from None


def _to_f64(name: str, a: np.ndarray, path: Path, what: str) -> np.ndarray:
    try:
        return np.asarray(a).astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} file {path}: array {name!r} has dtype {a.dtype}, not a float array") from None


def load_weights(path: str | Path, config: LayerConfig | None = None) -> LayerWeights:
    """A layer's weights from a ``.safetensors`` or ``.npz`` file with refmodel's names (module
    table; linear weights ``[out, in]``), converted exactly to float64 and, given ``config``,
    validated (``ValueError`` naming the file and the missing, unexpected or misshaped tensor)."""
    p = Path(path)
    arrays = _float_arrays(p, "weights", WEIGHT_FILE_SUFFIXES)
    w = LayerWeights({k: _to_f64(k, v, p, "weights") for k, v in arrays.items()})
    if config is not None:
        try:
            w.validate(config)
        except ValueError as e:
            raise ValueError(f"weights file {p}: {e}") from None
    return w


def load_input(path: str | Path, config: LayerConfig | None = None) -> np.ndarray:
    """A layer input ``x [seq, d_model]`` from ``.npy`` or ``.npz`` (array ``x``, or the file's only
    array; a leading batch dimension of 1 is dropped), as float64; checked against ``config``
    (``ValueError`` naming the file)."""
    p = Path(path)
    arrays = _float_arrays(p, "input", INPUT_FILE_SUFFIXES)
    if "x" in arrays:
        key = "x"
    elif len(arrays) == 1:
        key = next(iter(arrays))
    else:
        raise ValueError(f"input file {p}: holds {', '.join(sorted(arrays))}; name the activations 'x'")
    x = _to_f64(key, arrays[key], p, "input")
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if config is not None:
        if x.ndim != 2 or x.shape[1] != config.d_model or x.shape[0] < 1:
            raise ValueError(f"input file {p}: array {key!r} has shape {list(x.shape)}, expected [seq, "
                             f"{config.d_model}] for d_model={config.d_model}")
        if not np.isfinite(x).all():
            idx = [int(i) for i in np.argwhere(~np.isfinite(x))[0]]
            raise ValueError(f"input file {p}: array {key!r} has a non-finite value at index {idx}")
    return x
