"""``$readmemh`` files: one fixed-width hex word per line, two's complement masked to the word width.

Numeric contract: ``write_memh(path, codes, width)`` writes ``code & (2**width - 1)`` as exactly
``ceil(width/4)`` lower-case hex digits per line, one word per line, nothing else (no comments, no
``@addr``), so the same file feeds ``$readmemh`` and Python. ``read_memh(path, width, signed)``
reverses it and sign-extends when ``signed``. Packed lanes: :func:`pack_lanes` puts lane 0 in the
least significant bits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_memh", "read_memh", "format_memh", "pack_lanes", "unpack_lanes"]


def format_memh(codes: Iterable[int] | np.ndarray, width: int) -> str:
    """The text of a memh file for ``codes`` (any int-like, negatives as two's complement)."""
    if width < 1:
        raise ValueError(f"memh word width must be >= 1, got {width}")
    digits = (width + 3) // 4
    mask = (1 << width) - 1
    arr = np.asarray(codes).ravel()
    if width <= 63 and arr.dtype.kind in "iub":
        u = arr.astype(np.int64).view(np.uint64) & np.uint64(mask)
        fmt = f"%0{digits}x"
        return "".join(fmt % int(v) + "\n" for v in u.tolist()) if u.size < 64 else (
            "\n".join(np.char.zfill(np.char.mod("%x", u), digits).tolist()) + "\n"
        )
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in arr.tolist())


def write_memh(path: str | Path, codes: Iterable[int] | np.ndarray, width: int) -> Path:
    """Write ``codes`` as a memh file (see module docstring). Returns the path."""
    path = Path(path)
    path.write_text(format_memh(codes, width))
    return path


def read_memh(path: str | Path, width: int, signed: bool = False, count: int | None = None) -> np.ndarray:
    """Read a memh file written by :func:`write_memh` (also accepts ``//`` comments and ``_``).

    Raises ``ValueError`` naming the file and line for a malformed or over-wide word, and for a
    word count different from ``count`` when given.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"memh file missing: {path}")
    words: list[int] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("//", 1)[0].strip().replace("_", "")
        if not text:
            continue
        for tok in text.split():
            try:
                v = int(tok, 16)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not a hex word: {tok!r}") from None
            if v >> width:
                raise ValueError(f"{path}:{lineno}: word {tok} is wider than {width} bits")
            words.append(v)
    if count is not None and len(words) != count:
        raise ValueError(f"{path}: expected {count} words, found {len(words)} (truncated or padded file)")
    if width <= 63:
        out = np.array(words, dtype=np.int64)
        if signed:
            sign = np.int64(1) << np.int64(width - 1)
            out = (out ^ sign) - sign
        return out
    vals = [(w - (1 << width)) if signed and w >> (width - 1) else w for w in words]
    return np.array(vals, dtype=object)


def pack_lanes(lanes: Sequence[np.ndarray] | np.ndarray, width: int) -> list[int]:
    """Pack rows of lane codes into Python ints, lane 0 in the least significant ``width`` bits.

    ``lanes`` has shape (n_words, n_lanes)."""
    arr = np.asarray(lanes)
    mask = (1 << width) - 1
    out = []
    for row in arr.tolist():
        w = 0
        for i, v in enumerate(row):
            w |= (int(v) & mask) << (i * width)
        out.append(w)
    return out


def unpack_lanes(words: Iterable[int], width: int, n_lanes: int, signed: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: shape (n_words, n_lanes) int64."""
    mask = (1 << width) - 1
    rows = []
    for w in words:
        w = int(w)
        row = []
        for i in range(n_lanes):
            v = (w >> (i * width)) & mask
            if signed and v >> (width - 1):
                v -= 1 << width
            row.append(v)
        rows.append(row)
    return np.array(rows, dtype=np.int64).reshape(-1, n_lanes)
