"""One op of the product's quantized layer, run on its own: a float plan that sets the format and
accumulation of a few tensors (everything else fp32), for the norm and softmax studies."""

from __future__ import annotations

from collections.abc import Mapping

from ..layer.config import LayerConfig
from ..layer.plan import PrecisionPlan, TensorPrecision, WeightPrecision
from ..layer.quantized import QuantOps

__all__ = ["op_plan", "op_backend"]


def op_plan(tensors: Mapping[str, tuple[str, str]], weights: Mapping[str, str] | None = None) -> PrecisionPlan:
    """The fp32 preset with ``tensors[name] = (format, acc)`` and ``weights[name] = format``."""
    base = PrecisionPlan.from_name("fp32")
    t = dict(base.tensors)
    t.update({n: TensorPrecision(f, a) for n, (f, a) in tensors.items()})
    w = dict(base.weights)
    w.update({n: WeightPrecision(f) for n, f in (weights or {}).items()})
    label = ", ".join(f"{n} {f} {a}" for n, (f, a) in tensors.items())
    return base.replace(name=f"op plan ({label})", tensors=t, weights=w)


def op_backend(plan: PrecisionPlan, *, d: int, rows: int, arch: str = "gpt2") -> QuantOps:
    """A :class:`QuantOps` for ``plan`` sized for ``rows`` x ``d`` inputs (the config only fixes
    which tensor names the plan must cover)."""
    cfg = LayerConfig(arch, d_model=d, n_heads=1, d_ff=4, seq_len=rows)
    return QuantOps(plan, cfg, seq_len=rows)
