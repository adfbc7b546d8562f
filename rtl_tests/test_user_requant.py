"""My requantiser (user/scores_requant.sv) against refmodel's golden attention scores."""
from pathlib import Path

import cocotb
import numpy as np
import pytest

from refmodel.cocotb import GoldenSet, StreamBench, run_bench

RTL = Path(__file__).parent / "user" / "scores_requant.sv"


@cocotb.test()
async def scores_match_golden(dut):
    gs = GoldenSet.from_env()
    q, k = gs.stage("scores").inputs.values()           # golden q and k codes, [heads, seq, dim]
    acc = np.einsum("hsd,htd->hst", q, k)                # exact q.k accumulators
    causal = np.broadcast_to(np.tril(np.ones(acc.shape[1:], bool)), acc.shape)
    tb = StreamBench(dut, source="in", sink="out", source_fields=["acc"], sink_fields=["score"])
    tb.set_pauses(idle="rand30", backpressure="rand30")
    await tb.reset()
    out = await tb.run(acc[causal].tolist())
    got = np.zeros(acc.shape, np.int64)
    got[causal] = tb.sink.codes(out)                     # signed codes of out_score
    tb.sb.check_stage(gs, "scores", got, where=causal)   # bit-exact, then the tolerance tier
    tb.finish()


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_scores_requant(sim, bug=0):
    gs = GoldenSet.open("tiny_gpt2_hw")
    unit = gs.units["scores"]                            # the plan's requantiser: multiplier, shift
    run_bench(__name__, sources=[RTL], toplevel="scores_requant", simulator=sim, golden=gs,
              parameters={"MULT": unit["multiplier"], "SHIFT": unit["requant"]["SHIFT"], "BUG": bug})
