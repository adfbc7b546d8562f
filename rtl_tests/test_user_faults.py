"""The user DUTs of docs/verify.md (Tutorial 2) with their BUG parameter on: the user's own test
fails on Icarus and on Verilator with the same message, naming the first element outside the local
tolerance as a numpy model of the faulty DUT predicts it (index, expected code, got code, error,
bound). The honest DUTs run in test_user_systolic.py and test_user_layernorm.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
import test_user_layernorm as ln_user
import test_user_systolic as mm_user

from refmodel.cocotb import GoldenSet

SIMS = ("verilator", "icarus")


def systolic_model(gs: GoldenSet, rows: int, bug: int) -> np.ndarray:
    """Output codes of rtl_tests/user/systolic_matmul.sv for the first ``rows`` rows of ``up``:
    48-bit accumulation in k order (BUG: the carry into bit 6 of every addition dropped), the bias
    added after the last product, round half up, saturation to 16 bits."""
    x, w, b = (v.astype(np.int64) for v in gs.stage("up").inputs.values())
    mac = gs.units["up"]["mac"]
    mask, lo6 = (1 << 48) - 1, (1 << 6) - 1
    acc = np.zeros((rows, len(w)), np.int64)
    for k in range(x.shape[1]):                       # the PE's adder, one step per k (vectorised over outputs)
        p = (x[:rows, k, None] * w[None, :, k]) & mask
        lo = (acc & lo6) + (p & lo6)
        carry = 0 if bug else lo >> 6
        acc = ((((acc >> 6) + (p >> 6) + carry) << 6) | (lo & lo6)) & mask
    acc = np.where(acc >> 47 == 1, acc - (1 << 48), acc) + (b << mac["BIAS_LSH"])
    return np.clip((acc + (1 << (mac["SHIFT"] - 1))) >> mac["SHIFT"], -(1 << 15), (1 << 15) - 1)


def layernorm_model(gs: GoldenSet, rows: int, bug: int) -> np.ndarray:
    """Output codes of rtl_tests/user/layernorm_alt.sv for the first ``rows`` rows of ``ln1``
    (its integer algorithm step by step: sums, V, normalisation, seed, two Newton-Raphson steps in
    Q2.30, one rounding half up -- BUG: truncation -- and saturation)."""
    x, g, b = (v.astype(np.int64) for v in gs.stage("ln1").inputs.values())
    in_f, p_f, out_f = (gs.fmt(n).frac for n in (*gs.inputs("ln1")[:2], "ln1"))
    x, d, f = x[:rows], x.shape[1], 30
    s1, s2 = x.sum(axis=1, keepdims=True), (x * x).sum(axis=1, keepdims=True)
    v = d * s2 - s1 * s1 + round(float(gs.units["ln1"]["eps"]) * d * d * 4.0**in_f)
    k = (np.frexp(v.astype(np.float64))[1] - 1) // 2     # v / 4^k in [1, 4) (v < 2^53: exact)
    m = np.where(2 * k <= f, v << np.maximum(f - 2 * k, 0), v >> np.maximum(2 * k - f, 0))
    r = np.round(2.0**16 / np.sqrt(((m >> (f - 4)) + 0.5) / 16)).astype(np.int64) << (f - 16)
    for _ in range(2):
        t = (m * ((r * r) >> f)) >> f
        r = (r * ((3 << f) - t)) >> (f + 1)
    z = (d * x - s1).astype(object)
    sh = (f + p_f - out_f + k).astype(object)
    total = z * r.astype(object) * g.astype(object) + (b.astype(object) << (f + k).astype(object))
    q = (total + (0 if bug else 1 << (sh - 1))) >> sh
    return np.clip(q.astype(np.int64), -(1 << 15), (1 << 15) - 1)


def _first_line(sim: str, run) -> str:
    with pytest.raises(pytest.fail.Exception) as e:
        run(bug=1, sims=(sim,))
    msg = str(e.value)
    assert msg.startswith(f"{sim} "), msg
    return next(ln for ln in msg.splitlines() if "first at" in ln).strip()


@pytest.mark.parametrize("dut", ["systolic", "layernorm"])
def test_user_dut_with_bug_fails_naming_first_bad_element(dut, monkeypatch):
    monkeypatch.setenv("RM_WAVES", "never")      # waves on failure are tested in test_cocotblib.py
    gs = GoldenSet.open("tiny_gpt2_hw")
    if dut == "systolic":
        stage, rows, run, model = "up", mm_user.ROWS, mm_user.test_systolic_up, systolic_model
        test = "up_within_tolerance"
    else:
        stage, rows, run, model = "ln1", ln_user.ROWS, ln_user.test_layernorm_ln1, layernorm_model
        test = "ln1_within_tolerance"
    honest, faulty = model(gs, rows, 0), model(gs, rows, 1)
    tol, gold, lsb = gs.tolerance(stage, "local"), gs.codes(stage)[:rows], gs.fmt(stage).lsb
    assert np.all(np.abs(honest * lsb - tol.reference[:rows]) <= tol.abs[:rows])   # the model passes honest
    bad = np.abs(faulty * lsb - tol.reference[:rows]) > tol.abs[:rows]
    ix = tuple(int(i) for i in np.argwhere(bad)[0])
    lines = [_first_line(sim, run) for sim in SIMS]
    assert lines[0] == lines[1], lines                                             # same on both simulators
    m = re.match(rf"{test}: tiny_gpt2_hw/{stage}: (\d+) of (\d+) elements are outside the local tolerance; "
                 r"first at \[(\d+), (\d+)\]: expected 0x([0-9a-f]+) \(.*\), got 0x([0-9a-f]+) \(.*\), "
                 r"reference .*, \|err\| ([0-9.e-]+) .* > bound ([0-9.e-]+)", lines[0])
    assert m, lines[0]
    assert int(m[1]) == int(bad.sum()) and int(m[2]) == rows * gold.shape[1]
    assert (int(m[3]), int(m[4])) == ix
    assert int(m[5], 16) == gold[ix] & 0xFFFF and int(m[6], 16) == faulty[ix] & 0xFFFF
    assert float(m[7]) == pytest.approx(abs(faulty[ix] * lsb - tol.reference[ix]), rel=1e-5)
    assert float(m[8]) == pytest.approx(tol.abs[ix], rel=1e-5)
