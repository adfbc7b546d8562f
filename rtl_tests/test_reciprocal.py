"""pytest runner for rtl/reciprocal.v (cocotb modules reciprocal_tests.py, reciprocal_golden_tests.py)."""

from __future__ import annotations

import pytest
from golden_common import GOLDEN_ROOT, softmax_params
from harness import assert_golden_gaps, run_matrix, run_unit

from refmodel.cocotb import GoldenSet
from refmodel.numerics.units.reciprocal import DividerParams, ReciprocalParams

# name -> (RTL parameters, environment)
CONFIGS = {
    # general divider, the 10k random-vector run
    "div_n32_d16": (DividerParams(num_w=32, den_w=16).to_hdl(), {}),
    # reciprocal use as in softmax_row (dividend 2^K), DEN_W small enough for an exhaustive bound
    "recip_k35_d20": (ReciprocalParams(k=35, den_w=20).to_hdl(), {"RM_RECIP_K": "35", "RM_RECIP_N": "2000"}),
    # every (A, B) pair of small widths, and the 1-bit corner
    "div_n6_d4_all": (DividerParams(num_w=6, den_w=4).to_hdl(), {"RM_RECIP_EXHAUSTIVE": "1", "RM_RECIP_N": "500"}),
    "div_n1_d1_all": (DividerParams(num_w=1, den_w=1).to_hdl(), {"RM_RECIP_EXHAUSTIVE": "1", "RM_RECIP_N": "200"}),
}
#: the configuration that also runs on Verilator (results must be identical to Icarus)
MATRIX_CONFIG = "div_n6_d4_all"
GOLDEN_HW = GOLDEN_ROOT / "tiny_gpt2_hw"
#: output classes the golden set cannot produce -> the random configuration that must hit them
GOLDEN_GAPS = {"probs.max_code": "cannot: a probability is at most 1.0 = 0x8000, below the u16.15 max code"}


@pytest.mark.parametrize("name", [n for n in CONFIGS if n != MATRIX_CONFIG])
def test_reciprocal(name):
    params, env = CONFIGS[name]
    r = run_unit("reciprocal", sources=["reciprocal.v"], test_module="reciprocal_tests", parameters=params,
                 extra_env=env)
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()


def test_reciprocal_icarus_verilator():
    """The exhaustive small configuration on both simulators: identical results."""
    params, env = CONFIGS[MATRIX_CONFIG]
    out = run_matrix("reciprocal", ["reciprocal.v"], "reciprocal_tests", parameters=params, extra_env=env)
    cov = out["icarus"].coverage_total()
    assert cov.missing() == [], cov.summary()


def test_reciprocal_golden():
    """The softmax divider of the golden set (DividerParams of units.probs.softmax): every row
    sum S -> R = floor(2^K/S), the R that produced the golden probs."""
    p = softmax_params(GoldenSet(GOLDEN_HW).units["probs"]["softmax"])
    r = run_unit("reciprocal", sources=["reciprocal.v"], test_module="reciprocal_golden_tests",
                 parameters=p.divider.to_hdl(), golden=GOLDEN_HW)
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_golden_gaps(r, GOLDEN_GAPS, ["probs"])
