"""What the RTL layer (rtl/layer_top.v) implements: a capability check over a plan's content.

:func:`rtl_support` lists, one line per feature, what a (layer config, precision plan) pair needs
that layer_top lacks (``"<where>: <key> <value> -- <what the RTL does>"``); an empty list means the
RTL runs the plan bit-exactly, whatever the plan is called. :mod:`refmodel.rtl_layer` runs this
check before it maps a golden set to Verilog parameters, and ``refmodel demo`` runs it before any
work.
"""

from __future__ import annotations

from typing import Any

from .numerics.fixed import FixedFormat

__all__ = ["rtl_support", "STAGE_TENSORS", "MAC_STAGES", "LINEAR", "ROUND_MODE", "MATRICES", "BIASES"]

STAGE_TENSORS = ("x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down",
                 "out")
#: MAC stages: tensor -> Verilog parameter prefix
MAC_STAGES = {"q": "Q", "k": "K", "v": "V", "scores": "SC", "attn": "MIX", "proj": "PROJ", "up": "UP",
              "down": "DOWN"}
#: the MAC stages with a weight matrix and a bias
LINEAR = {"q": "Q", "k": "K", "v": "V", "proj": "PROJ", "up": "UP", "down": "DOWN"}
#: rounding modes of the RTL's requantisers (ROUND_MODE parameter codes)
ROUND_MODE = {"floor": 0, "half_up": 1, "rne": 2}
MATRICES = ("wq", "wk", "wv", "wo", "w_up", "w_down")
BIASES = ("bq", "bk", "bv", "bo", "b_up", "b_down")
#: tensors rounded by the shared requantiser (one ROUND_MODE)
_REQUANTISED = ("q", "k", "v", "scores", "attn", "proj", "up", "act", "down")
#: tensors whose overflow policy the RTL implements as saturation
_SATURATED = ("ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down", "out")
_RESIDUAL = ("x", "proj", "res1", "down", "out")
_NORM_WEIGHTS = ("ln1_g", "ln1_b", "ln2_g", "ln2_b")


# ==== capability check ===============================================================================
def rtl_support(config: Any, plan: Any, lanes: int = 1) -> list[str]:
    """What the (config, plan) pair needs that layer_top does not implement, one message per
    feature (``"<where>: <key> <value> -- <what the RTL does>"``); an empty list means the RTL
    runs it bit-exactly. Only the content counts, never the plan's name."""
    from .layer.plan import PrecisionPlan
    from .numerics.accumulate import Exact, FixedAccumulator, parse_policy
    from .numerics.formats import parse_format
    from .numerics.rounding import Overflow

    assert isinstance(plan, PrecisionPlan)
    why: list[str] = []
    if config.arch != "gpt2":
        why.append(f"config: arch {config.arch} -- the RTL layer is gpt2 (pre-LN LayerNorm, biases, GELU MLP)")
        return why
    if not config.causal:
        why.append("config: causal false -- the RTL masks every key after the query (causal attention)")
    if lanes < 1:
        why.append(f"LANES {lanes} -- at least one MAC lane")

    fmts: dict[str, FixedFormat] = {}
    for n in STAGE_TENSORS:
        tp = plan.tensors.get(n)
        if tp is None:
            why.append(f"tensor {n}: missing from the plan")
            continue
        f = parse_format(tp.format)
        if not isinstance(f, FixedFormat):
            why.append(f"tensor {n}: format {tp.format} -- the RTL computes in fixed point")
            continue
        fmts[n] = f
    if "x" in fmts:
        fx = fmts["x"]
        for n, f in fmts.items():
            if n == "probs":
                if f.signed:
                    why.append(f"tensor probs: format {f} -- the softmax unit writes unsigned probabilities")
            elif f.width != fx.width or not f.signed:
                why.append(f"tensor {n}: format {f} -- the RTL keeps every activation signed and {fx.width} bits "
                           f"wide (x is {fx})")
        for n in _RESIDUAL[1:]:
            if n in fmts and fmts[n] != fx:
                why.append(f"tensor {n}: format {fmts[n]} -- the RTL's residual adds take operands and result in one "
                           f"format (x is {fx})")
    rnd = [(n, plan.tensors[n].rounding) for n in _REQUANTISED if n in plan.tensors]
    for n, r in rnd:
        if r not in ROUND_MODE:
            why.append(f"tensor {n}: rounding {r} -- the RTL's requantisers round floor, half_up or rne")
    modes = [r for _, r in rnd if r in ROUND_MODE]
    if modes:
        common = max(dict.fromkeys(modes), key=modes.count)  # the most frequent mode (first on a tie)
        for n, r in rnd:
            if r in ROUND_MODE and r != common:
                why.append(f"tensor {n}: rounding {r} -- the RTL rounds every requantised stage alike (the "
                           f"others: {common})")
    for n in _SATURATED:
        tp = plan.tensors.get(n)
        if tp is not None and n in fmts and tp.overflow != "saturate":
            why.append(f"tensor {n}: overflow {tp.overflow} -- the RTL saturates")
    for n in MAC_STAGES:
        tp = plan.tensors.get(n)
        if tp is None:
            continue
        pol = parse_policy(tp.acc)
        if isinstance(pol, FixedAccumulator):
            if pol.width > 62:
                why.append(f"tensor {n}: acc {tp.acc} -- the RTL's accumulators are at most 62 bits")
            if pol.overflow == Overflow.SATURATE and lanes != 1:
                why.append(f"tensor {n}: acc {tp.acc} saturates at every product -- the RTL does that with "
                           f"LANES = 1 only (asked for {lanes}); with more lanes its accumulators wrap")
        elif not isinstance(pol, Exact):
            why.append(f"tensor {n}: acc {tp.acc} -- the RTL accumulates in fixed point (acc:s<W>:wrap|sat, "
                       f"or exact)")
    u = plan.units
    if u.softmax != "exp2_lut":
        why.append(f"units.softmax {u.softmax} -- the RTL softmax is the exp2-LUT unit (exp2_lut)")
    if u.act != "table":
        why.append(f"units.act {u.act} -- the RTL activation is a full lookup table (table)")
    if u.rsqrt != "exact":
        why.append(f"units.rsqrt {u.rsqrt} -- the RTL norm uses the exact integer rsqrt unit (exact)")
    if not plan.softmax_shifted:
        why.append("softmax_shifted false -- the RTL softmax always subtracts the row maximum")
    if plan.slanc and not plan.slanc_pow2:
        why.append("slanc_pow2 false -- the RTL norms apply the SLaNC scale as a shift (a power of two)")
    tin = parse_format(u.act_table_in)
    if isinstance(tin, FixedFormat):
        if not tin.signed or tin.width > 16:
            why.append(f"units.act_table_in {tin} -- the RTL's table takes a signed input of at most 16 bits")
        elif "up" in fmts and tin.frac > fmts["up"].frac:
            why.append(f"units.act_table_in {tin} -- finer than up ({fmts['up']}): the RTL only shifts up right "
                       f"into the table input")
    why += _weight_support(plan)
    return why


def _weight_support(plan: Any) -> list[str]:
    """The weight part of :func:`rtl_support`: formats, and per-tensor / per-channel scales."""
    from .numerics.formats import parse_format

    why: list[str] = []
    groups: dict[str, list[tuple[str, FixedFormat]]] = {"matrices": [], "biases": []}
    for n in (*MATRICES, *BIASES, *_NORM_WEIGHTS):
        wp = plan.weights.get(n)
        if wp is None:
            why.append(f"weight {n}: missing from the plan")
            continue
        f = parse_format(wp.format)
        if not isinstance(f, FixedFormat) or not f.signed:
            why.append(f"weight {n}: format {wp.format} -- the RTL stores weights as signed fixed-point codes")
            continue
        if n in MATRICES:
            groups["matrices"].append((n, f))
        elif n in BIASES:
            groups["biases"].append((n, f))
        scale = str(getattr(wp, "scale", "none") or "none")
        kind = str(getattr(wp, "scale_kind", "pow2") or "pow2")
        if scale == "channel":
            why.append(f"weight {n}: scale channel -- per-channel weight scales are not implemented in the RTL yet "
                       f"(it requantises every output of a stage with one multiplier and shift)")
        elif scale == "tensor" and kind != "pow2":
            why.append(f"weight {n}: scale tensor, scale_kind {kind} -- the RTL folds a per-tensor scale into its "
                       f"requant shifts, so it must be a power of two (scale_kind pow2)")
    for what, items in groups.items():
        widths = {f.width for _, f in items}
        if len(widths) > 1:
            n0, f0 = items[0]
            for n, f in items[1:]:
                if f.width != f0.width:
                    why.append(f"weight {n}: format {f} -- the RTL's weight {what} share one code width "
                               f"({n0} is {f0})")
    return why
