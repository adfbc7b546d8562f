"""``refmodel sweep`` on the default LocalCluster (2 worker processes): every job kind on a small
grid, and each result the same as running that job directly in this process -- the same figures,
the same golden-set bytes, the same RTL cycles.

One test (one cluster): the checks share the sweep, and a module split across test workers would
start the cluster twice."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from sweep_testkit import need_icarus, records, run

from refmodel.commands._common import json_ready

RECORD_KEYS = {"id", "job", "config", "plan", "seed", "options", "status", "message", "figures", "timings",
               "duration_s", "worker", "golden_set"}


def _same_json(a: dict) -> dict:
    """``a`` as it reads back from results.json."""
    return json.loads(json.dumps(json_ready(a)))


def test_local_cluster_sweep_matches_in_process_jobs(tmp_path, layer_files, capsys):
    need_icarus()
    from refmodel.accuracy import chain_accuracy
    from refmodel.bounds.validate_layer import run_trials
    from refmodel.golden.generate import generate_set
    from refmodel.golden.manifest import load_tensor
    from refmodel.layer.config import LayerConfig
    from refmodel.layer.plan import PrecisionPlan
    from refmodel.layer.weights import random_inputs, random_weights
    from refmodel.rtl_layer import simulate_layer
    from refmodel.sweep import JobOptions, build_grid, run_job

    small = layer_files / "small.json"
    out = tmp_path / "sweep"
    code, stdout, err = run(capsys, "sweep", "--workers", "2", "--threads-per-worker", "1",
                            "--configs", f"{small},tiny-llama", "--plans", "hw,fp8", "--seeds", "0-1",
                            "--jobs", "golden,bounds,accuracy,rtl", "--trials", "2", "--out", str(out))
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    recs = records(out)
    assert res["summary"] == {"jobs": 32, "passed": 26, "failed": 0, "error": 0, "skipped": 6}
    assert res["cluster"]["local"] and res["cluster"]["workers"] == 2
    assert list(res["grid"]["configs"]) == ["small", "tiny-llama"] and res["grid"]["seeds"] == [0, 1]
    for r in recs.values():
        assert set(r) == RECORD_KEYS, r["id"]
        assert r["duration_s"] > 0 and r["worker"]["address"].startswith("tcp://")
    # the jobs ran in the two worker processes, not here
    pids = {r["worker"]["pid"] for r in recs.values()}
    assert len(pids) == 2 and os.getpid() not in pids

    # RTL: bit-exact where layer_top implements the plan; the reason recorded where it does not
    for s in (0, 1):
        f = recs[f"small/hw/s{s}/rtl"]["figures"]
        assert recs[f"small/hw/s{s}/rtl"]["status"] == "passed" and f["bit_exact_stages"] == f["stages"] == 15
        assert recs[f"small/fp8/s{s}/rtl"]["status"] == "skipped"
        assert "not fixed point" in recs[f"small/fp8/s{s}/rtl"]["message"]
        r = recs[f"tiny-llama/hw/s{s}/rtl"]
        assert r["status"] == "skipped" and "llama" in r["message"], r
        assert recs[f"tiny-llama/fp8/s{s}/rtl"]["status"] == "skipped"
    assert all(r["status"] == "passed" for r in recs.values() if r["job"] != "rtl")

    # golden sets: kept in the out dir, identical to generating them here
    cfg = LayerConfig.from_dict(json.loads(small.read_text()))
    kept = out / recs["small/hw/s0/golden"]["golden_set"]
    assert kept == out / "golden" / "small_hw_s0"
    generate_set(cfg, "hw", 0, tmp_path / "here")
    names = sorted(p.name for p in (tmp_path / "here").iterdir())
    assert names == sorted(p.name for p in kept.iterdir())
    for n in names:
        assert (tmp_path / "here" / n).read_bytes() == (kept / n).read_bytes(), n
    assert recs["small/hw/s0/golden"]["figures"]["manifest_sha256"] == hashlib.sha256(
        (kept / "manifest.json").read_bytes()).hexdigest()

    # one job of each kind run in-process: the same figures (and golden bytes) as on the workers
    grid = build_grid(f"{small},tiny-llama", "hw,fp8", "0-1", "golden,bounds,accuracy,rtl", JobOptions(trials=2))
    specs = {s.id: s for s in grid.jobs()}
    for jid in ("tiny-llama/fp8/s1/golden", "small/fp8/s1/bounds", "tiny-llama/hw/s0/accuracy", "small/hw/s1/rtl"):
        here = run_job(specs[jid])
        assert here.record["status"] == recs[jid]["status"] == "passed"
        assert _same_json(here.record["figures"]) == recs[jid]["figures"], jid
        if here.files:
            kept = out / recs[jid]["golden_set"]
            assert sorted(here.files) == sorted(p.name for p in kept.iterdir())
            assert all(data == (kept / n).read_bytes() for n, data in here.files.items())

    # the figures are what the library computes for that grid point
    w, x = random_weights(cfg, seed=0), random_inputs(cfg, seed=10_000)
    rows = chain_accuracy(cfg, [w], x, PrecisionPlan.from_name("fp8"))
    assert recs["small/fp8/s0/accuracy"]["figures"]["out_max_rel"] == rows[-1].max_rel
    rep = run_trials("hw", 2, 1, configs={"small": cfg})
    fb = recs["small/hw/s1/bounds"]["figures"]
    assert (fb["trials"], fb["elements"], fb["rigorous_violations"]) == (rep.trials, rep.elements, rep.viol_rig)
    assert fb["rigorous_tightness_max"] == max(t.rig_max for t in rep.rows() if np.isfinite(t.rig_max))
    # the kept set runs on the RTL: the record's cycles, every stage bit-exact
    kept = out / "golden" / "small_hw_s0"
    sim = simulate_layer(kept, tmp_path / "rtl")
    assert sim.cycles == recs["small/hw/s0/rtl"]["figures"]["cycles"]
    for n, c in sim.codes.items():
        assert np.array_equal(c, load_tensor(kept, n)["codes"]), n

    # the table and the figure
    assert "15/15 exact" in stdout and "tiny-llama" in stdout and "26 passed, 0 failed, 0 errors, 6 skipped" in stdout
    assert "skipped (2 jobs: tiny-llama/hw/s0/rtl, tiny-llama/hw/s1/rtl)" in stdout
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "golden").iterdir()) == sorted(
        f"{c}_{p}_s{s}" for c in ("small", "tiny-llama") for p in ("hw", "fp8") for s in (0, 1))
