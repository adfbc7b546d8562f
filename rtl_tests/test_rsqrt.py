"""pytest runner for rtl/rsqrt.v and rtl/rsqrt_isqrt.v (cocotb modules rsqrt_tests.py, rsqrt_golden_tests.py)."""

from __future__ import annotations

import pytest
from golden_common import GOLDEN_ROOT, collect, norm_params
from harness import run_matrix, run_unit

from refmodel.cocotb import GoldenSet
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
#: the configuration that also runs on Verilator (results must be identical to Icarus)
MATRIX_CONFIG = "rsqrt_v10_k8_all"
GOLDEN_HW = GOLDEN_ROOT / "tiny_gpt2_hw"


@pytest.mark.parametrize("name", [n for n in CONFIGS if n != MATRIX_CONFIG])
def test_rsqrt(name):
    top, params, env = CONFIGS[name]
    r = run_unit(top, sources=SOURCES, test_module="rsqrt_tests", parameters=params, extra_env=env)
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()


def test_rsqrt_icarus_verilator():
    """Every input code of a small rsqrt on both simulators: identical results."""
    top, params, env = CONFIGS[MATRIX_CONFIG]
    out = run_matrix(top, SOURCES, "rsqrt_tests", parameters=params, extra_env=env)
    cov = out["icarus"].coverage_total()
    assert cov.missing() == [], cov.summary()


def _golden_rsqrt_groups() -> dict[str, dict]:
    """Norm stages of the hw set grouped by the rsqrt parameters they instantiate."""
    gs = GoldenSet(GOLDEN_HW)
    groups: dict[tuple, list[str]] = {}
    for name, u in gs.units.items():
        if u.get("kind") == "norm" and "norm_params" in u:
            groups.setdefault(tuple(norm_params(gs, name).rsqrt_params().to_hdl().items()), []).append(name)
    return {",".join(v): dict(k) for k, v in groups.items()}


GOLDEN_RSQRT_GROUPS = collect(_golden_rsqrt_groups)


@pytest.mark.parametrize("stages", list(GOLDEN_RSQRT_GROUPS))
def test_rsqrt_golden(stages):
    """The A_t the norm unit feeds its rsqrt for every golden ln1/ln2 row -> the r that produced
    the golden norm outputs (rsqrt built with the norm's RSQ_W-limited V_W and RSQ_K)."""
    if isinstance(GOLDEN_RSQRT_GROUPS[stages], str):
        pytest.fail(GOLDEN_RSQRT_GROUPS[stages], pytrace=False)
    run_unit("rsqrt", sources=SOURCES, test_module="rsqrt_golden_tests", parameters=GOLDEN_RSQRT_GROUPS[stages],
             golden=GOLDEN_HW, extra_env={"RM_GOLDEN_STAGES": stages})
