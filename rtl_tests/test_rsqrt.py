"""pytest runner for rtl/rsqrt.v and rtl/rsqrt_isqrt.v (cocotb module rsqrt_tests.py)."""

from __future__ import annotations

import pytest

from harness import run_unit
from refmodel.numerics.units.rsqrt import IsqrtParams, RsqrtParams

SOURCES = ["rsqrt.v", "reciprocal.v", "rsqrt_isqrt.v"]

# name -> (top, RTL parameters, environment)
CONFIGS = {
    # the 10k random-vector run
    "rsqrt_v32_k16": ("rsqrt", RsqrtParams(v_w=32, k=16).to_hdl(), {}),
    # LayerNorm-sized: 48-bit sum of squares, widest K
    "rsqrt_v48_k31": ("rsqrt", RsqrtParams(v_w=48, k=31).to_hdl(), {"RM_RSQRT_N": "800", "RM_STALL_N": "60"}),
    # every input code
    "rsqrt_v10_k8_all": ("rsqrt", RsqrtParams(v_w=10, k=8).to_hdl(), {"RM_RSQRT_EXHAUSTIVE": "1", "RM_RSQRT_N": "300", "RM_STALL_N": "60"}),
    # the square-root stage alone: exhaustive small, odd and widest widths
    "isqrt_w12_all": ("rsqrt_isqrt", IsqrtParams(in_w=12).to_hdl(), {"RM_RSQRT_EXHAUSTIVE": "1", "RM_RSQRT_N": "500", "RM_STALL_N": "60"}),
    "isqrt_w63": ("rsqrt_isqrt", IsqrtParams(in_w=63).to_hdl(), {"RM_RSQRT_N": "1500", "RM_STALL_N": "60"}),
    "isqrt_w1_all": ("rsqrt_isqrt", IsqrtParams(in_w=1).to_hdl(), {"RM_RSQRT_EXHAUSTIVE": "1", "RM_RSQRT_N": "20", "RM_STALL_N": "10"}),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rsqrt(name):
    top, params, env = CONFIGS[name]
    run_unit(top, sources=SOURCES, test_module="rsqrt_tests", parameters=params, extra_env=env)
