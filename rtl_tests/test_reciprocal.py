"""pytest runner for rtl/reciprocal.v (cocotb module reciprocal_tests.py)."""

from __future__ import annotations

import pytest
from golden_common import GoldenSet, softmax_params
from harness import ROOT, run_unit

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


@pytest.mark.parametrize("name", list(CONFIGS))
def test_reciprocal(name):
    params, env = CONFIGS[name]
    run_unit("reciprocal", sources=["reciprocal.v"], test_module="reciprocal_tests", parameters=params, extra_env=env)


# ---- golden set (cocotb module reciprocal_golden_tests.py) -----------------------------------------

GOLDEN_HW = ROOT / "golden" / "tiny_gpt2_hw"


def test_reciprocal_golden():
    """The softmax divider of the hw golden set (DividerParams of units.probs.softmax): every row
    sum S -> R = floor(2^K/S), the R that produced the golden probs."""
    p = softmax_params(GoldenSet(GOLDEN_HW).units["probs"]["softmax"])
    run_unit("reciprocal", sources=["reciprocal.v"], test_module="reciprocal_golden_tests",
             parameters=p.divider.to_hdl(), extra_env={"RM_GOLDEN_SET": str(GOLDEN_HW)})
