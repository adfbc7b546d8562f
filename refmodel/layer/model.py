"""Whole-model forward: a stack of layers under a precision plan, carrying the QUANTIZED residual
stream from layer to layer, with error records against the float64 whole-model run.

Numeric contract
----------------
* Reference: :func:`reference_forward` runs every layer with the float64 reference
  (:func:`refmodel.layer.reference.run_reference`, no SLaNC: it is exact algebra), layer ``l+1``
  taking layer ``l``'s float64 ``out``.
* Quantized run: :meth:`PreparedModel.run`. Layer 0 takes the float64 model input ``x``; its
  ``input`` op rounds it into the plan's ``x`` format. Layer ``l+1`` takes the DECODED VALUES of
  layer ``l``'s quantized ``out`` tensor (exactly what the hardware stores in its stream buffer),
  rounded into the ``x`` format again (exact when ``out`` and ``x`` share a format, as every
  preset has them). The float64 stream is never re-quantized: drift accumulates as on hardware.
* Prepared weights: every layer's weights are quantized once per plan (one
  :class:`refmodel.layer.quantized.QuantizedLayer` per layer) and reused for every input.
* SLaNC (when ``plan.slanc``): static scales for the whole stack,
  :func:`refmodel.layer.slanc.model_slanc`: layer ``l >= 1`` takes its first-norm scale from layer
  ``l-1``'s MLP weights (the ``prev`` rule), layer 0 follows ``plan.slanc_first`` (``input``: from
  the model input rows; ``prev`` has no previous layer at layer 0 and falls back to ``none``);
  bert's layer 0 uses the gain of the norm that produced the input (``ModelWeights.input_gain``,
  the embedding LayerNorm). ``slanc="per-layer"`` instead gives every layer the rule a lone
  :class:`QuantizedLayer` uses (``plan.slanc_first`` at every layer: with ``input`` that is a bound
  from each layer's own input rows, i.e. dynamic, not static).
* A non-finite stream (an fp16 overflow to inf/NaN) stops the run: the following layers are not
  computed (a hardware stream would carry inf/NaN on); their records say so
  (:attr:`ModelRun.stopped_at`).

Error metrics (``q`` = quantized value, ``r`` = float64 whole-model reference of the same tensor;
non-finite ``q`` entries are counted and left out of the error figures):

* ``max_abs = max |q - r|``; ``max_rel = max_abs / max |r|`` (normwise, infinity norm);
* ``token_rel``: per token (row) ``||q_i - r_i||_inf / ||r_i||_inf``; its median and max
  (the per-token relative error of the residual stream that the stability analysis uses);
* ``local`` (stream only): ``max |out_q - F(x_q)|`` with ``F`` the float64 layer on the layer's own
  quantized input ``x_q`` (this layer's rounding, weight quantization included); ``propagated``:
  ``max |F(x_q) - F(x)|`` (the float64 layer's response to the incoming error). The error of the
  layer output is at most their sum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import LayerConfig
from .plan import PrecisionPlan
from .quantized import LayerRun, QuantizedLayer
from .reference import run_reference
from .slanc import SlancScales, model_slanc
from .weights import LayerWeights

__all__ = [
    "ModelWeights",
    "TensorError",
    "LayerRecord",
    "ModelRun",
    "PreparedModel",
    "reference_forward",
    "run_model",
    "tensor_error",
    "SLANC_RULES",
    "RESIDUAL_PROJECTIONS",
]

#: how a whole-model run chooses SLaNC scales (module docstring)
SLANC_RULES = ("static", "per-layer")
#: the weights that write into the residual stream (scaled by ``ModelWeights.scale_residual``)
RESIDUAL_PROJECTIONS = ("wo", "bo", "w_down", "b_down")

#: called after every layer: (layer index, quantized LayerRun, float64 whole-model reference tensors)
LayerHook = Callable[[int, LayerRun, Mapping[str, np.ndarray]], None]


@dataclass(frozen=True, eq=False)
class ModelWeights:
    """The transformer blocks of one model: ``config`` shared by every layer, ``layers`` in order.

    ``input_gain``: gain of the norm that produced the layer-0 input (bert's embedding LayerNorm;
    SLaNC uses it for layer 0), or None. ``notes``: where the weights come from.
    """

    name: str
    config: LayerConfig
    layers: tuple[LayerWeights, ...]
    input_gain: np.ndarray | None = None
    notes: str = ""
    _slanc_cache: dict[Any, list[SlancScales]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError(f"model {self.name!r}: no layers")
        object.__setattr__(self, "layers", tuple(self.layers))
        for i, w in enumerate(self.layers):
            try:
                w.validate(self.config)
            except ValueError as e:
                raise ValueError(f"model {self.name!r}, layer {i}: {e}") from None
        if self.input_gain is not None:
            g = np.asarray(self.input_gain, dtype=np.float64)
            if g.shape != (self.config.d_model,):
                raise ValueError(f"model {self.name!r}: input_gain must have shape [{self.config.d_model}], "
                                 f"got {list(g.shape)}")
            object.__setattr__(self, "input_gain", g)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def static_slanc(self, *, mlp: str = "dmx", pow2: bool = False) -> list[SlancScales]:
        """Static SLaNC scales of the stack (:func:`refmodel.layer.slanc.model_slanc`; layer 0's
        first norm of a pre-norm model: ``none``), computed once per ``mlp`` variant."""
        if mlp not in self._slanc_cache:
            if self.config.prenorm:
                self._slanc_cache[mlp] = list(model_slanc(self.config, self.layers, first="none", mlp=mlp))
            else:
                self._slanc_cache[mlp] = list(model_slanc(self.config, self.layers, input_gain=self.input_gain,
                                                          mlp=mlp))
        return [s.with_pow2(pow2) for s in self._slanc_cache[mlp]]

    @classmethod
    def from_real(cls, model: Any) -> ModelWeights:
        """From a :class:`refmodel.layer.realweights.RealModel` (the layers it loaded)."""
        gain = model.extras.get("emb_ln_g") if not model.config.prenorm else None
        return cls(model.name, model.config, tuple(model.layers), gain, model.notes)

    def first(self, n: int) -> ModelWeights:
        """The first ``n`` layers (1 <= n <= n_layers)."""
        if not 1 <= n <= self.n_layers:
            raise ValueError(f"model {self.name!r}: cannot take the first {n} of {self.n_layers} layers")
        return ModelWeights(self.name, self.config, self.layers[:n], self.input_gain, self.notes)

    def scale_residual(self, c: float) -> ModelWeights:
        """Every residual projection (``wo``, ``bo``, ``w_down``, ``b_down``) multiplied by ``c``:
        each branch writes ``c`` times its output into the stream (the stability paper's
        residual-scaling intervention). Exact in float64 for a power-of-two ``c``."""
        c = float(c)
        if not (np.isfinite(c) and c > 0):
            raise ValueError(f"residual scale must be finite and > 0, got {c!r}")
        layers = tuple(w.replace(**{n: w[n] * c for n in RESIDUAL_PROJECTIONS if n in w}) for w in self.layers)
        return ModelWeights(f"{self.name} (residual x{c:g})", self.config, layers, self.input_gain, self.notes)


def reference_forward(model: ModelWeights, x: np.ndarray, *, pad_mask: np.ndarray | None = None,
                      positions: np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    """The float64 whole-model run: every tensor of every layer (list index = layer)."""
    out = []
    h = np.asarray(x, dtype=np.float64)
    for w in model.layers:
        t = run_reference(model.config, w, h, pad_mask=pad_mask, positions=positions)
        out.append(t)
        h = t["out"]
    return out


@dataclass(frozen=True)
class TensorError:
    """Error of one tensor of one layer against the float64 whole-model reference (module
    docstring). ``stats``: the run's per-tensor counters (``nonfinite``, ``saturated``,
    ``internal_overflow``, ... as :class:`refmodel.layer.quantized.QuantOps` records them)."""

    layer: int
    name: str
    max_abs: float
    max_rel: float
    cosine: float
    nonfinite: int
    stats: Mapping[str, int] = field(default_factory=dict)

    @property
    def overflow(self) -> int:
        """Non-finite values + saturated codes + rows whose internal sum overflowed."""
        s = self.stats
        return self.nonfinite + int(s.get("saturated", 0)) + int(s.get("internal_overflow", 0))

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "name": self.name, "max_abs": self.max_abs, "max_rel": self.max_rel,
                "cosine": self.cosine, "nonfinite": self.nonfinite, "overflow": self.overflow,
                "stats": dict(self.stats)}


def tensor_error(layer: int, name: str, q: np.ndarray, ref: np.ndarray,
                 stats: Mapping[str, int] | None = None) -> TensorError:
    """:class:`TensorError` of ``q`` against ``ref`` (same shape)."""
    q = np.asarray(q, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    ok = np.isfinite(q)
    nonfinite = int(q.size - np.count_nonzero(ok))
    if not ok.any():
        return TensorError(layer, name, float("nan"), float("nan"), float("nan"), nonfinite, dict(stats or {}))
    qf, rf = q[ok], r[ok]
    d = np.abs(qf - rf)
    max_abs = float(d.max())
    scale = float(np.max(np.abs(r)))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    den = float(np.linalg.norm(qf) * np.linalg.norm(rf))
    cos = float(qf @ rf / den) if den > 0 else (1.0 if max_abs == 0 else 0.0)
    return TensorError(layer, name, max_abs, max_rel, cos, nonfinite, dict(stats or {}))


def _token_rel(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per row: ||q_i - r_i||_inf / ||r_i||_inf (inf for a row with a non-finite value)."""
    with np.errstate(invalid="ignore", over="ignore"):
        num = np.max(np.abs(q - r), axis=-1)
    den = np.max(np.abs(r), axis=-1)
    out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))
    return np.where(np.isfinite(num), out, np.inf)


@dataclass(frozen=True)
class LayerRecord:
    """The residual stream after one layer (its ``out`` tensor) against float64.

    ``max_abs``/``max_rel``/``token_rel_median``/``token_rel_max``: module docstring;
    ``ref_max``: max |reference stream|; ``ref_rms``: RMS of the reference stream; ``local`` /
    ``propagated``: the split of the error (module docstring), NaN when not computed;
    ``slanc``: the scales used by this layer's norms (``{"ln1": s, "ln2": s}``, empty without
    SLaNC); ``overflow``: the sum of :attr:`TensorError.overflow` over the layer's tensors.
    """

    layer: int
    max_abs: float
    max_rel: float
    token_rel_median: float
    token_rel_max: float
    ref_max: float
    ref_rms: float
    local: float
    propagated: float
    nonfinite: int
    overflow: int
    slanc: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.__dict__.items()}


@dataclass
class ModelRun:
    """Result of :meth:`PreparedModel.run`: per-layer stream records, per-(layer, tensor) errors,
    the final quantized stream, and ``stopped_at`` (first layer not computed because its input
    was non-finite, else None) with ``stop_reason``."""

    model: str
    plan: PrecisionPlan
    layers: list[LayerRecord]
    tensors: list[TensorError]
    output: np.ndarray
    stopped_at: int | None = None
    stop_reason: str = ""

    def stream_rel(self) -> np.ndarray:
        """max_rel of the stream after every layer (NaN for layers not run)."""
        return np.array([r.max_rel for r in self.layers], dtype=np.float64)

    def tensor(self, layer: int, name: str) -> TensorError:
        for t in self.tensors:
            if t.layer == layer and t.name == name:
                return t
        raise KeyError(f"no record for tensor {name!r} of layer {layer}")

    def first_layer_with(self, predicate: Callable[[TensorError], bool]) -> int | None:
        """Smallest layer index with a tensor record satisfying ``predicate`` (None if none)."""
        hits = [t.layer for t in self.tensors if predicate(t)]
        return min(hits) if hits else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "plan": self.plan.name, "stopped_at": self.stopped_at,
                "stop_reason": self.stop_reason, "layers": [r.to_dict() for r in self.layers],
                "tensors": [t.to_dict() for t in self.tensors]}


class PreparedModel:
    """A model prepared for one plan: every layer's weights quantized once (a
    :class:`QuantizedLayer` per layer) and the static SLaNC scales computed once; :meth:`run`
    is then the whole-model forward for any input (module docstring)."""

    def __init__(self, model: ModelWeights, plan: PrecisionPlan | str, *, slanc: str = "static") -> None:
        if isinstance(plan, str):
            plan = PrecisionPlan.from_name(plan)
        if slanc not in SLANC_RULES:
            raise ValueError(f"unknown SLaNC rule {slanc!r}; expected one of {', '.join(SLANC_RULES)}")
        plan.check(model.config)
        self.model, self.plan, self.slanc_rule = model, plan, slanc
        cfg = model.config
        self._input_rule = plan.slanc and slanc == "static" and cfg.prenorm and plan.slanc_first == "input"
        self.static_slanc: list[SlancScales | None] = [None] * model.n_layers
        if plan.slanc and slanc == "static":  # layer 0 with the "input" rule: its own scale per run
            self.static_slanc = list(model.static_slanc(mlp=plan.slanc_mlp, pow2=plan.slanc_pow2))
        self.layers: list[QuantizedLayer] = []
        for i, w in enumerate(model.layers):
            if not plan.slanc:
                arg: Any = False
            elif slanc == "per-layer" or (i == 0 and self._input_rule):
                arg = None  # the layer's own rule (layer 0 with "input": from the input rows, per run)
            else:
                arg = self.static_slanc[i]
            self.layers.append(QuantizedLayer(cfg, w, plan, slanc=arg))

    def forward(self, x: np.ndarray, *, pad_mask: np.ndarray | None = None,
                positions: np.ndarray | None = None) -> np.ndarray:
        """The whole-model forward alone (no reference, no records): the decoded values of the
        last layer's quantized ``out``; stops early, returning the non-finite stream, when a
        layer's output is not finite."""
        h = np.asarray(x, dtype=np.float64)
        for ql in self.layers:
            h = ql.run(h, pad_mask=pad_mask, positions=positions).tensors["out"].values
            if not np.all(np.isfinite(h)):
                break
        return h

    def run(self, x: np.ndarray, *, reference: Sequence[Mapping[str, np.ndarray]] | None = None,
            pad_mask: np.ndarray | None = None, positions: np.ndarray | None = None, local: bool = True,
            hook: LayerHook | None = None, progress: Callable[[], Any] | None = None) -> ModelRun:
        """Whole-model forward of ``x`` (float64 ``[s, d_model]``, the layer-0 input).

        ``reference``: :func:`reference_forward` of the same ``x`` (computed when None; pass it to
        share one float64 run between plans). ``local``: also split each layer's stream error into
        local and propagated parts (one extra float64 layer per layer). ``hook(i, run, ref_i)``
        sees every layer's quantized run and reference tensors (e.g. to collect norm inputs
        without keeping every run). ``progress()`` is called once per layer (also for layers not
        run after a stop).
        """
        cfg = self.model.config
        ref = list(reference) if reference is not None else reference_forward(self.model, x, pad_mask=pad_mask,
                                                                              positions=positions)
        if len(ref) != self.model.n_layers:
            raise ValueError(f"reference has {len(ref)} layers, the model {self.model.n_layers}")
        h = np.asarray(x, dtype=np.float64)
        records: list[LayerRecord] = []
        tensors: list[TensorError] = []
        stopped_at, reason = None, ""
        for i, (ql, r) in enumerate(zip(self.layers, ref, strict=True)):
            if stopped_at is not None:
                records.append(_missing_record(i, r["out"]))
                if progress is not None:
                    progress()
                continue
            run = ql.run(h, pad_mask=pad_mask, positions=positions)
            errs = [tensor_error(i, n, t.values, r[n], run.stats.get(n)) for n, t in run.tensors.items()]
            tensors += errs
            out = run.tensors["out"].values
            loc = prop = float("nan")
            xq = run.tensors["x"].values
            if local and np.all(np.isfinite(xq)):
                fl = run_reference(cfg, ql.weights, xq, pad_mask=pad_mask, positions=positions)["out"]
                with np.errstate(invalid="ignore", over="ignore"):
                    loc = float(np.max(np.abs(out - fl))) if np.all(np.isfinite(out)) else float("inf")
                prop = float(np.max(np.abs(fl - r["out"])))
            elif local:  # the input itself overflowed in the plan's x format
                loc = float("inf")
            records.append(_record(i, out, r["out"], loc, prop, errs, run.slanc))
            if hook is not None:
                hook(i, run, r)
            if not np.all(np.isfinite(out)):
                bad = int(np.count_nonzero(~np.isfinite(out)))
                stopped_at = i + 1
                reason = f"layer {i} output has {bad} non-finite value(s) ({self.plan.name} overflow)"
            h = out
            if progress is not None:
                progress()
        if stopped_at is not None and stopped_at >= self.model.n_layers:
            stopped_at = None  # the last layer overflowed: nothing left unrun (its record shows it)
        return ModelRun(self.model.name, self.plan, records, tensors, h, stopped_at, reason)


def _slanc_dict(s: Any) -> dict[str, float]:
    if s is None or s is False:
        return {}
    return {k: float(s.scale(k)) for k in ("ln1", "ln2")}


def _record(i: int, q: np.ndarray, r: np.ndarray, loc: float, prop: float, errs: list[TensorError],
            slanc: Any) -> LayerRecord:
    e = next(t for t in errs if t.name == "out")
    tr = _token_rel(q, r)
    return LayerRecord(i, e.max_abs, e.max_rel, float(np.median(tr)), float(np.max(tr)), float(np.max(np.abs(r))),
                       float(np.sqrt(np.mean(r * r))), loc, prop, e.nonfinite, sum(t.overflow for t in errs),
                       _slanc_dict(slanc))


def _missing_record(i: int, r: np.ndarray) -> LayerRecord:
    nan = float("nan")
    return LayerRecord(i, nan, nan, nan, nan, float(np.max(np.abs(r))), float(np.sqrt(np.mean(r * r))), nan, nan,
                       int(r.size), 0)


def run_model(model: ModelWeights, x: np.ndarray, plan: PrecisionPlan | str, **kw: Any) -> ModelRun:
    """One whole-model run: :class:`PreparedModel` then :meth:`PreparedModel.run` (keyword
    arguments go to ``run``; ``slanc=`` to the preparation). Build a :class:`PreparedModel` once
    to run several inputs."""
    slanc = kw.pop("slanc", "static")
    return PreparedModel(model, plan, slanc=slanc).run(x, **kw)

