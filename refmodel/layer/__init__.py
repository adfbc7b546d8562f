"""The transformer layer: configuration, weights, the generic forward over an op backend, the
float64 reference, SLaNC scales and precision plans.

>>> from refmodel.layer import LayerConfig, random_weights, random_inputs, run_reference
>>> cfg = LayerConfig.from_name("tiny")
>>> out = run_reference(cfg, random_weights(cfg, seed=0), random_inputs(cfg, seed=1))
>>> list(out)[:4], out["out"].shape
(['x', 'ln1', 'q', 'k'], (16, 64))

Real weights (``refmodel.layer.realweights``: all-MiniLM-L6-v2, SmolLM2-135M) need the
``models`` extra and are imported on demand.
"""

from .config import LayerConfig
from .forward import NormSite, attention_mask, layer_forward, norm_sites, tensor_names, tensor_shapes
from .ops import Float64Ops, LayerOps
from .plan import PrecisionPlan, TensorPrecision, UnitSettings, WeightPrecision
from .reference import run_reference
from .slanc import SlancEntry, SlancScales, compute_slanc, model_slanc, pow2_shift
from .weights import LayerWeights, padding_mask, random_inputs, random_weights, weight_names, weight_shapes

__all__ = [
    "LayerConfig",
    "LayerWeights",
    "weight_names",
    "weight_shapes",
    "random_weights",
    "random_inputs",
    "padding_mask",
    "LayerOps",
    "Float64Ops",
    "layer_forward",
    "tensor_names",
    "tensor_shapes",
    "norm_sites",
    "NormSite",
    "attention_mask",
    "run_reference",
    "SlancEntry",
    "SlancScales",
    "compute_slanc",
    "model_slanc",
    "pow2_shift",
    "PrecisionPlan",
    "TensorPrecision",
    "WeightPrecision",
    "UnitSettings",
]
