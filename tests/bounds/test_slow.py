"""Opt-in long sweep (``pytest --run-slow``): every validation case with 14x the default trial
count and a fresh seed, >= 1e5 trials in total, zero violations of the rigorous tier."""

from __future__ import annotations

import pytest

from refmodel.bounds.validate import CASES, markdown_table, run_cases, summarize


@pytest.mark.slow
def test_validation_sweep_1e5_trials():
    res = run_cases(scale=14, seed=1)
    s = summarize(res)
    print()
    print(markdown_table(res))
    print(s)
    assert s["trials"] >= 100_000
    assert s["viol_rig"] == 0, [(r.op, r.config, r.kind, r.viol_rig) for r in res if r.viol_rig]
    assert s["viol_stat"] == 0, [(r.op, r.config, r.kind, r.viol_stat) for r in res if r.viol_stat]
    for c, r in zip(CASES, res, strict=True):
        assert (r.no_guarantee > 0) == c.expect_nog, (c.op, c.config, r.reasons)
