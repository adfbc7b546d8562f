"""Generate and verify golden vector sets for one layer under one precision plan.

A set holds the layer input, every weight (in the plan's formats, as the RTL loads them; a scaled
weight's scale vector as ``<w>.scale``), the lookup tables of the integer units, and every stage
tensor: its codes (compared bit-exactly), its float64 reference value, and its tolerance against
that reference from :mod:`refmodel.bounds`. The manifest records the config, the plan, the source of
the float64 weights and input (seed, files with their sha256, or a bundled model, see
:mod:`refmodel.golden.sources`), the SLaNC shifts and the unit parameters (as RTL parameters), so
:func:`verify_set` can regenerate the set and compare it byte for byte -- on any machine: the
float64 reference is computed only with the reproducible ops of :mod:`refmodel.layer.ops`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from refmodel import __version__
from refmodel.errors import CheckFailed, UserError
from refmodel.layer.config import LayerConfig
from refmodel.layer.plan import PrecisionPlan
from refmodel.layer.qtensor import QTensor
from refmodel.layer.quantized import LayerRun, run_quantized
from refmodel.layer.reference import run_reference
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.minifloat import FloatFormat

from .manifest import GoldenTensor, ToleranceTier, check_files, read_manifest, write_set
from .safewrite import SetTarget, private_temp_dir, remove_stale_temps
from .sources import LayerSource, make_source, rebuild_source

__all__ = ["generate_set", "verify_set", "build_tensors", "set_tensors", "generation_steps", "GENERATOR"]

GENERATOR = {"name": "refmodel", "version": __version__}

Progress = Callable[[], None] | None


def _scale_entry(name: str, t: QTensor) -> list[GoldenTensor]:
    """``<w>.scale`` of a weight that carries a scale (duck-typed: ``t.scale`` with ``kind``,
    ``values``, ``exponents``, ``granularity``): power-of-two exponents as signed 8-bit integers,
    float scales as fp32 bit patterns."""
    sc = getattr(t, "scale", None)
    if sc is None:
        return []
    kind = getattr(sc, "kind", "float")
    extra = {"scale_kind": str(kind), "granularity": str(getattr(sc, "granularity", "tensor")), "scales": name}
    exps = getattr(sc, "exponents", None)
    if kind == "pow2" and exps is not None:
        e = np.asarray(exps, dtype=np.int64).reshape(-1)
        width = max(8, int(np.abs(e).max(initial=0)).bit_length() + 1)
        return [GoldenTensor(f"{name}.scale", e, f"s{width}.0", width, True, role="weight", extra=extra)]
    v = np.asarray(sc.values, dtype=np.float64).reshape(-1)
    f32 = v.astype(np.float32)
    if not np.array_equal(f32.astype(np.float64), v):
        return [GoldenTensor(f"{name}.scale", v.view(np.uint64), "float64", 64, False, role="weight", extra=extra)]
    return [GoldenTensor(f"{name}.scale", f32.view(np.uint32), "fp32", 32, False, role="weight", extra=extra)]


def _codes_entry(name: str, t: QTensor, role: str, **kw: Any) -> list[GoldenTensor]:
    if isinstance(t.fmt, FixedFormat) and t.codes is not None:
        return [GoldenTensor(name, t.codes, str(t.fmt), t.fmt.width, t.fmt.signed, role=role, **kw)]
    if isinstance(t.fmt, FloatFormat) and t.codes is not None:
        return [GoldenTensor(name, t.codes, str(t.fmt), t.fmt.bits, False, role=role, **kw)]
    if t.mx is not None:
        m = t.mx
        width = m.fmt.element_bits  # 8 for int8 elements
        ref = kw.pop("reference", None)
        tol = kw.pop("tolerance", None)
        ng = kw.pop("no_guarantee", None)
        tiers = kw.pop("tolerances", None) or {}
        scales = GoldenTensor(f"{name}.scale", m.scales, "e8m0", 8, False, role=role,
                              extra={"mx_axis": int(m.axis), "block": int(m.fmt.block)})
        elems = GoldenTensor(f"{name}.elem", m.elements, str(m.fmt), width, bool(m.fmt.is_int), role=role,
                             extra={"mx_axis": int(m.axis), "block": int(m.fmt.block), "shape": list(m.shape)})
        out = [scales, elems]
        if ref is not None:
            # the reference and tolerance belong to the decoded values, kept as a float64 tensor
            vals = GoldenTensor(f"{name}.value", np.asarray(t.values).view(np.uint64), "float64", 64, False,
                                role=role, reference=ref, tolerance=tol, no_guarantee=ng, tolerances=tiers)
            out.append(vals)
        return out
    raise UserError(f"golden sets need a quantized plan: tensor {name!r} is float64")


def _unit_params(run: LayerRun) -> dict[str, Any]:
    """RTL parameters of the unit each record used (to_hdl()), plus scalars, per tensor."""
    out: dict[str, Any] = {}
    for r in run.records:
        e: dict[str, Any] = {"kind": r.kind, "inputs": list(r.inputs), "format": r.out_format, "acc": r.acc}
        for k, v in r.details.items():
            if hasattr(v, "to_hdl"):
                e[k] = {kk: vv for kk, vv in v.to_hdl().items() if not isinstance(vv, str)}
            elif isinstance(v, (bool, int, float, str)):
                e[k] = v
            elif isinstance(v, dict):
                e[k] = {kk: vv for kk, vv in v.items() if isinstance(vv, (bool, int, float, str))}
        out[r.name] = e
    return out


def _tables(run: LayerRun) -> list[GoldenTensor]:
    """The lookup tables of the integer units the run used (written once each), from the tables
    the unit models return."""
    out: list[GoldenTensor] = []
    seen: set[str] = set()
    for r in run.records:
        sm = r.details.get("softmax")
        if sm is not None and "exp2_lut" not in seen:
            t = sm.lut_table()
            out.append(GoldenTensor(t.name, t.codes, str(t.fmt), t.width, t.fmt.signed, role="table"))
            seen.add(t.name)
        ap = r.details.get("act_params")
        if ap is not None and "act_table" not in seen:
            t = ap.table()
            out.append(GoldenTensor(t.name, t.codes, str(t.fmt), t.width, t.fmt.signed, role="table",
                                    extra={"table_in": str(ap.in_fmt), "act": ap.kind}))
            seen.add(t.name)
    return out


#: significant bits a written tolerance keeps (rounded up; see :func:`written_bound`)
TOLERANCE_BITS = 12


def written_bound(bound: np.ndarray, bits: int = TOLERANCE_BITS) -> np.ndarray:
    """``bound`` rounded UP to ``bits`` significant bits (0, inf and nan unchanged): still a valid
    bound, at most ``2^(1-bits)`` relatively looser (0.05% for 12 bits).

    The bound arithmetic (products and sums of magnitudes, exp of the run's values) runs on BLAS
    and numpy's SIMD math and may move by a few ulps between CPUs, BLAS kernels and thread counts;
    rounded to 12 bits, such a move changes a written tolerance only when it crosses a grid point
    (probability about ``ulps * 2^(bits-52)``, ~1e-12 per element), so the tolerance files are
    byte-identical wherever the set is regenerated. The float64 references need no such step:
    they are computed reproducibly (:mod:`refmodel.layer.ops`)."""
    b = np.asarray(bound, dtype=np.float64)
    m, e = np.frexp(b)
    up = np.ldexp(np.ceil(np.ldexp(m, bits)), e - bits)
    return np.where(np.isfinite(b) & (b > 0), up, b)


def _tolerances(run: LayerRun, ref: dict[str, np.ndarray], weights: Any, x: np.ndarray
                ) -> dict[str, tuple[dict[str, ToleranceTier], str | None]]:
    """name -> (tolerance tiers, no-guarantee reason of the end-to-end tier), from
    :mod:`refmodel.bounds.layer`: ``local`` and ``warning`` against the float64 op on the stage's
    own quantised inputs (:func:`local_bounds`), ``end_to_end`` against the float64 layer
    (:func:`layer_bounds` with the exact weights)."""
    from refmodel.bounds.layer import layer_bounds
    from refmodel.bounds.layer.local import local_bounds

    e2e = layer_bounds(run, ref, weights=weights)
    loc = local_bounds(run, x=x)
    out: dict[str, tuple[dict[str, ToleranceTier], str | None]] = {}
    for n, tb in e2e.items():
        tiers: dict[str, ToleranceTier] = {}
        lb = loc.get(n)
        if lb is not None:
            tiers["local"] = ToleranceTier(written_bound(lb.rigorous), lb.reference, {"inputs": list(lb.inputs)})
            tiers["warning"] = ToleranceTier(written_bound(lb.warning), lb.reference,
                                             {"failure_probability": float(lb.failure_probability)})
        fin = np.isfinite(tb.rigorous)
        tiers["end_to_end"] = ToleranceTier(written_bound(tb.rigorous), np.asarray(ref[n], dtype=np.float64),
                                            {"finite_fraction": float(fin.mean()) if fin.size else 1.0})
        out[n] = (tiers, "; ".join(tb.no_guarantee) or None)
    return out


def _clipping(run: LayerRun) -> dict[str, dict[str, Any]]:
    """Saturation / underflow counts of the run, when the plan layer provides them (``run.clipping``
    of :class:`ClipCount`-like records), as plain dicts."""
    out: dict[str, dict[str, Any]] = {}
    for name, c in (getattr(run, "clipping", None) or {}).items():
        if dataclasses.is_dataclass(c) and not isinstance(c, type):
            out[name] = dataclasses.asdict(c)
    return out


def _stage_tensors(run: LayerRun, ref: dict[str, np.ndarray],
                   tols: dict[str, tuple[dict[str, ToleranceTier], str | None]]) -> Iterator[GoldenTensor]:
    """Weights (and their scales), tables, then the stage tensors; each stage's codes, reference
    and tolerance are dropped once written (``run.tensors``, ``ref`` and ``tols`` are consumed)."""
    for name, t in run.weights.items():
        yield from _codes_entry(name, t, "weight")
        yield from _scale_entry(name, t)
    yield from _tables(run)
    for name in list(run.tensors):
        t = run.tensors.pop(name)  # consumed: each stage's arrays are freed once written
        tiers, ng = tols.pop(name, ({}, None))
        role = "input" if name == "x" else "output"
        yield from _codes_entry(name, t, role, reference=ref.pop(name), no_guarantee=ng, tolerances=tiers)


def generation_steps(config: LayerConfig) -> int:
    """About how many progress steps :func:`generate_set` reports for ``config`` (for a bar)."""
    from refmodel.layer.forward import tensor_names
    from refmodel.layer.weights import weight_names

    return 4 + len(weight_names(config)) + len(tensor_names(config)) + 2


def set_tensors(source: LayerSource, plan: PrecisionPlan, progress: Progress = None) -> tuple[Iterator[GoldenTensor], dict[str, Any]]:
    """The tensors (a generator, written one at a time) and the manifest metadata of the set of
    ``source`` under ``plan``. Calls ``progress()`` after the quantized run, the reference and
    the bounds."""
    tick = progress or (lambda: None)
    config = source.config
    run = run_quantized(config, source.weights, source.x, plan)
    tick()
    ref = run_reference(config, source.weights, source.x)
    tick()
    tols = _tolerances(run, ref, source.weights, source.x)
    tick()
    meta: dict[str, Any] = {
        "generator": GENERATOR,
        "config": config.to_dict(),
        "plan": plan.to_dict(),
        "source": source.record,
        "slanc": None if run.slanc is None else {k: {"s": float(e.s), "shift": int(e.k)} for k, e in run.slanc.entries.items()},
        "units": _unit_params(run),
        "stats": run.stats,
    }
    w, x = source.record["weights"], source.record["input"]
    if w["kind"] == "random" and x["kind"] == "random":
        meta["seed"] = int(w["seed"])
    clip = _clipping(run)
    if clip:
        meta["clipping"] = clip
    return _stage_tensors(run, ref, tols), meta


def build_tensors(config: LayerConfig, plan: PrecisionPlan, seed: int) -> tuple[list[GoldenTensor], dict[str, Any]]:
    """The tensors and the manifest metadata of the set for (config, plan, random weights and input
    from ``seed``), as a list."""
    it, meta = set_tensors(make_source(config, seed=seed), plan)
    return list(it), meta


def _resolve(config: LayerConfig | str, plan: PrecisionPlan | str) -> tuple[LayerConfig, PrecisionPlan]:
    if isinstance(config, str):
        config = LayerConfig.from_name(config)
    if isinstance(plan, str):
        plan = PrecisionPlan.from_name(plan)
    if plan.name == "float64" or all(plan.tensor(n).format == "float64" for n in ("x", "out")):
        raise UserError("golden sets need a quantized plan; float64 has no codes")
    return config, plan


def _write_source_set(source: LayerSource, plan: PrecisionPlan, target: SetTarget, progress: Progress) -> Path:
    tensors, meta = set_tensors(source, plan, progress)
    write_set(target.path, tensors, meta, target=target, extra_files=source.extra_files or None, progress=progress)
    return target.path


def generate_set(config: LayerConfig | str, plan: PrecisionPlan | str, out: str | Path | int, *legacy: Any,
                 seed: int = 0, weights: Any = None, inputs: Any = None, model: str | None = None,
                 layer: int | None = None, text: str | None = None, force: bool = False,
                 progress: Progress = None) -> Path:
    """Write the golden set of one layer under ``plan`` into ``out`` and return its directory.

    The layer's float64 weights and input: random from ``seed`` (default), or ``weights`` (a
    ``.safetensors``/``.npz`` path, or a mapping of arrays) and ``inputs`` (a ``.npy``/``.npz``
    path, or an array ``[seq, d_model]``), or a bundled real model (``model="minilm" | "smollm2"``,
    ``layer``, ``text``); arrays are stored in the set (``source.npz``) and files recorded by
    sha256, so :func:`verify_set` can rebuild it. ``out`` must be new, empty, or (with ``force``)
    an existing refmodel set, whose own files alone are replaced (:mod:`refmodel.golden.safewrite`).
    The legacy positional form ``generate_set(config, plan, seed, out)`` is accepted."""
    if legacy:
        if len(legacy) != 1 or isinstance(out, (str, Path)):
            raise TypeError("generate_set(config, plan, out, *, seed=..., ...) (or the legacy (config, plan, seed, out))")
        seed, out = int(out), legacy[0]
    if not isinstance(out, (str, Path)):
        raise TypeError(f"generate_set: out must be a directory path, got {out!r}")
    config, plan = _resolve(config, plan)
    with SetTarget(out, force=force) as target:  # refuses a bad target and takes the lock before any work
        if model is None:
            plan.check(config)
        source = make_source(config, seed=seed, weights=weights, inputs=inputs, model=model, layer=layer, text=text)
        if progress is not None:
            progress()
        return _write_source_set(source, plan, target, progress)


def _temp_root() -> Path:
    base = Path(tempfile.gettempdir())
    remove_stale_temps(base, "verify")
    return private_temp_dir(base, "verify")


def verify_set(set_dir: str | Path, *, weights: str | Path | None = None, inputs: str | Path | None = None,
               files_only: bool = False, progress: Progress = None) -> dict[str, Any]:
    """Check schema, word counts and sha256; then (unless ``files_only``) rebuild the set from its
    recorded source (``weights`` / ``inputs``: where its files are, when not next to the set or at
    the recorded path) and compare every file byte for byte. Raises :class:`CheckFailed` naming the
    first difference, :class:`UserError` when the set or its source cannot be read. Returns a
    report: ``set``, ``files`` (checked), ``regenerated`` (bool), ``source``."""
    set_dir = Path(set_dir)
    m = read_manifest(set_dir)
    n_files = check_files(set_dir, m, progress=progress)
    report: dict[str, Any] = {"set": str(set_dir), "files": n_files + 1, "regenerated": False,
                              "source": m.get("source", {"seed": m.get("seed")})}
    if files_only:
        return report
    try:
        config = LayerConfig.from_dict(m["config"])
        plan = PrecisionPlan.from_dict(m["plan"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckFailed(f"{set_dir}/manifest.json: cannot rebuild the set from its config/plan: {e}") from None
    if "source" not in m and "seed" not in m:
        raise CheckFailed(f"{set_dir}/manifest.json: records neither a source nor a seed to rebuild from")
    source = rebuild_source(set_dir, m, config, weights=weights, inputs=inputs)
    root = _temp_root()
    try:
        fresh = root / "set"
        with SetTarget(fresh) as target:
            _write_source_set(source, plan, target, progress)
        names = sorted(p.name for p in fresh.iterdir())
        accounted = set(names)
        have = sorted(p.name for p in set_dir.iterdir() if not p.name.startswith("."))
        missing = [n for n in names if n not in have]
        if missing:
            raise CheckFailed(f"golden set {set_dir}: file {missing[0]} is missing (regeneration produces it)")
        stray = [n for n in have if n not in accounted and n.endswith(".hex")]  # inputs may sit beside
        if stray:
            raise CheckFailed(f"golden set {set_dir}: unexpected file {stray[0]} (regeneration does not produce it)")
        for n in names:
            if not _same_bytes(fresh / n, set_dir / n):
                hint = " (generator version changed?)" if m["generator"] != GENERATOR else ""
                raise CheckFailed(f"golden set {set_dir}: {n} differs from a fresh regeneration{hint}")
        report.update(regenerated=True, files=len(names))
        return report
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _same_bytes(a: Path, b: Path) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True
