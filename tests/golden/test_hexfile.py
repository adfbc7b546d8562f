"""The vectorised memh writer gives exactly the text of the one-word-at-a-time definition, in
every width, for any chunking; the reader's fast path agrees with the general one."""

from __future__ import annotations

import numpy as np
import pytest

from refmodel.golden import hexfile
from refmodel.golden.hexfile import f64_hex_bytes, memh_bytes, read_f64_hex, read_memh, write_memh, write_table
from refmodel.numerics.units.activation import ActParams
from refmodel.numerics.units.exp2 import Exp2Params


def _scalar_text(codes, width: int) -> str:
    """The format's definition, word by word: code & mask as ceil(width/4) lower-case hex digits."""
    return "".join(f"{int(c) & ((1 << width) - 1):0{(width + 3) // 4}x}\n" for c in codes)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 40, 48, 53, 63, 64])
def test_memh_bytes_matches_definition(width):
    rng = np.random.default_rng(width)
    lo, hi = (-(1 << (width - 1)), 1 << (width - 1)) if width > 1 else (0, 2)
    codes = np.concatenate([rng.integers(lo, hi, size=500, dtype=np.int64), [lo, hi - 1, 0, -1 if width > 1 else 1]])
    assert memh_bytes(codes, width).decode() == _scalar_text(codes.tolist(), width)
    assert memh_bytes(codes.astype(np.uint64) if width == 64 else codes, width) == memh_bytes(codes, width)


def test_wide_words_and_unsigned_inputs():
    big = np.array([(1 << 70) + 5, 3], dtype=object)
    assert memh_bytes(big, 72).decode() == _scalar_text([(1 << 70) + 5, 3], 72)
    u = np.array([0, 255, 128], dtype=np.uint8)
    assert memh_bytes(u, 8) == b"00\nff\n80\n"


def test_float64_bit_patterns():
    v = np.array([0.0, -0.0, 1.0, -2.5, np.inf, np.nan, 5e-324, 1.7976931348623157e308])
    text = f64_hex_bytes(v).decode()
    assert text == "".join(f"{int(b):016x}\n" for b in v.view(np.uint64).tolist())


def test_chunked_writing_is_identical(tmp_path, monkeypatch):
    codes = np.arange(-5000, 5000, dtype=np.int64)
    a = write_memh(tmp_path / "a.hex", codes, 16).read_bytes()
    monkeypatch.setattr(hexfile, "CHUNK_WORDS", 777)
    b = write_memh(tmp_path / "b.hex", codes, 16).read_bytes()
    assert a == b == _scalar_text(codes.tolist(), 16).encode()


def test_reader_fast_and_general_paths_agree(tmp_path):
    rng = np.random.default_rng(0)
    for width in (4, 6, 12, 16, 20, 40):
        codes = rng.integers(-(1 << (width - 1)), 1 << (width - 1), size=300)
        p = write_memh(tmp_path / f"w{width}.hex", codes, width)
        assert np.array_equal(read_memh(p, width, signed=True, count=300), codes)
        p.write_text(p.read_text().upper())  # upper-case digits: still the fast path
        assert np.array_equal(read_memh(p, width, signed=True), codes)
        p.write_text("// comment\n" + p.read_text().replace("\n", "_\n", 1))  # general path
        assert np.array_equal(read_memh(p, width, signed=True), codes)
    (tmp_path / "wide.hex").write_text("3f\n")  # a 2-digit word holding 6 bits, read as 5-bit words
    with pytest.raises(ValueError, match="wider than 5 bits"):
        read_memh(tmp_path / "wide.hex", 5)
    v = rng.normal(size=100)
    (tmp_path / "r.hex").write_bytes(f64_hex_bytes(v))
    assert np.array_equal(read_f64_hex(tmp_path / "r.hex", 100), v)
    with pytest.raises(ValueError, match="expected 99 words, found 100"):
        read_f64_hex(tmp_path / "r.hex", 99)


def test_unit_tables_written_by_the_golden_layer(tmp_path):
    """The unit models return tables; write_table turns them into the files the RTL loads."""
    p = write_table(tmp_path / "lut.hex", Exp2Params(lut_bits=6, lut_w=16).table())
    assert p.read_text().splitlines()[0] == "8000"
    assert read_memh(p, 16, count=64).tolist() == Exp2Params(lut_bits=6, lut_w=16).lut().tolist()
    t = ActParams("gelu_erf", "s10.6", "s12.8").table()
    q = write_table(tmp_path / "act.hex", t)
    lines = q.read_text().splitlines()
    assert len(lines) == 1024 and all(len(s) == 3 for s in lines)
    assert np.array_equal(read_memh(q, 12, signed=True, count=1024), t.codes)


def _pack_oracle(rows, width):
    """The definition: lane i of a word holds the code modulo 2^width at bits [i*width, (i+1)*width)."""
    return [sum((int(v) % (1 << width)) << (i * width) for i, v in enumerate(row)) for row in rows]


@pytest.mark.parametrize("width,n_lanes", [(1, 1), (8, 4), (8, 8), (16, 4), (13, 5), (8, 9), (16, 16), (63, 2), (64, 1),
                                           (64, 3)])
def test_pack_unpack_lanes_match_the_definition(width, n_lanes):
    from refmodel.golden.hexfile import pack_lanes, unpack_lanes

    rng = np.random.default_rng(width * 100 + n_lanes)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    codes = rng.integers(lo, hi, (50, n_lanes), endpoint=True, dtype=np.int64)
    codes[0], codes[1] = lo, hi  # extreme codes in every lane
    words = pack_lanes(codes, width)
    assert words == _pack_oracle(codes.tolist(), width)
    assert all(type(w) is int for w in words)
    assert np.array_equal(unpack_lanes(words, width, n_lanes, signed=True), codes)
    if width < 64:
        assert np.array_equal(unpack_lanes(words, width, n_lanes), codes & ((1 << width) - 1))


def test_pack_unpack_lanes_refuse_what_does_not_fit():
    from refmodel.golden.hexfile import pack_lanes, unpack_lanes

    with pytest.raises(ValueError, match="lane width must be 1..64 bits"):
        pack_lanes(np.zeros((2, 2), np.int64), 65)
    with pytest.raises(ValueError, match="lane codes must be integers"):
        pack_lanes(np.zeros((2, 2)), 8)
    with pytest.raises(ValueError, match="does not fit 2 lanes of 8 bits"):
        unpack_lanes([0x1_0000], 8, 2)
    with pytest.raises(ValueError, match="above 2\\^63-1"):
        unpack_lanes([1 << 63], 64, 1)
