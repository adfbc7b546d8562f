"""Golden vector sets on disk: ``manifest.json`` plus one ``$readmemh`` file per tensor.

Layout of ``golden/<set>/``::

    manifest.json            schema, generator, config, plan, source, and one entry per tensor
    <name>.hex               codes, one fixed-width hex word per line, row-major, two's complement
    <name>.ref.hex           float64 reference values (IEEE bit patterns, 16 hex digits) -- optional
    <name>.tol.hex           per-element absolute tolerance (float64 bit patterns) -- optional
    source.npz               float64 weights / input given as arrays through the Python API -- optional

Each manifest tensor entry: ``file``, ``shape``, ``layout`` ("row-major"), ``format`` (spec string),
``word_width``, ``signed``, ``role`` (input | weight | output | table), ``sha256`` of every file
it names, ``compare``: ``"bit_exact"`` or ``{"abs": scalar}`` or ``{"abs_file": "<name>.tol.hex"}``,
and optional ``reference`` (the ``.ref.hex`` file) and ``no_guarantee`` (the reason a bound could
not be given). ``source`` records where the float64 weights and input came from (a seed, files with
their sha256, or a bundled model) so that ``verify_set`` can regenerate the set. No timestamps:
the same inputs give byte-identical files.

Schema 2: stage tensors compare ``"bit_exact"`` and carry ``tolerances`` with up to three tiers
(:data:`TIER_FILES`), each a per-element absolute tolerance file against a float64 reference file:

    "tolerances": {
      "local":      {"abs_file": "q.ltol.hex", "reference": "q.lref.hex", "max_abs": ..., "inputs": [...]},
      "warning":    {"abs_file": "q.wtol.hex", "reference": "q.lref.hex", "max_abs": ...,
                     "failure_probability": ...},
      "end_to_end": {"abs_file": "q.tol.hex",  "reference": "q.ref.hex",  "max_abs": ..., "finite_fraction": ...}
    }

``local``: rigorous bound on |stage output - the float64 op applied to the stage's own quantised
inputs (named in ``inputs``)|, the reference in ``.lref.hex``; ``warning``: the statistical tier of
the same error (exceeded by correct hardware with at most ``failure_probability`` per element under
its model); ``end_to_end``: rigorous bound against the float64 layer (``.ref.hex``). ``max_abs``
is over the finite entries. Schema 1 sets (no tiers) are still read.


Writing (:func:`write_set`) goes through :class:`refmodel.golden.safewrite.SetTarget`: never into a
directory that is not new, empty or a refmodel set, files first into a temporary sibling, the
manifest last; tensors are written one at a time (``tensors`` may be a generator) in chunks, so the
writer's memory does not grow with the set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from refmodel.errors import CheckFailed, UserError

from .hexfile import read_f64_hex, read_memh, sha256_file, write_words
from .safewrite import SetTarget

__all__ = ["SCHEMA_VERSION", "GoldenTensor", "ToleranceTier", "TIER_FILES", "write_set", "read_manifest",
           "load_tensor", "check_files", "tensor_entry"]

SCHEMA_VERSION = 2
#: schema versions :func:`read_manifest` accepts
READABLE_SCHEMAS = (1, 2)
#: tolerance tier -> (suffix of its tolerance file, suffix of its reference file)
TIER_FILES = {"local": ("ltol", "lref"), "warning": ("wtol", "lref"), "end_to_end": ("tol", "ref")}


@dataclass
class ToleranceTier:
    """One tolerance tier of a stage tensor: per-element absolute tolerance ``abs`` against the
    float64 ``reference`` (both shaped like the codes), and the tier's manifest keys ``meta``
    (``inputs``, ``failure_probability``, ``finite_fraction``)."""

    abs: np.ndarray
    reference: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


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
    tolerances: dict[str, ToleranceTier] = field(default_factory=dict)


def _write_words_file(d: Path, name: str, codes: np.ndarray, width: int, *, f64: bool = False) -> str:
    """Write one memh file in ``d``; return its sha256."""
    h = hashlib.sha256()
    with open(d / name, "wb") as fh:
        write_words(fh, codes, width, h, f64=f64)
    return h.hexdigest()


def _write_reference(d: Path, t: GoldenTensor, shape: tuple[int, ...], files: dict[str, str]) -> dict[str, Any]:
    """``<name>.ref.hex``: the float64 reference values."""
    ref = np.asarray(t.reference, dtype=np.float64)
    if ref.shape != shape:
        raise ValueError(f"golden tensor {t.name}: reference shape {ref.shape} != codes shape {shape}")
    fname = f"{t.name}.ref.hex"
    files[fname] = _write_words_file(d, fname, ref, 64, f64=True)
    return {"reference": fname}


def _write_tolerance(d: Path, t: GoldenTensor, shape: tuple[int, ...], files: dict[str, str]) -> dict[str, Any]:
    """The ``compare`` rule: bit_exact, a scalar, or ``<name>.tol.hex`` per element."""
    if t.tolerance is None:
        return {"compare": "bit_exact"}
    if np.ndim(t.tolerance) == 0:
        return {"compare": {"abs": float(t.tolerance)}}
    tol = np.broadcast_to(np.asarray(t.tolerance, dtype=np.float64), shape)
    fname = f"{t.name}.tol.hex"
    files[fname] = _write_words_file(d, fname, tol, 64, f64=True)
    return {"compare": {"abs_file": fname, "max_abs": float(tol.max()) if tol.size else 0.0}}


def _write_tier(d: Path, t: GoldenTensor, tier: str, tt: ToleranceTier, shape: tuple[int, ...],
                files: dict[str, str]) -> dict[str, Any]:
    """Write one tolerance tier's files of tensor ``t`` into ``d`` (its reference file once,
    shared by tiers that name the same one) and return the tier's manifest entry."""
    tol_sfx, ref_sfx = TIER_FILES[tier]
    out: dict[str, Any] = {}
    for key, sfx, arr in (("abs_file", tol_sfx, tt.abs), ("reference", ref_sfx, tt.reference)):
        a = np.asarray(arr, dtype=np.float64)
        if a.shape != shape:
            raise ValueError(f"golden tensor {t.name}: {tier} {key} shape {a.shape} != codes shape {shape}")
        fname = f"{t.name}.{sfx}.hex"
        if fname in files:  # written by another tier (or the entry's reference): must be the same array
            if _words_sha(a) != files[fname]:
                raise ValueError(f"golden tensor {t.name}: {tier} {key} differs from the {fname} already written")
        else:
            files[fname] = _write_words_file(d, fname, a, 64, f64=True)
        out[key] = fname
    tol = np.asarray(tt.abs, dtype=np.float64)
    fin = np.isfinite(tol)
    out["max_abs"] = float(tol[fin].max()) if fin.any() else 0.0
    out.update(tt.meta)
    if not fin.all() and "finite_fraction" not in out:
        out["finite_fraction"] = float(fin.mean())
    return out


class _Discard:
    """A file-like sink that keeps nothing (hashing words without writing them)."""

    def write(self, data: bytes) -> int:
        return len(data)


def _words_sha(values: np.ndarray) -> str:
    h = hashlib.sha256()
    write_words(_Discard(), values, 64, h, f64=True)
    return h.hexdigest()


def tensor_entry(d: Path, t: GoldenTensor) -> dict[str, Any]:
    """Write the files of one tensor into directory ``d``; return its manifest entry."""
    codes = np.asarray(t.codes)
    shape = tuple(codes.shape)
    files: dict[str, str] = {}
    hex_name = f"{t.name}.hex"
    files[hex_name] = _write_words_file(d, hex_name, codes, int(t.word_width))
    entry: dict[str, Any] = {
        "file": hex_name,
        "shape": list(shape),
        "layout": "row-major",
        "format": t.format,
        "word_width": int(t.word_width),
        "signed": bool(t.signed),
        "role": t.role,
    }
    if t.reference is not None:
        entry.update(_write_reference(d, t, shape, files))
    if t.tolerances:
        entry["compare"] = "bit_exact"
        entry["tolerances"] = {tier: _write_tier(d, t, tier, tt, shape, files) for tier, tt in t.tolerances.items()}
    else:
        entry.update(_write_tolerance(d, t, shape, files))
    if t.no_guarantee:
        entry["no_guarantee"] = t.no_guarantee
    entry.update(t.extra)
    entry["sha256"] = files
    return entry


def _valid_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith(".") or name == "manifest":
        raise ValueError(f"golden tensor name {name!r} is not a plain file stem")


def write_set(out_dir: str | Path, tensors: Iterable[GoldenTensor], meta: dict[str, Any], *, force: bool = False,
              target: SetTarget | None = None, extra_files: dict[str, bytes] | None = None,
              progress: Any = None) -> Path:
    """Write a golden set safely (module docstring); returns the path of ``manifest.json``.

    ``tensors`` may be any iterable (a generator streams them); ``extra_files`` are written as is
    (name -> bytes) and listed in the manifest with their sha256; ``progress`` is called once per
    tensor written. With ``target`` (an entered :class:`SetTarget`), the caller holds the lock."""
    if target is None:
        with SetTarget(out_dir, force=force) as tgt:
            return write_set(out_dir, tensors, meta, target=tgt, extra_files=extra_files, progress=progress)
    tmp = target.temp_dir()
    entries: dict[str, Any] = {}
    for t in tensors:
        _valid_name(t.name)
        if t.name in entries:
            raise ValueError(f"duplicate tensor name in golden set: {t.name!r}")
        entries[t.name] = tensor_entry(tmp, t)
        if progress is not None:
            progress()
    manifest: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **meta, "tensors": entries}
    if extra_files:
        hashes = {}
        for name, data in sorted(extra_files.items()):
            (tmp / name).write_bytes(data)
            hashes[name] = hashlib.sha256(data).hexdigest()
        manifest["files"] = sorted(hashes)
        manifest["files_sha256"] = hashes
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return target.commit() / "manifest.json"


def read_manifest(set_dir: str | Path) -> dict[str, Any]:
    """Parse and schema-check ``manifest.json``. A missing directory or manifest is a
    :class:`UserError` (not a set); a damaged one a :class:`CheckFailed`; both name the file."""
    set_dir = Path(set_dir)
    path = set_dir / "manifest.json"
    if not set_dir.is_dir():
        raise UserError(f"golden set not found: {set_dir} is not a directory")
    if not path.exists():
        raise UserError(f"golden set {set_dir}: manifest.json is missing (not a golden set?)")
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckFailed(f"{path}: not valid JSON ({err})") from None
    if not isinstance(m, dict):
        raise CheckFailed(f"{path}: not a JSON object")
    if m.get("schema_version") not in READABLE_SCHEMAS:
        raise CheckFailed(f"{path}: schema_version {m.get('schema_version')!r}, expected one of {READABLE_SCHEMAS}")
    for key in ("generator", "tensors"):
        if key not in m:
            raise CheckFailed(f"{path}: missing key {key!r}")
    for name, e in m["tensors"].items():
        for key in ("file", "shape", "format", "word_width", "signed", "sha256", "compare"):
            if key not in e:
                raise CheckFailed(f"{path}: tensor {name!r} lacks key {key!r}")
    return m


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def check_files(set_dir: str | Path, manifest: dict[str, Any] | None = None, progress: Any = None) -> int:
    """Every file the manifest names exists, has the right word count and its sha256 matches
    (:class:`CheckFailed` naming the first that does not). Returns the number of files checked;
    ``progress`` is called once per tensor."""
    set_dir = Path(set_dir)
    m = manifest or read_manifest(set_dir)
    n = 0
    for name, e in m["tensors"].items():
        count = int(np.prod(e["shape"])) if e["shape"] else 1
        for fname, digest in e["sha256"].items():
            p = set_dir / fname
            if not p.exists():
                raise CheckFailed(f"golden set {set_dir}: file {fname} (tensor {name!r}) is missing")
            lines = _count_lines(p)
            if lines != count:
                raise CheckFailed(f"golden set {set_dir}: file {fname} has {lines} words, manifest says {count} "
                                  f"(truncated or padded)")
            if sha256_file(p) != digest:
                raise CheckFailed(f"golden set {set_dir}: file {fname} does not match its sha256 (edited?)")
            n += 1
        if progress is not None:
            progress()
    for fname, digest in m.get("files_sha256", {}).items():
        p = set_dir / fname
        if not p.exists():
            raise CheckFailed(f"golden set {set_dir}: file {fname} is missing")
        if sha256_file(p) != digest:
            raise CheckFailed(f"golden set {set_dir}: file {fname} does not match its sha256 (edited?)")
        n += 1
    return n


class _LoadedTensorBase(TypedDict):
    codes: np.ndarray  # shaped as the manifest says
    entry: dict[str, Any]  # the tensor's manifest entry


class LoadedTensor(_LoadedTensorBase, total=False):
    """What :func:`load_tensor` returns (the optional keys only when the set has them)."""

    reference: np.ndarray  # float64, end to end
    tolerance: np.ndarray  # float64 absolute tolerance, end to end
    tolerances: dict[str, dict[str, Any]]  # per tier: {"abs": array, "reference": array, **manifest keys}


def load_tensor(set_dir: str | Path, name: str, manifest: dict[str, Any] | None = None) -> LoadedTensor:
    """Codes (shaped), and the reference / tolerance arrays when present: ``reference`` and
    ``tolerance`` are the end-to-end ones; ``tolerances[tier]`` holds every tier as
    ``{"abs": array, "reference": array, **its manifest keys}``."""
    set_dir = Path(set_dir)
    m = manifest or read_manifest(set_dir)
    if name not in m["tensors"]:
        raise UserError(f"golden set {set_dir} has no tensor {name!r}; it has: {', '.join(m['tensors'])}")
    e = m["tensors"][name]
    shape = tuple(e["shape"])
    count = int(np.prod(shape)) if shape else 1
    try:
        codes = read_memh(set_dir / e["file"], e["word_width"], e["signed"], count=count).reshape(shape)
        out: LoadedTensor = {"codes": codes, "entry": e}
        if "reference" in e:
            out["reference"] = read_f64_hex(set_dir / e["reference"], count).reshape(shape)
        cmp = e["compare"]
        if isinstance(cmp, dict) and "abs_file" in cmp:
            out["tolerance"] = read_f64_hex(set_dir / cmp["abs_file"], count).reshape(shape)
        elif isinstance(cmp, dict) and "abs" in cmp:
            out["tolerance"] = np.full(shape, float(cmp["abs"]))
    except (ValueError, OSError) as err:
        raise UserError(str(err)) from None
    tiers: dict[str, dict[str, Any]] = {}
    for tier, te in e.get("tolerances", {}).items():
        d = {k: v for k, v in te.items() if k not in ("abs_file", "reference")}
        try:
            d["abs"] = read_f64_hex(set_dir / te["abs_file"], count).reshape(shape)
            d["reference"] = read_f64_hex(set_dir / te["reference"], count).reshape(shape)
        except (ValueError, OSError) as err:
            raise UserError(str(err)) from None
        tiers[tier] = d
    if tiers:
        out["tolerances"] = tiers
        if "end_to_end" in tiers:
            out["tolerance"] = tiers["end_to_end"]["abs"]
            out.setdefault("reference", tiers["end_to_end"]["reference"])
    return out
