"""Fault zoo: the faults hardware actually has, injected stage by stage, against the local tier.

Each fault is injected into ONE stage's output codes of a quantized layer run (a copy of what a
golden set holds) and checked the way a unit bench checks that stage: ``|decoded output -
local reference| <= local tolerance`` elementwise (:mod:`refmodel.bounds.layer.local`). A fault is
**flagged** when some element leaves its rigorous local tolerance (``F`` in the tables), or only
its warning tier (``W``).

Fault magnitudes are defined in the stage's own output code units, so each is a real hardware
fault of that word (:data:`FAULTS`):

* ``shift_up`` / ``shift_down``: the output requantiser's shift off by one (the value x2 / /2,
  rounded and saturated into the format);
* ``truncate``: the output rounding truncates (fixed: floor, float: toward zero) instead of RNE;
* ``carry6`` / ``carry8``: a dropped carry into bit 6 / bit 8 of the output word (code - 2^b,
  wrapped to the word width) in 1% of the entries (at least one, seeded);
* ``stuck_lsb``: bit 0 of every output word stuck at 1;
* ``sign_ext``: the sign bit lost (fixed: the top bit read as magnitude, ``c + 2^(W-1)`` for
  negative codes; minifloat / MX element: the sign bit cleared);
* ``swap_heads``: heads 0 and 1 exchanged (stages with a head axis);
* ``no_mask``: the causal mask missing in ``scores`` (masked entries hold q.k) or in the softmax
  (``probs`` over every key);
* ``scale``: the output scaled by ``(1 + 2^-6)`` before its rounding.

Where a fault cannot occur in a tensor (no head axis, no causal mask, no bit 8 in an 8-bit word,
an unsigned word, no negative value, or the faulty word equals the correct one everywhere) the
cell is ``n/a`` with the reason. Where the fault changes codes but by at most twice the stage's
rigorous local tolerance at every changed element (``|delta_i| <= 2 tol_i``), an honest
implementation of the plan's declared arithmetic may produce the same word, so no sound tolerance
can flag it: the cell is ``~`` (**below tolerance**, an explicit exception; :func:`detect` checks the
premise). Only the LSB-level faults (:data:`LSB_FAULTS`) may fall there; the structural ones must
always be flagged.

**Honest alternative datapaths** (:data:`ALTERNATIVES`) must pass every stage's rigorous local
tier without being bit-exact: a different accumulation (16-wide exact dot-product blocks instead of
sequential / 32-wide blocks; exact accumulation), a different exp / reciprocal (float plans: exp as
``2^(d log2 e)`` with the argument rounded in the work format, and ``e * (1/S)`` instead of
``e / S``; integer softmax unit: a finer exp2 LUT and reciprocal), a finer activation table.

``python -m refmodel.bounds.fault_zoo [configs [plans [seeds]]]`` prints the detection table
(fault x plan x stage) and the honest-alternative table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..layer.config import LayerConfig
from ..layer.forward import layer_forward
from ..layer.ops import Float64Ops
from ..layer.plan import PrecisionPlan
from ..layer.qtensor import QTensor, store
from ..layer.quantized import LayerRun, QuantizedLayer, QuantOps
from ..layer.weights import random_inputs, random_weights
from ..numerics import accumulate as _acc
from ..numerics.block import MXArray
from ..numerics.fixed import FixedFormat
from ..numerics.minifloat import FloatFormat, decode
from .layer.local import LocalBound, local_bounds

__all__ = ["FAULTS", "LSB_FAULTS", "ALTERNATIVES", "Injection", "Detection", "inject", "detect", "zoo",
           "alternative_run", "check_alternative", "AltResult", "zoo_markdown", "alternatives_markdown",
           "summary_markdown"]

FAULTS: dict[str, str] = {
    "shift_up": "requantiser shift off by one: output x2",
    "shift_down": "requantiser shift off by one: output /2",
    "truncate": "truncation instead of RNE in the output rounding",
    "carry6": "dropped carry into bit 6 (code - 2^6) in 1% of the entries",
    "carry8": "dropped carry into bit 8 (code - 2^8) in 1% of the entries",
    "stuck_lsb": "output bit 0 stuck at 1",
    "sign_ext": "sign bit lost (read as magnitude / cleared)",
    "swap_heads": "heads 0 and 1 swapped",
    "no_mask": "causal mask missing (scores, softmax)",
    "scale": "output scaled by (1 + 2^-6) before rounding",
}
#: faults of a few output LSBs: the only ones that may fall below a stage's honest tolerance
LSB_FAULTS = ("truncate", "carry6", "carry8", "stuck_lsb", "scale")
#: stages whose first axis is the head axis (``attn`` holds the heads as column blocks)
_HEAD_STAGES = ("q", "k", "v", "q_rope", "k_rope", "scores", "probs")
CARRY_FRACTION = 0.01


# ---- codes of a stage tensor ------------------------------------------------------------------------
def _mx_split(t: QTensor) -> bool:
    """True when an MX tensor's values are the head split of its blocked ``[s, H*hd]`` layout."""
    return t.mx is not None and tuple(t.values.shape) != tuple(t.mx.shape)


def _to_mx_layout(t: QTensor, v: np.ndarray) -> np.ndarray:
    if not _mx_split(t):
        return v
    h, s, hd = v.shape
    return v.transpose(1, 0, 2).reshape(s, h * hd)


def _from_mx_layout(t: QTensor, v: np.ndarray) -> np.ndarray:
    if not _mx_split(t):
        return v
    h, s, hd = t.values.shape
    return v.reshape(s, h, hd).transpose(1, 0, 2)


def _encode_like(t: QTensor, spec: str, values: np.ndarray, rounding: str = "rne") -> np.ndarray:
    """``values`` rounded (and saturated) into the tensor's format, decoded again."""
    with np.errstate(all="ignore"):
        if t.mx is not None:
            q = store(_to_mx_layout(t, values), spec, rounding, mx_axis=t.mx.axis)
            return _from_mx_layout(t, q.values)
        return np.asarray(store(values, spec, rounding).values, dtype=np.float64)


def _word(t: QTensor) -> tuple[np.ndarray, int, bool, Callable[[np.ndarray], np.ndarray]]:
    """(integer codes in the tensor's layout, word width, signed two's complement?, decoder of
    modified codes to float64 values in the tensor's layout)."""
    if isinstance(t.fmt, FixedFormat):
        xf: FixedFormat = t.fmt
        return np.asarray(t.codes, np.int64), xf.width, xf.signed, lambda c: np.ldexp(c.astype(np.float64), -xf.frac)
    if isinstance(t.fmt, FloatFormat):
        ff: FloatFormat = t.fmt
        return np.asarray(t.codes, np.int64), ff.bits, False, lambda c: decode(c, ff)
    if t.mx is not None:
        mx: MXArray = t.mx
        el = mx.fmt.element
        width = 8 if mx.fmt.is_int or not isinstance(el, FloatFormat) else el.bits
        codes = _from_mx_layout(t, np.asarray(mx.elements, np.int64))

        def dec(c: np.ndarray) -> np.ndarray:
            cc = _to_mx_layout(t, c)
            e = cc.astype(np.int8) if mx.fmt.is_int else cc.astype(np.uint8)
            return _from_mx_layout(t, MXArray(mx.scales, e, mx.fmt, mx.axis, mx.shape).to_float())

        return codes, width, bool(mx.fmt.is_int), dec
    raise ValueError("fault injection needs a quantised tensor (fixed, minifloat or MX)")


def _wrap(c: np.ndarray, width: int, signed: bool) -> np.ndarray:
    m = np.int64(1) << np.int64(width)
    c = np.mod(c, m)
    return np.where(c >= (m >> 1), c - m, c) if signed else c


def _sign_bit(t: QTensor) -> bool:
    """Whether the tensor's word has a sign bit."""
    if isinstance(t.fmt, FixedFormat):
        return t.fmt.signed
    if isinstance(t.fmt, FloatFormat):
        return t.fmt.signed
    return True  # MX elements (float or int8) are signed


@dataclass
class Injection:
    """A fault in one stage: the faulty decoded values, the changed elements, or why n/a."""

    values: np.ndarray | None
    changed: np.ndarray | None
    na: str = ""


def inject(run: LayerRun, name: str, fault: str, lref: np.ndarray, *, seed: int = 0) -> Injection:
    """Fault ``fault`` (:data:`FAULTS`) in stage ``name``'s output codes; ``lref`` is the stage's
    local reference (the pre-rounding value of the value-level faults)."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
    t = run.tensors[name]
    spec = run.plan.tensor(name).format
    good = np.asarray(t.values, dtype=np.float64)
    codes, width, signed, dec = _word(t)
    fixed = isinstance(t.fmt, FixedFormat)
    bad: np.ndarray | None = None
    if fault in ("shift_up", "shift_down", "scale"):
        f = {"shift_up": 2.0, "shift_down": 0.5, "scale": 1.0 + 2.0 ** -6}[fault]
        bad = _encode_like(t, spec, lref * f)
    elif fault == "truncate":
        bad = _encode_like(t, spec, lref, "floor" if fixed or (t.mx is not None and t.mx.fmt.is_int) else "rtz")
    elif fault in ("carry6", "carry8"):
        b = 6 if fault == "carry6" else 8
        if width <= b:
            return Injection(None, None, f"no bit {b} in a {width}-bit word")
        rng = np.random.default_rng(seed + 7919 * b)
        hit = np.zeros(codes.shape, bool)
        n = max(1, int(round(CARRY_FRACTION * codes.size)))
        hit.flat[rng.choice(codes.size, n, replace=False)] = True
        bad = dec(np.where(hit, _wrap(codes - (np.int64(1) << np.int64(b)), width, signed), codes))
    elif fault == "stuck_lsb":
        bad = dec(np.where(signed, codes | 1, codes | 1))
    elif fault == "sign_ext":
        if not _sign_bit(t):
            return Injection(None, None, "unsigned word: no sign bit")
        neg = good < 0
        if not neg.any():
            return Injection(None, None, "no negative value in the tensor")
        if fixed or (t.mx is not None and t.mx.fmt.is_int):
            bad = dec(np.where(codes < 0, codes + (np.int64(1) << np.int64(width - 1)), codes))
        else:
            bad = dec(codes & ~(np.int64(1) << np.int64(width - 1)))
    elif fault == "swap_heads":
        if name in _HEAD_STAGES and good.shape[0] >= 2:
            v = good.copy()
            v[[0, 1]] = v[[1, 0]]
        elif name == "attn" and run.config.n_heads >= 2:
            hd = run.config.head_dim
            v = good.copy()
            v[:, :hd], v[:, hd:2 * hd] = good[:, hd:2 * hd], good[:, :hd]
        else:
            return Injection(None, None, "no head axis" if name not in _HEAD_STAGES + ("attn",) else "one head")
        bad = _encode_like(t, spec, v)
    elif fault == "no_mask":
        rec = next(r for r in run.records if r.name == name)
        mask = rec.details.get("mask") if rec.kind in ("scores", "softmax") else None
        if rec.kind not in ("scores", "softmax"):
            return Injection(None, None, "no mask at this stage")
        if mask is None or np.all(mask):
            return Injection(None, None, "no causal mask in this config")
        ops = Float64Ops()
        if rec.kind == "scores":
            q, k = (run.tensors[n].values for n in rec.inputs)
            full = ops.scores("full", q, k, scale=float(rec.details["scale"]), mask=None)
            bad = _encode_like(t, spec, np.where(np.broadcast_to(mask, good.shape), lref, full))
        else:
            full = ops.softmax("full", run.tensors[rec.inputs[0]].values, mask=None)
            bad = _encode_like(t, spec, full)
    assert bad is not None
    with np.errstate(invalid="ignore"):
        changed = ~(bad == good) & ~(np.isnan(bad) & np.isnan(good))
    if not changed.any():
        return Injection(None, None, "the faulty word equals the correct one everywhere")
    return Injection(bad, changed)


@dataclass
class Detection:
    """Outcome of one (fault, stage): ``mark`` is ``F`` (rigorous tier flags it), ``W`` (only the
    warning tier), ``~`` (below tolerance: |delta| <= 2 tol at every changed element) or ``n/a``;
    ``ratio`` = max over changed elements of |delta| / tol; ``reason`` for n/a."""

    mark: str
    ratio: float = math.nan
    reason: str = ""
    flagged_elements: int = 0


def detect(inj: Injection, good: np.ndarray, lb: LocalBound) -> Detection:
    """Check an injection against the stage's local tiers (module docstring)."""
    if inj.values is None or inj.changed is None:
        return Detection("n/a", reason=inj.na)
    fail, warn = lb.check(inj.values)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.abs(inj.values - good)
        r = np.where(inj.changed, np.where(lb.rigorous > 0, delta / lb.rigorous, np.inf), 0.0)
    ratio = float(np.nanmax(np.where(np.isnan(r), np.inf, r)))
    if fail.any():
        return Detection("F", ratio, flagged_elements=int(fail.sum()))
    mark = "W" if warn.any() else "~"
    if ratio > 2.0:
        # cannot happen while the rigorous tier holds for the correct output: a change of more
        # than 2 tol leaves the band around the reference
        raise AssertionError(f"fault not flagged although |delta| reaches {ratio:.3g} x the local tolerance")
    return Detection(mark, ratio, flagged_elements=int(warn.sum()))


# ---- honest alternative datapaths -------------------------------------------------------------------
ALTERNATIVES: dict[str, str] = {
    "blocked16": "16-wide exact dot-product blocks added into the plan's accumulator (tensor-core order)",
    "exact_acc": "exact (wide) accumulation, one rounding into the output",
    "exp2_recip": "exp as 2^(d log2 e) (argument rounded) and e * (1/S) instead of e / S (float softmax); "
                  "finer exp2 LUT and reciprocal (integer softmax unit)",
    "fine_act": "a finer activation table input (integer activation unit)",
}


class _Exp2RecipOps(QuantOps):
    """The quantized layer with a different but correct float softmax: ``e = round_W(2^round_W(d
    log2 e))`` and ``p = round(e * round_W(1 / S))`` (argument-reduced exp, reciprocal-multiply
    normalisation), everything else as the plan says."""

    def _float_softmax(self, name: str, s: QTensor, allowed: np.ndarray,
                       shifted: bool) -> tuple[QTensor, dict[str, Any]]:
        tp = self._tp(name)
        F, pol, rnd = self._work_format(name), tp.acc, tp.rounding
        st = lambda v: store(v, F, rnd, tp.overflow)  # noqa: E731
        sv = s.values
        with np.errstate(over="ignore", invalid="ignore"):
            m = np.max(np.where(allowed, sv, -np.inf), axis=-1, keepdims=True) if shifted else 0.0
            dd = st(np.where(allowed, sv - m, 0.0))
            t2 = st(dd.values * math.log2(math.e))
            e = st(np.where(allowed, np.exp2(t2.values), 0.0))
            n = sv.shape[-1]
            e2 = e.values.reshape(-1, n)
            S = self._mm(QTensor(e2, e.fmt, None if e.codes is None else e.codes.reshape(-1, n)), QTensor(np.ones((n, 1))),
                         F, pol, rnd, tp.overflow)
            r = st(1.0 / S.values.reshape(sv.shape[:-1] + (1,)))
            p = np.where(allowed, e.values * r.values, 0.0)
            y = st(p) if F == tp.format else self._store(name, p)
        return y, {"work_format": F}


def _alt_plan(plan: PrecisionPlan, alt: str) -> PrecisionPlan | None:
    """The plan of an alternative expressible as a plan change, or None (n/a / custom ops)."""
    if alt in ("blocked16", "exact_acc"):
        t = {}
        changed = False
        for n, tp in plan.tensors.items():
            pol = _acc.parse_policy(tp.acc)
            if isinstance(pol, (_acc.Sequential, _acc.Blocked)):
                new = "exact" if alt == "exact_acc" else f"blocked:{pol.fmt}:16"
                t[n] = dataclasses.replace(tp, acc=new)
                changed = changed or new != tp.acc
            else:
                t[n] = tp
        return plan.replace(tensors=t, name=f"{plan.name}+{alt}") if changed else None
    u = plan.units
    if alt == "exp2_recip" and u.softmax == "exp2_lut":
        return plan.replace(units=dataclasses.replace(u, softmax_lut_bits=u.softmax_lut_bits + 2,
                                                       softmax_guard_bits=u.softmax_guard_bits + 2,
                                                       softmax_recip_k=0), name=f"{plan.name}+{alt}")
    if alt == "fine_act" and u.act == "table":
        f = FixedFormat.parse(u.act_table_in)
        finer = f"s{f.width + 2}.{f.frac + 2}"
        return plan.replace(units=dataclasses.replace(u, act_table_in=finer), name=f"{plan.name}+{alt}")
    return None


def alternative_run(layer: QuantizedLayer, x: np.ndarray, alt: str) -> LayerRun | None:
    """The run of honest alternative ``alt`` of ``layer``'s plan on input ``x`` (same quantised
    weights), or None where it does not apply to the plan."""
    plan = layer.plan
    if alt == "exp2_recip" and plan.units.softmax == "float":
        ops = _Exp2RecipOps(plan, layer.config, seq_len=np.asarray(x).shape[0], qweights=layer.qweights)
        slanc = layer._static_slanc if layer._static_slanc is not None else (
            layer._compute_slanc(x) if plan.slanc else None)
        layer_forward(ops, layer.config, layer.weights, x, slanc=slanc, softmax_shifted=plan.softmax_shifted)
        return LayerRun(plan, layer.config, dict(ops.tensors), dict(ops.weights), ops.records, ops.stats, slanc)
    alt_plan = _alt_plan(plan, alt)
    if alt_plan is None:
        return None
    alt_layer = QuantizedLayer(layer.config, layer.weights, alt_plan)
    return alt_layer.run(x)


@dataclass
class AltResult:
    """One honest alternative on one run: per stage, rigorous violations of the plan's local tier
    and the number of elements that differ from the plan's own datapath."""

    alt: str
    applies: bool
    violations: dict[str, int] = field(default_factory=dict)
    differing: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not any(self.violations.values())


def check_alternative(layer: QuantizedLayer, run: LayerRun, x: np.ndarray, alt: str) -> AltResult:
    """Run honest alternative ``alt`` and check every stage against the PLAN's local tolerance at
    the alternative's own stage inputs."""
    arun = alternative_run(layer, x, alt)
    if arun is None:
        return AltResult(alt, False)
    # the plan's tolerances, evaluated at the alternative's stage inputs
    view = LayerRun(run.plan, run.config, arun.tensors, run.weights, run.records, run.stats, run.slanc)
    out = AltResult(alt, True)
    for name, lb in local_bounds(view, x=x).items():
        v = np.asarray(arun.tensors[name].values, dtype=np.float64)
        fail, _ = lb.check(v)
        out.violations[name] = int(np.count_nonzero(fail))
        # how far from bit-exact: elements that differ from the plan's datapath on the same inputs
        out.differing[name] = int(np.count_nonzero(v != np.asarray(run.tensors[name].values))) if name != "x" else 0
    return out


# ---- the table ----------------------------------------------------------------------------------------
@dataclass
class ZooResult:
    """Detection marks per (plan, fault, stage) and honest-alternative results per (plan, alt)."""

    config: str
    marks: dict[tuple[str, str, str], Detection] = field(default_factory=dict)
    stages: dict[str, list[str]] = field(default_factory=dict)
    alternatives: dict[tuple[str, str], list[AltResult]] = field(default_factory=dict)


def zoo(config: LayerConfig, plans: Iterable[str], *, seeds: Iterable[int] = (0,), config_name: str = "",
        faults: Iterable[str] | None = None, alternatives: Iterable[str] | None = None,
        progress: Callable[[int], Any] | None = None) -> ZooResult:
    """Inject every fault into every stage (but the input ``x``) of every plan's random layer(s);
    a cell over several seeds takes the weakest outcome (``n/a`` only when n/a for every seed)."""
    res = ZooResult(config_name or config.arch)
    order = {"n/a": 0, "F": 1, "W": 2, "~": 3}
    fl = list(faults) if faults is not None else list(FAULTS)
    al = list(alternatives) if alternatives is not None else list(ALTERNATIVES)
    for p in plans:
        plan = PrecisionPlan.from_name(p)
        for s in seeds:
            w = random_weights(config, seed=int(s))
            x = random_inputs(config, seed=int(s) + 1)
            layer = QuantizedLayer(config, w, plan)
            run = layer.run(x)
            lbs = local_bounds(run, x=x)
            names = [n for n in lbs if n != "x"]
            res.stages[p] = names
            for name in names:
                good = np.asarray(run.tensors[name].values, dtype=np.float64)
                for f in fl:
                    d = detect(inject(run, name, f, lbs[name].reference, seed=int(s)), good, lbs[name])
                    key = (p, f, name)
                    old = res.marks.get(key)
                    if old is None or (old.mark == "n/a") or (d.mark != "n/a" and order[d.mark] > order[old.mark]):
                        res.marks[key] = d
            for a in al:
                res.alternatives.setdefault((p, a), []).append(check_alternative(layer, run, x, a))
            if progress:
                progress(1)
    return res


def zoo_markdown(res: ZooResult) -> str:
    """Per plan: rows = faults, columns = stages; F flagged, W warning only, ~ below tolerance
    (exception), - n/a; then the n/a and exception reasons."""
    lines: list[str] = []
    for p, names in res.stages.items():
        lines += [f"**{p}** ({res.config})", "", "| fault | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        for f in FAULTS:
            cells = []
            for n in names:
                d = res.marks.get((p, f, n))
                cells.append("" if d is None else ("-" if d.mark == "n/a" else d.mark))
            if any(cells):
                lines.append(f"| {f} | " + " | ".join(cells) + " |")
        exc = [(f, n, d) for (pp, f, n), d in res.marks.items() if pp == p and d.mark in ("~", "W")]
        if exc:
            lines.append("")
            lines.append("Not flagged by the rigorous tier (|delta| <= 2 tol at every changed element): " + "; ".join(
                f"{f}@{n} (max |delta|/tol {d.ratio:.2g}{', warning flags it' if d.mark == 'W' else ''})"
                for f, n, d in exc))
        lines.append("")
    return "\n".join(lines)


def summary_markdown(results: list[ZooResult]) -> str:
    """One compact table over configs: rows = faults, columns = plans, cells = ``flagged /
    applicable`` stages (``+k~`` below tolerance, ``+kW`` warning only)."""
    plans: list[str] = []
    for r in results:
        plans += [p for p in r.stages if p not in plans]
    lines = ["| fault | " + " | ".join(plans) + " |", "|---|" + "---|" * len(plans)]
    for f in FAULTS:
        cells = []
        for p in plans:
            marks = [d.mark for r in results for (pp, ff, _), d in r.marks.items() if pp == p and ff == f]
            app = [m for m in marks if m != "n/a"]
            c = f"{app.count('F')}/{len(app)}" if app else "n/a"
            if app.count("~"):
                c += f" +{app.count('~')}~"
            if app.count("W"):
                c += f" +{app.count('W')}W"
            cells.append(c)
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def alternatives_markdown(res: ZooResult) -> str:
    """Per (plan, alternative): PASS / FAIL (violations) and how many elements differ from the plan."""
    lines = ["| plan | alternative | runs | result | stages differing from the plan (elements) |",
             "|---|---|---:|---|---|"]
    for (p, a), rs in res.alternatives.items():
        if not any(r.applies for r in rs):
            lines.append(f"| {p} | {a} | 0 | n/a | |")
            continue
        viol = sum(sum(r.violations.values()) for r in rs)
        diff: dict[str, int] = {}
        for r in rs:
            for n, k in r.differing.items():
                diff[n] = diff.get(n, 0) + k
        dd = ", ".join(f"{n} ({k})" for n, k in diff.items() if k) or "none (identical bits)"
        lines.append(f"| {p} | {a} | {len(rs)} | {'PASS' if viol == 0 else f'FAIL ({viol})'} | {dd} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m refmodel.bounds.fault_zoo [configs [plans [seeds]]]``: the detection table."""
    import argparse

    from ..layer.plan import PRESET_NAMES

    ap = argparse.ArgumentParser(prog="python -m refmodel.bounds.fault_zoo",
                                 description="Inject hardware faults into a layer run, stage by stage, and print "
                                             "which the local tolerance flags; run honest alternative datapaths.")
    ap.add_argument("configs", nargs="?", default="tiny,tiny-llama,tiny-bert", help="comma-separated layer configs")
    ap.add_argument("plans", nargs="?", default=",".join(p for p in PRESET_NAMES if p != "float64"),
                    help="comma-separated preset plans")
    ap.add_argument("seeds", nargs="?", type=int, default=1, help="number of seeds (0 .. N-1)")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"seeds must be >= 1 (got {args.seeds})")
    configs, plans, seeds = args.configs.split(","), args.plans.split(","), range(args.seeds)
    for c in configs:
        try:
            LayerConfig.from_name(c)
        except ValueError as e:
            ap.error(str(e))
    results = []
    for c in configs:
        res = zoo(LayerConfig.from_name(c), plans, seeds=seeds, config_name=c)
        results.append(res)
        print(f"### fault zoo: {c}, seeds {list(seeds)}\n")
        print(zoo_markdown(res))
        print(f"### honest alternatives: {c}\n")
        print(alternatives_markdown(res))
        print(flush=True)
    print(f"### summary over {', '.join(configs)}: flagged / applicable stages\n")
    print(summary_markdown(results))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
