"""Generate and verify golden vector sets for one layer under one precision plan.

A set holds the layer input, every weight (in the plan's formats, as the RTL loads them), the
lookup tables of the integer units, and every stage tensor: its codes (compared bit-exactly), its
float64 reference value, and its tolerance against that reference from :mod:`refmodel.bounds`.
The manifest records the config, the plan, the seed, the SLaNC shifts and the unit parameters
(as RTL parameters), so ``verify_set`` can regenerate the set and compare it byte for byte.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from refmodel import __version__
from refmodel.errors import UserError
from refmodel.layer.config import LayerConfig
from refmodel.layer.plan import PrecisionPlan
from refmodel.layer.qtensor import QTensor
from refmodel.layer.quantized import LayerRun, run_quantized
from refmodel.layer.reference import run_reference
from refmodel.layer.weights import random_inputs, random_weights
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.minifloat import FloatFormat

from .manifest import GoldenTensor, ToleranceTier, check_files, read_manifest, write_set

__all__ = ["generate_set", "verify_set", "build_tensors", "GENERATOR"]

GENERATOR = {"name": "refmodel", "version": __version__}


def _codes_entry(name: str, t: QTensor, role: str, **kw: Any) -> list[GoldenTensor]:
    if isinstance(t.fmt, FixedFormat):
        return [GoldenTensor(name, t.codes, str(t.fmt), t.fmt.width, t.fmt.signed, role=role, **kw)]
    if isinstance(t.fmt, FloatFormat):
        return [GoldenTensor(name, t.codes, str(t.fmt), t.fmt.bits, False, role=role, **kw)]
    if t.mx is not None:
        m = t.mx
        el = m.fmt.element
        width = 8 if m.fmt.is_int else el.bits
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
    """The lookup tables of the integer units the run used (written once each)."""
    out: list[GoldenTensor] = []
    seen: set[str] = set()
    for r in run.records:
        sm = r.details.get("softmax")
        if sm is not None and "exp2_lut" not in seen:
            from refmodel.numerics.units.exp2 import exp2_lut

            lut = exp2_lut(sm.lut_bits, sm.lut_w)
            out.append(GoldenTensor("exp2_lut", lut, f"u{sm.lut_w}.{sm.lut_w - 1}", sm.lut_w, False, role="table"))
            seen.add("exp2_lut")
        ap = r.details.get("act_params")
        if ap is not None and "act_table" not in seen:
            from refmodel.numerics.units.activation import act_table

            tab = act_table(ap.kind, ap.in_fmt, ap.out_fmt)
            out.append(GoldenTensor("act_table", tab, str(ap.out_fmt), ap.out_fmt.width, True, role="table",
                                    extra={"table_in": str(ap.in_fmt), "act": ap.kind}))
            seen.add("act_table")
    return out


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
            tiers["local"] = ToleranceTier(lb.rigorous, lb.reference, {"inputs": list(lb.inputs)})
            tiers["warning"] = ToleranceTier(lb.warning, lb.reference,
                                             {"failure_probability": float(lb.failure_probability)})
        fin = np.isfinite(tb.rigorous)
        tiers["end_to_end"] = ToleranceTier(tb.rigorous, np.asarray(ref[n], dtype=np.float64),
                                            {"finite_fraction": float(fin.mean()) if fin.size else 1.0})
        out[n] = (tiers, "; ".join(tb.no_guarantee) or None)
    return out


def build_tensors(config: LayerConfig, plan: PrecisionPlan, seed: int) -> tuple[list[GoldenTensor], dict[str, Any]]:
    """The tensors and the manifest metadata of the golden set for (config, plan, seed)."""
    weights = random_weights(config, seed=seed)
    x = random_inputs(config, seed=seed + 1)
    run = run_quantized(config, weights, x, plan)
    ref = run_reference(config, weights, x)
    tols = _tolerances(run, ref, weights, x)
    tensors: list[GoldenTensor] = []
    for name, t in run.weights.items():
        tensors += _codes_entry(name, t, "weight")
    tensors += _tables(run)
    for name, t in run.tensors.items():
        tiers, ng = tols.get(name, ({}, None))
        role = "input" if name == "x" else "output"
        tensors += _codes_entry(name, t, role, reference=ref[name], no_guarantee=ng, tolerances=tiers)
    meta = {
        "generator": GENERATOR,
        "config": config.to_dict(),
        "plan": plan.to_dict(),
        "seed": int(seed),
        "slanc": None if run.slanc is None else {k: {"s": float(e.s), "shift": int(e.k)} for k, e in run.slanc.entries.items()},
        "units": _unit_params(run),
        "stats": run.stats,
    }
    return tensors, meta


def generate_set(config: LayerConfig | str, plan: PrecisionPlan | str, seed: int, out_dir: str | Path) -> Path:
    """Write the golden set (atomically) and return its directory."""
    if isinstance(config, str):
        config = LayerConfig.from_name(config)
    if isinstance(plan, str):
        plan = PrecisionPlan.from_name(plan)
    tensors, meta = build_tensors(config, plan, seed)
    write_set(out_dir, tensors, meta)
    return Path(out_dir)


def verify_set(set_dir: str | Path) -> list[str]:
    """Check schema, file sizes and sha256, then regenerate from the manifest's config, plan and
    seed and compare every file byte for byte. Returns the list of files checked; raises
    :class:`UserError` naming the first file that differs."""
    set_dir = Path(set_dir)
    m = read_manifest(set_dir)
    check_files(set_dir, m)
    try:
        config = LayerConfig.from_dict(m["config"])
        plan = PrecisionPlan.from_dict(m["plan"])
        seed = int(m["seed"])
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{set_dir}/manifest.json: cannot rebuild the set from its config/plan/seed: {e}") from None
    tmp = Path(tempfile.mkdtemp(prefix="refmodel-verify-"))
    try:
        generate_set(config, plan, seed, tmp / "set")
        fresh = tmp / "set"
        names = sorted(p.name for p in fresh.iterdir())
        have = sorted(p.name for p in set_dir.iterdir() if not p.name.startswith("."))
        extra = set(have) - set(names)
        missing = set(names) - set(have)
        if missing:
            raise UserError(f"golden set {set_dir}: file {sorted(missing)[0]} is missing (regeneration produces it)")
        if extra:
            raise UserError(f"golden set {set_dir}: unexpected file {sorted(extra)[0]}")
        for n in names:
            if (fresh / n).read_bytes() != (set_dir / n).read_bytes():
                hint = " (generator version changed?)" if n == "manifest.json" and m["generator"] != GENERATOR else ""
                raise UserError(f"golden set {set_dir}: {n} differs from a fresh regeneration{hint}")
        return names
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
