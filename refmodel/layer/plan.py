"""PrecisionPlan: the number format and accumulation policy of every tensor and weight of a layer.

A plan is data (typed dataclasses; every knob has a default and a help string, see
:func:`plan_schema`), keyed by the stable tensor names of :func:`refmodel.layer.forward.tensor_names`
(any arch) and the weight names of :mod:`refmodel.layer.weights`. It round-trips through JSON and
TOML and prints as a table. The quantized layer reads it; this module only validates it.

* **format** strings: ``float64`` (no quantisation) or anything
  :func:`refmodel.numerics.formats.parse_format` accepts: fixed ``s16.12`` / ``u8.8``, minifloat
  ``fp16``, ``bf16``, ``e4m3fn``, ``e5m2:sat``..., MX block ``mxfp8_e4m3``...
* **acc** (accumulation policy of the op that produces the tensor: dot products of linear /
  scores / mix, the mean and variance sums of a norm, the softmax denominator; ignored by
  elementwise ops) strings, parsed by :func:`refmodel.numerics.accumulate.parse_policy`: ``exact``
  (infinitely precise sum, one rounding into ``format``), ``sequential:<fmt>`` (round after each
  add, in index order), ``blocked:<fmt>:<k>`` (exact within blocks of k, rounded between blocks),
  ``acc:<s|u><width>[.<frac>]:<wrap|sat|error>`` (a fixed-point accumulator register). They are
  stored as the strings given.
* **rounding** (:class:`refmodel.numerics.rounding.Rounding` values) and **overflow** (``wrap |
  saturate | error``, fixed formats; minifloats use their own overflow policy) apply when a value
  is rounded into ``format``.

File form (JSON object or TOML document): top-level knobs, ``[units]``, ``[tensors.<name>]`` and
``[weights.<name>]`` tables. ``base = "<preset>"`` starts from a preset and overrides only what the
file gives. Unknown keys raise ``ValueError`` naming the key path (e.g. ``tensors.q.acc``).

Presets (:data:`PRESET_NAMES`, ``refmodel plan`` lists what each does): float64, fp32, fp16 (fp16
storage, fp32 accumulation), fp16-acc16 (fp16 accumulation too), bf16, fp8, mxfp8, fixed16, hw.

Weight scales (``[weights.<name>]`` keys ``scale``, ``scale_kind``, ``scale_rule``): integer or
minifloat codes times a per-tensor or per-output-channel scale chosen offline from the weights,
e.g. int8 weights with one fp32 scale per output channel::

    base = "fixed16"
    [weights.wq]
    format = "s8.0"
    scale = "channel"
    scale_kind = "float"
    scale_rule = "maxabs"

The quantized layer computes with the codes and applies the scale in the matmul epilogue
(:mod:`refmodel.layer.quantized`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..numerics.rounding import Overflow, Rounding
from .config import LayerConfig
from .forward import tensor_names
from .weights import weight_names

__all__ = [
    "TensorPrecision",
    "WeightPrecision",
    "UnitSettings",
    "PrecisionPlan",
    "PRESET_NAMES",
    "ALL_TENSORS",
    "ALL_WEIGHTS",
    "validate_format",
    "validate_acc",
    "plan_schema",
]

#: every tensor name of every arch (a plan may cover all archs at once)
ALL_TENSORS = ["x", "ln1", "q", "k", "v", "q_rope", "k_rope", "scores", "probs", "attn", "proj", "res1", "ln2",
               "gate", "up", "act", "mul", "down", "res2", "out"]
#: every weight name of every arch
ALL_WEIGHTS = ["wq", "wk", "wv", "wo", "bq", "bk", "bv", "bo", "w_gate", "w_up", "w_down", "b_up", "b_down",
               "ln1_g", "ln1_b", "ln2_g", "ln2_b"]

def _help(text: str) -> dict[str, str]:
    return {"help": text}


# =========================================================================================
# validation of spec strings
# =========================================================================================
def validate_format(spec: str, where: str = "format") -> str:
    """Check a format spec; return it stripped. ``ValueError`` names ``where`` and the spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{where}: format must be a non-empty string, got {spec!r}")
    s = spec.strip()
    if s.lower() == "float64":
        return "float64"
    from ..numerics.formats import parse_format

    try:
        parse_format(s)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return s


def validate_acc(spec: str, where: str = "acc") -> str:
    """Check an accumulation-policy string with :func:`refmodel.numerics.accumulate.parse_policy`
    (the one grammar); return it stripped. ``ValueError`` names ``where``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{where}: accumulation policy must be a non-empty string, got {spec!r}")
    from ..numerics.accumulate import parse_policy

    try:
        parse_policy(spec.strip())
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return spec.strip()


def _check_enum(value: str, enum: Any, where: str) -> str:
    try:
        return enum.parse(value).value
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


# =========================================================================================
# data model
# =========================================================================================
@dataclass(frozen=True)
class TensorPrecision:
    """Format and accumulation of one tensor (the output of the op of the same name)."""

    format: str = field(default="float64", metadata=_help(
        "storage format of the tensor: float64, fixed s<W>.<F>/u<W>.<F>, minifloat (fp16, bf16, e4m3fn...), MX block"))
    acc: str = field(default="exact", metadata=_help(
        "accumulation policy of the op's reductions: exact | sequential:<fmt> | blocked:<fmt>:<k> | "
        "acc:<s|u><width>[.<frac>]:<wrap|sat|error>; ignored by elementwise ops"))
    rounding: str = field(default="rne", metadata=_help(
        "rounding into format: rne | rtz | floor | ceil | half_up | half_away | stochastic"))
    overflow: str = field(default="saturate", metadata=_help(
        "overflow into a fixed-point format: wrap | saturate | error (minifloats use their own policy)"))

    def validated(self, where: str) -> TensorPrecision:
        return TensorPrecision(
            validate_format(self.format, f"{where}.format"),
            validate_acc(self.acc, f"{where}.acc"),
            _check_enum(self.rounding, Rounding, f"{where}.rounding"),
            _check_enum(self.overflow, Overflow, f"{where}.overflow"),
        )


@dataclass(frozen=True)
class WeightPrecision:
    """Format of one weight tensor (quantized once, offline), optionally with a scale: the codes
    are in ``format`` (the element format) and the weight is ``codes * s`` with one ``s`` per
    tensor or per output channel, chosen from the weights by ``scale_rule``
    (:mod:`refmodel.layer.weightscale`)."""

    format: str = field(default="float64", metadata=_help("storage format of the weight (same specs as tensors); "
                                                          "the element format when scaled"))
    rounding: str = field(default="rne", metadata=_help("rounding of the float64 weight into format"))
    overflow: str = field(default="saturate", metadata=_help("overflow into a fixed-point format: wrap | saturate | error"))
    scale: str = field(default="none", metadata=_help(
        "weight scale: none | tensor (one per weight) | channel (one per output row; matrices only)"))
    scale_kind: str = field(default="float", metadata=_help(
        "float (an fp32 factor; fixed plans apply it as a per-channel requant multiplier) | "
        "pow2 (2^e: a shift, per tensor folded into the requant shift)"))
    scale_rule: str = field(default="maxabs", metadata=_help(
        "how s is chosen from the weights: maxabs (max |w| at the format's max; nothing saturates) | "
        "fit (maxabs, but s >= 1: only weights that would saturate are scaled) | p<q> (the q-th "
        "percentile of |w|, e.g. p99.9; larger weights saturate and are counted)"))

    def validated(self, where: str) -> WeightPrecision:
        from .weightscale import SCALE_GRANULARITIES, SCALE_KINDS, validate_scale_rule

        w = WeightPrecision(
            validate_format(self.format, f"{where}.format"),
            _check_enum(self.rounding, Rounding, f"{where}.rounding"),
            _check_enum(self.overflow, Overflow, f"{where}.overflow"),
            self.scale, self.scale_kind, validate_scale_rule(self.scale_rule, f"{where}.scale_rule"),
        )
        if w.scale not in SCALE_GRANULARITIES:
            raise ValueError(f"{where}.scale: {w.scale!r} is not one of {', '.join(SCALE_GRANULARITIES)}")
        if w.scale_kind not in SCALE_KINDS:
            raise ValueError(f"{where}.scale_kind: {w.scale_kind!r} is not one of {', '.join(SCALE_KINDS)}")
        if w.scale != "none":
            from ..numerics.fixed import FixedFormat
            from ..numerics.formats import parse_format
            from ..numerics.minifloat import FloatFormat

            f = None if w.format == "float64" else parse_format(w.format)
            if not isinstance(f, (FixedFormat, FloatFormat)):
                raise ValueError(f"{where}.scale: a scale needs a fixed-point or minifloat element format, not "
                                 f"{w.format!r} (MX formats carry their own block scales)")
        return w

    @property
    def scaled(self) -> bool:
        return self.scale != "none"

    def describe(self) -> str:
        """``s8.0 x fp32 per channel (maxabs)``, or the format alone."""
        if not self.scaled:
            return self.format
        kind = "2^e" if self.scale_kind == "pow2" else "fp32"
        return f"{self.format} x {kind} per {self.scale} ({self.scale_rule})"

    def as_dict(self) -> dict[str, str]:
        """Plain dict; the scale keys only when a scale is set (older files stay byte-identical)."""
        d = dataclasses.asdict(self)
        if not self.scaled:
            for k in ("scale", "scale_kind", "scale_rule"):
                d.pop(k)
        return d


_UNIT_MODES = {"softmax": ("float", "exp2_lut"), "act": ("float", "table"), "rsqrt": ("float", "exact")}


@dataclass(frozen=True)
class UnitSettings:
    """How the nonlinear ops are computed. ``float`` = the formula evaluated in the tensor's format
    (float plans); the integer units model the RTL (see ``refmodel.numerics.units``). Input/output
    formats of a unit are the plan formats of its input and output tensors (softmax: scores ->
    probs; act: up|gate -> act; norm: its input -> its output). Placeholder values, to be refined
    with the RTL."""

    softmax: str = field(default="float", metadata=_help("softmax implementation: float | exp2_lut (integer unit)"))
    softmax_lut_bits: int = field(default=6, metadata=_help("exp2 LUT index fraction bits L (table of 2^L entries)"))
    softmax_lut_w: int = field(default=16, metadata=_help("exp2 LUT word width (UQ1.(w-1) entries)"))
    softmax_guard_bits: int = field(default=4, metadata=_help("guard bits G appended to the LUT value before the shift"))
    softmax_recip_k: int = field(default=0, metadata=_help("reciprocal precision K of the 2^K / sum divider; 0 = unit default"))
    act: str = field(default="float", metadata=_help("activation implementation: float | table (full lookup table)"))
    act_table_in: str = field(default="s8.4", metadata=_help("fixed-point table input format (the up/gate value is requantized to it)"))
    rsqrt: str = field(default="float", metadata=_help(
        "norm 1/sqrt implementation: float (rounded in the tensor format) | exact (the integer rsqrt unit, fixed plans)"))
    norm_eps: str = field(default="fp32", metadata=_help("format holding eps (and eps/s^2 with SLaNC); not fp16 (flushes to 0)"))
    requant_m_w: int = field(default=16, metadata=_help("multiplier width of requantization between fixed formats"))

    def validated(self, where: str = "units") -> UnitSettings:
        for k, modes in _UNIT_MODES.items():
            v = getattr(self, k)
            if v not in modes:
                raise ValueError(f"{where}.{k}: {v!r} is not one of {', '.join(modes)}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"{where}.{f.name}: must be an int >= 0, got {v!r}")
        for k in ("softmax_lut_bits", "softmax_lut_w", "requant_m_w"):
            if getattr(self, k) < 1:
                raise ValueError(f"{where}.{k}: must be >= 1, got {getattr(self, k)!r}")
        from ..numerics.formats import is_fixed_spec

        if not is_fixed_spec(self.act_table_in):
            raise ValueError(f"{where}.act_table_in: {self.act_table_in!r} must be a fixed-point format like s8.4")
        validate_format(self.act_table_in, f"{where}.act_table_in")
        validate_format(self.norm_eps, f"{where}.norm_eps")
        return self


_SLANC_MLP = ("dmx", "auth")
_SLANC_FIRST = ("none", "input", "prev")


@dataclass(frozen=True)
class PrecisionPlan:
    """A named precision plan. Construction validates every entry (``ValueError`` naming the key);
    :meth:`check` adds the completeness check for one layer config."""

    name: str = field(default="custom", metadata=_help("plan name"))
    description: str = field(default="", metadata=_help("one-line description"))
    tensors: Mapping[str, TensorPrecision] = field(default_factory=dict, metadata=_help(
        "per tensor name (x, ln1, q, ... out): format, acc, rounding, overflow"))
    weights: Mapping[str, WeightPrecision] = field(default_factory=dict, metadata=_help(
        "per weight name (wq, bq, ..., ln2_b): format, rounding, overflow"))
    slanc: bool = field(default=False, metadata=_help("apply SLaNC input scales in both norms"))
    slanc_pow2: bool = field(default=False, metadata=_help("round SLaNC scales up to 2^k and apply them as a shift"))
    slanc_mlp: str = field(default="dmx", metadata=_help("SLaNC standard-MLP formula: dmx | auth"))
    slanc_first: str = field(default="none", metadata=_help("SLaNC rule for a pre-norm layer's first norm: none | input | prev"))
    softmax_shifted: bool = field(default=True, metadata=_help("subtract the row max before exp (False shows what breaks)"))
    units: UnitSettings = field(default_factory=UnitSettings, metadata=_help("nonlinear unit implementation settings"))

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"plan name: must be a non-empty string, got {self.name!r}")
        t: dict[str, TensorPrecision] = {}
        for k, v in dict(self.tensors).items():
            if k not in ALL_TENSORS:
                raise ValueError(f"tensors.{k}: unknown tensor name; known: {', '.join(ALL_TENSORS)}")
            if not isinstance(v, TensorPrecision):
                raise ValueError(f"tensors.{k}: expected a TensorPrecision, got {type(v).__name__}")
            t[k] = v.validated(f"tensors.{k}")
        w: dict[str, WeightPrecision] = {}
        for k, wv in dict(self.weights).items():
            if k not in ALL_WEIGHTS:
                raise ValueError(f"weights.{k}: unknown weight name; known: {', '.join(ALL_WEIGHTS)}")
            if not isinstance(wv, WeightPrecision):
                raise ValueError(f"weights.{k}: expected a WeightPrecision, got {type(wv).__name__}")
            w[k] = wv.validated(f"weights.{k}")
            if w[k].scaled and k not in _MATRICES:
                raise ValueError(f"weights.{k}.scale: scales apply to the matrix weights ({', '.join(_MATRICES)}); "
                                 f"biases and norm parameters are stored in their format")
        object.__setattr__(self, "tensors", {n: t[n] for n in ALL_TENSORS if n in t})
        object.__setattr__(self, "weights", {n: w[n] for n in ALL_WEIGHTS if n in w})
        for k in ("slanc", "slanc_pow2", "softmax_shifted"):
            if not isinstance(getattr(self, k), bool):
                raise ValueError(f"{k}: must be a bool, got {getattr(self, k)!r}")
        if self.slanc_mlp not in _SLANC_MLP:
            raise ValueError(f"slanc_mlp: {self.slanc_mlp!r} is not one of {', '.join(_SLANC_MLP)}")
        if self.slanc_first not in _SLANC_FIRST:
            raise ValueError(f"slanc_first: {self.slanc_first!r} is not one of {', '.join(_SLANC_FIRST)}")
        if not isinstance(self.units, UnitSettings):
            raise ValueError(f"units: expected UnitSettings, got {type(self.units).__name__}")
        self.units.validated()

    # ---- access -------------------------------------------------------------------------
    def tensor(self, name: str) -> TensorPrecision:
        try:
            return self.tensors[name]
        except KeyError:
            raise ValueError(f"plan {self.name!r} has no entry for tensor {name!r}") from None

    def weight(self, name: str) -> WeightPrecision:
        try:
            return self.weights[name]
        except KeyError:
            raise ValueError(f"plan {self.name!r} has no entry for weight {name!r}") from None

    def missing(self, config: LayerConfig) -> list[str]:
        """Tensor and weight names ``config``'s layer needs that the plan does not cover."""
        return [f"tensors.{n}" for n in tensor_names(config) if n not in self.tensors] + [
            f"weights.{n}" for n in weight_names(config) if n not in self.weights
        ]

    def check(self, config: LayerConfig) -> PrecisionPlan:
        """Completeness for ``config``: every tensor and weight of its arch has an entry, else
        ``ValueError`` listing what is missing; then the accumulator widths
        (:mod:`refmodel.layer.accumulators`): a fixed accumulator that cannot hold the products it
        sums (``error`` policy, or narrower than one product) is refused, naming the tensor, K and
        the bits needed. Wrapping/saturating ones that may overflow are accepted;
        :meth:`accumulator_checks` states their risk."""
        miss = self.missing(config)
        if miss:
            raise ValueError(f"plan {self.name!r} is incomplete for arch {config.arch!r}: missing {', '.join(miss)}")
        bad = [c.message for c in self.accumulator_checks(config) if c.status == "refused"]
        if bad:
            raise ValueError(f"plan {self.name!r}: " + "; ".join(bad))
        return self

    def notes(self) -> list[str]:
        """Static warnings about the plan itself: integer weight formats (no fraction bits) without
        a scale, where typical weights (|w| < 1) round to 0."""
        from ..numerics.fixed import FixedFormat
        from ..numerics.formats import parse_format

        out = []
        for n, w in self.weights.items():
            f = None if w.format == "float64" else parse_format(w.format)
            if isinstance(f, FixedFormat) and f.frac <= 0 and not w.scaled:
                out.append(f"weights.{n}: {w.format} holds integers without a scale: weights below "
                           f"{f.lsb / 2:g} round to 0 (add scale = \"tensor\" or \"channel\")")
        return out

    def is_fixed_point(self, config: LayerConfig) -> bool:
        """True when every tensor of ``config``'s layer is fixed point (the integer-unit datapath)."""
        from ..numerics.fixed import FixedFormat
        from ..numerics.formats import parse_format

        specs = [self.tensor(n).format for n in tensor_names(config)]
        return all(s != "float64" and isinstance(parse_format(s), FixedFormat) for s in specs)

    def accumulator_checks(self, config: LayerConfig) -> list[Any]:
        """Every fixed accumulator of the plan for ``config``, with its status (``ok`` / ``risk``
        / ``refused``) and a message (:class:`refmodel.layer.accumulators.AccumulatorCheck`)."""
        from .accumulators import check_accumulators

        return check_accumulators(self, config)

    def summary(self) -> dict[str, str]:
        """What the plan does in four phrases: tensor storage, weights, accumulation, units."""
        def uniq(vals: list[str]) -> str:
            seen = list(dict.fromkeys(vals))
            return ", ".join(seen) if len(seen) <= 4 else ", ".join(seen[:4]) + ", ..."

        red = [t.acc for n, t in self.tensors.items() if n in _REDUCE]
        units = ("integer: softmax exp2 LUT, activation table, exact rsqrt" if self.units.softmax == "exp2_lut"
                 else "float formulas; norm and softmax sums in the accumulation format (fp32 if exact)")
        units += "; SLaNC " + (("shifts" if self.slanc_pow2 else "scales") if self.slanc else "off")
        return {"storage": uniq([t.format for t in self.tensors.values()]),
                "weights": uniq([w.describe() for n, w in self.weights.items() if n in _MATRICES]),
                "accumulation": uniq(red), "units": units}

    def replace(self, **changes: Any) -> PrecisionPlan:
        return dataclasses.replace(self, **changes)

    # ---- dict / JSON / TOML ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/TOML-ready; no None values)."""
        return {
            "name": self.name,
            "description": self.description,
            "slanc": self.slanc,
            "slanc_pow2": self.slanc_pow2,
            "slanc_mlp": self.slanc_mlp,
            "slanc_first": self.slanc_first,
            "softmax_shifted": self.softmax_shifted,
            "units": dataclasses.asdict(self.units),
            "tensors": {k: dataclasses.asdict(v) for k, v in self.tensors.items()},
            "weights": {k: v.as_dict() for k, v in self.weights.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PrecisionPlan:
        """Inverse of :meth:`to_dict`. ``base`` names a preset to start from; every key is checked
        and errors name the key path."""
        if not isinstance(d, Mapping):
            raise ValueError(f"plan: expected a table/object at top level, got {type(d).__name__}")
        top = {f.name for f in fields(cls)} | {"base"}
        for k in d:
            if k not in top:
                raise ValueError(f"plan: unknown key {k!r}; known: {', '.join(sorted(top))}")
        base = cls.from_name(_typed(d["base"], str, "base")) if "base" in d else cls()
        kw: dict[str, Any] = {}
        for k in ("name", "description", "slanc_mlp", "slanc_first"):
            if k in d:
                kw[k] = _typed(d[k], str, k)
        for k in ("slanc", "slanc_pow2", "softmax_shifted"):
            if k in d:
                kw[k] = _typed(d[k], bool, k)
        if "units" in d:
            kw["units"] = _sub(UnitSettings, d["units"], "units", base.units)
        for sect, klass, known in (("tensors", TensorPrecision, ALL_TENSORS), ("weights", WeightPrecision, ALL_WEIGHTS)):
            cur = dict(getattr(base, sect))
            if sect in d:
                tbl = _typed(d[sect], Mapping, sect)
                for name, entry in tbl.items():
                    if name not in known:
                        raise ValueError(f"{sect}.{name}: unknown {sect[:-1]} name; known: {', '.join(known)}")
                    cur[name] = _sub(klass, entry, f"{sect}.{name}", cur.get(name, klass()))
            kw[sect] = cur
        return dataclasses.replace(base, **kw)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> PrecisionPlan:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"plan JSON: {e}") from None
        return cls.from_dict(d)

    def to_toml(self) -> str:
        """TOML text (written by a tiny writer: strings, bools, ints, floats, nested tables)."""
        return _toml_dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str) -> PrecisionPlan:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # Python 3.10: the tomli backport (a dependency there)
            import tomli as tomllib
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"plan TOML: {e}") from None
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | Path) -> PrecisionPlan:
        """Read a ``.json`` or ``.toml`` plan file (errors name the file and the bad key)."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".json", ".toml"):
            raise ValueError(f"plan file {str(p)!r}: expected a .json or .toml file")
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"plan file {str(p)!r}: {e.strerror}") from None
        try:
            return cls.from_json(text) if suffix == ".json" else cls.from_toml(text)
        except ValueError as e:
            raise ValueError(f"plan file {str(p)!r}: {e}") from None

    def save(self, path: str | Path) -> Path:
        """Write ``.json`` or ``.toml`` (by suffix)."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix == ".json":
            p.write_text(self.to_json() + "\n", encoding="utf-8")
        elif suffix == ".toml":
            p.write_text(self.to_toml(), encoding="utf-8")
        else:
            raise ValueError(f"plan file {str(p)!r}: expected a .json or .toml file")
        return p

    # ---- presets --------------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str) -> PrecisionPlan:
        """A preset plan (complete for every arch). Unknown names raise ``ValueError`` listing them."""
        try:
            builder = _PRESETS[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown precision plan {name!r}; presets: {', '.join(_PRESETS)}") from None
        return builder()

    # ---- display -------------------------------------------------------------------------
    def table(self, config: LayerConfig | None = None) -> Any:
        """A ``rich.table.Table`` of the plan (only ``config``'s tensors/weights, in forward order,
        when given)."""
        from rich.table import Table

        tn = tensor_names(config) if config is not None else list(self.tensors)
        wn = weight_names(config) if config is not None else list(self.weights)
        opts = (f"slanc={'on' if self.slanc else 'off'}" + (" pow2" if self.slanc and self.slanc_pow2 else "")
                + f", softmax={'shifted' if self.softmax_shifted else 'unshifted'}"
                + f", units: softmax={self.units.softmax} act={self.units.act} rsqrt={self.units.rsqrt}")
        t = Table(title=f"precision plan {self.name!r}" + (f" ({config.arch})" if config else ""), caption=opts)
        for col in ("kind", "name", "format", "acc", "rounding", "overflow"):
            t.add_column(col)
        for n in tn:
            e = self.tensors.get(n)
            t.add_row("tensor", n, *(("-",) * 4 if e is None else (e.format, e.acc, e.rounding, e.overflow)))
        for n in wn:
            we = self.weights.get(n)
            t.add_row("weight", n, *(("-",) * 4 if we is None else (we.describe(), "", we.rounding, we.overflow)))
        return t

    def render(self, config: LayerConfig | None = None, width: int = 110) -> str:
        """The table as plain text."""
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=width, color_system=None, force_terminal=False).print(self.table(config))
        return buf.getvalue()

    def print(self, config: LayerConfig | None = None, console: Any = None) -> None:
        """Print the table with rich (to ``console`` or stdout)."""
        from rich.console import Console

        (console or Console()).print(self.table(config))


def _typed(v: Any, typ: Any, where: str) -> Any:
    ok = isinstance(v, typ) and not (typ is not bool and isinstance(v, bool))
    if not ok:
        tname = getattr(typ, "__name__", str(typ))
        raise ValueError(f"{where}: expected {tname}, got {v!r}")
    return v


def _sub(klass: Any, entry: Any, where: str, start: Any) -> Any:
    """Overlay a dict ``entry`` onto dataclass instance ``start`` with key/type checks."""
    if isinstance(entry, str) and klass in (TensorPrecision, WeightPrecision):
        entry = {"format": entry}  # shorthand: tensors.q = "fp16"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a table, got {entry!r}")
    known = {f.name: f for f in fields(klass)}
    kw = {}
    for k, v in entry.items():
        if k not in known:
            raise ValueError(f"{where}.{k}: unknown key; known: {', '.join(known)}")
        typ = int if known[k].type in ("int", int) else str
        kw[k] = _typed(v, typ, f"{where}.{k}")
    return dataclasses.replace(start, **kw)


# =========================================================================================
# TOML writer (enough for plans: scalars and nested tables)
# =========================================================================================
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a valid TOML basic string
    raise ValueError(f"TOML writer: unsupported value {v!r}")


def _toml_dumps(d: Mapping[str, Any]) -> str:
    out: list[str] = []

    def emit(tbl: Mapping[str, Any], prefix: list[str]) -> None:
        scalars = [(k, v) for k, v in tbl.items() if not isinstance(v, Mapping)]
        subs = [(k, v) for k, v in tbl.items() if isinstance(v, Mapping)]
        if prefix and (scalars or not subs):
            out.append("")
            out.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
        for k, v in scalars:
            out.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs:
            emit(v, prefix + [k])

    emit(d, [])
    return "\n".join(out).lstrip("\n") + "\n"


def plan_schema() -> list[tuple[str, str, str]]:
    """Every knob: ``(key path, default, help)``; ``<name>`` stands for a tensor/weight name."""
    rows: list[tuple[str, str, str]] = []
    for f in fields(PrecisionPlan):
        if f.name in ("tensors", "weights", "units"):
            continue
        rows.append((f.name, repr(f.default), f.metadata["help"]))
    for prefix, klass in (("units", UnitSettings), ("tensors.<name>", TensorPrecision), ("weights.<name>", WeightPrecision)):
        for f in fields(klass):
            rows.append((f"{prefix}.{f.name}", repr(f.default), f.metadata["help"]))
    return rows


# =========================================================================================
# presets
# =========================================================================================
#: tensors that are inputs of a matrix product (GEMM operands) in some arch
_GEMM_IN = ("ln1", "ln2", "q", "k", "v", "q_rope", "k_rope", "probs", "attn", "act", "mul")
#: tensors produced by a reduction (dot products, norm statistics, softmax sum)
_REDUCE = ("ln1", "ln2", "q", "k", "v", "scores", "probs", "attn", "proj", "gate", "up", "down", "out")
_MATRICES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
_BIASES = ("bq", "bk", "bv", "bo", "b_up", "b_down")
_NORM_PARAMS = ("ln1_g", "ln1_b", "ln2_g", "ln2_b")


def _uniform(name: str, desc: str, fmt: str, acc: str, wfmt: str | None = None, **kw: Any) -> PrecisionPlan:
    t = {n: TensorPrecision(fmt, acc if n in _REDUCE else "exact") for n in ALL_TENSORS}
    w = {n: WeightPrecision(wfmt or fmt) for n in ALL_WEIGHTS}
    return PrecisionPlan(name=name, description=desc, tensors=t, weights=w, **kw)


def _gemm_lowp(name: str, desc: str, lowp: str) -> PrecisionPlan:
    t = {}
    for n in ALL_TENSORS:
        t[n] = TensorPrecision(lowp if n in _GEMM_IN else "fp32", "exact")
    w = {n: WeightPrecision(lowp if n in _MATRICES else "fp32") for n in ALL_WEIGHTS}
    return PrecisionPlan(name=name, description=desc, tensors=t, weights=w)


# fixed-point activation formats. Residual stream s16.8; norm outputs s16.11 (|y| < 16);
# projections s16.8; attention probabilities u16.15 (1.0 saturates to 1 - 2^-15); GELU table input
# s14.8 (16384 entries, |x| < 32). Biases s16.12 are never finer than a product's fraction, so they
# enter the accumulator exactly (left-aligned).
_FIXED16 = {
    "x": "s16.8", "res1": "s16.8", "res2": "s16.8", "proj": "s16.8", "down": "s16.8",
    "ln1": "s16.11", "ln2": "s16.11", "q": "s16.8", "k": "s16.8", "v": "s16.8", "q_rope": "s16.8",
    "k_rope": "s16.8", "attn": "s16.10", "scores": "s16.8", "probs": "u16.15",
    "gate": "s16.10", "up": "s16.10", "act": "s16.10", "mul": "s16.10",
}
_FIXED16_ACC: dict[str, str] = {}
#: the hw plan: exactly what rtl/layer_top.v implements (same formats; 40-bit wrapping accumulators,
#: which cannot wrap for these widths and K <= 2^8 -- the bounds flag it where they could)
_HW = dict(_FIXED16)


def _fixed(name: str, desc: str, fmts: dict[str, str], acc: Mapping[str, str], default_acc: str,
           wmat: WeightPrecision, units: UnitSettings, **kw: Any) -> PrecisionPlan:
    t = {}
    for n in ALL_TENSORS:
        f = fmts.get(n, fmts["x"] if n == "out" else None)
        if f is None:
            raise AssertionError(n)
        a = acc.get(n, default_acc) if n in _REDUCE else "exact"
        t[n] = TensorPrecision(f, a)
    w = {}
    for n in ALL_WEIGHTS:
        w[n] = wmat if n in _MATRICES else WeightPrecision("s16.12" if n in _BIASES else "s16.13")
    return PrecisionPlan(name=name, description=desc, tensors=t, weights=w, units=units, **kw)


_INT_UNITS = UnitSettings(softmax="exp2_lut", act="table", act_table_in="s14.8", rsqrt="exact", norm_eps="u32.31",
                          softmax_lut_bits=8, softmax_lut_w=16, softmax_guard_bits=8)
#: fixed16 / hw matrices: s8.7 codes times a per-tensor power of two chosen from the weights, only
#: where they would saturate (``fit``): real models' weights (|w| up to ~8) do not clip, weights
#: below 1 keep s8.7 exactly. A per-tensor 2^e is a change of the requant shift (s8.7 x 2^e = s8.(7-e)).
_W8_POW2 = WeightPrecision("s8.7", scale="tensor", scale_kind="pow2", scale_rule="fit")

_PRESETS: dict[str, Callable[[], PrecisionPlan]] = {
    "float64": lambda: _uniform("float64", "everything float64, exact: the reference itself", "float64", "exact"),
    "fp32": lambda: _uniform("fp32", "fp32 storage, sequential fp32 accumulation", "fp32", "sequential:fp32"),
    "fp16": lambda: _uniform("fp16", "fp16 storage, fp32 accumulation (sequential) and fp32 norm/softmax "
                             "internals, as GPUs and torch on CPU compute fp16 models (no SLaNC)", "fp16",
                             "sequential:fp32"),
    "fp16-acc16": lambda: _uniform("fp16-acc16", "fp16 storage and sequential fp16 accumulation: dot products, "
                                   "norm sums of squares and the softmax sum all in fp16 (no SLaNC)", "fp16",
                                   "sequential:fp16"),
    "bf16": lambda: _uniform("bf16", "bf16 storage, fp32 accumulation in blocks of 32", "bf16", "blocked:fp32:32"),
    "fp8": lambda: _gemm_lowp("fp8", "e4m3fn weights and GEMM-input activations, exact accumulation, fp32 out",
                              "e4m3fn"),
    "mxfp8": lambda: _gemm_lowp("mxfp8", "MX e4m3 (block 32, e8m0 scale) weights and GEMM-input activations, "
                                "exact accumulation, fp32 out", "mxfp8_e4m3"),
    "fixed16": lambda: _fixed("fixed16", "16-bit fixed activations, s8.7 weights x a per-tensor 2^e (only where they "
                              "would saturate), 48-bit saturating accumulators, integer units (exp2-LUT softmax, "
                              "exact rsqrt, GELU table); no SLaNC (the integer norm sums exactly)",
                              _FIXED16, _FIXED16_ACC, "acc:s48:sat", _W8_POW2, _INT_UNITS, slanc=False,
                              slanc_pow2=False),
    "hw": lambda: _fixed("hw", "exactly what rtl/layer_top.v implements: fixed16 formats and weight shifts, 40-bit "
                         "wrapping MAC accumulators, exp2-LUT softmax, exact rsqrt norm unit, GELU table, SLaNC shifts",
                         _HW, {}, "acc:s40:wrap", _W8_POW2, _INT_UNITS, slanc=True, slanc_pow2=True),
}

#: names accepted by :meth:`PrecisionPlan.from_name`
PRESET_NAMES = tuple(_PRESETS)
