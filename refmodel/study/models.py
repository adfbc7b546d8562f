"""The models a study runs on: the real weights (all-MiniLM-L6-v2, SmolLM2-135M) and, for each,
random weights of the same shapes, with their layer-0 inputs.

* ``real``: :func:`refmodel.layer.realweights.load_minilm` / ``load_smollm2``; input = the
  embedding of the first ``tokens`` token ids of :data:`TEXT` (SmolLM2's block matrices are Q4_1
  in the package, dequantized: the reports say so).
* ``random``: every tensor of every layer drawn from a normal distribution with the real
  tensor's mean and standard deviation (matrices: mean 0, the real RMS), seeded; input: normal
  entries with the real input's RMS. Same shapes and per-tensor magnitudes, none of the trained
  structure (outlier channels, attention sinks): the control for "is it the weights' structure
  or just their size".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..layer.model import ModelWeights
from ..layer.weights import LayerWeights

if TYPE_CHECKING:
    from ..layer.realweights import RealModel

__all__ = ["MODEL_NAMES", "TEXT", "StudyModel", "load_study_model", "random_like", "model_pair"]

MODEL_NAMES = ("minilm", "smollm2")

#: the input text of every study (long enough for 64 tokens in both tokenizers)
TEXT = ("The quick brown fox jumps over the lazy dog, while numerics engineers check every rounding step of the "
        "accelerator. Before committing silicon to a precision plan, they compare each layer of the model against "
        "a float64 reference, look for overflow in the normalisation units, and measure how far the residual "
        "stream drifts from one block to the next when the weights are stored in sixteen or eight bits.")


@dataclass(frozen=True, eq=False)
class StudyModel:
    """A model with its layer-0 input ``x`` [tokens, d_model] and a label for reports."""

    key: str  # "minilm" | "smollm2"
    kind: str  # "real" | "random"
    weights: ModelWeights
    x: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.key} ({self.kind})"


@functools.lru_cache(maxsize=4)
def _real(key: str, n_layers: int | None) -> tuple[ModelWeights, RealModel]:
    from ..layer import realweights as rw

    loader = {"minilm": rw.load_minilm, "smollm2": rw.load_smollm2}[key]
    probe = loader(layers=[])
    n = probe.n_layers if n_layers is None else min(n_layers, probe.n_layers)
    m = loader(layers=list(range(n)))
    return ModelWeights.from_real(m), m


def load_study_model(key: str, *, tokens: int, n_layers: int | None = None) -> StudyModel:
    """The real model ``key`` (its first ``n_layers`` layers; all when None) with the embedding of
    the first ``tokens`` token ids of :data:`TEXT`."""
    if key not in MODEL_NAMES:
        raise UserError(f"unknown model {key!r}: use one of {', '.join(MODEL_NAMES)}")
    w, m = _real(key, n_layers)
    ids = m.tokenize(TEXT)
    if tokens > len(ids):
        raise UserError(f"--tokens {tokens}: the study text has only {len(ids)} tokens for {key}")
    return StudyModel(key, "real", w, m.embed_ids(ids[:tokens]))


def random_like(model: StudyModel, seed: int = 0) -> StudyModel:
    """Random weights and input with the shapes and per-tensor mean/std of ``model`` (module doc)."""
    rng = np.random.default_rng(seed)
    layers = []
    for w in model.weights.layers:
        t = {}
        for name in w:
            a = w[name]
            mean = 0.0 if a.ndim == 2 else float(a.mean())
            std = float(np.sqrt(np.mean(a * a))) if a.ndim == 2 else float(a.std())
            t[name] = rng.normal(mean, std, size=a.shape)
        layers.append(LayerWeights(t))
    src = model.weights
    gain = None if src.input_gain is None else rng.normal(float(src.input_gain.mean()), float(src.input_gain.std()),
                                                          size=src.input_gain.shape)
    w2 = ModelWeights(f"{src.name} shapes, random weights", src.config, tuple(layers), gain,
                      "random: every tensor N(mean, std) of the real tensor (matrices: N(0, RMS)), seed "
                      f"{seed}; input N(0, RMS of the real input)")
    rms = float(np.sqrt(np.mean(model.x * model.x)))
    x = rng.normal(0.0, rms, size=model.x.shape)
    return StudyModel(model.key, "random", w2, x)


def model_pair(key: str, *, tokens: int, n_layers: int | None = None, seed: int = 0) -> list[StudyModel]:
    """[real, random] for model ``key``."""
    real = load_study_model(key, tokens=tokens, n_layers=n_layers)
    return [real, random_like(real, seed)]
