"""Tightness reports of the tolerance tiers: per stage (local tier) and per plan (end to end).

Definitions (the figures of docs/bounds.md use exactly these):

* **local ratio** of one stage tensor in one run: ``max(local bound) / max(|stage output - local
  reference|)`` over the tensor's elements (:func:`stage_ratio`); a tensor whose output equals its
  local reference exactly (observed 0 everywhere) has no ratio and is counted as *exact*. Per
  (config, plan, stage) the figure is the **median over seeds** of that ratio.
* **end-to-end finite fraction** of a plan: the fraction of stage elements (all stage tensors but
  the input ``x``) whose end-to-end rigorous bound is finite.
* **end-to-end ratio** of a plan: the median, over the stage elements with a finite bound and a
  nonzero observed error, of ``bound / |run - float64 layer|`` (elementwise); also reported per
  stage as the median over runs of ``max bound / max observed``.

Runs use the golden-set convention for random layers: weights from ``seed``, input from
``seed + 1`` (:func:`refmodel.layer.weights.random_weights` / ``random_inputs``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..layer.config import LayerConfig
from ..layer.plan import PrecisionPlan
from ..layer.quantized import QuantizedLayer
from ..layer.reference import run_reference
from ..layer.weights import LayerWeights, random_inputs, random_weights
from .layer import layer_bounds
from .layer.local import local_bounds

__all__ = ["stage_ratio", "LocalStage", "LocalSummary", "local_summary", "E2EStage", "E2ESummary", "e2e_summary",
           "random_runs", "real_runs", "local_markdown", "e2e_markdown"]


def stage_ratio(bound: np.ndarray, observed: np.ndarray) -> float | None:
    """``max(bound) / max(observed)`` over the finite bounds; None when the observed error is 0
    everywhere (an exact stage) or no bound is finite."""
    b = np.asarray(bound, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    fin = np.isfinite(b) & np.isfinite(o)
    if not fin.any():
        return None
    mo = float(np.max(o[fin]))
    return None if mo == 0.0 else float(np.max(b[fin])) / mo


@dataclass
class LocalStage:
    """One stage of one (config, plan), accumulated over seeds."""

    name: str
    kind: str = ""
    format: str = ""
    inputs: tuple[str, ...] = ()
    runs: int = 0
    elements: int = 0
    ratios: list[float] = field(default_factory=list)
    exact_runs: int = 0
    finite: bool = True
    violations: int = 0
    warnings: int = 0
    failure_probability: float = 0.0
    max_bound: float = 0.0
    max_observed: float = 0.0
    max_warning: float = 0.0

    @property
    def ratio_median(self) -> float:
        return float(np.median(self.ratios)) if self.ratios else math.nan

    @property
    def ratio_max(self) -> float:
        return float(np.max(self.ratios)) if self.ratios else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "format": self.format, "inputs": list(self.inputs),
                "runs": self.runs, "elements": self.elements, "finite": self.finite,
                "ratio_median": self.ratio_median, "ratio_max": self.ratio_max, "exact_runs": self.exact_runs,
                "max_local": self.max_bound, "max_observed": self.max_observed, "max_warning": self.max_warning,
                "rigorous_violations": self.violations, "warning_exceedances": self.warnings,
                "failure_probability": self.failure_probability}


@dataclass
class LocalSummary:
    """:func:`local_summary` result: per stage, in forward order."""

    config: str
    plan: str
    seeds: list[int]
    stages: dict[str, LocalStage]
    seconds: float = 0.0

    @property
    def violations(self) -> int:
        return sum(s.violations for s in self.stages.values())

    @property
    def finite(self) -> bool:
        return all(s.finite for s in self.stages.values())

    def as_dict(self) -> dict[str, Any]:
        return {"config": self.config, "plan": self.plan, "seeds": self.seeds, "seconds": self.seconds,
                "rigorous_violations": self.violations, "finite": self.finite,
                "stages": [s.as_dict() for s in self.stages.values()]}


def random_runs(config: LayerConfig, plan: PrecisionPlan, seeds: Iterable[int]
                ) -> Iterator[tuple[int, Any, LayerWeights, np.ndarray]]:
    """``(seed, run, weights, x)`` of the random layer of each seed (golden-set convention)."""
    for s in seeds:
        w = random_weights(config, seed=int(s))
        x = random_inputs(config, seed=int(s) + 1)
        with np.errstate(all="ignore"):
            run = QuantizedLayer(config, w, plan).run(x)
        yield int(s), run, w, x


def local_summary(config: LayerConfig, plan: PrecisionPlan, seeds: Iterable[int], *, config_name: str = "",
                  progress: Callable[[int], Any] | None = None) -> LocalSummary:
    """Local tier of every stage over the random layers of ``seeds`` (module docstring)."""
    seeds = [int(s) for s in seeds]
    out = LocalSummary(config_name or config.arch, plan.name, seeds, {})
    t0 = time.perf_counter()
    for _, run, _, x in random_runs(config, plan, seeds):
        for name, lb in local_bounds(run, x=x).items():
            st = out.stages.get(name)
            if st is None:
                st = out.stages[name] = LocalStage(name, lb.kind, plan.tensor(name).format, lb.inputs)
            v = np.asarray(run.tensors[name].values, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                obs = np.abs(v - lb.reference)
            fail, warn = lb.check(v)
            fin = np.isfinite(lb.rigorous)
            st.runs += 1
            st.elements += v.size
            st.finite = st.finite and bool(fin.all())
            st.violations += int(np.count_nonzero(fail & fin))
            st.warnings += int(np.count_nonzero(warn))
            st.failure_probability = lb.failure_probability
            if fin.any():
                st.max_bound = max(st.max_bound, float(np.max(lb.rigorous[fin])))
                st.max_warning = max(st.max_warning, float(np.max(lb.warning[fin])))
            st.max_observed = max(st.max_observed, float(np.nanmax(obs)) if obs.size else 0.0)
            r = stage_ratio(lb.rigorous, obs)
            if r is None:
                st.exact_runs += 1
            else:
                st.ratios.append(r)
        if progress:
            progress(1)
    out.seconds = time.perf_counter() - t0
    return out


@dataclass
class E2EStage:
    """End-to-end tier of one stage over runs."""

    name: str
    elements: int = 0
    finite: int = 0
    violations: int = 0
    ratios: list[float] = field(default_factory=list)

    @property
    def ratio_median(self) -> float:
        return float(np.median(self.ratios)) if self.ratios else math.nan


@dataclass
class E2ESummary:
    """:func:`e2e_summary` result for one plan on one source of layers."""

    plan: str
    source: str
    runs: int = 0
    stages: dict[str, E2EStage] = field(default_factory=dict)
    _elem_ratios: list[np.ndarray] = field(default_factory=list, repr=False)
    seconds: float = 0.0

    @property
    def elements(self) -> int:
        return sum(s.elements for s in self.stages.values())

    @property
    def finite_fraction(self) -> float:
        n = self.elements
        return sum(s.finite for s in self.stages.values()) / n if n else 1.0

    @property
    def violations(self) -> int:
        return sum(s.violations for s in self.stages.values())

    @property
    def ratio_median(self) -> float:
        """Median over stage elements of bound / observed (finite bound, nonzero observed)."""
        if not self._elem_ratios:
            return math.nan
        a = np.concatenate(self._elem_ratios)
        return float(np.median(a)) if a.size else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "source": self.source, "runs": self.runs, "elements": self.elements,
                "finite_fraction": self.finite_fraction, "ratio_median": self.ratio_median,
                "rigorous_violations": self.violations,
                "stages": {n: {"finite_fraction": s.finite / s.elements if s.elements else 1.0,
                               "ratio_median_of_max": s.ratio_median, "rigorous_violations": s.violations}
                           for n, s in self.stages.items()}}


def real_runs(model: Any, plan: PrecisionPlan, text: str) -> Iterator[tuple[int, Any, LayerWeights, np.ndarray]]:
    """``(layer index, run, weights, x)`` of every loaded layer of a real model on ``text``: each
    layer's input is the float64 reference output of the layers before it (the embedding for
    layer 0), so every layer is bounded on its own realistic input."""
    x = model.embed(text)
    loaded = dict(zip(model.layer_indices, model.layers, strict=True))
    for i in range(max(loaded) + 1 if loaded else 0):
        w = loaded.get(i)
        if w is None:  # a layer between the loaded ones: the float64 reference only
            x = run_reference(model.config, model.load_layer(i), x)["out"]
            continue
        with np.errstate(all="ignore"):
            run = QuantizedLayer(model.config, w, plan).run(x)
        yield i, run, w, x
        x = run_reference(model.config, w, x)["out"]


def e2e_summary(runs: Iterable[tuple[int, Any, LayerWeights, np.ndarray]], plan: str, source: str, *,
                progress: Callable[[int], Any] | None = None) -> E2ESummary:
    """End-to-end tier over ``runs`` (``(key, run, weights, x)``; the bound gets the exact weights)."""
    out = E2ESummary(plan, source)
    t0 = time.perf_counter()
    for _, run, w, x in runs:
        ref = run_reference(run.config, w, x)
        b = layer_bounds(run, ref, weights=w)
        out.runs += 1
        for name, tb in b.items():
            if name == "x":
                continue
            st = out.stages.setdefault(name, E2EStage(name))
            v = np.asarray(run.tensors[name].values, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                obs = np.abs(v - ref[name])
            fin = np.isfinite(tb.rigorous)
            st.elements += v.size
            st.finite += int(np.count_nonzero(fin))
            with np.errstate(invalid="ignore"):
                st.violations += int(np.count_nonzero(fin & ~(obs <= tb.rigorous)))
            r = stage_ratio(tb.rigorous, obs)
            if r is not None:
                st.ratios.append(r)
            pos = fin & (obs > 0)
            out._elem_ratios.append(tb.rigorous[pos] / obs[pos])
        if progress:
            progress(1)
    out.seconds = time.perf_counter() - t0
    return out


def _f(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


def local_markdown(summaries: list[LocalSummary]) -> str:
    """One table: rows = (config, plan), columns = stages, cells = median local ratio over seeds
    (``exact`` where every seed's output equals its local reference)."""
    names: list[str] = []
    for s in summaries:
        names += [n for n in s.stages if n not in names]
    lines = ["| config | plan | " + " | ".join(names) + " | violations | finite |",
             "|---|---|" + "---:|" * len(names) + "---:|---|"]
    for s in summaries:
        cells = []
        for n in names:
            st = s.stages.get(n)
            if st is None:
                cells.append("")
            elif not st.ratios:
                cells.append("exact" if st.max_bound > 0 else "exact, tol 0")
            else:
                cells.append(_f(st.ratio_median))
        lines.append(f"| {s.config} | {s.plan} | " + " | ".join(cells) + f" | {s.violations} | {'yes' if s.finite else 'NO'} |")
    return "\n".join(lines)


def e2e_markdown(summaries: list[E2ESummary]) -> str:
    """One row per (source, plan): finite fraction, median element ratio, violations."""
    lines = ["| source | plan | runs | stage elements | finite fraction | median bound/observed | rigorous violations |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for s in summaries:
        lines.append(f"| {s.source} | {s.plan} | {s.runs} | {s.elements} | {s.finite_fraction:.4f} | "
                     f"{_f(s.ratio_median)} | {s.violations} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m refmodel.bounds.report local [configs [plans [n_seeds]]]`` or
    ``... e2e random|minilm|smollm2 [plans [n]]``: the markdown tables of docs/bounds.md."""
    import sys

    from ..layer.plan import PRESET_NAMES

    argv = sys.argv[1:] if argv is None else argv
    what = argv[0] if argv else "local"
    plans = [p for p in PRESET_NAMES if p != "float64"]
    if what == "local":
        configs = argv[1].split(",") if len(argv) > 1 else ["tiny", "tiny-bert", "tiny-llama", "d256", "gpt2-small"]
        plans = argv[2].split(",") if len(argv) > 2 else plans
        n = int(argv[3]) if len(argv) > 3 else 20
        sums = []
        for c in configs:
            for p in plans:
                s = local_summary(LayerConfig.from_name(c), PrecisionPlan.from_name(p), range(n), config_name=c)
                print(f"# {c} {p}: {s.seconds:.1f} s, violations {s.violations}, finite {s.finite}", file=sys.stderr,
                      flush=True)
                sums.append(s)
        print(local_markdown(sums))
        return 0
    source = argv[1] if len(argv) > 1 else "random"
    plans = argv[2].split(",") if len(argv) > 2 else plans
    n = int(argv[3]) if len(argv) > 3 else 20
    out: list[E2ESummary] = []
    for p in plans:
        plan = PrecisionPlan.from_name(p)
        if source == "random":
            cfg = LayerConfig.from_name("tiny")
            runs: Iterable[Any] = random_runs(cfg, plan, range(n))
        else:
            from ..layer.realweights import load_minilm, load_smollm2

            model = load_minilm() if source == "minilm" else load_smollm2(layers=list(range(0, 30, max(1, 30 // n))))
            runs = real_runs(model, plan, "The quick brown fox jumps over the lazy dog while 1, 2, 3 numbers "
                                          "repeat: the the the cat sat on the mat.")
        es = e2e_summary(runs, p, source)
        print(f"# {source} {p}: {es.seconds:.1f} s", file=sys.stderr, flush=True)
        out.append(es)
    print(e2e_markdown(out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
