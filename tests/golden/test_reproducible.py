"""A golden set is the same, byte for byte, on every machine: generated in separate processes under
different BLAS thread counts and kernels (``OPENBLAS_NUM_THREADS``, ``OPENBLAS_CORETYPE``) and
numpy SIMD dispatch levels (``NPY_DISABLE_CPU_FEATURES``), each of which changed the float64
reference before it was made reproducible. Each run reports the BLAS core and the numpy features
it actually ran with, so a setting that did not take effect fails the test instead of passing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

# fixed point with unit tables; float softmax + GELU-erf; RoPE (sin/cos) + SiLU
SETS = [("tiny", "hw"), ("tiny-bert", "fp8"), ("tiny-llama", "fp16")]

_GEN = textwrap.dedent("""
    import hashlib, json, sys
    from pathlib import Path
    import numpy as np
    from numpy._core._multiarray_umath import __cpu_features__
    from refmodel.golden import generate_set
    out = Path(sys.argv[1])
    files = {}
    for cfg, plan in json.loads(sys.argv[2]):
        d = generate_set(cfg, plan, out / f"{cfg}_{plan}", seed=0)
        files.update({f"{d.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())})
    print(json.dumps({"files": files, "features": sorted(k for k, v in __cpu_features__.items() if v)}))
""")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _dispatch_targets() -> list[str]:
    """numpy's run-time dispatch targets this CPU has, lowest first (what NPY_DISABLE_CPU_FEATURES
    may switch off)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [t for t in __cpu_dispatch__ if __cpu_features__.get(t)]


def _environments() -> dict[str, dict[str, str]]:
    flags = _cpu_flags()
    targets = _dispatch_targets()
    envs = {"1 thread": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            "2 threads, generic BLAS kernel, numpy baseline SIMD":
                {"OPENBLAS_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Prescott",
                 "NPY_DISABLE_CPU_FEATURES": " ".join(targets)}}
    if "avx2" in flags:
        envs["Haswell BLAS kernel, numpy AVX2 paths"] = {
            "OPENBLAS_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Haswell",
            "NPY_DISABLE_CPU_FEATURES": " ".join(targets[1:])}
    if "avx512f" in flags:
        envs["SkylakeX BLAS kernel, all numpy SIMD"] = {"OPENBLAS_NUM_THREADS": "1", "OPENBLAS_CORETYPE": "SkylakeX"}
    return envs


def _run_all(tmp_path: Path, sets: list[tuple[str, str]]) -> dict[str, dict]:
    procs = {}
    for i, (label, extra) in enumerate(_environments().items()):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "NPY_", "OMP_"))}
        env.update(extra, OPENBLAS_VERBOSE="2", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        procs[label] = (extra, subprocess.Popen([sys.executable, "-c", _GEN, str(tmp_path / f"env{i}"), json.dumps(sets)],
                                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = {}
    for label, (extra, p) in procs.items():
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, f"{label}: {err[-2000:]}"
        r = json.loads(out.strip().splitlines()[-1])
        core = [ln.split(":", 1)[1].strip() for ln in err.splitlines() if ln.startswith("Core:")]
        r["core"] = core[0] if core else None
        results[label] = (extra, r)
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return _run_all(tmp_path_factory.mktemp("repro"), SETS)


def test_settings_took_effect(runs):
    """Each environment really ran another BLAS kernel / numpy dispatch level."""
    assert len(runs) >= 3
    for label, (extra, r) in runs.items():
        want = extra.get("OPENBLAS_CORETYPE")
        if want == "Prescott":
            assert r["core"] in ("Prescott", "Katmai", "Core2"), (label, r["core"])
        elif want is not None:
            assert r["core"] == want, (label, r["core"])
        for feat in extra.get("NPY_DISABLE_CPU_FEATURES", "").split():
            assert feat not in r["features"], (label, feat)


def _split(files: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    tol = {k: v for k, v in files.items() if k.endswith(("tol.hex", "manifest.json"))}
    return {k: v for k, v in files.items() if k not in tol}, tol


def test_codes_references_and_tables_are_byte_identical(runs):
    """Every code file, every float64 reference (.ref.hex), every unit table and the source are
    identical in every environment."""
    (base_label, (_, base)), *others = runs.items()
    want, _ = _split(base["files"])
    assert any(k.endswith(".ref.hex") for k in want) and len(want) > 100
    for label, (_, r) in others:
        got, _ = _split(r["files"])
        diff = sorted(k for k in want if got.get(k) != want[k])
        assert not diff, f"{label} vs {base_label}: {len(diff)} files differ, e.g. {diff[:5]}"


def test_tolerances_and_manifests_are_byte_identical(runs):
    """The tolerance files of every tier and the manifests too: the bound arithmetic may move by
    ulps with the BLAS kernel, but written tolerances are rounded up to 12 significant bits
    (:func:`refmodel.golden.generate.written_bound`)."""
    (base_label, (_, base)), *others = runs.items()
    _, want = _split(base["files"])
    for label, (_, r) in others:
        _, got = _split(r["files"])
        diff = sorted(k for k in want if got.get(k) != want[k])
        assert not diff, f"{label} vs {base_label}: {len(diff)} files differ, e.g. {diff[:5]}"


def test_reference_ops_ignore_blas_threading_in_process():
    """The same in one process: a product whose BLAS result depends on the summation order is
    correctly rounded, hence equal to the exact value whatever the order (here: reversed K)."""
    from fractions import Fraction

    from refmodel.layer.ops import matmul

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 300)) * np.exp2(rng.integers(-20, 20, size=(6, 300))), rng.normal(size=(300, 4))
    got = matmul(a, b)
    assert np.array_equal(got, matmul(a[:, ::-1].copy(), b[::-1].copy()))
    exact = np.array([[float(sum(Fraction(x) * Fraction(y) for x, y in zip(r, c, strict=True)))
                       for c in b.T.tolist()] for r in a.tolist()])
    assert np.array_equal(got, exact)
