"""refmodel.rtl_layer_check.check_layer on the committed hw golden set (golden/tiny_gpt2_hw).

The RTL layer reproduces this set's codes bit for bit (rtl_tests/test_layer_top.py), so the
"RTL stage dumps" here are a copy of the golden codes, into which the faults hardware has are
injected: a carry into bit 6 dropped in 1% of the entries of a stage, a requantiser shift off by
one. Each must fail the local tolerance at exactly the stage it was injected into, naming the
first bad element. An honest datapath that is not bit-exact (+-1 LSB where the local bound allows
it) must pass, reported as not bit-exact; an error between the statistical tier and the local
bound must pass with the warnings counted. The expected first bad element is computed here from
the tier files with numpy, independently of the Scoreboard.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from refmodel.cocotb import GoldenSet
from refmodel.rtl_layer_check import LayerCheck, check_layer

SET = Path(__file__).resolve().parent.parent / "golden" / "tiny_gpt2_hw"
FORWARD = ["x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down", "out"]
#: stages whose output a requantiser writes (a shift there can be off by one)
REQUANTISED = ["q", "k", "v", "scores", "attn", "proj", "up", "down"]


@pytest.fixture(scope="module")
def gs() -> GoldenSet:
    return GoldenSet(SET)


def dumps(gs: GoldenSet) -> dict[str, np.ndarray]:
    """A fresh copy of the stage codes the RTL dumps (equal to the golden codes)."""
    return {n: gs.codes(n).copy() for n in FORWARD}


def wrap(codes: np.ndarray, width: int, signed: bool) -> np.ndarray:
    u = codes & np.int64((1 << width) - 1)
    return np.where(u >= (1 << (width - 1)), u - (1 << width), u) if signed else u


def drop_carry(codes: np.ndarray, gs: GoldenSet, stage: str, bit: int = 6, fraction: float = 0.01,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``fraction`` of the entries (at least one) lose the carry into ``bit``: the code is 2^bit LSB
    low, wrapped in the format's width. Returns the faulty codes and the flat indices hit."""
    fmt = gs.fmt(stage)
    width, signed = int(gs.entry(stage)["word_width"]), bool(getattr(fmt, "frac", None) is not None and fmt.signed)
    rng = np.random.default_rng(seed)
    hit = np.sort(rng.choice(codes.size, max(1, round(codes.size * fraction)), replace=False))
    out = codes.copy().ravel()
    out[hit] = wrap(out[hit] - (1 << bit), width, signed)
    return out.reshape(codes.shape), hit


def shift_off_by_one(codes: np.ndarray, gs: GoldenSet, stage: str, delta: int) -> np.ndarray:
    """The requantiser's right shift one too large (``delta=+1``: round half to even of code/2) or
    one too small (``delta=-1``: code * 2, saturated in the format)."""
    fmt = gs.fmt(stage)
    if delta > 0:
        return np.round(codes / 2.0).astype(np.int64)
    lo, hi = (-(1 << (fmt.width - 1)), (1 << (fmt.width - 1)) - 1) if fmt.signed else (0, (1 << fmt.width) - 1)
    return np.clip(codes * 2, lo, hi)


def expected_first_bad(gs: GoldenSet, stage: str, codes: np.ndarray) -> tuple[int, ...] | None:
    """Oracle: the first element (row-major) with |value - local reference| > local bound."""
    t = gs.tolerance(stage, "local")
    assert t is not None
    err = np.abs(codes * gs.fmt(stage).lsb - t.reference)
    bad = np.argwhere(~(err <= t.abs) & np.isfinite(t.abs))
    return tuple(int(i) for i in bad[0]) if bad.size else None


def only_stage_fails(res: LayerCheck, stage: str) -> None:
    assert not res.passed
    assert res.first_failure is not None and res.first_failure.stage == stage, res.failure_text()
    for s in res.stages:
        assert s.passed == (s.stage != stage), (s.stage, s.failed, res.failure_text())
        assert s.bit_exact == (s.stage != stage), (s.stage, s.n_differ)


def test_golden_codes_pass_every_stage_bit_exact_and_within_the_local_bound(gs, capsys):
    """The codes the RTL produces (the golden ones): every stage bit-exact, within its local bound
    (bound >= err everywhere, err/bound <= 1), no warnings; forward order; nothing printed."""
    res = check_layer(SET, dumps(gs))
    assert [s.stage for s in res.stages] == FORWARD
    assert res.passed and res.bit_exact and res.warnings == 0
    for s in res.stages:
        assert s.tier == "local" and s.inputs_exact and s.failed == 0 and s.unbounded == 0, s
        assert s.max_err <= s.max_bound and 0.0 <= s.ratio <= 1.0, s
    assert res["probs"].ratio < 0.7 and res["res1"].max_bound == 0.0
    assert res.failure_text() == "" and "15/15 bit-exact, 15/15 within the local tolerance" in res.summary()
    res.assert_passed(exact=True)
    assert max(len(line) for line in res.table().splitlines()) <= 80
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("stage", ["q", "attn", "down"])
def test_dropped_carry_at_bit_6_fails_at_that_stage(gs, stage):
    """A carry into bit 6 dropped in 1% of the entries of q, attn or down: the check fails at that
    stage only, every hit element outside the local bound, the first one named."""
    d = dumps(gs)
    d[stage], hit = drop_carry(d[stage], gs, stage)
    res = check_layer(gs, d)
    only_stage_fails(res, stage)
    s = res[stage]
    assert s.failed == s.n_differ == hit.size >= 10
    first = tuple(int(i) for i in np.unravel_index(hit[0], d[stage].shape))
    assert expected_first_bad(gs, stage, d[stage]) == first
    assert s.first_fail is not None and s.first_fail.index == first
    assert s.first_fail.expected_code == int(gs.codes(stage)[first]) and s.first_fail.got_code == int(d[stage][first])
    msg = res.failure_text()
    assert msg.startswith(f"tiny_gpt2_hw: stage {stage}: {hit.size} of {d[stage].size} elements outside the local "
                          f"tolerance"), msg
    assert f"first at {list(first)}: expected" in msg, msg
    assert 63.5 <= s.first_fail.error / gs.fmt(stage).lsb <= 64.5  # 2^6 LSB, less the golden code's own error
    ratio = float(re.search(r"\(err/bound ([0-9.e+]+)\)", msg).group(1))
    assert ratio > 100, msg  # 64 LSB against a bound of about half an LSB
    with pytest.raises(AssertionError, match=f"stage {stage}: "):
        res.assert_passed()


@pytest.mark.parametrize("delta", [1, -1])
@pytest.mark.parametrize("stage", REQUANTISED)
def test_requant_shift_off_by_one_fails_at_that_stage(gs, stage, delta):
    """A requantiser's shift off by one (output halved or doubled) in any requantised stage: the
    check fails at that stage only and names the first element outside the local bound."""
    d = dumps(gs)
    d[stage] = shift_off_by_one(d[stage], gs, stage, delta)
    res = check_layer(gs, d)
    only_stage_fails(res, stage)
    first = expected_first_bad(gs, stage, d[stage])
    s = res[stage]
    assert first is not None and s.first_fail is not None and s.first_fail.index == first
    assert s.failed > d[stage].size // 4 and s.ratio > 10, (s.failed, s.ratio)
    assert f"stage {stage}: " in res.failure_text() and f"first at {list(first)}:" in res.failure_text()


@pytest.mark.parametrize("stage", ["ln1", "probs", "ln2", "act"])
def test_honest_one_lsb_differences_pass_by_tolerance_not_bit_exact(gs, stage):
    """+1 / -1 LSB on six elements where the local bound leaves room for it in both directions (an
    honest datapath that rounds differently): within the local tolerance, reported not bit-exact
    with the first differing element; ``assert_passed(exact=True)`` then names it."""
    d = dumps(gs)
    t = gs.tolerance(stage, "local")
    lsb = gs.fmt(stage).lsb
    v = d[stage] * lsb
    room = (np.abs(v + lsb - t.reference) <= t.abs) & (np.abs(v - lsb - t.reference) <= t.abs)
    pick = np.flatnonzero(room.ravel())[:: max(1, int(room.sum()) // 6)][:6]
    assert pick.size == 6, f"{stage}: only {int(room.sum())} elements leave 1 LSB of room"
    flat = d[stage].ravel()
    flat[pick] += np.where(np.arange(6) % 2 == 0, 1, -1)
    d[stage] = flat.reshape(d[stage].shape)
    res = check_layer(gs, d)
    s = res[stage]
    assert res.passed and s.failed == 0 and s.ratio <= 1.0
    assert not res.bit_exact and s.n_differ == 6 and not s.bit_exact
    first = tuple(int(i) for i in np.unravel_index(pick[0], d[stage].shape))
    assert s.first_diff is not None and s.first_diff.index == first
    assert [x.stage for x in res.stages if not x.bit_exact] == [stage]
    downstream = [x for x in res.stages if stage in x.inputs]
    assert downstream and all(not x.inputs_exact and x.passed for x in downstream)
    res.assert_passed()
    with pytest.raises(AssertionError, match=rf"stage {stage}: 6 of {d[stage].size} codes differ from the golden "
                                             rf"codes; first at \[{', '.join(map(str, first))}\]"):
        res.assert_passed(exact=True)


def test_error_between_the_statistical_tier_and_the_local_bound_is_a_warning(gs):
    """probs elements whose statistical tier is below the local bound, moved so that their error
    lies between the two: the check passes, the elements are counted as warnings (the first one
    named), and the stage is not bit-exact."""
    d = dumps(gs)
    loc, warn = gs.tolerance("probs", "local"), gs.tolerance("probs", "warning")
    lsb = gs.fmt("probs").lsb
    gap = np.flatnonzero(((loc.abs - warn.abs) >= 3 * lsb).ravel())
    assert gap.size >= 4, gap
    mid = ((loc.abs + warn.abs) / 2).ravel()[gap]
    ref = loc.reference.ravel()[gap]
    new = np.round((ref - mid) / lsb).astype(np.int64)  # below the reference by about the midpoint
    err = np.abs(new * lsb - ref)
    assert np.all((err > warn.abs.ravel()[gap]) & (err <= loc.abs.ravel()[gap]))
    flat = d["probs"].ravel()
    flat[gap] = new
    res = check_layer(gs, d)
    s = res["probs"]
    assert res.passed and s.failed == 0 and s.warnings == gap.size == res.warnings
    first = tuple(int(i) for i in np.unravel_index(gap[0], d["probs"].shape))
    assert s.first_warning is not None and s.first_warning.index == first
    assert not s.bit_exact and s.n_differ == gap.size
    assert f"{gap.size} warnings (statistical tier)" in res.summary()
    assert all(x.warnings == 0 for x in res.stages if x.stage != "probs")


def test_inputs_and_errors(gs):
    """A LayerSim-like object (``.codes``) and a partial set of stages are accepted; codes read
    with the other signedness compare the same; a stage the set lacks or a wrong size is a
    ValueError naming it."""
    d = dumps(gs)
    d["probs"] = wrap(d["probs"], 16, True)  # 1.0 = 0x8000 read as signed
    res = check_layer(gs, SimpleNamespace(codes={n: d[n] for n in ("probs", "out")}))
    assert [s.stage for s in res.stages] == ["probs", "out"] and res.passed and res.bit_exact
    with pytest.raises(ValueError, match="bogus: not a stage of golden set tiny_gpt2_hw"):
        check_layer(gs, {"bogus": d["x"]})
    with pytest.raises(ValueError, match="stage q: 10 codes given"):
        check_layer(gs, {"q": np.zeros(10, dtype=np.int64)})


def test_demo_verdict_and_local_column(gs):
    """The demo's per-stage judgement carries the local err/bound and warnings: a stage outside
    its local bound is a FAIL even where the end-to-end bound (much wider) would pass it."""
    from refmodel.demo import _judge
    from refmodel.golden.manifest import load_tensor

    d = dumps(gs)
    d["q"], _ = drop_carry(d["q"], gs, "q")
    res = check_layer(gs, d)
    t = load_tensor(SET, "q")
    got = d["q"] * gs.fmt("q").lsb
    r = _judge("q", got, t, None, res["q"])
    assert r.verdict == "FAIL (local bound)" and r.local_failed == res["q"].failed > 0
    assert r.local_text == f"{res['q'].ratio:.4g} (0)" and r.local_ratio > 100
    assert _judge("q", got, t, False, res["q"]).verdict == "FAIL (RTL != model)"
    ok = check_layer(gs, dumps(gs))
    r = _judge("q", gs.values("q"), t, True, ok["q"])
    assert r.verdict == "PASS" and r.local_text == f"{ok['q'].ratio:.4g} (0)"


def test_minifloat_set_dropped_carry_fails_at_that_stage():
    """The same check on the committed fp8 set (e4m3fn stages, fp32 residual): the model's codes
    pass every stage; a carry into bit 6 of the attn words (an exponent bit) dropped in 1% of the
    entries fails at attn only."""
    fp8 = GoldenSet(SET.parent / "tiny_gpt2_fp8")
    d = dumps(fp8)
    ok = check_layer(fp8, d)
    assert ok.passed and ok.bit_exact and all(s.tier == "local" and s.ratio <= 1.0 for s in ok.stages)
    d["attn"], hit = drop_carry(d["attn"], fp8, "attn")
    res = check_layer(fp8, d)
    only_stage_fails(res, "attn")
    first = tuple(int(i) for i in np.unravel_index(hit[0], d["attn"].shape))
    assert res["attn"].first_fail is not None and res["attn"].first_fail.index == first
    assert res.failure_text().startswith(f"tiny_gpt2_fp8: stage attn: {hit.size} of ")


def test_later_failures_are_told_apart(gs):
    """Two faults: q (carry) and attn (shift). The failure names q first; attn's inputs (probs, v)
    are golden, so it is listed as failing on its own, while scores (reading the faulty q, codes
    here moved too) is listed as downstream."""
    d = dumps(gs)
    d["q"], _ = drop_carry(d["q"], gs, "q")
    d["scores"], _ = drop_carry(d["scores"], gs, "scores", seed=1)
    d["attn"] = shift_off_by_one(d["attn"], gs, "attn", 1)
    res = check_layer(gs, d)
    msg = res.failure_text()
    assert msg.startswith("tiny_gpt2_hw: stage q: "), msg
    assert re.search(r"; also outside their local tolerance with golden inputs: attn \(\d+, ", msg), msg
    assert re.search(r"; also outside their local tolerance downstream \(inputs differ from the golden ones\): "
                     r"scores \(\d+, ", msg), msg
    assert not res["scores"].inputs_exact and res["attn"].inputs_exact


@pytest.fixture(scope="module")
def mx_set(tmp_path_factory) -> GoldenSet:
    from refmodel.golden.generate import generate_set
    from refmodel.layer.config import LayerConfig

    return GoldenSet(generate_set(LayerConfig.from_name("tiny"), "mxfp8", tmp_path_factory.mktemp("mx") / "set", seed=0))


def test_mx_stages_are_checked_on_their_exact_values(mx_set):
    """An mxfp8 set stores ln1, q, k, v, probs, attn, ln2 and act as element codes + e8m0 scales +
    the float64 ``.value`` entry that carries the tiers. They are stages by their unit name, their
    codes the float64 bit patterns of the values; the largest element of q scaled by 1.25 (two
    e4m3 element ulps: a wrong element code) fails at q only, at that element."""
    gs = mx_set
    assert sorted(gs.stages()) == sorted(FORWARD)
    mx = [n for n in FORWARD if n not in gs.manifest["tensors"]]
    assert mx == ["ln1", "q", "k", "v", "probs", "attn", "ln2", "act"]
    for n in mx:
        assert gs.fmt(n) == "float64" and gs.codes(n).dtype == np.int64
        assert np.array_equal(gs.values(n), gs.codes(n).view(np.float64))
        assert gs.tiers(n) == ["local", "warning", "end_to_end"]
    assert (gs.values("q") < 0).any()  # negative float64 bit patterns (>= 2^63 as words) are read
    d = {n: gs.codes(n).copy() for n in FORWARD}
    ok = check_layer(gs, d)
    assert ok.passed and ok.bit_exact and [s.stage for s in ok.stages] == FORWARD
    v = gs.values("q").copy()
    tol = gs.tolerance("q", "local")
    assert tol is not None
    i = int(np.argmax(np.abs(v).ravel()))
    assert abs(v.ravel()[i]) * 0.25 > tol.abs.ravel()[i]
    v.ravel()[i] *= 1.25
    d["q"] = v.view(np.int64)
    res = check_layer(gs, d)
    only_stage_fails(res, "q")
    assert res["q"].first_fail is not None and res["q"].first_fail.index == np.unravel_index(i, v.shape)
    at = [int(j) for j in np.unravel_index(i, v.shape)]
    assert res.failure_text().startswith(f"set: stage q: 1 of {v.size} elements outside the local tolerance")
    assert f"first at {at}:" in res.failure_text() and f"first at {at}:" in res["q"].difference_text()
