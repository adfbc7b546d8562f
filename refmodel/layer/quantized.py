"""The quantized layer: :func:`layer_forward` on :class:`QuantOps` under a :class:`PrecisionPlan`.

Every op rounds exactly where its contract below says, so the codes of every tensor are determined
bit for bit (the RTL of the ``hw`` plan reproduces them). Each op also appends an :class:`OpRecord`
(what was rounded where, in which formats) that :mod:`refmodel.bounds` walks to bound the error of
every tensor against the float64 reference.

Float plans (tensor formats are minifloats, MX blocks or float64; every step below is ONE rounding
into the tensor's format ``F`` unless said otherwise):

=========  =====================================================================================
op         contract
=========  =====================================================================================
input      x rounded into F(x)
weight     w rounded into its weight format (MX: blocks along the reduction axis)
linear     y = acc(x W^T) under the tensor's accumulation policy, output rounded into F; then
           (bias) y = round_F(y + b): a second rounding. Weight with a scale s_c (codes q):
           a = acc(x q^T) rounded into the work format E (policy format, fp32 for exact),
           y = round_F(a * s_c) (product exact in float64), then the bias
norm       xs = round(x / s) (exact for a power of two s); mean = round(acc(sum xs) / d);
           c = round(xs - mean); V = acc(sum c^2) (products exact, FMA-style); var = round(V / d);
           ve = round(var + round(eps / s^2)); r = round(1/sqrt(ve)); n = round(c r);
           y = round(n g); y = round(y + b). RMSNorm: no mean, c = xs.
scores     acc(q k^T) rounded into F, then round(scale * .) (exact for a power of two scale);
           masked entries exactly 0
softmax    shifted: m = max (exact), d = round(s - m), e = round(exp d), S = acc(sum e),
           p = round(e / S); unshifted: e = round(exp s). Masked entries 0.
mix        acc(p v) rounded into F (per head; GQA by repeat-interleave)
act        round(f(h)) (f evaluated in float64: correctly rounded up to float64's own error)
mul, add   round(a * b), round(a + b)
rope       round(rope(x)) evaluated in float64
=========  =====================================================================================

Fixed-point plans (every tensor format ``s<W>.<F>``) use the integer models of the RTL units:
``linear``/``mix``/``mul`` :mod:`units.mac` (exact products, ACC_W accumulator with wrap or
saturate, bias preloaded, requantising shift with the tensor's rounding, saturation to F; a
per-tensor 2^e weight scale is part of that shift, a per-channel or fp32 scale goes through
:mod:`units.requant` with one multiplier per output channel, see :meth:`QuantOps._fixed_matmul_requant`);
``scores`` the MAC plus :mod:`units.requant` (dyadic multiplier for 1/sqrt(hd)); ``norm``
:mod:`units.norm` (SLaNC input shift, exact mean/variance, exact rsqrt unit); ``softmax``
:mod:`units.softmax` (exp2 LUT, exact reciprocal); ``act`` :mod:`units.activation` (full table
after a requantising shift into the table's input format); ``add`` exact sum, rounded/saturated
into F; ``rope`` (not an RTL unit) float64 on decoded values, rounded once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..numerics import accumulate as acc
from ..numerics.fixed import FixedArray, FixedFormat, apply_overflow
from ..numerics.formats import parse_format
from ..numerics.minifloat import FloatFormat
from ..numerics.rounding import Overflow, Rounding, round_shift
from .clipping import ClipCount, count_clipping
from .config import LayerConfig
from .forward import layer_forward, tensor_names
from .ops import LayerOps, _repeat_kv, activation, exp, rope_half
from .plan import PrecisionPlan
from .qtensor import QTensor, as_operand, store
from .weights import LayerWeights

if TYPE_CHECKING:
    from ..numerics.units.mac import MacParams
    from ..numerics.units.softmax import SoftmaxParams
    from .plan import TensorPrecision
    from .weightscale import WeightScale

FP32 = FloatFormat.parse("fp32")

__all__ = ["QuantOps", "OpRecord", "LayerRun", "QuantizedLayer", "run_quantized", "quantize_weight"]


@dataclass
class OpRecord:
    """What one op did, for the error bounds: kind, input tensor/weight names, output format,
    accumulation policy, reduction length, and op-specific details."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    out_format: str
    acc: str = "exact"
    k: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class LayerRun:
    """Result of one quantized forward: tensors by name, the op log, per-tensor statistics, and
    ``clipping``: saturation/underflow counts of every tensor and weight
    (:class:`refmodel.layer.clipping.ClipCount`; :func:`refmodel.layer.clipping.format_clipping`
    and ``clipping_warnings`` print them)."""

    plan: PrecisionPlan
    config: LayerConfig
    tensors: dict[str, QTensor]
    weights: dict[str, QTensor]
    records: list[OpRecord]
    stats: dict[str, dict[str, int]]
    slanc: Any = None
    clipping: dict[str, ClipCount] = field(default_factory=dict)

    def values(self) -> dict[str, np.ndarray]:
        return {n: t.values for n, t in self.tensors.items()}

    def clipping_warnings(self) -> list[str]:
        """One line per tensor or weight above the thresholds (0.1 % saturated, 50 % zero); weights
        are named ``weight <name> (<format>)``."""
        out = []
        for n, c in self.clipping.items():
            label = f"weight {n} ({self.plan.weight(n).describe()})" if n in self.weights else n
            out += c.warnings(label)
        return out


def _is_fixed_plan(plan: PrecisionPlan, config: LayerConfig) -> bool:
    specs = [plan.tensor(n).format for n in tensor_names(config)]
    fixed = [isinstance(parse_format(s), FixedFormat) if s != "float64" else False for s in specs]
    if any(fixed) and not all(fixed):
        bad = [n for n, f in zip(tensor_names(config), fixed, strict=True) if not f]
        raise ValueError(f"plan {plan.name!r} mixes fixed-point and float tensors ({', '.join(bad)} are not fixed); "
                         f"a plan is either all fixed point (integer units) or float")
    return all(fixed)


def _fixed_format(spec: str) -> FixedFormat:
    """The format of a tensor of a fixed-point plan (all of whose tensors are fixed point, see
    :func:`_is_fixed_plan`)."""
    f = parse_format(spec)
    if not isinstance(f, FixedFormat):
        raise TypeError(f"{spec} is not a fixed-point format")
    return f


def _clog2(n: int) -> int:
    return max(0, int(n - 1).bit_length())


class QuantOps(LayerOps[QTensor, QTensor]):
    """Backend of the quantized layer under ``plan`` (see module docstring)."""

    def __init__(self, plan: PrecisionPlan, config: LayerConfig, seq_len: int | None = None,
                 qweights: Mapping[str, QTensor] | None = None) -> None:
        super().__init__()
        self._qweights = qweights or {}
        self.plan = plan
        self.config = config
        self.fixed = _is_fixed_plan(plan, config)
        u = plan.units
        want = ("exp2_lut", "table", "exact") if self.fixed else ("float", "float", "float")
        have = (u.softmax, u.act, u.rsqrt)
        if have != want:
            kind = "fixed-point plans compute nonlinear ops with the integer units" if self.fixed else \
                "float plans evaluate nonlinear ops in the tensor formats"
            raise ValueError(f"plan {plan.name!r}: {kind}: set units.softmax = {want[0]!r}, units.act = {want[1]!r}, "
                             f"units.rsqrt = {want[2]!r} (have {have[0]!r}, {have[1]!r}, {have[2]!r})")
        self.records: list[OpRecord] = []
        self.stats: dict[str, dict[str, int]] = {}
        self.clipping: dict[str, ClipCount] = {}
        self._pre: dict[str, np.ndarray] = {}  # value before a tensor's final rounding, where an op keeps it
        self.seq_len = seq_len or config.seq_len
        self._unit_cache: dict[Any, Any] = {}

    # ---- helpers ---------------------------------------------------------------------------
    def _tp(self, name: str) -> TensorPrecision:
        return self.plan.tensor(name)

    def _store(self, name: str, values: np.ndarray, *, mx_axis: int = -1) -> QTensor:
        tp = self._tp(name)
        self._pre[name] = values
        return store(values, tp.format, tp.rounding, tp.overflow, mx_axis=mx_axis)

    def _log(self, name: str, kind: str, inputs: tuple[str, ...], k: int = 0, **details: Any) -> None:
        tp = self._tp(name)
        self.records.append(OpRecord(name, kind, inputs, tp.format, tp.acc, k, details))

    def _finish(self, name: str, t: QTensor, *, exclude: np.ndarray | None = None) -> QTensor:
        pre = self._pre.pop(name, None)
        if pre is not None and np.shape(pre) != t.shape:
            pre = None
        self.clipping[name] = count_clipping(t, pre, exclude=exclude, rounding=self._tp(name).rounding)
        v = t.values
        st = {"nonfinite": int(np.count_nonzero(~np.isfinite(v)))}
        if isinstance(t.fmt, FixedFormat) and t.codes is not None:
            top = t.codes == t.fmt.max_code
            st["saturated"] = int(np.count_nonzero(top | (t.codes == t.fmt.min_code) if t.fmt.signed else top))
        elif isinstance(t.fmt, FloatFormat) and t.fmt.has_inf is False:
            st["saturated"] = int(np.count_nonzero(np.abs(v) == t.fmt.max))
        self.stats[name] = st
        return self.record(name, t)

    def _mm(self, a: QTensor, b: QTensor, out: str, policy: str, rounding: str, overflow: str,
            mx_axis: int = -1) -> QTensor:
        """Float-plan matrix product of 2-D QTensors (a @ b) under ``policy``, into ``out``. An MX
        output is accumulated into fp32 (one rounding) and then block-quantised along ``mx_axis``."""
        if out == "float64":
            return QTensor(a.values @ b.values)
        if not (a.finite() and b.finite()):
            # an earlier overflow (inf/NaN) propagates as IEEE arithmetic would; the result is
            # garbage by construction and is reported, not accumulated exactly
            with np.errstate(over="ignore", invalid="ignore"):
                return store(a.values @ b.values, out, rounding, overflow, mx_axis=mx_axis)
        fmt = parse_format(out)
        fast = _exact_blas_product(a, b, policy)
        if fast is not None:
            return store(fast, out, rounding, overflow, mx_axis=mx_axis)
        seq = _sequential_product(a, b, fmt, policy, rounding, overflow)
        if seq is None:
            seq = _blocked_product(a, b, fmt, policy, rounding, overflow)
        if seq is not None:
            return seq
        mx_out = not isinstance(fmt, (FixedFormat, FloatFormat))
        cert = _certified_exact_product(a, b, policy, FP32 if not isinstance(fmt, (FixedFormat, FloatFormat)) else fmt,
                                        rounding)
        if cert is not None:
            return store(cert.values, out, rounding, overflow, mx_axis=mx_axis) if mx_out else cert
        if not isinstance(fmt, (FixedFormat, FloatFormat)):  # MX block format
            r = acc.matmul(as_operand(a), as_operand(b), policy, "fp32", rounding, overflow)
            return store(r.to_float(), out, rounding, overflow, mx_axis=mx_axis)
        r = acc.matmul(as_operand(a), as_operand(b), policy, fmt, rounding, overflow)
        return QTensor(r.to_float(), r.fmt, r.codes)

    def _name_of(self, t: QTensor) -> str:
        for n, v in self.tensors.items():
            if v is t:
                return n
        for n, v in self.weights.items():
            if v is t:
                return n
        return "?"

    # ---- ops: common ----------------------------------------------------------------------
    def input(self, name: str, x: np.ndarray) -> QTensor:
        self._log(name, "input", ())
        return self._finish(name, self._store(name, x))

    def weight(self, name: str, w: np.ndarray) -> QTensor:
        t = self._qweights.get(name)
        if t is None:
            t = quantize_weight(self.plan, name, w)
        self.weights[name] = t
        if t.clip is not None:
            self.clipping[name] = t.clip
        return t

    def to_float(self, t: Any) -> np.ndarray:
        return t.values

    # ---- ops -------------------------------------------------------------------------------
    def linear(self, name: str, x: QTensor, w: QTensor, b: QTensor | None, *, heads: int | None = None) -> QTensor:
        tp = self._tp(name)
        K = x.shape[-1]
        ins = (self._name_of(x), self._name_of(w)) + ((self._name_of(b),) if b is not None else ())
        if self.fixed:
            y, det = self._fixed_matmul(name, x, w, b)
        else:
            we = w.unscaled()  # a scaled weight enters the product as its element values (codes)
            wt = QTensor(we.values.T, we.fmt, None if we.codes is None else we.codes.T, we.mx,
                         f64_t=we.f64_t if not isinstance(we.fmt, FixedFormat) else None, all_finite=we.all_finite,
                         prepared=we.prepared)
            # v feeds p @ v, whose reduction runs over the sequence: its MX blocks go along axis 0
            mx_axis = 0 if name == "v" else -1
            if w.scale is None or w.scale.absorbed:
                y = self._mm(x, wt, tp.format, tp.acc, tp.rounding, tp.overflow, mx_axis=mx_axis)
                det = {} if w.scale is None else {"weight_scale": self._scale_info(w.scale, "weight format")}
            else:
                y, det = self._float_scale_epilogue(name, x, wt, w.scale, mx_axis)
            det["bias_rounding"] = b is not None
            if b is not None:
                y = self._store(name, y.values + b.values, mx_axis=mx_axis)
        if heads is not None:
            s, n = y.shape

            def tr(a: np.ndarray) -> np.ndarray:
                return a.reshape(s, heads, n // heads).transpose(1, 0, 2).copy()

            # an MX tensor keeps its block codes in the pre-split [s, heads*hd] layout
            y = QTensor(tr(y.values), y.fmt, None if y.codes is None else tr(y.codes), y.mx)
            if name in self._pre and np.shape(self._pre[name]) == (s, n):
                self._pre[name] = tr(np.asarray(self._pre[name]))
        self._log(name, "linear", ins, K, **det)
        return self._finish(name, y)

    @staticmethod
    def _scale_info(sc: Any, applied: str) -> dict[str, Any]:
        """Scalar description of a weight scale for the op record (and a golden manifest)."""
        info: dict[str, Any] = {k: v for k, v in sc.summary().items() if isinstance(v, (str, int, float))}
        info["applied"] = applied
        if sc.absorbed:
            info["exponent"] = int(sc.exponents.reshape(-1)[0])
        return info

    def _float_scale_epilogue(self, name: str, x: QTensor, wt: QTensor, sc: WeightScale,
                              mx_axis: int) -> tuple[QTensor, dict[str, Any]]:
        """Float plans, scaled weight: ``a = acc(x q^T)`` rounded into the work format ``E``
        (the accumulation policy's format; fp32 for ``exact``), then ``y = round_F(a * s_c)``:
        one rounding, the product being exact in float64 (``s_c`` fp32 or 2^e, ``a`` <= 24 bits)."""
        tp = self._tp(name)
        E = self._work_format(name)
        a = self._mm(x, wt, E, tp.acc, tp.rounding, tp.overflow)
        with np.errstate(over="ignore", invalid="ignore"):
            pre = a.values * sc.values.reshape(1, -1)
        y = self._store(name, pre, mx_axis=mx_axis)
        info = self._scale_info(sc, "epilogue")
        info.update(epilogue=f"round_{tp.format}(round_{E}(acc) * s)", acc_format=E)
        return y, {"weight_scale": info, "weight_scale_values": sc.values}

    def norm(self, name: str, x: QTensor, gamma: QTensor, beta: QTensor | None, *, kind: str, eps: float,
             scale: float = 1.0) -> QTensor:
        ins = (self._name_of(x), self._name_of(gamma)) + ((self._name_of(beta),) if beta is not None else ())
        d = x.shape[-1]
        if self.fixed:
            y, det = self._fixed_norm(name, x, gamma, beta, kind=kind, eps=eps, scale=scale)
        else:
            y, det = self._float_norm(name, x, gamma, beta, kind=kind, eps=eps, scale=scale)
        self._log(name, "norm", ins, d, norm=kind, eps=eps, scale=scale, **det)
        out = self._finish(name, y)
        if det.get("var_nonfinite"):
            self.stats[name]["internal_overflow"] = det["var_nonfinite"]
        return out

    def rope(self, name: str, x: QTensor, positions: np.ndarray, *, base: float) -> QTensor:
        self._log(name, "rope", (self._name_of(x),), 0, base=base, positions=np.asarray(positions))
        return self._finish(name, self._store(name, rope_half(x.values, positions, base)))

    def scores(self, name: str, q: QTensor, k: QTensor, *, scale: float, mask: np.ndarray | None) -> QTensor:
        H = q.shape[0]
        hd = q.shape[-1]
        kr = QTensor(_repeat_kv(k.values, H), k.fmt, None if k.codes is None else _repeat_kv(k.codes, H))
        allowed = np.ones(q.shape[:1] + (q.shape[1], kr.shape[1]), dtype=bool) if mask is None else \
            np.broadcast_to(mask, (H, q.shape[1], kr.shape[1]))
        tp = self._tp(name)
        if self.fixed:
            y, det = self._fixed_scores(name, q, kr, scale, allowed)
        else:
            outs = [self._mm(q[h], QTensor(kr.values[h].T, kr.fmt, None if kr.codes is None else kr.codes[h].T),
                             tp.format, tp.acc, tp.rounding, tp.overflow) for h in range(H)]
            raw = np.stack([o.values for o in outs])
            y = self._store(name, np.where(allowed, raw * scale, 0.0))
            det = {"scale": scale, "scale_exact": math.frexp(scale)[0] == 0.5}
        self._log(name, "scores", (self._name_of(q), self._name_of(k)), hd, mask=mask, **det)
        return self._finish(name, y, exclude=None if mask is None else ~allowed)

    def softmax(self, name: str, s: QTensor, *, mask: np.ndarray | None, shifted: bool = True) -> QTensor:
        allowed = np.ones(s.shape, dtype=bool) if mask is None else np.broadcast_to(mask, s.shape)
        if not allowed.any(axis=-1).all():
            raise ValueError(f"softmax {name!r}: a row has no allowed key (fully masked)")
        n = s.shape[-1]
        if self.fixed:
            y, det = self._fixed_softmax(name, s, allowed, shifted)
        else:
            y, det = self._float_softmax(name, s, allowed, shifted)
        self._log(name, "softmax", (self._name_of(s),), n, shifted=shifted, mask=mask, **det)
        return self._finish(name, y, exclude=None if mask is None else ~allowed)

    def mix(self, name: str, p: QTensor, v: QTensor) -> QTensor:
        H = p.shape[0]
        vr = QTensor(_repeat_kv(v.values, H), v.fmt, None if v.codes is None else _repeat_kv(v.codes, H))
        tp = self._tp(name)
        n = p.shape[-1]
        if self.fixed:
            o, det = self._fixed_mix(name, p, vr)
        else:
            # per-head products; an MX output is block-quantised once, after the heads are joined
            mx_out = not isinstance(parse_format(tp.format), (FixedFormat, FloatFormat)) if tp.format != "float64" else False
            out_fmt = "fp32" if mx_out else tp.format
            outs = [self._mm(p[h], QTensor(vr.values[h], vr.fmt, None if vr.codes is None else vr.codes[h], None),
                             out_fmt, tp.acc, tp.rounding, tp.overflow) for h in range(H)]
            o = QTensor(np.stack([x.values for x in outs]), outs[0].fmt,
                        None if outs[0].codes is None else np.stack([x.raw_codes for x in outs]))
            det = {"mx_after_concat": mx_out}
        h, s, hd = o.shape

        def cat(a: np.ndarray) -> np.ndarray:
            return a.transpose(1, 0, 2).reshape(s, h * hd)

        y = QTensor(cat(o.values), o.fmt, None if o.codes is None else cat(o.codes))
        if not self.fixed and det.get("mx_after_concat"):
            y = self._store(name, y.values)
        self._log(name, "mix", (self._name_of(p), self._name_of(v)), n, **det)
        return self._finish(name, y)

    def act(self, name: str, h: QTensor, *, kind: str) -> QTensor:
        if self.fixed:
            y, det = self._fixed_act(name, h, kind)
        else:
            y, det = self._store(name, activation(kind, h.values)), {}
        self._log(name, "act", (self._name_of(h),), 0, act=kind, **det)
        return self._finish(name, y)

    def mul(self, name: str, a: QTensor, b: QTensor) -> QTensor:
        if self.fixed:
            fa, fb = a.fixed(), b.fixed()
            y = self._fixed_round(name, fa.codes * fb.codes, fa.fmt.frac + fb.fmt.frac)
        else:
            y = self._store(name, a.values * b.values)
        self._log(name, "mul", (self._name_of(a), self._name_of(b)))
        return self._finish(name, y)

    def add(self, name: str, a: QTensor, b: QTensor) -> QTensor:
        if self.fixed:
            fa, fb = a.fixed_fmt, b.fixed_fmt
            f = max(fa.frac, fb.frac)
            s = (a.raw_codes << np.int64(f - fa.frac)) + (b.raw_codes << np.int64(f - fb.frac))
            y = self._fixed_round(name, s, f)
        else:
            y = self._store(name, a.values + b.values)
        self._log(name, "add", (self._name_of(a), self._name_of(b)))
        return self._finish(name, y)

    # ---- float-plan internals ---------------------------------------------------------------
    def _work_format(self, name: str) -> str:
        """Format of a norm's / softmax's internal steps: the accumulator format of its policy
        (sequential / blocked), or for ``exact`` fp32 unless the storage format is wider. The
        result is then stored once in the tensor's format (e.g. fp8: compute in fp32, store e4m3)."""
        tp = self._tp(name)
        pol = acc.parse_policy(tp.acc)
        if isinstance(pol, (acc.Sequential, acc.Blocked)):
            return str(pol.fmt)
        f = parse_format(tp.format) if tp.format != "float64" else None
        if f is None:
            return "float64"
        if isinstance(f, FloatFormat) and f.man >= 23:
            return tp.format
        return "fp32"

    def _float_norm(self, name: str, x: QTensor, gamma: QTensor, beta: QTensor | None, *, kind: str, eps: float,
                    scale: float) -> tuple[QTensor, dict[str, Any]]:
        tp = self._tp(name)
        W, pol, rnd = self._work_format(name), tp.acc, tp.rounding
        st = lambda v: store(v, W, rnd, tp.overflow)  # noqa: E731  one rounding into the work format
        d = x.shape[-1]
        lead = x.shape[:-1]
        xs = st(x.values / scale) if scale != 1.0 else st(x.values)
        x2 = xs.values.reshape(-1, d)
        ones = QTensor(np.ones((d, 1)))
        eps_s = store(np.array(eps / (scale * scale)), self.plan.units.norm_eps)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if kind == "layernorm":
                ssum = self._mm(QTensor(x2, xs.fmt, None if xs.codes is None else xs.codes.reshape(-1, d)),
                                ones, W, pol, rnd, tp.overflow)
                mean = st(ssum.values / d)
                c = st(x2 - mean.values)
            else:
                c = QTensor(x2, xs.fmt, None if xs.codes is None else xs.codes.reshape(-1, d))
            sq = self._square(c)
            V = self._mm(sq, ones, W, pol, rnd, tp.overflow)
            var = st(V.values / d)
            ve = st(var.values + eps_s.values)
            r = st(1.0 / np.sqrt(ve.values))
            n = st(c.values * r.values)
            pre = n.values * gamma.values
            y = st(pre)
            if beta is not None:
                pre = y.values + beta.values
                y = st(pre)
        if W != tp.format:
            out = self._store(name, y.values.reshape(lead + (d,)))
        else:
            self._pre[name] = pre.reshape(lead + (d,))
            out = QTensor(y.values.reshape(lead + (d,)), y.fmt, None if y.codes is None else y.codes.reshape(lead + (d,)))
        return out, {"eps_format": self.plan.units.norm_eps, "work_format": W,
                     "var_nonfinite": int(np.count_nonzero(~np.isfinite(V.values)))}

    @staticmethod
    def _square(c: QTensor) -> QTensor:
        """c*c held exactly: in a float format with twice the significand (and one more exponent
        bit), or float64 for float64 / MX values."""
        v = c.values * c.values
        if isinstance(c.fmt, FloatFormat):
            wide = FloatFormat(min(c.fmt.exp + 1, 11), min(2 * c.fmt.man + 1, 50), name=None)
            return store(v, str(wide))
        return QTensor(v)

    def _float_softmax(self, name: str, s: QTensor, allowed: np.ndarray,
                       shifted: bool) -> tuple[QTensor, dict[str, Any]]:
        tp = self._tp(name)
        F, pol, rnd = self._work_format(name), tp.acc, tp.rounding
        st = lambda v: store(v, F, rnd, tp.overflow)  # noqa: E731  internal steps in the work format
        sv = s.values
        with np.errstate(over="ignore", invalid="ignore"):
            if shifted:
                m = np.max(np.where(allowed, sv, -np.inf), axis=-1, keepdims=True)
                dd = st(np.where(allowed, sv - m, 0.0))
                e = st(np.where(allowed, exp(dd.values), 0.0))  # reproducible exp (ops)
            else:
                e = st(np.where(allowed, exp(np.where(allowed, sv, 0.0)), 0.0))
            n = sv.shape[-1]
            e2 = e.values.reshape(-1, n)
            ones = QTensor(np.ones((n, 1)))
            S = self._mm(QTensor(e2, e.fmt, None if e.codes is None else e.codes.reshape(-1, n)), ones, F, pol, rnd,
                         tp.overflow) if np.all(np.isfinite(e2)) else QTensor(e2.sum(axis=-1, keepdims=True))
            Sv = S.values.reshape(sv.shape[:-1] + (1,))
            p = np.where(allowed, e.values / Sv, 0.0)
            if F == tp.format:  # one rounding of e / S
                self._pre[name] = p
                y = st(p)
            else:
                y = self._store(name, p)
        return y, {"work_format": F}

    # ---- fixed-plan internals ---------------------------------------------------------------
    def _fixed_round(self, name: str, codes: np.ndarray, frac: int) -> QTensor:
        """Exact int64 codes with ``frac`` fractional bits -> the tensor's fixed format: one
        rounding (tensor rounding mode) then saturation/wrap (tensor overflow)."""
        tp = self._tp(name)
        fmt = _fixed_format(tp.format)
        self._pre[name] = np.ldexp(np.asarray(codes, dtype=np.float64), -frac)
        c = round_shift(codes, frac - fmt.frac, tp.rounding) if frac >= fmt.frac else codes << np.int64(fmt.frac - frac)
        c = apply_overflow(c, fmt, tp.overflow, what=f"tensor {name}")
        return QTensor(FixedArray(c, fmt).to_float(), fmt, c)

    def _accumulator(self, name: str, a_fmt: FixedFormat, w_fmt: FixedFormat, K: int) -> tuple[int, int, int, Any]:
        """(a_w, w_w, acc_w, overflow) of tensor ``name``'s MAC: the plan's fixed accumulator, or
        for other policies an exact one (``a_w + w_w + clog2(K)`` bits, at most 62)."""
        tp = self._tp(name)
        pol = acc.parse_policy(tp.acc)
        a_w = a_fmt.width + (0 if a_fmt.signed else 1)  # unsigned operands enter zero-extended
        w_w = w_fmt.width + (0 if w_fmt.signed else 1)
        need = a_w + w_w + _clog2(K)
        if isinstance(pol, acc.FixedAccumulator):
            if pol.frac is not None and pol.frac != a_fmt.frac + w_fmt.frac:
                raise ValueError(f"tensor {name}: accumulator {tp.acc} must hold products at their own fraction "
                                 f"{a_fmt.frac + w_fmt.frac} (omit the .frac: acc:s{pol.width}:...)")
            if pol.width < a_w + w_w:
                raise ValueError(f"tensor {name}: accumulator {tp.acc} ({pol.width} bits) cannot hold one "
                                 f"{a_w}x{w_w}-bit product ({a_fmt} x {w_fmt}; K={K} needs {need} bits)")
            return a_w, w_w, pol.width, pol.overflow
        return a_w, w_w, min(max(need, a_w + w_w), 62), Overflow.WRAP

    def _mac_params(self, name: str, a_fmt: FixedFormat, w_fmt: FixedFormat, K: int, bias_fmt: FixedFormat | None,
                    extra_shift: int = 0, out_fmt: FixedFormat | None = None) -> tuple[MacParams, FixedFormat]:
        from ..numerics.units.mac import MacParams

        tp = self._tp(name)
        out = out_fmt or _fixed_format(tp.format)
        a_w, w_w, acc_w, ovf = self._accumulator(name, a_fmt, w_fmt, K)
        pf = a_fmt.frac + w_fmt.frac
        shift = pf - out.frac + extra_shift
        if shift < 0:
            raise ValueError(f"tensor {name}: output {out} has more fraction bits than the products ({pf}: "
                             f"{a_fmt} x {w_fmt})")
        kw: dict[str, Any] = {}
        if bias_fmt is not None:
            lsh = max(pf - bias_fmt.frac, 0)  # a finer bias is first rounded to the accumulator LSB
            kw = {"b_w": min(bias_fmt.width, acc_w - lsh), "bias_lsh": lsh}
        return MacParams(a_w=a_w, w_w=w_w, acc_w=acc_w, out_w=out.width, shift=shift,
                         rounding=Rounding.parse(tp.rounding), acc_overflow=ovf, **kw), out

    def _fixed_matmul(self, name: str, x: QTensor, w: QTensor, b: QTensor | None) -> tuple[QTensor, dict[str, Any]]:
        """Fixed plans: exact MAC into the accumulator, bias preloaded, one requantising shift.
        A per-tensor power-of-two weight scale is already in the weight's format (``s8.7`` x 2^e
        is ``s8.(7-e)``), so it is part of that shift; other scales go through
        :meth:`_fixed_matmul_requant`."""
        sc = w.scale
        if sc is not None and not sc.absorbed:
            return self._fixed_matmul_requant(name, x, w, b)
        K = x.shape[-1]
        p, out = self._mac_params(name, x.fixed_fmt, w.fixed_fmt, K, None if b is None else b.fixed_fmt)
        det: dict[str, Any] = {"mac": p}
        if sc is not None:
            det["weight_scale"] = self._scale_info(sc, "mac shift")
        bias = None
        if b is not None:
            pf = x.fixed_fmt.frac + w.fixed_fmt.frac
            bias = b.raw_codes
            if b.fixed_fmt.frac > pf:  # bias finer than the accumulator LSB: rounded once, offline (rne)
                bias = round_shift(bias, b.fixed_fmt.frac - pf, Rounding.RNE)
                det["bias_requant"] = {"from": str(b.fixed_fmt), "frac": pf}
            lim = (1 << (p.b_w - 1)) - 1
            bias = np.clip(bias, -lim - 1, lim)
        codes = _mac_matmul(x.raw_codes, w, p, bias)
        return QTensor(FixedArray(codes, out).to_float(), out, codes), det

    def _fixed_matmul_requant(self, name: str, x: QTensor, w: QTensor,
                              b: QTensor | None) -> tuple[QTensor, dict[str, Any]]:
        """Fixed plans, per-channel (or float) weight scale: the hardware-style epilogue.

        ``acc_c = b_acc_c + sum_k x_k q_ck`` exact in the plan's accumulator (``s{ACC_W}``, wrap or
        saturate), with the bias rounded offline (rne) into accumulator units of its channel,
        ``b_acc_c = round(b_c 2^pf / s_c)`` (``pf`` = x frac + element frac); then
        ``y_c = sat(round(acc_c * M_c / 2^SHIFT))`` by :func:`units.requant.requant` with the
        tensor's rounding, ``M_c / 2^SHIFT ~= s_c 2^(out_frac - pf)``
        (:func:`units.requant.choose_channel_multipliers`: ``units.requant_m_w``-bit
        multipliers, one shared SHIFT)."""
        from ..numerics.units.mac import MacParams, matmul_acc_int
        from ..numerics.units.requant import RequantParams, choose_channel_multipliers, requant

        tp = self._tp(name)
        out = _fixed_format(tp.format)
        K, N = x.shape[-1], w.shape[0]
        sc = w.scale
        assert sc is not None  # _fixed_matmul's case: a scale not absorbed into the format
        a_w, w_w, acc_w, ovf = self._accumulator(name, x.fixed_fmt, w.fixed_fmt, K)
        pf = x.fixed_fmt.frac + w.fixed_fmt.frac
        m_w = self.plan.units.requant_m_w
        key = ("requant", name, id(sc), pf, out.frac, m_w)
        if key not in self._unit_cache:
            reals = np.broadcast_to(np.ldexp(sc.values, out.frac - pf), (N,))
            try:
                self._unit_cache[key] = choose_channel_multipliers(reals, m_w)
            except ValueError as e:
                raise ValueError(f"tensor {name}: {e}") from None
        M, SH = self._unit_cache[key]
        bias = None if b is None else _bias_in_acc_units(b, np.broadcast_to(sc.values, (N,)), pf)
        b_w = 1 if bias is None else max(int(np.abs(bias).max()).bit_length() + 1, 2)
        if b_w > acc_w:
            raise ValueError(f"tensor {name}: the bias in accumulator units needs {b_w} bits, the accumulator "
                             f"{tp.acc} has {acc_w}")
        pacc = MacParams(a_w=a_w, w_w=w_w, acc_w=acc_w, out_w=acc_w, shift=0, rounding=Rounding.parse(tp.rounding),
                         acc_overflow=ovf, b_w=b_w, bias_lsh=0)
        accs = matmul_acc_int(x.raw_codes, w.raw_codes.T, pacc, bias)
        in_w = min(acc_w, max(a_w + w_w + _clog2(K), b_w) + 1)  # every accumulator value fits
        try:
            rq = RequantParams(in_w=in_w, m_w=m_w, shift=SH, out_w=out.width, rounding=Rounding.parse(tp.rounding))
        except ValueError as e:
            raise ValueError(f"tensor {name}: {e}") from None
        codes = requant(accs, M, rq)
        info = self._scale_info(sc, "per-channel requant multiplier")
        det: dict[str, Any] = {"mac": pacc, "requant": rq, "multipliers": M, "weight_scale": info,
                               "weight_scale_values": sc.values}
        if b is not None:
            det["bias_requant"] = {"from": str(b.fixed_fmt), "frac": pf, "per_channel": True, "rounding": "rne"}
        return QTensor(FixedArray(codes, out).to_float(), out, codes), det

    def _fixed_scores(self, name: str, q: QTensor, kr: QTensor, scale: float,
                      allowed: np.ndarray) -> tuple[QTensor, dict[str, Any]]:
        from ..numerics.units.mac import MacParams, matmul_acc_int
        from ..numerics.units.requant import RequantParams, choose_multiplier, requant

        tp = self._tp(name)
        out = _fixed_format(tp.format)
        hd = q.shape[-1]
        p, _ = self._mac_params(name, q.fixed_fmt, kr.fixed_fmt, hd, None)
        pacc = MacParams(a_w=p.a_w, w_w=p.w_w, acc_w=p.acc_w, out_w=p.acc_w, shift=0, rounding=p.rounding,
                         acc_overflow=p.acc_overflow)
        accs = np.stack([matmul_acc_int(q.raw_codes[h], kr.raw_codes[h].T, pacc) for h in range(q.shape[0])])
        pf = q.fixed_fmt.frac + kr.fixed_fmt.frac
        real = scale * 2.0 ** (out.frac - pf)
        m_w = self.plan.units.requant_m_w
        M, sh = choose_multiplier(real, m_w)
        in_w = min(p.acc_w, p.a_w + p.w_w + _clog2(hd))  # every accumulator value fits this width
        rq = RequantParams(in_w=in_w, m_w=m_w, shift=sh, out_w=out.width, rounding=Rounding.parse(tp.rounding))
        codes = np.where(allowed, requant(accs, M, rq), 0)
        return QTensor(FixedArray(codes, out).to_float(), out, codes), {
            "scale": scale, "mac": pacc, "requant": rq, "multiplier": M, "scale_exact": M / 2.0**sh == real}

    def _fixed_mix(self, name: str, p: QTensor, vr: QTensor) -> tuple[QTensor, dict[str, Any]]:
        from ..numerics.units.mac import matmul_int

        n = p.shape[-1]
        prm, out = self._mac_params(name, p.fixed_fmt, vr.fixed_fmt, n, None)
        codes = np.stack([matmul_int(p.raw_codes[h], vr.raw_codes[h], prm) for h in range(p.shape[0])])
        return QTensor(FixedArray(codes, out).to_float(), out, codes), {"mac": prm}

    def _softmax_params(self, s_fmt: FixedFormat, p_fmt: FixedFormat, n: int) -> SoftmaxParams:
        from ..numerics.units.softmax import SoftmaxParams

        u = self.plan.units
        if p_fmt.signed:
            raise ValueError(f"tensor probs: the softmax unit outputs unsigned codes; use u<W>.<F>, not {p_fmt}")
        key = ("softmax", s_fmt, p_fmt, n)
        if key not in self._unit_cache:
            n_max = 1 << _clog2(max(n, 2))
            self._unit_cache[key] = SoftmaxParams(in_w=s_fmt.width, in_f=s_fmt.frac, n_max=n_max, lut_bits=u.softmax_lut_bits,
                                                  lut_w=u.softmax_lut_w, guard=u.softmax_guard_bits, out_w=p_fmt.width,
                                                  out_f=p_fmt.frac,
                                                  **({"k": u.softmax_recip_k} if u.softmax_recip_k else {}))
        return self._unit_cache[key]

    def _fixed_softmax(self, name: str, s: QTensor, allowed: np.ndarray,
                       shifted: bool) -> tuple[QTensor, dict[str, Any]]:
        from ..numerics.units.softmax import softmax as sm

        if not shifted:
            raise ValueError("the integer softmax unit is always max-subtracted (shifted); "
                             "set softmax_shifted = true for fixed-point plans")
        out = _fixed_format(self._tp(name).format)
        prm = self._softmax_params(s.fixed_fmt, out, s.shape[-1])
        codes = sm(s.raw_codes, prm, masked=~allowed)
        return QTensor(FixedArray(codes, out).to_float(), out, codes), {"softmax": prm}

    def _fixed_act(self, name: str, h: QTensor, kind: str) -> tuple[QTensor, dict[str, Any]]:
        from ..numerics.units.activation import ActParams, act_lookup, act_table

        tin = _fixed_format(self.plan.units.act_table_in)
        out = _fixed_format(self._tp(name).format)
        c = round_shift(h.raw_codes, h.fixed_fmt.frac - tin.frac, self._tp(name).rounding) if h.fixed_fmt.frac >= tin.frac \
            else h.raw_codes << np.int64(tin.frac - h.fixed_fmt.frac)
        c = apply_overflow(c, tin, Overflow.SATURATE)
        key = ("act", kind, tin, out)
        if key not in self._unit_cache:
            self._unit_cache[key] = (ActParams(kind, tin, out), act_table(kind, tin, out))
        prm, table = self._unit_cache[key]
        codes = act_lookup(c, table, prm)
        return QTensor(FixedArray(codes, out).to_float(), out, codes), {"act_params": prm, "table_in": str(tin)}

    def _fixed_norm(self, name: str, x: QTensor, gamma: QTensor, beta: QTensor | None, *, kind: str, eps: float,
                    scale: float) -> tuple[QTensor, dict[str, Any]]:
        from ..numerics.units.norm import NormParams, norm_int, with_eps

        tp = self._tp(name)
        out = _fixed_format(tp.format)
        k = int(round(math.log2(scale))) if scale != 1.0 else 0
        if scale != 1.0 and 2.0**k != scale:
            raise ValueError(f"norm {name}: fixed-point plans apply SLaNC as a shift; scale {scale} is not a power of "
                             f"two (set slanc_pow2 = true)")
        if k < 0:
            k = 0
        rnd = tp.rounding if tp.rounding in ("half_up", "rne") else "half_up"
        b_fmt = beta.fixed_fmt if beta is not None else FixedFormat(2, gamma.fixed_fmt.frac)
        prm = NormParams(d=x.shape[-1], in_fmt=x.fixed_fmt, shift=k, rms=(kind == "rmsnorm"), gamma_fmt=gamma.fixed_fmt,
                         beta_fmt=b_fmt, out_fmt=out, out_rounding=Rounding.parse(rnd))
        prm = with_eps(prm, eps)
        bc = beta.raw_codes if beta is not None else np.zeros(x.shape[-1], dtype=np.int64)
        codes = norm_int(x.raw_codes, gamma.raw_codes, bc, prm)
        return QTensor(FixedArray(codes, out).to_float(), out, codes), {"norm_params": prm, "shift": k}


def _exact_blas_product(a: QTensor, b: QTensor, policy: str) -> np.ndarray | None:
    """The exact float64 value of ``a @ b`` from one BLAS call when it provably cannot round, else
    None. Both operands must be minifloat tensors: every value is a multiple of the format's
    smallest quantum 2^(emin - man) and at most its max, so every partial sum, in any order, is a
    multiple of 2^(qa + qb) below K * max_a * max_b; when that is below 2^53 * 2^(qa + qb) each
    one is a float64 (the argument of :mod:`refmodel.numerics.accumulate`, whose exact policy then
    rounds the same value once). Only for the ``exact`` policy."""
    if policy.strip() != "exact" or not (isinstance(a.fmt, FloatFormat) and isinstance(b.fmt, FloatFormat)):
        return None
    K = a.shape[-1]
    qa, qb = a.fmt.emin - a.fmt.man, b.fmt.emin - b.fmt.man
    if not K * a.fmt.max * b.fmt.max < math.ldexp(2.0**53 * (1 - 2.0**-20), qa + qb):
        return None
    bv = b.f64_t if b.f64_t is not None else b.values
    return a.values @ bv


#: unit roundoff of float64
_U64 = 2.0**-53


def _bit_range(v: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row (axis=1) or column (axis=0) of float64 ``v``: (H, L) with every nonzero |value| <
    2^H and an integer multiple of 2^L (an all-zero line gives H - L hugely negative)."""
    nz = v != 0
    H, L = acc._float_bits(np.where(nz, v, 1.0))
    return np.where(nz, H, -(1 << 20)).max(axis=axis), np.where(nz, L, 1 << 20).min(axis=axis)


def _certified_exact_product(a: QTensor, b: QTensor, policy: str, fmt: FixedFormat | FloatFormat,
                             rounding: str) -> QTensor | None:
    """``acc.matmul(as_operand(a), as_operand(b), "exact", fmt, rounding)`` -- the exact a @ b
    rounded once into the float format ``fmt`` -- from one float64 BLAS product Y, for minifloat
    or MX operands (MX values lie within 2^-136 .. 2^137, so products and sums stay far from
    float64's underflow and overflow; minifloats are held to the same). Each element is settled
    by the first of three arguments that applies:

    1. exact: row m of ``a`` and column n of ``b`` have nonzero values below 2^Ha, 2^Hb and integer
       multiples of 2^La, 2^Lb; when ceil(log2 K) + Ha + Hb - La - Lb <= 53 every partial sum, in
       any order, is a float64, so Y[m, n] is the exact sum (the argument of :mod:`accumulate`,
       per element instead of per format);
    2. certified rounding: Y differs from the exact S by at most gamma_K * sum_k |a_k b_k|
       (gamma_K = K u / (1 - K u), u = 2^-53; Higham, Accuracy and Stability of Numerical
       Algorithms, eq. 3.5, any summation order, FMA or not), and sum_k |a_k b_k| <= ||a|| ||b||
       (Cauchy-Schwarz). With e = 2 gamma_K ||a|| ||b|| (the factor 2 covers the float64 rounding
       of the norms, of e and of Y -+ e), S lies in [Y - e, Y + e]; rounding is monotone, so where
       Y - e and Y + e round to the same code, that code is round(S);
    3. the rest: recomputed exactly by :func:`accumulate.matmul` on their rows and columns.
    None when the case is not this one (policy, operand kinds, stochastic rounding)."""
    if policy.strip() != "exact" or Rounding.parse(rounding) is Rounding.STOCHASTIC or not isinstance(fmt, FloatFormat):
        return None
    for t in (a, b):
        if not (isinstance(t.fmt, FloatFormat) or (t.mx is not None and t.fmt is not None)):
            return None
        if isinstance(t.fmt, FloatFormat) and (t.fmt.emax > 255 or t.fmt.emin - t.fmt.man < -300):
            return None  # products and sums stay far from float64's underflow and overflow
    K = a.shape[-1]
    if K == 0 or K * _U64 >= 2.0**-20:
        return None
    rnd = Rounding.parse(rounding)
    bv = b.f64_t if b.f64_t is not None else b.values
    cache = b.prepared if b.prepared is not None else {}
    y = a.values @ bv
    codes = acc._encode(y, fmt, rnd).codes
    Ha, La = _bit_range(a.values, 1)
    if "bits" not in cache:
        cache["bits"] = _bit_range(bv, 0)
    Hb, Lb = cache["bits"]
    inexact = (Ha[:, None] + Hb[None, :]) - (La[:, None] + Lb[None, :]) > 53 - _clog2(K)
    if inexact.any():
        if "colnorm" not in cache:
            cache["colnorm"] = np.sqrt(np.einsum("ij,ij->j", bv, bv))
        na = np.sqrt(np.einsum("ij,ij->i", a.values, a.values))
        e = np.multiply.outer(na * (2.0 * K * _U64 / (1.0 - K * _U64)), cache["colnorm"])
        bad = inexact & ((acc._encode(y + e, fmt, rnd).codes != codes) | (acc._encode(y - e, fmt, rnd).codes != codes))
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            cols = np.flatnonzero(bad.any(axis=0))
            sub_a = QTensor(a.values[rows], a.fmt, None if a.codes is None else a.codes[rows], a.mx)
            sub_b = QTensor(bv[:, cols], b.fmt, None if b.codes is None else b.codes.reshape(bv.shape)[:, cols], b.mx)
            codes[np.ix_(rows, cols)] = acc.matmul(as_operand(sub_a), as_operand(sub_b), "exact", fmt, rnd).codes
    from ..numerics.minifloat import FloatArray

    arr = FloatArray(codes, fmt)
    return QTensor(arr.to_float(), fmt, arr.codes)


def _sequential_product(a: QTensor, b: QTensor, fmt: Any, policy: str, rounding: str,
                        overflow: str) -> QTensor | None:
    """``acc.matmul(as_operand(a), as_operand(b), policy, fmt, ...)`` for a sequential float
    policy on two minifloat tensors of at most 24 significand bits, without rebuilding the
    operands: the same values (``values`` decode ``codes`` exactly; a weight's transposed values
    are cached in ``f64_t``) go to the same accumulation (:func:`accumulate._seq_float`, whose
    kernel keeps its converted copy of a weight in the weight's ``prepared`` dict). None when
    the case is not that one."""
    pol = acc.parse_policy(policy)
    fa, fb = a.fmt, b.fmt
    if not (isinstance(pol, acc.Sequential) and isinstance(pol.fmt, FloatFormat) and isinstance(fmt, FloatFormat)
            and isinstance(fa, FloatFormat) and isinstance(fb, FloatFormat) and fa.man <= 23 and fb.man <= 23):
        return None
    rnd = Rounding.parse(rounding)
    if rnd is Rounding.STOCHASTIC:
        return None  # matmul raises the error
    desc = ((fa.man + 1, fa.emin - fa.man, fa.emax + 1), (fb.man + 1, fb.emin - fb.man, fb.emax + 1))
    vb = b.f64_t if b.f64_t is not None else b.values
    r: acc.Operand = acc._convert(acc._seq_float(a.values, vb, pol.fmt, rnd, desc, b.prepared), fmt, rnd,
                                  Overflow.parse(overflow))
    return QTensor(r.to_float(), r.fmt, r.codes)


def _blocked_product(a: QTensor, b: QTensor, fmt: Any, policy: str, rounding: str, overflow: str) -> QTensor | None:
    """``acc.matmul(as_operand(a), as_operand(b), policy, fmt, ...)`` for a blocked float policy
    with round to nearest even on two minifloat tensors of at most 24 significand bits, without
    rebuilding the operands: the same values go to the same kernel (:func:`accumulate._blocked_kernel`,
    which keeps its prepared copy of a weight in the weight's ``prepared`` dict); the rows it
    cannot settle are recomputed by the numpy loop of :func:`accumulate._blocked_loop`. None when
    the case is not that one."""
    pol = acc.parse_policy(policy)
    fa, fb = a.fmt, b.fmt
    if not (isinstance(pol, acc.Blocked) and isinstance(pol.fmt, FloatFormat) and isinstance(fmt, FloatFormat)
            and isinstance(fa, FloatFormat) and isinstance(fb, FloatFormat) and fa.man <= 23 and fb.man <= 23
            and Rounding.parse(rounding) is Rounding.RNE and a.values.ndim == 2 and a.values.size and b.values.size):
        return None
    desc = ((fa.man + 1, fa.emin - fa.man, fa.emax + 1), (fb.man + 1, fb.emin - fb.man, fb.emax + 1))
    vb = b.f64_t if b.f64_t is not None else b.values
    rnd, ovf = Rounding.RNE, Overflow.parse(overflow)
    what = f"{pol} accumulator"

    def rows_loop(rows: np.ndarray) -> acc.Operand:
        sub = QTensor(a.values[rows], fa, None if a.codes is None else a.codes[rows])
        return acc._blocked_loop(acc._as_op(as_operand(sub), "a"), acc._as_op(as_operand(b), "b"), pol.fmt, pol.k,
                                 rnd, ovf, what)

    r = acc._blocked_kernel(a.values, vb, pol.fmt, pol.k, desc, rows_loop, b.prepared)
    if r is None:
        return None
    out: acc.Operand = acc._convert(r, fmt, rnd, ovf)
    return QTensor(out.to_float(), out.fmt, out.codes)


def quantize_weight(plan: PrecisionPlan, name: str, w: np.ndarray) -> QTensor:
    """One weight rounded into its plan format (offline, once). Linear weights are [out, in]: MX
    blocks run along the input (reduction) axis. A scaled weight entry
    (:mod:`refmodel.layer.weightscale`) first chooses its scale from ``w`` and rounds ``w / s``.

    The returned tensor carries ``clip`` (saturated / flushed-to-zero counts; ``clip.warnings(name)``
    gives the lines to print when more than 0.1 % saturated or more than half is zero, e.g. ``s8.0``
    without a scale). The CLI commands print them; library code does not raise Python warnings, so a
    deliberately harsh plan still runs quietly under ``-W error``."""
    wp = plan.weight(name)
    a = np.asarray(w, dtype=np.float64)
    sc = None
    if wp.scaled:
        from .weightscale import quantize_scaled

        try:
            t, sc, pre = quantize_scaled(a, wp.format, wp.rounding, wp.overflow, wp.scale, wp.scale_kind, wp.scale_rule)
        except ValueError as e:
            raise ValueError(f"weight {name}: {e}") from None
    else:
        t, pre = store(a, wp.format, wp.rounding, wp.overflow, mx_axis=-1), a
    clip = count_clipping(t, pre, rounding=wp.rounding)
    if t.codes is not None and isinstance(t.fmt, FixedFormat) and t.codes.ndim == 2:
        t.f64_t = np.ascontiguousarray(t.codes.T, dtype=np.float64)  # cached BLAS operand (exact)
    elif isinstance(t.fmt, FloatFormat) and t.values.ndim == 2:
        t.f64_t = np.ascontiguousarray(t.values.T)  # decoded (element) values, transposed once
    t.all_finite = bool(np.all(np.isfinite(t.values)))
    if (sc is not None and sc.granularity == "tensor" and sc.kind == "pow2" and sc.exponents is not None
            and isinstance(t.fmt, FixedFormat)):
        ex = int(sc.exponents.reshape(-1)[0])  # s<W>.<F> x 2^e is s<W>.<F-e>: same codes, exact values
        eff = FixedFormat(t.fmt.width, t.fmt.frac - ex, t.fmt.signed)
        sc.absorbed = True
        t = QTensor(np.ldexp(t.values, ex), eff, t.codes, None, f64_t=t.f64_t, all_finite=t.all_finite, scale=sc)
    elif sc is not None:
        t = QTensor(t.values * sc.along_rows(t.values.ndim), t.fmt, t.codes, None, f64_t=t.f64_t,
                    all_finite=t.all_finite, scale=sc, elements=t.values)
    t.clip = clip
    t.prepared = {}
    return t


def _bias_in_acc_units(b: QTensor, scales: np.ndarray, pf: int) -> np.ndarray:
    """``round_rne(b_c * 2^pf / s_c)`` per channel, exactly (Python integers): ``b_c`` is a
    fixed-point bias, ``s_c`` a dyadic scale (fp32 or 2^e)."""
    from fractions import Fraction

    if not isinstance(b.fmt, FixedFormat):
        raise ValueError(f"a per-channel weight scale in a fixed plan needs a fixed-point bias, got {b.spec}")
    out = np.empty(scales.shape, dtype=np.int64)
    for c, (code, s) in enumerate(zip(b.raw_codes.tolist(), scales.tolist(), strict=True)):
        q = Fraction(code * (1 << max(pf - b.fmt.frac, 0)), 1 << max(b.fmt.frac - pf, 0)) / Fraction(s)
        fl = q.numerator // q.denominator
        r = q - fl
        out[c] = fl + (1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and fl % 2) else 0)
    return out


def _mac_matmul(a_codes: np.ndarray, w: QTensor, p: Any, bias: np.ndarray | None) -> np.ndarray:
    """``units.mac.matmul_int(a, w.codes.T, p, bias)`` bit for bit, faster: when every partial
    sum provably stays below 2^53 and inside the accumulator's range (so neither wrap nor
    saturation can act), the exact sum is one float64 BLAS product of the codes; otherwise the
    unit model itself runs."""
    from ..numerics.units.mac import matmul_int, requantize_int

    wf = getattr(w, "f64_t", None)
    K = a_codes.shape[-1]
    amax = int(np.abs(a_codes).max()) if a_codes.size else 0
    wmax = int(np.abs(w.raw_codes).max()) if w.raw_codes.size else 0
    bmax = (int(np.abs(bias).max()) << p.bias_lsh) if bias is not None and bias.size else 0
    bound = K * amax * wmax + bmax
    if wf is None or bound >= (1 << min(53, p.acc_w - 1)):
        return matmul_int(a_codes, w.raw_codes.T, p, bias)
    acc_ = (a_codes.astype(np.float64) @ wf).astype(np.int64)
    if bias is not None:
        acc_ += np.asarray(bias, dtype=np.int64) << np.int64(p.bias_lsh)
    return requantize_int(acc_, p)


class QuantizedLayer:
    """A layer prepared for a plan: weights quantized once (offline, as hardware stores them) and
    the static SLaNC scales computed; :meth:`run` is then the forward alone."""

    def __init__(self, config: LayerConfig, weights: LayerWeights, plan: PrecisionPlan | str, *,
                 slanc: Any = None) -> None:
        if isinstance(plan, str):
            plan = PrecisionPlan.from_name(plan)
        plan.check(config)
        weights.validate(config)
        self.config, self.weights, self.plan = config, weights, plan
        self.qweights = {n: quantize_weight(plan, n, weights[n]) for n in weights}
        self._slanc_arg = slanc
        self._static_slanc = None
        if slanc is None and plan.slanc and not (config.prenorm and plan.slanc_first == "input"):
            self._static_slanc = self._compute_slanc(None)

    def _compute_slanc(self, x: np.ndarray | None) -> Any:
        from .slanc import compute_slanc

        first = self.plan.slanc_first if self.config.prenorm else "none"  # bert's ln1 follows attention
        return compute_slanc(self.config, self.weights, x=x, mlp=self.plan.slanc_mlp, first=first,
                             pow2=self.plan.slanc_pow2)

    def run(self, x: np.ndarray, *, pad_mask: np.ndarray | None = None,
            positions: np.ndarray | None = None) -> LayerRun:
        slanc = self._slanc_arg
        if slanc is None and self.plan.slanc:
            slanc = self._static_slanc if self._static_slanc is not None else self._compute_slanc(x)
        elif slanc is False:
            slanc = None
        ops = QuantOps(self.plan, self.config, seq_len=np.asarray(x).shape[0], qweights=self.qweights)
        layer_forward(ops, self.config, self.weights, x, pad_mask=pad_mask, slanc=slanc,
                      softmax_shifted=self.plan.softmax_shifted, positions=positions)
        return LayerRun(self.plan, self.config, dict(ops.tensors), dict(ops.weights), ops.records, ops.stats, slanc,
                        dict(ops.clipping))


def run_quantized(
    config: LayerConfig,
    weights: LayerWeights,
    x: np.ndarray,
    plan: PrecisionPlan | str,
    *,
    slanc: Any = None,
    pad_mask: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> LayerRun:
    """Run one layer under ``plan`` (a :class:`PrecisionPlan` or preset name). ``slanc``: the
    scales to use (None: computed from the weights when ``plan.slanc``; pass ``False`` to force
    none). Checks the plan covers every tensor and weight before any work. For repeated runs of
    the same weights, build a :class:`QuantizedLayer` once."""
    return QuantizedLayer(config, weights, plan, slanc=slanc).run(x, pad_mask=pad_mask, positions=positions)
