"""Where a golden set's float64 weights and layer input come from, recorded so it can be rebuilt.

A :class:`LayerSource` is the config, the float64 weights, the input ``x`` and a JSON-ready
``record`` for the manifest's ``"source"``: one entry for the weights and one for the input, each

* ``{"kind": "random", "seed": s}`` -- seeded random tensors (:func:`random_weights` /
  :func:`random_inputs`);
* ``{"kind": "file", "file": <basename>, "path": <as given>, "sha256": ...}`` -- a ``.safetensors``
  / ``.npz`` weights file or ``.npy`` / ``.npz`` input file, found again by :func:`rebuild_source`
  (given explicitly, next to the set, or at the recorded path) and checked by its sha256;
* ``{"kind": "embedded", "file": "source.npz", "key": ...}`` -- arrays passed through the Python
  API, stored in the set itself (``source.npz``, written byte-reproducibly);
* ``{"kind": "model", "model": "minilm" | "smollm2", "layer": N, "sha256": <model file>}`` -- a
  bundled real model's layer N (:mod:`refmodel.layer.realweights`); its input
  ``{"kind": "model_text", "text": ..., "tokens": n}`` is the text tokenized and embedded as the
  model does, then run through layers 0..N-1 with the float64 reference.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refmodel.errors import CheckFailed, UserError
from refmodel.layer.config import LayerConfig
from refmodel.layer.weights import LayerWeights, load_input, load_weights, random_inputs, random_weights

from .hexfile import sha256_file

__all__ = ["LayerSource", "MODELS", "DEFAULT_TEXT", "make_source", "rebuild_source", "npz_bytes"]

MODELS = ("minilm", "smollm2")
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog, while numerics engineers check every rounding."
EMBEDDED_FILE = "source.npz"


@dataclass
class LayerSource:
    """Config, float64 weights and input of one golden set, and how to find them again."""

    config: LayerConfig
    weights: LayerWeights
    x: np.ndarray
    record: dict[str, Any]
    extra_files: dict[str, bytes] = field(default_factory=dict)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive of ``arrays`` (sorted by name) whose bytes depend on the arrays only: no
    timestamps (``np.savez`` stamps the current time into the zip entries)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            body = io.BytesIO()
            np.lib.format.write_array(body, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, body.getvalue())
    return buf.getvalue()


def _file_record(path: Path, given: str) -> dict[str, Any]:
    return {"kind": "file", "file": path.name, "path": given, "sha256": sha256_file(path)}


def _load_model(model: str, layers: list[int]) -> Any:
    from refmodel.layer import realweights

    if model not in MODELS:
        raise UserError(f"unknown --model {model!r}: use one of {', '.join(MODELS)}")
    loader = realweights.load_minilm if model == "minilm" else realweights.load_smollm2
    return loader(layers=layers)


def _model_file_sha(model: str) -> str:
    from refmodel.layer import realweights

    p = realweights.minilm_dir() / "model.safetensors" if model == "minilm" else realweights.smollm2_path()
    return sha256_file(p)


def _model_source(model: str, layer: int, text: str | None, inputs: Any, seed: int) -> LayerSource:
    m = _load_model(model, [])  # reads the model file once; layers are loaded below
    if not 0 <= layer < m.n_layers:
        raise UserError(f"--layer {layer} is outside 0..{m.n_layers - 1} for {model} ({m.name})")
    layers = [m.load_layer(i) for i in range(layer + 1)]
    w_rec = {"kind": "model", "model": model, "name": m.name, "layer": int(layer), "sha256": _model_file_sha(model)}
    extra: dict[str, bytes] = {}
    if inputs is None:
        txt = DEFAULT_TEXT if text is None else text
        if not txt.strip():
            raise UserError("--text is empty")
        from refmodel.layer.realweights import run_layers

        ids = m.tokenize(txt)
        x = run_layers(m.config, layers[:layer], m.embed_ids(ids))
        x_rec: dict[str, Any] = {"kind": "model_text", "model": model, "layer": int(layer), "text": txt,
                                 "tokens": len(ids)}
    else:
        x, x_rec, _ = _input_from(inputs, m.config, seed)
        if x_rec["kind"] == "embedded":
            extra[EMBEDDED_FILE] = npz_bytes({"x": x})
    cfg = dataclasses.replace(m.config, seq_len=int(np.asarray(x).shape[0]))
    return LayerSource(cfg, layers[layer], np.asarray(x, dtype=np.float64), {"weights": w_rec, "input": x_rec},
                       extra)


def _load_file(loader: Any, given: str | Path, config: LayerConfig) -> tuple[Any, dict[str, Any]]:
    """``loader(path, config)`` with its ValueError as a one-line UserError, and the file record."""
    p = Path(given)
    try:
        data = loader(p, config)
    except ValueError as e:
        raise UserError(str(e)) from None
    return data, _file_record(p, str(given))


def _input_from(inputs: Any, config: LayerConfig, seed: int) -> tuple[np.ndarray, dict[str, Any], dict[str, bytes]]:
    if inputs is None:
        return random_inputs(config, seed=seed + 1), {"kind": "random", "seed": int(seed) + 1}, {}
    if isinstance(inputs, (str, Path)):
        x, rec = _load_file(load_input, inputs, config)
        return x, rec, {}
    x = np.asarray(inputs, dtype=np.float64)
    return x, {"kind": "embedded", "file": EMBEDDED_FILE, "key": "x"}, {}


def make_source(config: LayerConfig, *, seed: int = 0, weights: Any = None, inputs: Any = None,
                model: str | None = None, layer: int | None = None, text: str | None = None) -> LayerSource:
    """The source of a new set. ``weights``: None (random from ``seed``), a file path, or a mapping
    of arrays (stored in the set); ``inputs``: None (random from ``seed + 1``), a file path, or an
    array (stored in the set); ``model``/``layer``/``text``: a bundled real model's layer and its
    input computed from ``text`` (``config`` is then the model's, with ``seq_len`` = tokens)."""
    if model is not None:
        if weights is not None:
            raise UserError("--model and --weights exclude each other")
        return _model_source(model, 0 if layer is None else int(layer), text, inputs, seed)
    if text is not None:
        raise UserError("--text needs --model (minilm or smollm2): it is tokenized and embedded by that model")
    if layer is not None:
        raise UserError("--layer needs --model (minilm or smollm2)")
    extra: dict[str, bytes] = {}
    embedded: dict[str, np.ndarray] = {}
    if weights is None:
        w = random_weights(config, seed=seed)
        w_rec: dict[str, Any] = {"kind": "random", "seed": int(seed)}
    elif isinstance(weights, (str, Path)):
        w, w_rec = _load_file(load_weights, weights, config)
    else:
        w = weights if isinstance(weights, LayerWeights) else LayerWeights(weights)
        w.validate(config)
        w_rec = {"kind": "embedded", "file": EMBEDDED_FILE, "prefix": "w."}
        embedded.update({f"w.{k}": v for k, v in w.items()})
    x, x_rec, _ = _input_from(inputs, config, seed)
    if x_rec["kind"] == "embedded":
        embedded["x"] = x
    if embedded:
        extra[EMBEDDED_FILE] = npz_bytes(embedded)
    rec: dict[str, Any] = {"weights": w_rec, "input": x_rec}
    cfg = config if x.shape[0] == config.seq_len else dataclasses.replace(config, seq_len=int(x.shape[0]))
    return LayerSource(cfg, w, x, rec, extra)


# ---- rebuilding a recorded source -------------------------------------------------------------
def _find_file(rec: dict[str, Any], what: str, given: str | Path | None, set_dir: Path) -> Path:
    """The file a record names: ``given``, else next to the set, else at the recorded path; its
    sha256 must match. A file found with another sha256 is a :class:`CheckFailed`, no file at
    all a :class:`UserError` saying how to point at it."""
    candidates = [Path(given)] if given is not None else [set_dir / rec["file"], set_dir.parent / rec["file"],
                                                          Path(rec["path"])]
    other = None
    for c in candidates:
        if c.is_file():
            digest = sha256_file(c)
            if digest == rec["sha256"]:
                return c
            other = other or (c, digest)
    if other is not None:
        c, digest = other
        raise CheckFailed(f"{what} file {c} is not the one golden set {set_dir} was built from (sha256 "
                          f"{digest[:12]}..., the set records {rec['sha256'][:12]}... for {rec['file']})")
    raise UserError(f"golden set {set_dir} was built from the {what} file {rec['file']!r} (sha256 "
                    f"{rec['sha256'][:12]}...), which is neither next to the set nor at {rec['path']!r}: pass "
                    f"--{what} FILE, or check the files alone with --files-only")


def _embedded(set_dir: Path) -> dict[str, np.ndarray]:
    p = set_dir / EMBEDDED_FILE
    if not p.is_file():
        raise CheckFailed(f"golden set {set_dir}: {EMBEDDED_FILE} (the weights/input it was built from) is missing")
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def rebuild_source(set_dir: Path, manifest: dict[str, Any], config: LayerConfig, *,
                   weights: str | Path | None = None, inputs: str | Path | None = None) -> LayerSource:
    """The :class:`LayerSource` a manifest records (module docstring); ``weights`` / ``inputs``
    point at the files when they are neither next to the set nor at the recorded path."""
    src = manifest.get("source")
    if src is None:  # schema 1: random weights and input from the seed
        seed = int(manifest["seed"])
        src = {"weights": {"kind": "random", "seed": seed}, "input": {"kind": "random", "seed": seed + 1}}
    wr, xr = src["weights"], src["input"]
    for given, rec, what in ((weights, wr, "weights"), (inputs, xr, "input")):
        if given is not None and rec["kind"] != "file":
            raise UserError(f"golden set {set_dir} was not built from a {what} file (its {what}: {rec['kind']}); "
                            f"--{what} does not apply")
    if wr["kind"] == "model":
        if inputs is None and xr["kind"] == "model_text":
            s = _model_source(wr["model"], int(wr["layer"]), xr["text"], None, 0)
        else:
            s = _model_source(wr["model"], int(wr["layer"]), None, _input_arg(xr, inputs, set_dir), 0)
        if s.record["weights"]["sha256"] != wr["sha256"]:
            raise CheckFailed(f"golden set {set_dir} was built from other {wr['name']} weights (sha256 "
                              f"{wr['sha256'][:12]}...) than the installed package's")
        s.record = src
        return s
    emb = _embedded(set_dir) if "embedded" in (wr["kind"], xr["kind"]) else {}
    if wr["kind"] == "random":
        w_arg: Any = None
        seed = int(wr["seed"])
    elif wr["kind"] == "file":
        w_arg, seed = _find_file(wr, "weights", weights, set_dir), 0
    else:
        pre = wr.get("prefix", "w.")
        w_arg, seed = {k[len(pre):]: v for k, v in emb.items() if k.startswith(pre)}, 0
    x_arg = _input_arg(xr, inputs, set_dir, emb)
    if xr["kind"] == "random" and wr["kind"] == "random" and int(xr["seed"]) != seed + 1:
        raise CheckFailed(f"golden set {set_dir}: source seeds {seed} / {xr['seed']} are not a generator's pair")
    if xr["kind"] == "random" and wr["kind"] != "random":
        seed = int(xr["seed"]) - 1
    s = make_source(config, seed=seed, weights=w_arg, inputs=x_arg)
    s.record = src  # the file records keep the names and paths as first given
    return s


def _input_arg(xr: dict[str, Any], given: str | Path | None, set_dir: Path,
               emb: dict[str, np.ndarray] | None = None) -> Any:
    if xr["kind"] == "random":
        return None
    if xr["kind"] == "file":
        return _find_file(xr, "input", given, set_dir)
    if xr["kind"] == "embedded":
        e = emb if emb is not None else _embedded(set_dir)
        return e[xr.get("key", "x")]
    raise CheckFailed(f"golden set {set_dir}: unknown input source kind {xr['kind']!r}")
