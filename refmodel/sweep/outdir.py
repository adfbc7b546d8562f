"""The output directory of a sweep: created new, or reused when it is a refmodel sweep result.

A sweep writes ``results.json``, ``sweep.png`` and ``golden/<config>_<plan>_s<seed>/`` (the golden
sets of the golden jobs), and lists every file it writes, before writing it, in the marker file
``.refmodel-sweep``. A non-empty directory without that marker is refused (its name and first
entry are in the message) before any work starts. Reusing a sweep result removes only the files
its marker lists (then the directories that become empty); anything else in it is left alone.
Every file is written atomically (a temporary name, then a rename).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from refmodel.errors import UserError

__all__ = ["MARKER", "RESULTS", "FIGURE", "GOLDEN", "SweepOutput"]

MARKER = ".refmodel-sweep"
RESULTS = "results.json"
FIGURE = "sweep.png"
GOLDEN = "golden"
_MARKER_KEY = "refmodel_sweep"


class SweepOutput:
    """A prepared output directory; :meth:`write_file` and :meth:`write_set` record what they write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: list[str] = []

    @staticmethod
    def check(path: str | Path) -> None:
        """A usage error unless ``path`` is new, an empty directory, or a previous sweep result
        (touches nothing)."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise UserError(f"--out {p} exists and is not a directory")
        if p.is_dir():
            entries = sorted(e.name for e in p.iterdir())
            if entries and MARKER not in entries:
                raise UserError(f"--out {p} is not empty and is not a refmodel sweep result (it holds {entries[0]!r} "
                                f"and no {MARKER}): give a new or empty directory")
            if MARKER in entries:
                _read_marker(p)

    @classmethod
    def prepare(cls, path: str | Path) -> SweepOutput:
        """:meth:`check` ``path``, clear a previous result's own files and write a fresh marker."""
        p = Path(path)
        cls.check(p)
        if (p / MARKER).exists():
            _remove_previous(p)
        out = cls(p)
        p.mkdir(parents=True, exist_ok=True)
        out._save_marker()
        return out

    def _save_marker(self) -> None:
        _atomic_write(self.path / MARKER, (json.dumps({_MARKER_KEY: 1, "files": self.files}, indent=1) + "\n").encode())

    def _claim(self, rels: list[str]) -> None:
        """Record ``rels`` in the marker before they are written."""
        self.files += [r for r in rels if r not in self.files]
        self._save_marker()

    def write_file(self, rel: str, data: bytes) -> Path:
        """Write ``data`` to ``path/rel`` atomically."""
        self._claim([rel])
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, data)
        return target

    def write_set(self, name: str, files: dict[str, bytes]) -> str:
        """Write a golden set's files into ``golden/<name>/`` (a new directory, renamed into place
        whole); its path relative to the output directory. Refuses, naming it, a directory of that
        name left there by someone else."""
        rel = f"{GOLDEN}/{name}"
        target = self.path / rel
        if target.exists():
            raise UserError(f"{target} exists and was not written by this sweep: not writing the set there")
        self._claim([f"{rel}/{f}" for f in files])
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
        try:
            for f, data in files.items():
                (tmp / f).write_bytes(data)
            os.chmod(tmp, 0o777 & ~_umask())  # as an ordinary directory, not mkdtemp's private 0700
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return rel


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # as an ordinary file, not mkstemp's private 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_marker(p: Path) -> list[str]:
    """The files a previous sweep wrote into ``p``, from its marker."""
    try:
        m = json.loads((p / MARKER).read_text())
        files = m["files"]
        if m.get(_MARKER_KEY) != 1 or not isinstance(files, list):
            raise ValueError("unknown marker")
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--out {p}: {MARKER} cannot be read as a refmodel sweep marker; not touching the "
                        "directory") from None
    return files


def _remove_previous(p: Path) -> None:
    """Remove the files a previous sweep listed in its marker, then the directories they leave empty."""
    files = _read_marker(p)
    root = p.resolve()
    dirs: set[Path] = set()
    for rel in files:
        raw = p / str(rel)
        f = raw.resolve()
        if not isinstance(rel, str) or raw.is_symlink() or root not in f.parents:
            continue  # a link or a path outside the directory: never ours
        if f.is_file():
            f.unlink()
        dirs.update(d for d in f.parents if root in d.parents)
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    (p / MARKER).unlink()
