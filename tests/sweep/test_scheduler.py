"""``refmodel sweep --scheduler`` on a cluster this test starts: a grid file with a plan whose
accuracy check fails and a plan that overflows -- their jobs become failed and error records while
the others pass -- then a second sweep into the same directory, which replaces the first one's
files and nothing of the user's.

One test (one cluster): a module split across test workers would start the cluster twice."""

from __future__ import annotations

import json

from sweep_testkit import records, run


def test_sweep_on_an_existing_scheduler(tmp_path, layer_files, capsys, monkeypatch):
    from distributed import LocalCluster

    grid = layer_files / "grid.toml"
    grid.write_text('configs = ["small.json"]\nplans = ["hw", "clipped.toml", "overflow.toml"]\nseeds = [0, 1]\n'
                    'jobs = ["accuracy", "golden"]\nmax_rel = 0.1\n')
    monkeypatch.chdir(tmp_path)  # the grid file's own names are relative to the grid file
    out = tmp_path / "sweep"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        code, stdout, err = run(capsys, "sweep", "--grid", str(grid), "--scheduler", address, "--out", "sweep")
        assert code == 1, err
        assert "FAIL: 2 job(s) failed and 4 could not run" in err and "Traceback" not in err
        res = json.loads((out / "results.json").read_text())
        assert res["cluster"] == {"scheduler": address, "local": False, "workers": 2, "threads": 2}
        assert res["summary"] == {"jobs": 12, "passed": 6, "failed": 2, "error": 4, "skipped": 0}
        recs = records(out)
        for s in (0, 1):
            # the check failed: the record carries the figure that failed it
            r = recs[f"small/clipped/s{s}/accuracy"]
            assert r["status"] == "failed" and r["figures"]["out_max_rel"] > 0.1
            assert r["message"] == f"out max rel error {r['figures']['out_max_rel']:.3g} > --max-rel 0.1"
            # the run raised: an error record naming the overflow
            for kind in ("accuracy", "golden"):
                r = recs[f"small/overflow/s{s}/{kind}"]
                assert r["status"] == "error" and r["message"].startswith("OverflowError: tensor out overflows s2.0")
                assert r["figures"] == {} and r["golden_set"] is None
            assert recs[f"small/hw/s{s}/accuracy"]["figures"]["out_max_rel"] < 0.1
            assert recs[f"small/hw/s{s}/golden"]["status"] == recs[f"small/clipped/s{s}/golden"]["status"] == "passed"
        assert "FAILED small/clipped/s0/accuracy: out max rel error" in stdout
        assert sorted(p.name for p in (out / "golden").iterdir()) == [
            "small_clipped_s0", "small_clipped_s1", "small_hw_s0", "small_hw_s1"]

        # the user adds files to the result; a second sweep replaces only the first one's files
        (out / "notes.txt").write_text("mine")
        (out / "golden" / "small_hw_s0" / "waves.vcd").write_text("mine too")
        code, stdout, err = run(capsys, "sweep", "--scheduler", address, "--configs", str(layer_files / "small.json"),
                                "--plans", "hw", "--seeds", "3", "--jobs", "golden", "--out", "sweep")
        assert code == 0, err
        assert sorted(records(out)) == ["small/hw/s3/golden"]
        assert (out / "notes.txt").read_text() == "mine"
        assert sorted(p.name for p in (out / "golden" / "small_hw_s0").iterdir()) == ["waves.vcd"]
        assert sorted(p.name for p in (out / "golden").iterdir()) == ["small_hw_s0", "small_hw_s3"]
        assert (out / "golden" / "small_hw_s3" / "manifest.json").exists()
