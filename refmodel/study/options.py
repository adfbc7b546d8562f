"""Options shared by every study, and the plan lists they default to."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..layer.plan import PRESET_NAMES, PrecisionPlan
from .models import MODEL_NAMES, StudyModel, model_pair

__all__ = ["StudyOptions", "Progress", "MODEL_LAYERS", "resolve_plans", "available", "each_model"]

#: layers in each real model (the step counts of progress bars are known before loading)
MODEL_LAYERS = {"minilm": 6, "smollm2": 30}
#: layers a --quick run keeps
QUICK_LAYERS = {"minilm": 2, "smollm2": 4}

#: advances a progress bar by n steps
Progress = Callable[..., Any]


def available(names: Sequence[str]) -> list[str]:
    """The preset names of ``names`` that exist (presets are renamed and added over time)."""
    return [n for n in names if n in PRESET_NAMES]


@dataclass(frozen=True)
class StudyOptions:
    """What every study takes.

    ``models``: subset of (minilm, smollm2); ``plans``: plan names or plan files (None: the
    study's default list); ``tokens``: input length (None: the study's default); ``quick``: a
    small run (first layers only, few tokens, two plans); ``full``: every preset and more tokens;
    ``seed``: random weights and synthetic inputs.
    """

    models: tuple[str, ...] = MODEL_NAMES
    plans: tuple[str, ...] | None = None
    tokens: int | None = None
    quick: bool = False
    full: bool = False
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [m for m in self.models if m not in MODEL_NAMES]
        if bad or not self.models:
            raise UserError(f"unknown model {bad[0] if bad else '(none)'!r}: use minilm, smollm2 or both")
        if self.quick and self.full:
            raise UserError("--quick and --full exclude each other")
        if self.tokens is not None and not 1 <= self.tokens <= 64:
            raise UserError(f"--tokens {self.tokens}: use 1..64")

    def n_layers(self, key: str) -> int:
        return QUICK_LAYERS[key] if self.quick else MODEL_LAYERS[key]

    def layers_arg(self, key: str) -> int | None:
        """``n_layers`` argument of the model loader (None = all)."""
        return QUICK_LAYERS[key] if self.quick else None

    def n_tokens(self, default: int, quick: int = 8, full: int = 32) -> int:
        if self.tokens is not None:
            return self.tokens
        return quick if self.quick else full if self.full else default

    def plan_names(self, default: Sequence[str], quick: Sequence[str], full: Sequence[str] | None = None) -> list[str]:
        if self.plans is not None:
            return list(self.plans)
        if self.quick:
            return available(quick)
        if self.full:
            return available(full) if full is not None else [n for n in PRESET_NAMES if n != "float64"]
        return available(default)

    def as_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "plans": None if self.plans is None else list(self.plans),
                "tokens": self.tokens, "quick": self.quick, "full": self.full, "seed": self.seed, **self.extra}


def resolve_plans(names: Sequence[str]) -> list[PrecisionPlan]:
    """Plans by preset name or plan file (``UserError`` naming a bad one)."""
    from ..commands._common import load_plan

    if not names:
        raise UserError("no plans to run")
    return [load_plan(n) for n in names]


def each_model(opts: StudyOptions, tokens: int, progress: Progress) -> Iterator[StudyModel]:
    """For every model of ``opts``: the real weights, then random weights of the same shapes
    (:func:`refmodel.study.models.model_pair`); one progress step per model loaded."""
    for key in opts.models:
        pair = model_pair(key, tokens=tokens, n_layers=opts.layers_arg(key), seed=opts.seed)
        progress()
        yield from pair
