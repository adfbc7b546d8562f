"""Rounding-error bounds (rigorous and statistical tiers) against a float64 reference.

Each op bound takes the computed inputs, their error bounds and the op's rounding models and
returns a :class:`~refmodel.bounds.model.Bound` (componentwise ``rig`` / ``stat`` arrays plus
no-guarantee ``reasons``); :func:`~refmodel.bounds.layer.layer_bounds` chains them over a whole
quantized layer run (one :class:`~refmodel.bounds.layer.TensorBound` per tensor), end to end
against the float64 layer; :func:`~refmodel.bounds.layer.local.local_bounds` gives each stage's
local tolerance against the float64 op on its own quantised inputs (rigorous and warning tiers).
See ``docs/bounds.md``.
"""

from .accum import Accum, PartialSums
from .attention import attention_factor_table, attention_forward, attention_lipschitz, omega_kq, omega_ov
from .elementwise import (
                          ACTIVATIONS,
                          activation,
                          activation_bound,
                          activation_constants,
                          add_bound,
                          cast_bound,
                          mul_bound,
                          rope_bound,
                          scale_bound,
)
from .layer import TensorBound, layer_bounds, weight_errors
from .layer.local import LocalBound, local_bounds, local_references
from .matmul import attention_mix_bound, linear_bound, logits_bound, matmul_bound
from .model import (
                          DEFAULT_ALPHA,
                          EXACT,
                          Bound,
                          Gamma,
                          RoundingModel,
                          as_tiers,
                          gamma,
                          gamma_tilde,
                          lambda_azuma,
                          lambda_hm,
                          output_rounding,
                          range_mask,
                          range_reason,
                          rounding_model,
)
from .mx import MXElementModel, mx_element_model, mx_round_error, mx_weight_error
from .norm import NormSteps, layernorm_bound, norm_bound, rmsnorm_bound
from .softmax import SoftmaxSteps, softmax_bound, softmax_propagation

__all__ = [
    "TensorBound", "layer_bounds", "weight_errors", "LocalBound", "local_bounds", "local_references",
    "MXElementModel", "mx_element_model", "mx_round_error", "mx_weight_error",
    "Accum", "PartialSums",
    "attention_factor_table", "attention_forward", "attention_lipschitz", "omega_kq", "omega_ov",
    "ACTIVATIONS", "activation", "activation_bound", "activation_constants", "add_bound", "cast_bound",
    "mul_bound", "rope_bound", "scale_bound",
    "attention_mix_bound", "linear_bound", "logits_bound", "matmul_bound",
    "DEFAULT_ALPHA", "EXACT", "Bound", "Gamma", "RoundingModel", "as_tiers", "gamma", "gamma_tilde",
    "lambda_azuma", "lambda_hm", "output_rounding", "range_mask", "range_reason", "rounding_model",
    "NormSteps", "layernorm_bound", "norm_bound", "rmsnorm_bound",
    "SoftmaxSteps", "softmax_bound", "softmax_propagation",
]
