"""Standalone accuracy studies on real models (``refmodel study NAME``): each runs an experiment
on both real models and on random weights of the same shapes, puts the stability analysis's
claims to the measurement, and writes a self-contained report folder (:mod:`.report`).

========  ==========================================================================================
study     what it measures
========  ==========================================================================================
residual  relative error of the residual stream per layer for every plan, beside the worst-case
          bound; growth per layer; the residual-projection scaling experiment
norms     LayerNorm vs RMSNorm under massive outlier channels: condition number, forward error,
          fp16 overflow of the sum of squares with and without SLaNC
softmax   shifted vs unshifted evaluation, attention sinks, error vs sequence length 16..4096
          against the length-independent sink bound
slanc     SLaNC on/off per plan on both models: overflow/underflow per norm site, error
========  ==========================================================================================

Every study module exposes ``steps(opts) -> int`` (progress-bar length) and
``run(opts, progress) -> Report``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UserError

__all__ = ["STUDY_NAMES", "study_module"]

STUDY_NAMES = ("residual", "norms", "softmax", "slanc")


def study_module(name: str) -> ModuleType:
    """The module of study ``name`` (``UserError`` listing the studies for an unknown name)."""
    if name not in STUDY_NAMES:
        raise UserError(f"unknown study {name!r}: use one of {', '.join(STUDY_NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")
