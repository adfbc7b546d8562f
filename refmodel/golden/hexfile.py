"""``$readmemh`` files: one fixed-width hex word per line, two's complement masked to the word width.

Numeric contract: ``write_memh(path, codes, width)`` writes ``code & (2**width - 1)`` as exactly
``ceil(width/4)`` lower-case hex digits per line, one word per line, nothing else (no comments, no
``@addr``), so the same file feeds ``$readmemh`` and Python. ``read_memh(path, width, signed)``
reverses it and sign-extends when ``signed``. float64 values are written as their IEEE bit
patterns (16 digits, :func:`f64_hex_bytes`). Packed lanes: :func:`pack_lanes` puts lane 0 in the
least significant bits.

Formatting is vectorised (digits looked up from the nibbles into a byte array, no Python loop per
word) and files are written in chunks of :data:`CHUNK_WORDS` words, so memory stays proportional
to a chunk, not to the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from refmodel.numerics.units.table import UnitTable

__all__ = ["write_memh", "write_table", "read_memh", "format_memh", "memh_bytes", "f64_hex_bytes",
           "write_words", "read_f64_hex", "sha256_file", "pack_lanes", "unpack_lanes", "CHUNK_WORDS"]

#: words formatted per chunk when writing a file
CHUNK_WORDS = 1 << 20
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _check_width(width: int) -> None:
    if width < 1:
        raise ValueError(f"memh word width must be >= 1, got {width}")


def memh_bytes(codes: np.ndarray, width: int) -> bytes:
    """The bytes of a memh file holding ``codes`` (ints of any sign; two's complement, masked to
    ``width`` bits), one ``ceil(width/4)``-digit word per line."""
    _check_width(width)
    arr = np.asarray(codes).ravel()
    digits = (width + 3) // 4
    if width > 64 or arr.dtype.kind not in "iub":
        mask = (1 << width) - 1
        return "".join(f"{int(v) & mask:0{digits}x}\n" for v in arr.tolist()).encode()
    u = arr.astype(np.int64).view(np.uint64) if arr.dtype.kind != "u" else arr.astype(np.uint64)
    if width < 64:
        u = u & np.uint64((1 << width) - 1)
    # big-endian bytes -> nibbles -> ASCII digits, all in uint8
    be = u.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - (digits + 1) // 2:]
    nib = np.empty((be.shape[0], 2 * be.shape[1]), dtype=np.uint8)
    nib[:, 0::2] = be >> 4
    nib[:, 1::2] = be & 15
    nib = nib[:, nib.shape[1] - digits:]
    out = np.empty((u.size, digits + 1), dtype=np.uint8)
    out[:, :digits] = nib + np.uint8(48) + (nib > 9) * np.uint8(39)
    out[:, digits] = ord("\n")
    return out.tobytes()


def f64_hex_bytes(values: np.ndarray) -> bytes:
    """float64 values as their IEEE bit patterns, 16 hex digits a line."""
    bits = np.ascontiguousarray(values, dtype=np.float64).ravel().view(np.uint64)
    return memh_bytes(bits, 64)


def format_memh(codes: Iterable[int] | np.ndarray, width: int) -> str:
    """The text of a memh file for ``codes`` (any int-like, negatives as two's complement)."""
    return memh_bytes(np.asarray(list(codes) if not isinstance(codes, np.ndarray) else codes), width).decode()


class BytesSink(Protocol):
    """Where :func:`write_words` appends: an open binary file, or anything with ``write(bytes)``."""

    def write(self, data: bytes, /) -> int: ...


class Hasher(Protocol):
    """A ``hashlib`` hash object (``update(bytes)``)."""

    def update(self, data: bytes, /) -> None: ...


def write_words(fh: BytesSink, codes: np.ndarray, width: int, hasher: Hasher | None = None, *,
                f64: bool = False) -> None:
    """Append ``codes`` (or float64 bit patterns when ``f64``) to an open binary file in chunks of
    :data:`CHUNK_WORDS` words, feeding ``hasher`` (e.g. ``hashlib.sha256()``) when given."""
    flat = np.asarray(codes).reshape(-1)
    for i in range(0, max(flat.size, 1), CHUNK_WORDS):
        part = flat[i:i + CHUNK_WORDS]
        b = f64_hex_bytes(part) if f64 else memh_bytes(part, width)
        fh.write(b)
        if hasher is not None:
            hasher.update(b)


def write_memh(path: str | Path, codes: Iterable[int] | np.ndarray, width: int) -> Path:
    """Write ``codes`` as a memh file (see module docstring). Returns the path."""
    _check_width(width)
    path = Path(path)
    arr = codes if isinstance(codes, np.ndarray) else np.asarray(list(codes))
    with open(path, "wb") as fh:
        write_words(fh, arr, width)
    return path


def write_table(path: str | Path, table: UnitTable) -> Path:
    """Write a unit's lookup table (``table.width``-bit words, two's complement) as a memh file."""
    return write_memh(path, table.codes, table.width)


def _read_fixed_lines(data: bytes, digits: int) -> np.ndarray | None:
    """Fast path: every line is exactly ``digits`` lower/upper-case hex digits. uint64 words, or
    None when the file has any other shape (comments, ``_``, blank lines, other widths)."""
    n = len(data) // (digits + 1)
    if digits > 16 or n * (digits + 1) != len(data) or n == 0:
        return None
    a = np.frombuffer(data, dtype=np.uint8).reshape(n, digits + 1)
    if not np.all(a[:, digits] == ord("\n")):
        return None
    c = a[:, :digits] | np.uint8(0x20)  # lower case; digits are unchanged by the OR
    is_dig = (c >= ord("0")) & (c <= ord("9"))
    if not np.all(is_dig | ((c >= ord("a")) & (c <= ord("f")))):
        return None
    nib = np.where(is_dig, c - np.uint8(48), c - np.uint8(87))
    if digits % 2:
        nib = np.concatenate([np.zeros((n, 1), dtype=np.uint8), nib], axis=1)
    by = (nib[:, 0::2] << 4) | nib[:, 1::2]
    be = np.zeros((n, 8), dtype=np.uint8)
    be[:, 8 - by.shape[1]:] = by
    return be.view(">u8").reshape(n).astype(np.uint64)


def read_memh(path: str | Path, width: int, signed: bool = False, count: int | None = None) -> np.ndarray:
    """Read a memh file written by :func:`write_memh` (also accepts ``//`` comments and ``_``).

    Raises ``ValueError`` naming the file and line for a malformed or over-wide word, and for a
    word count different from ``count`` when given.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"memh file missing: {path}")
    data = path.read_bytes()
    fast = _read_fixed_lines(data, (width + 3) // 4) if width <= 63 else None
    if fast is not None and (width % 4 == 0 or not np.any(fast >> np.uint64(width))):
        if count is not None and fast.size != count:
            raise ValueError(f"{path}: expected {count} words, found {fast.size} (truncated or padded file)")
        out = fast.astype(np.int64)
        if signed:
            sign = np.int64(1) << np.int64(width - 1)
            out = (out ^ sign) - sign
        return out
    words: list[int] = []
    for lineno, line in enumerate(data.decode(errors="replace").splitlines(), 1):
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


def read_f64_hex(path: str | Path, count: int) -> np.ndarray:
    """float64 values from a file of 16-digit IEEE bit patterns (:func:`f64_hex_bytes`);
    ``ValueError`` naming the file for a wrong word count or a malformed line."""
    path = Path(path)
    data = path.read_bytes()
    fast = _read_fixed_lines(data, 16)
    if fast is None:
        try:
            words = [int(t, 16) for t in data.decode(errors="replace").split()]
        except ValueError:
            raise ValueError(f"{path}: not a file of 16-digit hex words") from None
        if any(w >> 64 for w in words):
            raise ValueError(f"{path}: a word is wider than 64 bits")
        fast = np.array(words, dtype=np.uint64)
    if fast.size != count:
        raise ValueError(f"{path}: expected {count} words, found {fast.size} (truncated or edited file)")
    return fast.view(np.float64)


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack_lanes(lanes: Sequence[np.ndarray] | np.ndarray, width: int) -> list[int]:
    """Pack rows of lane codes into Python ints, lane 0 in the least significant ``width`` bits.

    ``lanes`` has shape (n_words, n_lanes) of integer codes (any sign: each is taken modulo
    ``2^width``, i.e. two's complement for negative codes); ``1 <= width <= 64``. Words of up to
    64 bits are packed in uint64 arithmetic; wider words lane by lane into Python ints."""
    if not 1 <= width <= 64:
        raise ValueError(f"lane width must be 1..64 bits (got {width})")
    arr = np.asarray(lanes)
    if arr.ndim != 2:
        raise ValueError(f"lanes must have shape (n_words, n_lanes) (got shape {arr.shape})")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"lane codes must be integers (got dtype {arr.dtype})")
    codes = arr.astype(np.uint64) & np.uint64((1 << width) - 1)  # two's complement of negatives
    n_words, n_lanes = codes.shape
    if n_lanes * width <= 64:
        shifts = np.arange(n_lanes, dtype=np.uint64) * np.uint64(width)
        packed = np.bitwise_or.reduce(codes << shifts, axis=1) if n_lanes else np.zeros(n_words, np.uint64)
        return [int(w) for w in packed.tolist()]
    words = np.zeros(n_words, dtype=object)
    for i in range(n_lanes):  # one vector operation per lane
        words |= codes[:, i].astype(object) << (i * width)
    return [int(w) for w in words.tolist()]


def unpack_lanes(words: Iterable[int], width: int, n_lanes: int, signed: bool = False) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: shape (n_words, n_lanes) int64; with ``signed`` each lane
    is read as two's complement. ``1 <= width <= 64`` (``width`` 64 unsigned above 2^63-1 does
    not fit int64 and is refused)."""
    if not 1 <= width <= 64:
        raise ValueError(f"lane width must be 1..64 bits (got {width})")
    ints = [int(w) for w in words]
    if any(w < 0 or w >> (n_lanes * width) for w in ints):
        bad = next(w for w in ints if w < 0 or w >> (n_lanes * width))
        raise ValueError(f"word {bad:#x} does not fit {n_lanes} lanes of {width} bits")
    mask = (1 << width) - 1
    if n_lanes * width <= 64:
        u = np.array(ints, dtype=np.uint64)
        shifts = np.arange(n_lanes, dtype=np.uint64) * np.uint64(width)
        lanes = (u[:, None] >> shifts[None, :]) & np.uint64(mask)
    else:
        obj = np.array(ints, dtype=object)
        lanes = np.stack([((obj >> (i * width)) & mask).astype(np.uint64) for i in range(n_lanes)], axis=1) \
            if n_lanes else np.zeros((len(ints), 0), np.uint64)
    lanes = lanes.reshape(-1, n_lanes)
    if signed:
        if width == 64:
            return lanes.view(np.int64)
        sign = np.uint64(1 << (width - 1))
        return (lanes.astype(np.int64) - ((lanes & sign).astype(np.int64) << np.int64(1)))
    if width == 64 and (lanes >> np.uint64(63)).any():
        raise ValueError("unsigned 64-bit lane values above 2^63-1 do not fit int64 (read them signed)")
    return lanes.astype(np.int64)
