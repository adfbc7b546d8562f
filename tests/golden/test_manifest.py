"""Golden set files: byte-identical rewrites, sha256 checks, clear errors on damage."""


import numpy as np
import pytest

from refmodel.errors import CheckFailed, UserError
from refmodel.golden.hexfile import read_memh, write_memh
from refmodel.golden.manifest import (
    SCHEMA_VERSION,
    GoldenTensor,
    ToleranceTier,
    check_files,
    load_tensor,
    read_manifest,
    write_set,
)


def _tensors():
    rng = np.random.default_rng(0)
    a = rng.integers(-(1 << 15), 1 << 15, size=(3, 5))
    ref = a / 256.0 + rng.normal(0, 1e-3, size=a.shape)
    return [
        GoldenTensor("x", a, "s16.8", 16, True, role="input"),
        GoldenTensor("y", a[:, :2] & 0xFF, "u8.8", 8, False, reference=ref[:, :2], tolerance=0.01),
        GoldenTensor("z", a, "s16.8", 16, True, reference=ref, tolerance=np.abs(ref) * 1e-3 + 1e-9),
    ]


def test_write_read_roundtrip(tmp_path):
    out = tmp_path / "set"
    write_set(out, _tensors(), {"generator": {"name": "refmodel", "version": "test"}, "seed": 1})
    m = read_manifest(out)
    check_files(out, m)
    t = load_tensor(out, "z", m)
    assert np.array_equal(t["codes"], _tensors()[2].codes)
    assert np.array_equal(t["reference"], _tensors()[2].reference)  # float64 bits round-trip exactly
    assert np.array_equal(t["tolerance"], _tensors()[2].tolerance)
    y = load_tensor(out, "y", m)
    assert m["tensors"]["y"]["compare"] == {"abs": 0.01}
    assert np.all(y["tolerance"] == 0.01)
    assert m["tensors"]["x"]["compare"] == "bit_exact"


def test_byte_identical_rewrite(tmp_path):
    meta = {"generator": {"name": "refmodel", "version": "test"}, "seed": 1}
    write_set(tmp_path / "a", _tensors(), meta)
    write_set(tmp_path / "b", _tensors(), meta)
    for f in sorted(p.name for p in (tmp_path / "a").iterdir()):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    # an existing set is replaced only with force, and then only its own files go
    with pytest.raises(UserError, match="already holds a golden set; pass --force"):
        write_set(tmp_path / "a", _tensors()[:1], meta)
    (tmp_path / "a" / "notes.txt").write_text("mine")
    write_set(tmp_path / "a", _tensors()[:1], meta, force=True)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["manifest.json", "notes.txt", "x.hex"]


@pytest.mark.parametrize("damage", ["missing", "truncated", "edited", "bad_json", "no_manifest"])
def test_damage_is_named(tmp_path, damage):
    out = tmp_path / "set"
    write_set(out, _tensors(), {"generator": {"name": "refmodel", "version": "test"}})
    target = out / "z.hex"
    if damage == "missing":
        target.unlink()
        match = r"z\.hex .*missing"
    elif damage == "truncated":
        target.write_text("".join(target.read_text().splitlines(True)[:-2]))
        match = r"z\.hex has 13 words, manifest says 15"
    elif damage == "edited":
        lines = target.read_text().splitlines(True)
        lines[0] = "0000\n" if lines[0] != "0000\n" else "0001\n"
        target.write_text("".join(lines))
        match = r"z\.hex does not match its sha256"
    elif damage == "bad_json":
        (out / "manifest.json").write_text("{not json")
        match = r"manifest\.json: not valid JSON"
    else:
        (out / "manifest.json").unlink()
        match = r"manifest\.json is missing"
    with pytest.raises(UserError if damage == "no_manifest" else CheckFailed, match=match):
        check_files(out)


def test_failed_write_leaves_nothing(tmp_path):
    bad = GoldenTensor("w", np.zeros((2, 2), dtype=np.int64), "s8.0", 8, True,
                       reference=np.zeros((3, 3)))  # shape mismatch -> error mid-write
    with pytest.raises(ValueError, match="reference shape"):
        write_set(tmp_path / "s", _tensors() + [bad], {"generator": {}})
    assert list(tmp_path.iterdir()) == []  # no temporary, no lock file, no half set


def test_memh_matches_readmemh_conventions(tmp_path):
    p = write_memh(tmp_path / "a.hex", np.array([-1, 0, 5, -32768]), 16)
    assert p.read_text() == "ffff\n0000\n0005\n8000\n"
    assert read_memh(p, 16, signed=True).tolist() == [-1, 0, 5, -32768]
    with pytest.raises(ValueError, match="expected 3 words, found 4"):
        read_memh(p, 16, count=3)
    (tmp_path / "b.hex").write_text("12\nzz\n")
    with pytest.raises(ValueError, match=r"b\.hex:2: not a hex word"):
        read_memh(tmp_path / "b.hex", 8)


def test_unsigned_codes_decode_unsigned(tmp_path):
    """probs (u16.15) of 1.0 - 2^-15 and exactly representable values read back non-negative: the
    manifest records the format's signedness (issue found by the layer bench: 0x8000 read as -1)."""
    from refmodel.golden.generate import generate_set

    d = generate_set("tiny", "hw", tmp_path / "s", seed=0)
    m = read_manifest(d)
    assert m["tensors"]["probs"]["signed"] is False and m["tensors"]["q"]["signed"] is True
    p = load_tensor(d, "probs", m)["codes"]
    assert p.min() >= 0 and p.max() >= 1 << 14


def test_tolerance_tiers_roundtrip(tmp_path):
    """Schema 2: a stage tensor compares bit-exactly and carries local / warning / end-to-end tiers;
    the local and warning tiers share one reference file; load_tensor returns every tier and keeps
    the end-to-end one as ``reference`` / ``tolerance``."""
    rng = np.random.default_rng(1)
    codes = rng.integers(-(1 << 15), 1 << 15, size=(2, 4))
    lref, ref = codes / 256.0 + 1e-4, codes / 256.0 + 3e-3
    loc = np.full(codes.shape, 2.0 ** -9)
    e2e = np.where(np.arange(8).reshape(2, 4) == 3, np.inf, 0.01)
    tiers = {"local": ToleranceTier(loc, lref, {"inputs": ["a", "w"]}),
             "warning": ToleranceTier(loc / 2, lref, {"failure_probability": 1e-6}),
             "end_to_end": ToleranceTier(e2e, ref, {"finite_fraction": 7 / 8})}
    t = GoldenTensor("q", codes, "s16.8", 16, True, reference=ref, tolerances=tiers)
    write_set(tmp_path / "s", [t], {"generator": {"name": "refmodel", "version": "test"}})
    m = read_manifest(tmp_path / "s")
    assert m["schema_version"] == SCHEMA_VERSION == 2
    e = m["tensors"]["q"]
    assert e["compare"] == "bit_exact" and e["reference"] == "q.ref.hex"
    assert e["tolerances"]["local"] == {"abs_file": "q.ltol.hex", "reference": "q.lref.hex",
                                        "max_abs": 2.0 ** -9, "inputs": ["a", "w"]}
    assert e["tolerances"]["warning"]["reference"] == "q.lref.hex"
    assert e["tolerances"]["end_to_end"] == {"abs_file": "q.tol.hex", "reference": "q.ref.hex", "max_abs": 0.01,
                                             "finite_fraction": 7 / 8}
    assert sorted(e["sha256"]) == ["q.hex", "q.lref.hex", "q.ltol.hex", "q.ref.hex", "q.tol.hex", "q.wtol.hex"]
    check_files(tmp_path / "s", m)
    d = load_tensor(tmp_path / "s", "q", m)
    assert np.array_equal(d["tolerances"]["local"]["abs"], loc) and np.array_equal(d["tolerances"]["local"]["reference"], lref)
    assert d["tolerances"]["warning"]["failure_probability"] == 1e-6
    assert np.array_equal(d["tolerance"], e2e) and np.array_equal(d["reference"], ref)
    # a tier whose reference clashes with another file of the same name is refused, nothing written
    bad = GoldenTensor("q", codes, "s16.8", 16, True, reference=ref + 1, tolerances=tiers)
    with pytest.raises(ValueError, match="q.ref.hex"):
        write_set(tmp_path / "t", [bad], {"generator": {"name": "refmodel", "version": "test"}})
    assert not (tmp_path / "t").exists()


def test_schema_1_sets_are_still_read(tmp_path):
    import json

    write_set(tmp_path / "s", _tensors(), {"generator": {"name": "refmodel", "version": "test"}})
    p = tmp_path / "s" / "manifest.json"
    m = json.loads(p.read_text())
    m["schema_version"] = 1
    p.write_text(json.dumps(m))
    assert read_manifest(tmp_path / "s")["schema_version"] == 1
    m["schema_version"] = 3
    p.write_text(json.dumps(m))
    with pytest.raises(CheckFailed, match="schema_version 3"):
        read_manifest(tmp_path / "s")
