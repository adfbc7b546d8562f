"""Elementwise stages of the layer walk: the input ``x``, the activation ``act``, the SwiGLU
product ``mul``, the residual adds (``res1``, ``res2``, gpt2/llama ``out``) and RoPE
(``q_rope``, ``k_rope``).

End-to-end, rigorous (stability.md 3.7 / 3.8 and 5.3 "GELU", "Residual add"; exact algebra in
:mod:`refmodel.bounds.elementwise`), each op a float64 evaluation rounded once into the tensor
format (``out``)::

    add   E = E_a + E_b + out(|a_hat + b_hat|)
    mul   E = |a_hat| E_b + |b_hat| E_a + E_a E_b + out(|a_hat b_hat|)
    act   E = min(L E_h, |phi'(h_hat)| E_h + M2 E_h^2 / 2) + unit(|phi(h_hat)|)
          (L = max|phi'|, M2 = max|phi''|, rigorous constants from a grid with margin)
    rope  E = |c| E_a + |s| E_b + table errors + out(|rotated|)

Fixed-point plans compute ``act`` with the table unit after a requantising shift into the
table's input format: the shift's rounding is an input error of the table, whose own error was
measured exhaustively against the reference's float64 activation (:func:`act_table_model`).

The input's reported bound is its format's rounding model at the exact ``x`` (so a quantiser
fault shows as a violation); what propagates is the exact ``|x_hat - x|``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...numerics.fixed import FixedFormat
from ...numerics.formats import parse_format
from ...numerics.rounding import round_shift
from ..elementwise import (
    activation,
    activation_bound,
    activation_constants,
    activation_derivative,
    add_bound,
    mul_bound,
    rope_angles,
    rope_bound,
)
from ..model import EXACT, RoundingModel, rounding_model
from ..mx import is_mx_spec
from .models import ACT_FUNC, F64, fixed_model, plan_model
from .state import StatError, TensorBound, ValueChain, rig_only

if TYPE_CHECKING:
    from ...layer.plan import TensorPrecision
    from ...layer.quantized import OpRecord
    from .walk import LayerWalk

__all__ = ["walk_input", "walk_act", "walk_mul", "walk_add", "walk_rope", "elementwise_out", "act_table_model",
           "table_input"]


def walk_input(walk: LayerWalk, rec: OpRecord) -> None:
    """The layer input ``x``: reported bound = the rounding model at the exact ``x``; propagated
    error = the exact ``|x_hat - x|``."""
    name = rec.name
    t = walk.run.tensors[name]
    xh = np.asarray(t.values, dtype=np.float64)
    x = np.asarray(walk.ref[name], dtype=np.float64)
    tp = walk.tp(name)
    E = np.abs(xh - x)
    ch = ValueChain(x, 0.0, 0.0)
    if tp.format != "float64":
        if t.mx is not None:
            ch.round_mx(tp.format, tp.rounding, walk.stored_X(name), -1, f"input {name}")
        else:
            ch.round(plan_model(tp.format, tp.rounding, tp.overflow, widen=0.0), f"input {name}")
    rig = ch.rigorous()
    bad = ~np.isfinite(rig) | ~np.isfinite(E)
    E = np.where(bad, np.inf, E)  # a saturated / overflowed input is no guarantee downstream too
    if np.any(bad):
        walk.voided = True
    walk.errors[name] = E
    # statistical: the realised input errors with random signs (Hoeffding given the magnitudes)
    walk.stats[name] = StatError(E.shape, np.where(bad, np.inf, E * E), 0.0, 0.0)
    walk.out[name] = TensorBound(name, "input", rig, rig.copy(), list(dict.fromkeys(ch.reasons)),
                                 ch.notes, min(1.0, walk.alpha * E.size),
                                 {"propagated": np.zeros_like(E), "local": ch.local, "ref64": np.zeros_like(E),
                                  "input_error": E})


def overshoot(B: Any, out: RoundingModel) -> np.ndarray:
    """The saturation overshoot inside an elementwise op bound's local part (its output rounding
    beyond ``out.err``): a bias for the statistical tier."""
    with np.errstate(invalid="ignore", over="ignore"):
        over = B.parts["local"] - out.err(np.abs(B.parts["z"]))
    return np.where(over > 0, over, 0.0)


def exact_on_grid(a: np.ndarray, b: np.ndarray, op: str, stored: np.ndarray) -> np.ndarray:
    """Elements where ``a + b`` (or ``a * b``) is exactly a float64 (TwoSum / TwoProd error 0) and
    equals the stored output: the output rounding did nothing there (e.g. a fixed-point residual
    add of two values on the output's own grid, without saturation)."""
    from ..emulate import two_prod, two_sum

    with np.errstate(invalid="ignore", over="ignore"):
        z, e = two_prod(a, b) if op == "mul" else two_sum(a, b)
        return (e == 0) & (z == stored) & np.isfinite(z)


def elementwise_out(walk: LayerWalk, tp: TensorPrecision) -> tuple[RoundingModel, bool]:
    """(output model, MX?) of a value computed in float64 and stored into the tensor."""
    if is_mx_spec(tp.format):
        return EXACT, True
    if tp.format == "float64":
        return F64, False
    if walk.fixed:
        return fixed_model(parse_format(tp.format), tp.rounding, tp.overflow), False
    return plan_model(tp.format, tp.rounding, tp.overflow), False


def mx_tail(walk: LayerWalk, ch: ValueChain, st: StatError, tp: TensorPrecision, name: str) -> None:
    """The final MX block rounding of an elementwise output (known block scales)."""
    v0, d0 = ch.local_var.copy(), ch.local_det.copy()
    ch.round_mx(tp.format, tp.rounding, walk.stored_X(name), -1, f"{name} output")
    st.indep = st.indep + (ch.local_var - v0)
    st.det = st.det + (ch.local_det - d0)


def walk_act(walk: LayerWalk, rec: OpRecord) -> None:
    """Activation (module docstring)."""
    name = rec.name
    hn = rec.inputs[0]
    tp = walk.tp(name)
    kind = rec.details["act"]
    h = walk.val(hn)
    Er = walk.err(hn)
    cst = activation_constants(kind)
    Sh = walk.stat_of(hn)
    Th = Sh.bound(walk.lam)
    if walk.fixed:
        xc, cast, sat, tin = table_input(walk, rec)
        unit = act_table_model(kind, tin, rec.details["act_params"].out_fmt)
        B = activation_bound(xc, rig_only(Er + cast), fn=kind, unit=unit, what=f"{name} table")
        ch = ValueChain.from_bound(B)
        if np.any(sat):  # the clamp into the table input is an exact, known input error
            ch.notes.append(f"{name}: input {hn} saturates the table input {tin} (|value| up to "
                            f"{float(np.max(np.abs(h[sat]))):.6g} > {tin.max:g}, {int(sat.sum())} element(s))")
        d1 = np.abs(activation_derivative(kind, xc))
        rh = Sh.row_part()
        rnd = np.where(sat, 0.0, cast)  # the shift's rounding: mean-zero; a clamp: a bias (below)
        st = StatError(h.shape, d1 * d1 * (Sh.indep + rh * rh + rnd * rnd) + unit.err(0.0) ** 2,
                       d1 * Sh.det + B.parts["L"] * np.where(sat, cast, 0.0), 0.0, 0.0, d1 * d1 * Sh.shared)
        Tin = Th + cast
    else:
        out, mx_out = elementwise_out(walk, tp)
        unit = out.widened(rel=ACT_FUNC, abs=1e-300) if not out.exact else RoundingModel(ACT_FUNC, 1e-300)
        B = activation_bound(h, rig_only(Er), fn=kind, unit=unit, what=f"{name} ({tp.format})")
        ch = ValueChain.from_bound(B)
        d1 = np.abs(activation_derivative(kind, h))
        z = B.parts["z"]
        rh = Sh.row_part()
        st = StatError(h.shape, d1 * d1 * (Sh.indep + rh * rh), d1 * Sh.det, 0.0, 0.0, d1 * d1 * Sh.shared)
        st.add_rounding(out.step_err(z), out.unbiased)
        st.det = st.det + ACT_FUNC * np.abs(z) + overshoot(B, unit)
        if mx_out:
            mx_tail(walk, ch, st, tp, name)
        Tin = Th
    so = 0.5 * cst.M2 * Tin * Tin  # second order, into indep
    st.indep = st.indep + so * so
    ch.ref64 = ACT_FUNC * (np.abs(activation(kind, h)) + cst.L * walk.mag(hn)) + 1e-300
    # phi(0) = 0 and phi is L-Lipschitz: |phi(h)| <= L |h|
    walk.finish(rec, ch, st, ref_magnitude=cst.L * (np.abs(h) + Er))


def table_input(walk: LayerWalk, rec: OpRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, FixedFormat]:
    """The requantising shift of the activation's input into the table input format
    (deterministic replay of ``QuantOps._fixed_act``): the table input value ``xc``, the bound on
    its rounding ``|xc - h|`` (the exact clamp distance where it saturated), the saturated mask
    and the format."""
    prm = rec.details["act_params"]
    tin = prm.in_fmt
    tp = walk.tp(rec.name)
    hq = walk.qt(rec.inputs[0])
    h = np.asarray(hq.values, dtype=np.float64)
    if hq.fmt.frac >= tin.frac:
        c = round_shift(hq.codes, hq.fmt.frac - tin.frac, tp.rounding)
    else:
        c = hq.codes << np.int64(tin.frac - hq.fmt.frac)
    sat = (c > tin.max_code) | (c < tin.min_code)
    c = np.clip(c, tin.min_code, tin.max_code)
    xc = np.ldexp(c.astype(np.float64), -tin.frac)
    m = rounding_model(tin, tp.rounding)
    # a rounding of the shift (at most its model's half-LSB), or, where the value saturated the
    # table input, the exact clamp distance
    cast = np.where(sat, np.abs(xc - h), np.where(xc == h, 0.0, m.abs))
    return xc, cast, sat, tin


def walk_mul(walk: LayerWalk, rec: OpRecord) -> None:
    """Elementwise product (SwiGLU ``act * up``)."""
    _walk_binary(walk, rec, "mul")


def walk_add(walk: LayerWalk, rec: OpRecord) -> None:
    """Residual add."""
    _walk_binary(walk, rec, "add")


def _walk_binary(walk: LayerWalk, rec: OpRecord, op: str) -> None:
    name = rec.name
    an, bn = rec.inputs
    tp = walk.tp(name)
    a, b = walk.val(an), walk.val(bn)
    Ea = walk.err(an)
    Eb = walk.err(bn)
    out, mx_out = elementwise_out(walk, tp)
    fn = mul_bound if op == "mul" else add_bound
    B = fn(a, b, E_a=rig_only(Ea), E_b=rig_only(Eb), out=out, what=f"{name} ({tp.format})")
    ch = ValueChain.from_bound(B)
    exact = exact_on_grid(a, b, op, walk.val(name)) if not mx_out else np.zeros(np.shape(a), bool)
    # a result on the output grid (computed exactly in float64) is stored exactly
    ch.local = np.where(exact, 0.0, ch.local)
    Sa, Sb = walk.stat_of(an), walk.stat_of(bn)
    z = B.parts["z"]
    if op == "mul":
        V2 = Sa.var * (Sb.var + Sb.det ** 2) + Sa.det ** 2 * Sb.var  # second order (see matmul_stat)
        st = StatError(z.shape, b * b * Sa.indep + a * a * Sb.indep + V2,
                       np.abs(b) * Sa.det + np.abs(a) * Sb.det + Sa.det * Sb.det, 0.0, 0.0,
                       b * b * Sa.shared + a * a * Sb.shared)
        ha, hb = bool(np.any(Sa.row_rel > 0)), bool(np.any(Sb.row_rel > 0))
        if ha and hb:  # two different row factors: both end here
            ra, rb = Sa.row_part() * np.abs(b), Sb.row_part() * np.abs(a)
            st.indep = st.indep + ra * ra + rb * rb
        elif ha:
            st.set_row(Sa.row_rel, Sa.row_base * b)
        elif hb:
            st.set_row(Sb.row_rel, a * Sb.row_base)
        ch.ref64 = 2.0 ** -52 * (np.abs(a) + walk.mag(an)) * (np.abs(b) + walk.mag(bn))
    else:
        ra, rb = Sa.row_part(), Sb.row_part()
        st = StatError(z.shape, Sa.indep + Sb.indep + ra * ra + rb * rb, Sa.det + Sb.det, 0.0, 0.0,
                       Sa.shared + Sb.shared)
        ch.ref64 = 2.0 ** -52 * (np.abs(a) + np.abs(b) + walk.mag(an) + walk.mag(bn))
    if walk.local:  # the local reference computes the same exact float64 value there
        ch.ref64 = np.where(exact, 0.0, ch.ref64)
    st.add_rounding(np.where(exact, 0.0, out.step_err(z)), out.unbiased)
    st.det = st.det + overshoot(B, out)
    if mx_out:
        mx_tail(walk, ch, st, tp, name)
    with np.errstate(invalid="ignore", over="ignore"):
        ref_mag = (np.abs(a) + Ea) * (np.abs(b) + Eb) if op == "mul" else np.abs(a) + Ea + np.abs(b) + Eb
    walk.finish(rec, ch, st, ref_magnitude=ref_mag)


def walk_rope(walk: LayerWalk, rec: OpRecord) -> None:
    """Rotary embedding, half-split layout (module docstring)."""
    name = rec.name
    xn = rec.inputs[0]
    tp = walk.tp(name)
    x = walk.val(xn)
    Er = walk.err(xn)
    pos = rec.details.get("positions")
    pos = np.arange(x.shape[-2]) if pos is None else np.asarray(pos)
    out, mx_out = elementwise_out(walk, tp)
    base = float(rec.details["base"])
    # float64 tables and float64 evaluation (products, sum): modelled as table errors of 2^-51
    B = rope_bound(x, rig_only(Er), positions=pos, base=base, out=out, layout="half",
                   const=RoundingModel(2.0 ** -51), what=f"{name} ({tp.format})")
    ch = ValueChain.from_bound(B)
    hd = x.shape[-1]
    ax = np.abs(x) + walk.mag(xn)
    pair = ax[..., : hd // 2] + ax[..., hd // 2:]
    ch.ref64 = 2.0 ** -50 * np.concatenate([pair, pair], axis=-1)
    Sx = walk.stat_of(xn)
    ang = rope_angles(pos, hd, base)
    cs, sn = np.cos(ang), np.sin(ang)
    h2 = hd // 2

    def rot(Aa: np.ndarray, f: Any) -> np.ndarray:
        a1, a2 = Aa[..., :h2], Aa[..., h2:]
        return np.concatenate([f(cs) * a1 + f(sn) * a2, f(cs) * a2 + f(sn) * a1], axis=-1)

    B1, B2 = Sx.row_base[..., :h2], Sx.row_base[..., h2:]
    Brot = np.concatenate([cs * B1 - sn * B2, cs * B2 + sn * B1], axis=-1)  # the rotation is linear
    st = StatError(x.shape, rot(Sx.indep, lambda t: t * t), rot(Sx.det, np.abs) + 2.0 ** -51 * 2 * np.concatenate(
        [pair, pair], axis=-1), Sx.row_rel, Brot, rot(Sx.shared, lambda t: t * t))
    st.add_rounding(out.step_err(B.parts["z"]), out.unbiased)
    st.det = st.det + overshoot(B, out)
    if mx_out:
        mx_tail(walk, ch, st, tp, name)
    with np.errstate(invalid="ignore", over="ignore"):
        ar = np.abs(x) + Er
        pr = ar[..., : hd // 2] + ar[..., hd // 2:]  # a rotation of the pair: |a c - b s| <= |a| + |b|
    walk.finish(rec, ch, st, ref_magnitude=np.concatenate([pr, pr], axis=-1))


_ACT_TABLE_CACHE: dict[tuple[str, str, str], RoundingModel] = {}


def act_table_model(kind: str, tin: FixedFormat, tout: FixedFormat) -> RoundingModel:
    """The activation table's error, measured exhaustively over every input code against the
    reference layer's own float64 activation (``refmodel.layer.ops.activation``), clamped entries
    included, plus 1e-9 LSB for the float64 evaluation."""
    key = (kind, str(tin), str(tout))
    if key not in _ACT_TABLE_CACHE:
        from ...layer.ops import activation as ref_act
        from ...numerics.units.activation import act_table

        table = act_table(kind, tin, tout)
        addr = np.arange(1 << tin.width, dtype=np.int64)
        if tin.signed:
            sign = np.int64(1) << np.int64(tin.width - 1)
            codes = (addr ^ sign) - sign
        else:
            codes = addr
        x = np.ldexp(codes.astype(np.float64), -tin.frac)
        err = np.abs(np.ldexp(table.astype(np.float64), -tout.frac) - ref_act(kind, x))
        lsb = float(np.max(err)) / tout.lsb
        _ACT_TABLE_CACHE[key] = RoundingModel.measured(lsb + 1e-9, tout, label=f"{kind} table {tin}->{tout} "
                                                       f"({lsb:.4f} LSB)")
    return _ACT_TABLE_CACHE[key]
