"""refmodel.cocotb.GoldenSet: codes and values, stages, tolerance tiers of schema 1 and 2 sets."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from refmodel.cocotb import GoldenSet, Scoreboard, ScoreboardError
from refmodel.errors import UserError
from refmodel.golden.manifest import GoldenTensor, write_set
from refmodel.numerics.fixed import FixedFormat
from refmodel.resources import golden_sets_dir


def _f64_lines(a: np.ndarray) -> str:
    return "".join(f"{int(b):016x}\n" for b in np.ascontiguousarray(a, dtype=np.float64).view(np.uint64).ravel())


def write_v2_set(path, rng_seed: int = 0):
    """A small schema 2 set written with refmodel.golden.manifest.write_set, whose stage ``y`` (s16.8,
    shape [3, 4], inputs x and w) carries the three tiers of the manifest's ``tolerances`` object.
    Returns (codes, local reference, local bound, warning bound, end-to-end reference, bound)."""
    rng = np.random.default_rng(rng_seed)
    x = rng.integers(-500, 500, (3, 4))
    w = rng.integers(-100, 100, (4, 4))
    y = rng.integers(-2000, 2000, (3, 4))
    lref = y / 256.0 + rng.uniform(-1.5, 1.5, y.shape) / 256.0  # within 1.5 LSB of the codes
    lb = np.full(y.shape, 2.0 / 256.0)
    wb = np.full(y.shape, 1.0 / 256.0)
    eref = lref + 0.01
    eb = np.full(y.shape, 0.05)
    eb[0, 0] = np.inf
    tiers = {
        "local": {"abs_file": "y.ltol.hex", "reference": "y.lref.hex", "max_abs": float(lb.max()),
                  "inputs": ["x", "w"]},
        "warning": {"abs_file": "y.wtol.hex", "reference": "y.lref.hex", "max_abs": float(wb.max()),
                    "failure_probability": 1e-6},
        "end_to_end": {"abs_file": "y.tol.hex", "reference": "y.ref.hex", "max_abs": float(eb[np.isfinite(eb)].max()),
                       "finite_fraction": float(np.isfinite(eb).mean())},
    }
    tensors = [
        GoldenTensor("x", x, "s16.8", 16, True, role="input"),
        GoldenTensor("w", w, "s8.7", 8, True, role="weight"),
        GoldenTensor("y", y, "s16.8", 16, True, role="output", reference=eref, tolerance=eb,
                     extra={"tolerances": tiers}),
    ]
    meta = {"schema_version": 2, "generator": {"name": "refmodel", "version": "test"},
            "units": {"y": {"kind": "linear", "inputs": ["x", "w"]}}}
    write_set(path, tensors, meta)
    files = {"y.ltol.hex": lb, "y.lref.hex": lref, "y.wtol.hex": wb}
    for name, arr in files.items():
        (path / name).write_text(_f64_lines(arr))
    m = json.loads((path / "manifest.json").read_text())
    for name in files:
        m["tensors"]["y"]["sha256"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    return y, lref, lb, wb, eref, eb


def schema1_copy(dest):
    """The committed tiny hw set as a schema 1 writer left it: no local/warning tiers, only the
    end-to-end ``reference``/``tolerance`` files named on each tensor."""
    src = golden_sets_dir() / "tiny_gpt2_hw"
    shutil.copytree(src, dest)
    m = json.loads((dest / "manifest.json").read_text())
    m["schema_version"] = 1
    for e in m["tensors"].values():
        tiers = e.pop("tolerances", {})
        if "end_to_end" in tiers:
            e2e = tiers["end_to_end"]
            e["compare"] = {"abs_file": e2e["abs_file"], "max_abs": e2e["max_abs"]}
        for tier in ("local", "warning"):
            for key in ("abs_file", "reference"):
                fname = tiers.get(tier, {}).get(key)
                if fname and fname in e["sha256"] and fname != e.get("reference"):
                    del e["sha256"][fname]
                    (dest / fname).unlink(missing_ok=True)
    (dest / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    return GoldenSet(dest)


def test_committed_sets_are_schema2_with_all_tiers():
    gs = GoldenSet.open("tiny_gpt2_hw")
    assert gs.schema_version == 2 and gs.tiers("q") == ["local", "warning", "end_to_end"]


def test_schema1_set_codes_values_and_end_to_end_tier(tmp_path):
    gs = schema1_copy(tmp_path / "v1")
    assert gs.schema_version == 1
    probs = gs.codes("probs")
    assert gs.fmt("probs") == FixedFormat.parse("u16.15")
    assert probs.min() >= 0 and probs.max() <= 0xFFFF  # read as the unsigned format says
    assert np.array_equal(gs.values("probs"), np.ldexp(probs.astype(np.float64), -15))
    st = gs.stage("q")
    assert list(st.inputs) == ["ln1", "wq", "bq"] and st.output.shape == (4, 16, 16)
    assert st.unit["kind"] == "linear" and "mac" in st.unit
    assert gs.tiers("q") == ["end_to_end"] and gs.tolerance("q", "local") is None
    tol = gs.tolerance("q", "end_to_end")
    assert tol is not None and tol.abs.shape == tol.reference.shape == (4, 16, 16)


def test_schema2_tiers_are_read(tmp_path):
    y, lref, lb, wb, eref, eb = write_v2_set(tmp_path / "v2")
    gs = GoldenSet(tmp_path / "v2")
    assert gs.schema_version == 2 and gs.tiers("y") == ["local", "warning", "end_to_end"]
    local = gs.tolerance("y", "local")
    assert local is not None and np.array_equal(local.reference, lref) and np.array_equal(local.abs, lb)
    assert local.meta["inputs"] == ["x", "w"]
    warn = gs.tolerance("y", "warning")
    assert warn is not None and warn.meta["failure_probability"] == 1e-6 and np.array_equal(warn.abs, wb)
    e2e = gs.tolerance("y", "end_to_end")
    assert e2e is not None and np.array_equal(e2e.reference, eref) and np.isinf(e2e.abs[0, 0])
    assert list(gs.stage("y").tolerances) == ["local", "warning", "end_to_end"]


def test_schema2_tier_file_damage_is_caught(tmp_path):
    write_v2_set(tmp_path / "v2")
    f = tmp_path / "v2" / "y.ltol.hex"
    f.write_text(f.read_text().replace("0", "1", 1))
    with pytest.raises(UserError, match="y.ltol.hex does not match its sha256"):
        GoldenSet(tmp_path / "v2")


def test_check_stage_uses_local_tier_and_reports_warnings(tmp_path):
    y, lref, lb, wb, *_ = write_v2_set(tmp_path / "v2")
    gs = GoldenSet(tmp_path / "v2")
    sb = Scoreboard("v2", report=tmp_path / "r.jsonl")
    r_exact, r_tol = sb.check_stage(gs, "y", y)
    assert r_exact.mode == "exact" and r_exact.passed and r_tol.tier == "local"
    over_warning = int((np.abs(y / 256.0 - lref) > wb).sum())
    assert over_warning > 0 and r_tol.warnings == over_warning and r_tol.passed
    # an honest-but-different DUT: every code one LSB off still passes the local bound here where
    # |err| stays within 2 LSB, and fails (naming the element) where it does not
    off = y + 1
    first_bad = np.argwhere(np.abs(off / 256.0 - lref) > lb)
    sb2 = Scoreboard("v2", fail_fast=False)
    res = sb2.check_stage(gs, "y", off, exact=False)
    assert res[0].failed == len(first_bad)
    if len(first_bad):
        assert res[0].first is not None and list(res[0].first.index) == first_bad[0].tolist()


def test_schema1_check_stage_says_it_fell_back(tmp_path):
    gs = schema1_copy(tmp_path / "v1")
    sb = Scoreboard("fallback", report=tmp_path / "r.jsonl")
    _, tol = sb.check_stage(gs, "q", gs.codes("q"))
    assert tol.tier == "end_to_end" and tol.note is not None and "no local tier" in tol.note
    with pytest.raises(ScoreboardError, match=r"v1/q: 1 of 1024 elements differ"):
        bad = gs.codes("q").copy()
        bad[2, 3, 4] += 3
        sb.check_stage(gs, "q", bad)


def test_open_names_the_missing_set():
    with pytest.raises(UserError, match="golden set 'no_such_set' not found.*tiny_gpt2_hw"):
        GoldenSet.open("no_such_set")
    with pytest.raises(UserError, match="is not a stage"):
        GoldenSet.open("tiny_gpt2_hw").inputs("wq")
