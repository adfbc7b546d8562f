"""refmodel.cocotb in simulation: endpoints under backpressure, cocotbext-axi AXI-Stream endpoints,
and run_bench failing a wrong DUT with the first bad element named and a waveform kept (cocotb
benches in cocotblib_tests.py and test_user_requant.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import test_user_requant as user

from refmodel.cocotb import GoldenSet, run_bench
from refmodel.numerics.units.requant import RequantParams, requant_with_flags

RTL = user.RTL
AXIS = RTL.parent / "scores_requant_axis.sv"


def _params(gs: GoldenSet) -> dict[str, int]:
    u = gs.units["scores"]
    return {"MULT": int(u["multiplier"]), "SHIFT": int(u["requant"]["SHIFT"])}


def test_endpoints_under_backpressure():
    gs = GoldenSet.open("tiny_gpt2_hw")
    r = run_bench("cocotblib_tests", sources=[RTL], toplevel="scores_requant", parameters=_params(gs))
    assert len(r.tests) == 3 and r.checks and all(c["failed"] == 0 for c in r.checks)


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_axi_stream_endpoints_with_cocotbext_axi(sim):
    gs = GoldenSet.open("tiny_gpt2_hw")
    r = run_bench("cocotblib_tests", sources=[RTL, AXIS], toplevel="scores_requant_axis", simulator=sim,
                  parameters=_params(gs), golden=gs)
    assert [c["checked"] for c in r.checks] == [544, 544]  # the causal scores: bit-exact, then the tier


def _first_bad(gs: GoldenSet) -> tuple[int, ...]:
    """Where a truncating requantiser first differs from the golden scores (row-major, causal)."""
    q, k = gs.stage("scores").inputs.values()
    acc = np.einsum("hsd,htd->hst", q, k)
    u = gs.units["scores"]
    p = RequantParams(in_w=u["requant"]["IN_W"], m_w=u["requant"]["M_W"], shift=u["requant"]["SHIFT"],
                      out_w=u["requant"]["OUT_W"], rounding="floor")
    trunc, _ = requant_with_flags(acc, int(u["multiplier"]), p)
    causal = np.broadcast_to(np.tril(np.ones(acc.shape[1:], bool)), acc.shape)
    return tuple(int(i) for i in np.argwhere((trunc != gs.codes("scores")) & causal)[0])


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_wrong_dut_fails_naming_first_bad_element_with_waves(sim):
    """The tutorial's test file with the DUT's BUG parameter on: pytest fails, the message names the
    first bad element (index, expected and got codes, error, bound 0), and the waveform of the
    failing test is kept at the printed path."""
    gs = GoldenSet.open("tiny_gpt2_hw")
    with pytest.raises(pytest.fail.Exception) as ei:
        user.test_scores_requant(sim, bug=1)
    msg = str(ei.value)
    ix = list(_first_bad(gs))
    assert "scores_match_golden: tiny_gpt2_hw/scores: " in msg and f"first at {ix}: expected 0x" in msg, msg
    assert "> bound 0" in msg and "differ from the expected codes" in msg
    waves = Path(msg.split("waves: ")[1].split()[0])
    assert waves.exists() and waves.stat().st_size > 0 and waves.suffix == (".fst" if sim == "icarus" else ".vcd")


def test_missing_source_is_a_clear_error(tmp_path):
    from refmodel.errors import UserError

    with pytest.raises(UserError, match="HDL source not found: .*nope.sv"):
        run_bench("cocotblib_tests", sources=[tmp_path / "nope.sv"], toplevel="x")
    with pytest.raises(UserError, match="unknown simulator 'modelsim'"):
        run_bench("cocotblib_tests", sources=[RTL], toplevel="x", simulator="modelsim")
