"""Per-tensor accumulator widths of a plan, checked for one layer config before any work.

Every matrix product of the layer (``q k v proj gate up down`` against a weight, ``scores`` and
``attn`` between two activations) reduces over ``K`` products of two operands. With fixed-point
operands (``a_w`` and ``b_w`` bits; an unsigned operand enters zero-extended, one bit wider) an
exact dot product needs ``a_w + b_w + clog2(K)`` bits (the rule the MAC unit uses). A fixed
accumulator policy ``acc:s<W>:<wrap|sat|error>`` narrower than that:

* ``error``: refused when the plan is checked against the config (``ValueError`` naming the
  tensor, its operands, K and the bits needed) -- the run could fail on data;
* ``wrap`` / ``sat``: accepted, with the risk stated (:attr:`AccumulatorCheck.message`): the sum
  wraps / clamps once ``|sum| >= 2^(W-1)``;
* narrower than one product (``W < a_w + b_w``): refused whatever the overflow policy.

The width of each stage's accumulator is the plan's ``tensors.<name>.acc``; a golden set records
the resolved per-stage values as ``units.<name>.mac.ACC_W`` / ``ACC_SAT``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import LayerConfig

__all__ = ["AccumulatorCheck", "mac_operands", "check_accumulators", "needed_bits"]


def _clog2(n: int) -> int:
    return max(0, int(n - 1).bit_length())


def mac_operands(config: LayerConfig) -> dict[str, tuple[str, str, int]]:
    """tensor -> (first operand, second operand (weight or tensor), reduction length K) for
    every matrix product of ``config``'s layer, in forward order. ``attn`` reduces over the keys:
    K = ``config.seq_len`` (the longest sequence the config describes)."""
    c = config
    h = "ln1" if c.prenorm else "x"
    h2 = "ln2" if c.prenorm else "ln1"
    out = {"q": (h, "wq", c.d_model), "k": (h, "wk", c.d_model), "v": (h, "wv", c.d_model),
           "scores": ("q_rope" if c.rope else "q", "k_rope" if c.rope else "k", c.head_dim),
           "attn": ("probs", "v", c.seq_len), "proj": ("attn", "wo", c.n_heads * c.head_dim)}
    if c.gated:
        out["gate"] = (h2, "w_gate", c.d_model)
    out["up"] = (h2, "w_up", c.d_model)
    out["down"] = ("mul" if c.gated else "act", "w_down", c.d_ff)
    return out


def needed_bits(a_fmt: Any, b_fmt: Any, k: int) -> int:
    """``a_w + b_w + clog2(K)``: every exact dot product of K products fits (unsigned operands
    count one bit more, as they enter the MAC zero-extended)."""
    aw = a_fmt.width + (0 if a_fmt.signed else 1)
    bw = b_fmt.width + (0 if b_fmt.signed else 1)
    return aw + bw + _clog2(k)


@dataclass(frozen=True)
class AccumulatorCheck:
    """One matrix product's accumulator against its operands: ``status`` is ``ok``, ``risk``
    (narrower than ``needed``, wraps or saturates) or ``refused``."""

    tensor: str
    operands: tuple[str, str]
    formats: tuple[str, str]
    k: int
    needed: int
    width: int
    policy: str
    status: str
    message: str


def check_accumulators(plan: Any, config: LayerConfig) -> list[AccumulatorCheck]:
    """The fixed accumulators of ``plan`` for ``config`` (products with a fixed-point accumulator
    policy and fixed-point operands; float policies have no width to check)."""
    from ..numerics.accumulate import FixedAccumulator, parse_policy
    from ..numerics.fixed import FixedFormat
    from ..numerics.formats import parse_format
    from ..numerics.rounding import Overflow

    out = []
    for t, (a, b, k) in mac_operands(config).items():
        if t not in plan.tensors:
            continue
        pol = parse_policy(plan.tensors[t].acc)
        if not isinstance(pol, FixedAccumulator):
            continue
        a_spec = plan.tensors[a].format if a in plan.tensors else "float64"
        bsrc = plan.weights if b.startswith("w") else plan.tensors
        b_spec = bsrc[b].format if b in bsrc else "float64"
        if "float64" in (a_spec, b_spec):
            continue
        fa, fb = parse_format(a_spec), parse_format(b_spec)
        if not (isinstance(fa, FixedFormat) and isinstance(fb, FixedFormat)):
            continue
        need = needed_bits(fa, fb, k)
        one = needed_bits(fa, fb, 1)
        w = pol.width
        src = f"{fa.width + (0 if fa.signed else 1)}x{fb.width + (0 if fb.signed else 1)}-bit products " \
              f"({a} {fa} x {b} {fb}) over K={k}"
        acc = plan.tensors[t].acc
        if w >= need:
            status, msg = "ok", f"tensor {t}: {acc} holds every sum of {src} ({need} bits needed)"
        elif w < one:
            status = "refused"
            msg = f"tensor {t}: accumulator {acc} has {w} bits and cannot hold one of the {src}: that needs {one}"
        elif pol.overflow is Overflow.ERROR:
            status = "refused"
            msg = (f"tensor {t}: accumulator {acc} has {w} bits, {src} need {need}: widen it to acc:s{need}, or "
                   f"use wrap/sat to accept the overflow risk")
        else:
            how = "wraps" if pol.overflow is Overflow.WRAP else "saturates"
            status = "risk"
            msg = (f"tensor {t}: accumulator {acc} has {w} bits, {src} need {need}: it {how} once "
                   f"|sum| >= 2^{w - 1} (worst case 2^{need - 1})")
        out.append(AccumulatorCheck(t, (a, b), (str(fa), str(fb)), k, need, w, acc, status, msg))
    return out
