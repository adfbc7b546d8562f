"""Golden vector sets on disk: ``manifest.json`` plus one ``$readmemh`` file per tensor.

Layout of ``golden/<set>/``::

    manifest.json            schema, generator, config, plan, seed, and one entry per tensor
    <name>.hex               codes, one fixed-width hex word per line, row-major, two's complement
    <name>.ref.hex           float64 reference values (IEEE bit patterns, 16 hex digits) -- optional
    <name>.tol.hex           per-element absolute tolerance (float64 bit patterns) -- optional

Each manifest tensor entry: ``file``, ``shape``, ``layout`` ("row-major"), ``format`` (spec string),
``word_width``, ``signed``, ``role`` (input | weight | output | table), ``sha256`` of every file
it names, ``compare``: ``"bit_exact"`` or ``{"abs": scalar}`` or ``{"abs_file": "<name>.tol.hex"}``,
and optional ``reference`` (the ``.ref.hex`` file) and ``no_guarantee`` (the reason a bound could
not be given). No timestamps: the same inputs give byte-identical files.

Writing is all-or-nothing: files go to a temporary sibling directory that replaces the target only
once everything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refmodel.errors import UserError

from .hexfile import format_memh, read_memh

__all__ = ["SCHEMA_VERSION", "GoldenTensor", "write_set", "read_manifest", "load_tensor", "check_files"]

SCHEMA_VERSION = 1
#: versions :func:`read_manifest` accepts; 2 adds per-stage tolerance tiers (an entry's ``tolerances``)
READABLE_SCHEMA_VERSIONS = (1, 2)


@dataclass
class GoldenTensor:
    """One tensor of a golden set: integer codes in a format, plus optional reference/tolerance."""

    name: str
    codes: np.ndarray
    format: str
    word_width: int
    signed: bool
    role: str = "output"
    reference: np.ndarray | None = None
    tolerance: float | np.ndarray | None = None  # None: bit_exact
    no_guarantee: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _f64_hex(values: np.ndarray) -> str:
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64).ravel()
    return "".join(f"{int(b):016x}\n" for b in bits.tolist())


def _read_f64_hex(path: Path, count: int) -> np.ndarray:
    words = [int(t, 16) for t in path.read_text().split()]
    if len(words) != count:
        raise UserError(f"{path}: expected {count} words, found {len(words)} (truncated or edited file)")
    return np.array(words, dtype=np.uint64).view(np.float64)


def write_set(out_dir: str | Path, tensors: list[GoldenTensor], meta: dict[str, Any]) -> Path:
    """Write a golden set atomically; returns the path of ``manifest.json``."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate tensor names in golden set: {names}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        entries: dict[str, Any] = {}
        for t in tensors:
            codes = np.asarray(t.codes)
            files: dict[str, str] = {}
            hex_name = f"{t.name}.hex"
            (tmp / hex_name).write_text(format_memh(codes.ravel(), t.word_width))
            files[hex_name] = _sha(tmp / hex_name)
            entry: dict[str, Any] = {
                "file": hex_name,
                "shape": list(codes.shape),
                "layout": "row-major",
                "format": t.format,
                "word_width": int(t.word_width),
                "signed": bool(t.signed),
                "role": t.role,
            }
            if t.reference is not None:
                ref_name = f"{t.name}.ref.hex"
                ref = np.asarray(t.reference, dtype=np.float64)
                if ref.shape != codes.shape:
                    raise ValueError(f"golden tensor {t.name}: reference shape {ref.shape} != codes shape {codes.shape}")
                (tmp / ref_name).write_text(_f64_hex(ref))
                files[ref_name] = _sha(tmp / ref_name)
                entry["reference"] = ref_name
            if t.tolerance is None:
                entry["compare"] = "bit_exact"
            elif np.ndim(t.tolerance) == 0:
                entry["compare"] = {"abs": float(t.tolerance)}
            else:
                tol = np.broadcast_to(np.asarray(t.tolerance, dtype=np.float64), codes.shape)
                tol_name = f"{t.name}.tol.hex"
                (tmp / tol_name).write_text(_f64_hex(tol))
                files[tol_name] = _sha(tmp / tol_name)
                entry["compare"] = {"abs_file": tol_name, "max_abs": float(tol.max()) if tol.size else 0.0}
            if t.no_guarantee:
                entry["no_guarantee"] = t.no_guarantee
            entry.update(t.extra)
            entry["sha256"] = files
            entries[t.name] = entry
        manifest = {"schema_version": SCHEMA_VERSION, **meta, "tensors": entries}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "manifest.json"


def read_manifest(set_dir: str | Path) -> dict[str, Any]:
    """Parse and schema-check ``manifest.json``; errors name the file and the bad key."""
    set_dir = Path(set_dir)
    path = set_dir / "manifest.json"
    if not set_dir.is_dir():
        raise UserError(f"golden set not found: {set_dir} is not a directory")
    if not path.exists():
        raise UserError(f"golden set {set_dir}: manifest.json is missing")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if m.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        raise UserError(f"{path}: schema_version {m.get('schema_version')!r}, expected one of "
                        f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}")
    for key in ("generator", "tensors"):
        if key not in m:
            raise UserError(f"{path}: missing key {key!r}")
    for name, e in m["tensors"].items():
        for key in ("file", "shape", "format", "word_width", "signed", "sha256", "compare"):
            if key not in e:
                raise UserError(f"{path}: tensor {name!r} lacks key {key!r}")
    return m


def check_files(set_dir: str | Path, manifest: dict[str, Any] | None = None) -> None:
    """Every file the manifest names exists, has the right word count and its sha256 matches."""
    set_dir = Path(set_dir)
    m = manifest or read_manifest(set_dir)
    for name, e in m["tensors"].items():
        count = int(np.prod(e["shape"])) if e["shape"] else 1
        for fname, digest in e["sha256"].items():
            p = set_dir / fname
            if not p.exists():
                raise UserError(f"golden set {set_dir}: file {fname} (tensor {name!r}) is missing")
            lines = p.read_text().count("\n")
            if lines != count:
                raise UserError(
                    f"golden set {set_dir}: file {fname} has {lines} words, manifest says {count} "
                    f"(truncated or padded)"
                )
            if _sha(p) != digest:
                raise UserError(f"golden set {set_dir}: file {fname} does not match its sha256 (edited?)")


def load_tensor(set_dir: str | Path, name: str, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Codes (shaped), and the reference / tolerance arrays when present."""
    set_dir = Path(set_dir)
    m = manifest or read_manifest(set_dir)
    if name not in m["tensors"]:
        raise UserError(f"golden set {set_dir} has no tensor {name!r}; it has: {', '.join(m['tensors'])}")
    e = m["tensors"][name]
    shape = tuple(e["shape"])
    count = int(np.prod(shape)) if shape else 1
    try:
        codes = read_memh(set_dir / e["file"], e["word_width"], e["signed"], count=count).reshape(shape)
    except ValueError as err:
        raise UserError(str(err)) from None
    out: dict[str, Any] = {"codes": codes, "entry": e}
    if "reference" in e:
        out["reference"] = _read_f64_hex(set_dir / e["reference"], count).reshape(shape)
    cmp = e["compare"]
    if isinstance(cmp, dict) and "abs_file" in cmp:
        out["tolerance"] = _read_f64_hex(set_dir / cmp["abs_file"], count).reshape(shape)
    elif isinstance(cmp, dict) and "abs" in cmp:
        out["tolerance"] = np.full(shape, float(cmp["abs"]))
    return out
