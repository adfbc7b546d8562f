"""pytest runner for rtl/mac_dot.v: one Icarus build per parameter set (cocotb bench in
mac_dot_tests.py; model refmodel.numerics.units.mac)."""

from __future__ import annotations

import pytest
from golden_common import GOLDEN_ROOT, MacStage, collect, mac_groups
from harness import assert_gap_hits, assert_golden_gaps, run_matrix, run_unit

from refmodel.cocotb import GoldenSet
from refmodel.numerics.units.mac import MacParams

PARAM_SETS = {
    # int8 x int8, 32-bit wrapping accumulator, rne requant to int8
    "a8w8_acc32_wrap_rne": MacParams(a_w=8, w_w=8, acc_w=32, out_w=8, shift=8, rounding="rne"),
    # 4 lanes, narrow saturating accumulator (saturates often), half_up, shifted bias
    "a8w8_l4_acc20_sat_halfup": MacParams(a_w=8, w_w=8, lanes=4, acc_w=20, acc_overflow="saturate", out_w=8,
                                          shift=6, rounding="half_up", b_w=12, bias_lsh=4),
    # odd widths, 3 lanes, narrow wrapping accumulator, no shift (floor irrelevant), wide output
    "a12w6_l3_acc21_wrap_s0": MacParams(a_w=12, w_w=6, lanes=3, acc_w=21, out_w=16, shift=0, rounding="floor"),
    # int16 x int16, saturating 40-bit accumulator, floor, 12-bit output, bias narrower than acc
    "a16w16_l2_acc40_sat_floor": MacParams(a_w=16, w_w=16, lanes=2, acc_w=40, acc_overflow="saturate",
                                           out_w=12, shift=20, rounding="floor", b_w=24),
}


#: the parameter set that also runs on Verilator (results must be identical to Icarus)
MATRIX_CONFIG = "a8w8_l4_acc20_sat_halfup"


@pytest.mark.parametrize("name", [n for n in PARAM_SETS if n != MATRIX_CONFIG])
def test_mac_dot(name: str) -> None:
    r = run_unit("mac_dot", sources=["mac_dot.v"], test_module="mac_dot_tests", parameters=PARAM_SETS[name].to_hdl())
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_gap_hits(r, name, GOLDEN_GAPS)


def test_mac_dot_icarus_verilator() -> None:
    """The saturating 4-lane parameter set on both simulators: identical results."""
    out = run_matrix("mac_dot", ["mac_dot.v"], "mac_dot_tests", parameters=PARAM_SETS[MATRIX_CONFIG].to_hdl())
    cov = out["icarus"].coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_gap_hits(out["icarus"], MATRIX_CONFIG, GOLDEN_GAPS)


# ---- golden set (cocotb module mac_dot_golden_tests.py) ------------------------------------------

GOLDEN_HW = GOLDEN_ROOT / "tiny_gpt2_hw"
#: output classes the golden set cannot produce -> the random configuration that must hit them
GOLDEN_GAPS = {f"{st}.{c}": MATRIX_CONFIG for st in ("q", "k", "v", "attn", "proj", "up", "down")
               for c in ("max_code", "min_code")}
GOLDEN_GAPS.update({"k.zero": MATRIX_CONFIG, "attn.zero": MATRIX_CONFIG})
GOLDEN_MAC_GROUPS = collect(lambda: mac_groups(GoldenSet(GOLDEN_HW)))
#: per-stage beat budget of the default run (up and down have 262,144 beats each: 4 of their 16
#: sequence rows run by default, all of them with --run-slow)
GOLDEN_MAX_BEATS = 65536


def _run_golden(stages: str, max_beats: int) -> None:
    if isinstance(GOLDEN_MAC_GROUPS[stages], str):
        pytest.fail(GOLDEN_MAC_GROUPS[stages], pytrace=False)
    r = run_unit("mac_dot", sources=["mac_dot.v"], test_module="mac_dot_golden_tests",
                 parameters=GOLDEN_MAC_GROUPS[stages], golden=GOLDEN_HW,
                 extra_env={"RM_GOLDEN_STAGES": stages, "RM_GOLDEN_MAX_BEATS": str(max_beats)})
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    if max_beats:  # sampled rows: the gaps are those of the rows this run computes
        assert_golden_gaps(r, GOLDEN_GAPS, stages.split(","))


@pytest.mark.parametrize("stages", list(GOLDEN_MAC_GROUPS))
def test_mac_dot_golden(stages: str) -> None:
    """Every linear/mix stage of the hw golden set (q, k, v, attn, proj, up, down) through mac_dot
    with the manifest's MAC parameters (one build per parameter set), full rate: m_data bit-exact
    vs the golden codes, decoded vs float64 within the manifest tolerance. Stages above
    GOLDEN_MAX_BEATS beats run evenly spread sequence rows (the log says which)."""
    _run_golden(stages, GOLDEN_MAX_BEATS)


def _capped_groups() -> dict[str, dict]:
    gs = GoldenSet(GOLDEN_HW)
    return {g: v for g, v in mac_groups(gs).items()
            if any(MacStage(gs, s).total_beats > GOLDEN_MAX_BEATS for s in g.split(","))}


GOLDEN_MAC_CAPPED = collect(_capped_groups)


@pytest.mark.slow
@pytest.mark.parametrize("stages", list(GOLDEN_MAC_CAPPED))
def test_mac_dot_golden_all_rows(stages: str) -> None:
    """test_mac_dot_golden on every sequence row of the groups it samples (up, down: 262,144
    beats each)."""
    if isinstance(GOLDEN_MAC_CAPPED[stages], str):
        pytest.fail(GOLDEN_MAC_CAPPED[stages], pytrace=False)
    _run_golden(stages, 0)
