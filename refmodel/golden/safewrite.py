"""Writing a golden set directory without ever losing data that refmodel did not write.

Rules (:class:`SetTarget`):

* The output directory may be new, empty, or an existing refmodel golden set (its
  ``manifest.json`` names ``refmodel`` as generator). Anything else -- a file, a non-empty
  directory that is not a set, the current directory or one of its parents -- is refused with a
  one-line :class:`UserError` naming it, before any work.
* An existing set is replaced only with ``force=True``, and then only the files its manifest lists
  are removed or overwritten; any other file in that directory stays.
* Files are written into a temporary sibling directory ``.refmodel-tmp-<name>-<pid>-<token>``
  created with the process umask (so the final files and directory get the usual permissions),
  then moved into place; the manifest goes last, so a set is never half-valid. The next run
  removes temporaries left by writers that no longer exist (a SIGKILLed run), and only those.
* One writer per directory: an exclusive ``fcntl.flock`` on ``.refmodel-lock-<name>`` next to it,
  held from before the work starts until the set is in place. A second writer fails at once with
  :class:`ConcurrentWriteError` (one line, exit code 2), whatever it computed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from refmodel.errors import UserError

__all__ = ["ConcurrentWriteError", "SetTarget", "is_refmodel_set", "set_files", "private_temp_dir",
           "remove_stale_temps", "TEMP_PREFIX", "LOCK_PREFIX"]

TEMP_PREFIX = ".refmodel-tmp-"
LOCK_PREFIX = ".refmodel-lock-"
_OLD_MANIFEST = ".manifest.json.refmodel-replacing"
_TEMP_RE = re.compile(r"^\.refmodel-tmp-(?P<name>.*)-(?P<pid>\d+)-[0-9a-f]{8}$")


class ConcurrentWriteError(UserError):
    """Another refmodel process holds the lock of the output directory."""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def _manifest_of(d: Path) -> dict[str, Any] | None:
    """The manifest of a refmodel set in ``d`` (or of one being replaced there), else None."""
    for name in ("manifest.json", _OLD_MANIFEST):
        m = _read_json(d / name)
        gen = m.get("generator") if m is not None else None
        if m is not None and isinstance(gen, dict) and gen.get("name") == "refmodel" and isinstance(m.get("tensors"), dict):
            return m
    return None


def is_refmodel_set(d: str | Path) -> bool:
    """True when ``d`` holds a refmodel golden set (its manifest names refmodel as generator)."""
    return _manifest_of(Path(d)) is not None


def set_files(manifest: dict[str, Any]) -> set[str]:
    """Every file name a manifest accounts for (the tensors' files and the manifest itself)."""
    names = {"manifest.json"}
    for e in manifest.get("tensors", {}).values():
        if isinstance(e, dict):
            names.update(str(f) for f in e.get("sha256", {}))
            names.update(str(f) for f in e.get("extra_files", []))
    for f in manifest.get("files", []):
        names.add(str(f))
    return {n for n in names if n and "/" not in n and n not in (".", "..")}


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(parent: Path, name: str | None = None) -> list[Path]:
    """Remove ``.refmodel-tmp-*`` directories in ``parent`` whose writer process is gone
    (optionally only those of set ``name``); returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP_RE.match(p.name)
        if m is None or (name is not None and m.group("name") != name) or not p.is_dir() or p.is_symlink():
            continue
        if not _pid_alive(int(m.group("pid"))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def private_temp_dir(parent: Path, name: str) -> Path:
    """A new, empty ``.refmodel-tmp-<name>-<pid>-<token>`` directory in ``parent``, created with
    the process umask (``os.mkdir`` mode 0o777 & ~umask, unlike ``mkdtemp``'s 0o700)."""
    for _ in range(100):
        d = parent / f"{TEMP_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(d, 0o777)
            return d
        except FileExistsError:
            continue
    raise OSError(f"cannot create a temporary directory in {parent}")


def _inside(a: Path, b: Path) -> bool:
    """True when ``a`` is ``b`` or lies inside it."""
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


class SetTarget:
    """The output directory of one set write: checked, locked, written through a temporary sibling
    and committed (module docstring). Use as a context manager::

        with SetTarget(out, force=False) as tgt:   # refuses bad targets, takes the lock
            ...compute...
            tmp = tgt.temp_dir()                   # write the files here
            tgt.commit()                           # move them into place (manifest last)
    """

    def __init__(self, out: str | Path, *, force: bool = False) -> None:
        self.given = str(out)
        self.out = Path(out)
        self.force = force
        self.path = Path(os.path.abspath(self.out))
        self._lock_fd: int | None = None
        self._tmp: Path | None = None
        self.check()

    # ---- checks -------------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse a target that is not new, empty or a refmodel set (``UserError`` naming it)."""
        p, given = self.path, self.given
        try:
            cwd = Path(os.getcwd()).resolve()
        except OSError:
            cwd = None
        real = p.resolve() if p.exists() else p
        if cwd is not None and _inside(cwd, real):
            what = "the current directory" if real == cwd else "a parent of the current directory"
            raise UserError(f"output directory {given} is {what}: refmodel writes a set into a directory of "
                            f"its own (e.g. {Path(given) / 'golden_set'})")
        if p.is_symlink() and not p.exists():
            raise UserError(f"output directory {given} is a dangling symbolic link")
        if p.exists() and not p.is_dir():
            raise UserError(f"output directory {given} exists and is not a directory")
        if p.exists():
            entries = sorted(e.name for e in p.iterdir())
            m = _manifest_of(p)
            if m is None and entries:
                shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
                raise UserError(f"output directory {given} is not empty and is not a refmodel golden set (it holds "
                                f"{shown}); refusing to write there: choose a new or empty directory")
            if m is not None and not self.force:
                raise UserError(f"output directory {given} already holds a golden set; pass --force to replace it "
                                f"(only the files of that set are replaced)")
        parent = p.parent
        if parent.exists() and not parent.is_dir():
            raise UserError(f"output directory {given}: {parent} is not a directory")

    # ---- lock ---------------------------------------------------------------------------------
    def _lock_path(self) -> Path:
        return self.path.parent / f"{LOCK_PREFIX}{self.path.name}"

    def acquire(self) -> None:
        """Take the exclusive lock (``ConcurrentWriteError`` when another process has it)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lp = self._lock_path()
        for _ in range(10):
            fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    holder = ""
                    try:
                        holder = lp.read_text().strip()
                    except OSError:
                        pass
                    who = f" (pid {holder})" if holder.isdigit() else ""
                    raise ConcurrentWriteError(f"another refmodel process{who} is writing {self.given}; "
                                               f"not writing it") from None
                raise
            # the lock file may have been removed by the previous holder between open and flock
            try:
                same = os.fstat(fd).st_ino == os.stat(lp).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self._lock_fd = fd
                return
            os.close(fd)
        raise ConcurrentWriteError(f"could not lock {self.given}: its lock file keeps changing")

    def release(self) -> None:
        if self._lock_fd is None:
            return
        try:
            os.unlink(self._lock_path())  # still ours: we hold the lock
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    # ---- writing ------------------------------------------------------------------------------
    def temp_dir(self) -> Path:
        """The temporary sibling directory to write the files into (created on first call)."""
        if self._tmp is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.path.parent, self.path.name)
            self._tmp = private_temp_dir(self.path.parent, self.path.name)
        return self._tmp

    def commit(self) -> Path:
        """Move the files of the temporary directory into the target (manifest last); an existing
        set loses exactly the files its manifest listed. Returns the target path."""
        if self._tmp is None:
            raise RuntimeError("SetTarget.commit before anything was written")
        self.check()  # the target may have changed while we computed
        tmp, dst = self._tmp, self.path
        if not dst.exists():
            os.replace(tmp, dst)
            self._tmp = None
            return dst
        old = _manifest_of(dst)
        if old is not None and (dst / "manifest.json").exists():
            os.replace(dst / "manifest.json", dst / _OLD_MANIFEST)  # the set is now visibly "being replaced"
        new_files = sorted(f.name for f in tmp.iterdir())
        for f in sorted(set_files(old) - set(new_files) - {"manifest.json"}) if old is not None else []:
            try:
                (dst / f).unlink()
            except FileNotFoundError:
                pass
        for f in new_files:
            if f != "manifest.json":
                os.replace(tmp / f, dst / f)
        os.replace(tmp / "manifest.json", dst / "manifest.json")
        try:
            (dst / _OLD_MANIFEST).unlink()
        except FileNotFoundError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)
        self._tmp = None
        return dst

    def abort(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> SetTarget:
        self.acquire()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.abort()
        finally:
            self.release()
