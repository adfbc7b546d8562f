"""Layer-level error bounds: every tensor of a quantized layer run against the float64 reference.

The package is split per op: :mod:`.matmul` (linear, scores, mix), :mod:`.norm`, :mod:`.softmax`,
:mod:`.elementwise` (input, act, mul, add, rope) hold each op's end-to-end walk step and its
bound formula; :mod:`.walk` drives them; :mod:`.state` holds the per-tensor error state;
:mod:`.models` the plan's rounding models; :mod:`.weights` the weight-quantisation errors.

:func:`layer_bounds` walks the op records of a :class:`~refmodel.layer.quantized.LayerRun` in
forward order. Each record says what the op rounded where (``refmodel/layer/quantized.py`` module
docstring); the walk maps it onto the op bounds of this package and propagates, a posteriori, the
error of every tensor:

    E_t >= |t_hat - t_ref|          componentwise, t_ref = run_reference(config, weights, x)[t]

where ``t_hat`` is the quantized layer's value and ``t_ref`` the float64 reference on the
UNQUANTISED weights and input (no SLaNC: it is exact algebra). For each op with computed inputs
``a_hat`` (within ``E_a`` of the reference's inputs) the rigorous bound is

    E_y = propagated(E_a, E_w)  +  local(a_hat)  +  ref64(|a_hat| + E_a)

* ``propagated``: the op's sensitivity to its input errors, exact algebra over the computed
  magnitudes (matmul ``E_a|b| + (|a| + E_a)E_b``, the norm and softmax remainders, activation
  Lipschitz / Taylor with ``M2``, ...), see the op modules;
* ``local``: the op's own roundings on the computed inputs, step by step as the record and the
  plan say (float plans: one rounding per listed step in the op's work format; fixed plans: the
  integer units' own derived bounds, ``units.norm.norm_error_bound`` (plus the exact effect of the
  unit's quantised eps), ``units.softmax.softmax_error_bound`` (with the generic per-element bound,
  whichever is smaller), the activation table's exhaustively measured error after the requantising
  shift into the table input format);
* ``ref64``: the float64 reference's OWN rounding error (numpy BLAS, ``np.mean``, ``np.exp``,
  ...), so that ``E`` bounds the distance to the actual float64 tensors, not only to exact math
  (about 1e-16 relative; it matters only where a bound is attained to 1e-13).

Inputs: ``E_x = |x_hat - x|`` (known exactly: ``ref['x']`` is ``x``) is what propagates; the bound
REPORTED for ``x`` is its rounding model at the exact ``x`` (so a quantiser fault shows as a
violation). Weights: ``E_w = |w_hat - w|`` when the exact weights are given, else the rounding
model of the weight's format applied to ``w_hat`` (``(u|w_hat| + eta)/(1 - u)``; fixed ``q/2``; MX
from the stored block scales, :mod:`refmodel.bounds.mx`). A weight code at the top of a saturating
format may have been clipped: no guarantee there unless the exact weights are passed.

No guarantee (``inf`` plus a reason naming tensor, format and value): overflow of any step
(inf/NaN/wrap targets, accumulators), saturation of a value into a fixed-point or saturating
minifloat format (a clamped value is not bounded by its format), ``n u >= 1``, a variance or softmax
denominator error bound not below its value, an unmodelled policy, non-finite values. Downstream
tensors inherit it through the propagation (their reasons name the input). MX in-block element
saturation is part of the MX rounding model and bounded (see :mod:`refmodel.bounds.mx`).

Two decompositions (``isolate=True``, the default, reports their elementwise minimum; both are
rigorous): (1) the propagation above; (2) isolation, ``|t - ref| <= |t - t_q| + |t_q - ref|`` with
``t_q`` the float64 layer on the QUANTISED weights and input: the first term is the same walk with
zero input and weight errors (the arithmetic roundings alone), the second is computed exactly
(the quantisation effect). Once a value was saturated or overflowed, isolation may not lift a
"no guarantee" downstream (it would absorb the clamp into a finite number).

Statistical tier (``TensorBound.statistical``, clipped to the rigorous one where that is finite):
a first-order propagation of, per tensor,

* ``V``: sub-Gaussian variance proxy of independent mean-zero rounding errors (each unbiased
  step adds ``c^2`` with ``c`` the half-ulp of the value's binade; accumulations ``sum (u t_k)^2``
  over the actual partial sums; input errors ``e_x^2``), through each op's exact Jacobian squared;
* ``W``: the same for weight / bias / gain quantisation errors, which every token shares: sums
  over tokens (``P V``, the softmax's ``s^T dl``) add their standard deviations;
* ``D``: deterministic (biased roundings, measured LUT parts, subnormal quanta, the reference's
  own error), propagated worst case;
* ``R``, ``B``: a row-shared relative error ``delta_row * B``, ``|delta_row| <= R`` (a norm's rsqrt
  error on ``g n``, a softmax denominator on ``s``): exact through linear maps and RoPE, annihilated
  by a norm up to ``eps/T``, turned into ``V`` elsewhere;

with the nonlinearity of softmax / norm / activation as a multiplicative factor at the
statistical input bound (``expm1(x)/x``, ``(1 - rho)^-1/2``, ``M2 T^2 / 2``). Reported:
``D + lam sqrt(V + W) + R |B|``, ``lam = sqrt(2 ln(2/alpha))``; with isolation the minimum with
the isolated one plus the quantisation effect. ``TensorBound.failure_prob`` is ``alpha`` times (the
tensor's element count + the per-row statistical terms used upstream): a union bound for "the
statistical bound fails anywhere in the tensor", under the model (mean-zero rounding errors,
independent across elements, token-shared weight errors as above).
"""

from .models import F64
from .state import TensorBound
from .walk import LayerWalk, isolation_reference, layer_bounds
from .weights import weight_errors

__all__ = ["TensorBound", "layer_bounds", "F64", "weight_errors", "LayerWalk", "isolation_reference"]
