"""pytest runner for rtl/requant.v (cocotb modules requant_tests.py, requant_golden_tests.py)."""

from __future__ import annotations

import pytest
from golden_common import GOLDEN_ROOT
from harness import assert_gap_hits, assert_golden_gaps, run_matrix, run_unit

from refmodel.cocotb import GoldenSet
from refmodel.numerics.units.requant import RequantParams

CONFIGS = {
    # typical int32 accumulator -> int8 with a 16-bit multiplier, ties toward +inf (TOSA)
    "i32m16s20o8_half_up": RequantParams(in_w=32, m_w=16, shift=20, out_w=8, rounding="half_up"),
    "i24m8s10o16_rne": RequantParams(in_w=24, m_w=8, shift=10, out_w=16, rounding="rne"),
    # plain rounding shifter (M_W = 1, M in {0, 1}) with SHIFT = 1 (round bit, no sticky)
    "i16m1s1o8_half_up": RequantParams(in_w=16, m_w=1, shift=1, out_w=8, rounding="half_up"),
    # SHIFT = 0 and an output wide enough that it never saturates
    "i8m4s0o16_rne": RequantParams(in_w=8, m_w=4, shift=0, out_w=16, rounding="rne"),
    # maximal shift (everything below the LSB), floor
    "i12m6s18o4_floor": RequantParams(in_w=12, m_w=6, shift=18, out_w=4, rounding="floor"),
}
#: the configuration that also runs on Verilator (results must be identical to Icarus)
MATRIX_CONFIG = "i24m8s10o16_rne"
GOLDEN_HW = GOLDEN_ROOT / "tiny_gpt2_hw"
#: output classes the golden set cannot produce -> the random configuration that must hit them
GOLDEN_GAPS = {"scores.max_code": MATRIX_CONFIG, "scores.min_code": MATRIX_CONFIG}


def _env(name: str) -> dict[str, str]:
    # the first configuration carries the 10k-vector run; the others check corners more briefly
    return {} if name == "i32m16s20o8_half_up" else {"RM_REQUANT_N": "1500", "RM_STALL_N": "300"}


@pytest.mark.parametrize("name", [n for n in CONFIGS if n != MATRIX_CONFIG])
def test_requant(name):
    r = run_unit("requant", sources=["requant.v"], test_module="requant_tests", parameters=CONFIGS[name].to_hdl(),
                 extra_env=_env(name))
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_gap_hits(r, name, GOLDEN_GAPS)


def test_requant_icarus_verilator():
    """The same configuration on both simulators: identical results, every coverage bin hit."""
    out = run_matrix("requant", ["requant.v"], "requant_tests", parameters=CONFIGS[MATRIX_CONFIG].to_hdl(),
                     extra_env=_env(MATRIX_CONFIG))
    cov = out["icarus"].coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_gap_hits(out["icarus"], MATRIX_CONFIG, GOLDEN_GAPS)


def test_requant_golden():
    """The golden set's attention scores: exact q.k accumulators of the golden q, k codes
    through requant with units.scores (requant parameters, multiplier) -> golden scores codes."""
    h = GoldenSet(GOLDEN_HW).units["scores"]["requant"]
    r = run_unit("requant", sources=["requant.v"], test_module="requant_golden_tests",
                 parameters={k: int(v) for k, v in h.items()}, golden=GOLDEN_HW)
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_golden_gaps(r, GOLDEN_GAPS, ["scores"])
