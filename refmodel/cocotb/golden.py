"""Golden sets as a testbench sees them: codes, decoded values, per-stage inputs and outputs, and
the tolerance tiers a stage is checked against.

A golden set (``refmodel golden ...``, :mod:`refmodel.golden.generate`) is a directory with
``manifest.json`` and one ``$readmemh`` file per tensor. :class:`GoldenSet` opens it through
:mod:`refmodel.golden.manifest` (schema, sha256 and word counts checked) and hands out:

* ``codes(name)``: int64 codes whose signedness follows the tensor's *format* (a ``u16.15``
  probability of 1.0 is 32768 even where an older manifest marked the tensor ``signed``);
* ``values(name)``: the exact float64 values of those codes (fixed point, minifloat, fp32, or the
  float64 ``<name>.value`` entry of an MX tensor);
* ``stage(name)``: the stage's inputs (as the unit sees them, from ``units.<name>.inputs``), its
  output codes, its unit parameters and its tolerance tiers;
* ``tolerance(name, tier)``: one tier of the stage's tolerance, a :class:`Tolerance`.

Tolerance tiers (schema_version 2; see the manifest's ``tolerances`` object):

* ``local`` -- rigorous bound on ``|output - float64 op on the stage's own quantized inputs|``;
  what a unit bench checks;
* ``warning`` -- the statistical tier of the same local error: exceedances are warnings;
* ``end_to_end`` -- rigorous bound against the float64 reference of the whole layer.

Schema 1 sets (the committed ones) carry only the end-to-end tier (``.tol.hex`` + ``.ref.hex``);
``tiers(name)`` says what a tensor has. An infinite bound means "no guarantee" for that element.

This module does not import cocotb: pytest-side code (runners, coverage plans) uses it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refmodel.errors import CheckFailed, UserError
from refmodel.golden.hexfile import read_memh
from refmodel.golden.manifest import LoadedTensor, check_files, load_tensor, read_manifest
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.formats import parse_format
from refmodel.numerics.minifloat import FloatFormat
from refmodel.numerics.minifloat import decode as float_decode
from refmodel.resources import golden_sets_dir

__all__ = ["GoldenSet", "Stage", "Tolerance", "TIERS", "decode_codes", "golden_sets_dir", "GOLDEN_ENV"]

#: tolerance tiers, strongest claim first
TIERS = ("local", "warning", "end_to_end")
#: environment variable through which :func:`refmodel.cocotb.run_bench` names the set to the bench
GOLDEN_ENV = "RM_GOLDEN_SET"
#: the float64 pseudo-format of ``<name>.value`` entries (IEEE bit patterns as 64-bit words)
FLOAT64_SPEC = "float64"


def decode_codes(codes: np.ndarray, fmt: Any) -> np.ndarray:
    """Exact float64 values of fixed-point, minifloat or float64-bit-pattern codes."""
    c = np.asarray(codes)
    if isinstance(fmt, FixedFormat):
        return np.ldexp(c.astype(np.float64), -fmt.frac)
    if isinstance(fmt, FloatFormat):
        return float_decode(c.astype(np.int64), fmt)
    if fmt == FLOAT64_SPEC:  # 64-bit words: int64 or uint64 arrays, or Python ints (object) up to 2^64-1
        if c.dtype.kind == "O":
            c = c.astype(np.uint64)
        return c.astype(np.int64).view(np.float64) if c.dtype != np.uint64 else c.view(np.float64)
    raise UserError(f"cannot decode codes of format {fmt!r}: fixed point, minifloat or float64 expected")


@dataclass(frozen=True)
class Tolerance:
    """One tolerance tier of a tensor: elementwise ``|value - reference| <= abs`` (inf: no
    guarantee for that element). ``meta`` holds the tier's manifest keys (``max_abs``, ``inputs``,
    ``failure_probability``, ``finite_fraction``, ...)."""

    tier: str
    abs: np.ndarray
    reference: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def finite_fraction(self) -> float:
        return float(np.isfinite(self.abs).mean()) if self.abs.size else 1.0


@dataclass(frozen=True)
class Stage:
    """One stage of a golden set as a unit bench needs it.

    ``inputs`` maps the input tensor names (``units.<name>.inputs``, in the unit's order) to their
    codes; ``output`` are the golden output codes; ``unit`` is the manifest's unit entry (RTL
    parameters such as ``mac``/``requant``/``norm_params``, ``kind``, ``acc``); ``fmt`` the output
    format; ``tolerances`` the tiers the set carries for the output."""

    name: str
    inputs: dict[str, np.ndarray]
    output: np.ndarray
    fmt: Any
    unit: dict[str, Any]
    tolerances: dict[str, Tolerance]


class GoldenSet:
    """A golden set directory (see the module docstring). ``GoldenSet.open(name_or_path)`` also
    accepts the name of a set that ships with refmodel (``tiny_gpt2_hw``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self.manifest: dict[str, Any] = read_manifest(self.path)
        try:
            check_files(self.path, self.manifest)
        except CheckFailed as e:  # a damaged set is bad input to a bench, not a failed check of the DUT
            raise UserError(str(e)) from None
        #: remarks about the set a bench should print (e.g. signedness repaired on read)
        self.notes: list[str] = []
        self._cache: dict[str, LoadedTensor] = {}

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, where: str | Path) -> GoldenSet:
        """A directory, or the name of a golden set shipped with refmodel."""
        p = Path(where)
        if p.is_dir() or p.is_absolute() or len(p.parts) > 1:
            return cls(p)
        shipped = golden_sets_dir() / str(where)
        if shipped.is_dir():
            return cls(shipped)
        have = sorted(d.name for d in golden_sets_dir().iterdir() if d.is_dir()) if golden_sets_dir().is_dir() else []
        raise UserError(f"golden set {str(where)!r} not found: not a directory, and not one of the shipped "
                        f"sets ({', '.join(have) or 'none'})")

    @classmethod
    def from_env(cls, default: str | Path | None = None) -> GoldenSet:
        """The set named by ``RM_GOLDEN_SET`` (set by :func:`refmodel.cocotb.run_bench`'s ``golden=``),
        else ``default``."""
        where = os.environ.get(GOLDEN_ENV) or default
        if not where:
            raise UserError(f"no golden set: {GOLDEN_ENV} is not set (pass golden= to run_bench)")
        return cls.open(where)

    # ---- manifest ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def schema_version(self) -> int:
        return int(self.manifest["schema_version"])

    @property
    def units(self) -> dict[str, Any]:
        """Per-stage unit entries (``kind``, ``inputs``, RTL parameter dicts)."""
        return dict(self.manifest.get("units", {}))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.manifest.get("config", {}))

    def names(self, role: str | None = None) -> list[str]:
        """Tensor names (``role``: input | weight | output | table to filter)."""
        return [n for n, e in self.manifest["tensors"].items() if role is None or e.get("role") == role]

    def entry(self, name: str) -> dict[str, Any]:
        try:
            return self.manifest["tensors"][name]
        except KeyError:
            raise UserError(f"golden set {self.name} has no tensor {name!r}; it has: "
                            f"{', '.join(self.manifest['tensors'])}") from None

    def file(self, name: str) -> Path:
        """Absolute path of the tensor's ``.hex`` file (e.g. a ROM the RTL loads with $readmemh)."""
        return self.path / self.entry(name)["file"]

    def fmt(self, name: str) -> Any:
        """The tensor's format object (FixedFormat, FloatFormat, or ``"float64"``; an MX stage's
        is ``"float64"``, see :meth:`codes`)."""
        spec = self.entry(self._tier_entry(name))["format"]
        return FLOAT64_SPEC if spec == FLOAT64_SPEC else parse_format(spec)

    # ---- tensors -------------------------------------------------------------------------
    def _tensor(self, name: str) -> LoadedTensor:
        if name not in self._cache:
            self.entry(name)
            t = load_tensor(self.path, name, self.manifest)
            e = t["entry"]
            f = self.fmt(name)
            w = int(e["word_width"])
            raw_codes = np.asarray(t["codes"])
            if w == 64 and not e["signed"]:  # 64-bit words (float64 bit patterns): the same bits as int64
                codes = np.asarray(raw_codes, dtype=np.uint64).view(np.int64)
            else:
                codes = np.asarray(raw_codes, dtype=np.int64)
            spec_signed = bool(f.signed) if isinstance(f, FixedFormat) else False
            if spec_signed != bool(e["signed"]):
                raw = codes & np.int64((1 << w) - 1) if w < 64 else codes
                codes = (raw ^ (1 << (w - 1))) - (1 << (w - 1)) if spec_signed else raw
                self.notes.append(f"{self.name}/{name}: manifest says signed={e['signed']} but the format is "
                                  f"{e['format']}; codes read as the format says")
            t["codes"] = codes
            self._cache[name] = t
        return self._cache[name]

    def codes(self, name: str) -> np.ndarray:
        """int64 codes in the tensor's shape (signedness from the format spec). An MX stage ``q``
        (element codes ``q.elem`` and scales ``q.scale``) has as its codes the float64 bit patterns
        of its exact values, the ``q.value`` entry that carries its tolerances: a DUT that emits
        elements and scales is compared after decoding them to float64."""
        return self._tensor(self._tier_entry(name))["codes"]

    def values(self, name: str) -> np.ndarray:
        """Exact float64 values of the tensor (for an MX tensor ``q``: its ``q.value`` entry)."""
        return decode_codes(self.codes(name), self.fmt(name))

    # ---- stages and tolerances -----------------------------------------------------------
    def stages(self) -> list[str]:
        """Names of the computed stages (tensors with a unit entry, MX stages by their unit name),
        in manifest order."""
        t = self.manifest["tensors"]
        return [n for n in self.units if n in t or f"{n}.value" in t]

    def inputs(self, stage: str) -> list[str]:
        """The stage's input tensor names, in the unit's order (``units.<stage>.inputs``)."""
        try:
            return list(self.units[stage]["inputs"])
        except KeyError:
            raise UserError(f"golden set {self.name}: {stage!r} is not a stage (stages: "
                            f"{', '.join(self.stages())})") from None

    def stage(self, name: str) -> Stage:
        """Inputs, output, unit parameters and tolerance tiers of one stage."""
        t = self.manifest["tensors"]
        ins = {n: self.codes(n) for n in self.inputs(name) if n in t or f"{n}.value" in t}
        return Stage(name=name, inputs=ins, output=self.codes(name), fmt=self.fmt(name), unit=self.units[name],
                     tolerances={t: tol for t in TIERS if (tol := self.tolerance(name, t)) is not None})

    def _tier_entry(self, name: str) -> str:
        """The manifest entry that carries a tensor's tolerances (MX: ``<name>.value``)."""
        if name not in self.manifest["tensors"] and f"{name}.value" in self.manifest["tensors"]:
            return f"{name}.value"
        self.entry(name)
        return name

    def tiers(self, name: str) -> list[str]:
        """The tolerance tiers the set carries for a tensor (possibly none)."""
        return [t for t in TIERS if self.tolerance(name, t) is not None]

    def tolerance(self, name: str, tier: str = "local") -> Tolerance | None:
        """One tolerance tier of a tensor, or None when the set does not carry it."""
        if tier not in TIERS:
            raise UserError(f"unknown tolerance tier {tier!r}: one of {', '.join(TIERS)}")
        key = self._tier_entry(name)
        t = self._tensor(key)
        e = t["entry"]
        shape = tuple(e["shape"])
        loaded = t.get("tolerances")
        if isinstance(loaded, dict):  # the manifest reader already decoded the tiers
            if tier not in loaded:
                return None
            d = dict(loaded[tier])
            a, ref = d.pop("abs"), d.pop("reference")
            return Tolerance(tier, np.asarray(a, dtype=np.float64).reshape(shape),
                             np.asarray(ref, dtype=np.float64).reshape(shape), d)
        tiers = e.get("tolerances")
        if isinstance(tiers, dict):
            if tier not in tiers:
                return None
            meta = dict(tiers[tier])
            count = int(np.prod(shape)) if shape else 1
            a = _read_f64(self.path / meta.pop("abs_file"), count).reshape(shape)
            ref = _read_f64(self.path / meta.pop("reference"), count).reshape(shape)
            return Tolerance(tier, a, ref, meta)
        # schema 1: the end-to-end bound is the entry's compare + reference
        if tier != "end_to_end" or "tolerance" not in t or "reference" not in t:
            return None
        meta = {k: v for k, v in e["compare"].items() if k != "abs_file"} if isinstance(e["compare"], dict) else {}
        if e.get("no_guarantee"):
            meta["no_guarantee"] = e["no_guarantee"]
        return Tolerance(tier, np.asarray(t["tolerance"], dtype=np.float64),
                         np.asarray(t["reference"], dtype=np.float64), meta)


def _read_f64(path: Path, count: int) -> np.ndarray:
    """float64 bit patterns, 16 hex digits a line (``.ref.hex``, ``.tol.hex`` and the tier files)."""
    words = read_memh(path, 64, count=count)
    return np.array([int(w) for w in words.tolist()], dtype=np.uint64).view(np.float64)
