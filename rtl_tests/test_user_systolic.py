"""My systolic-array matmul (user/systolic_matmul.sv) against refmodel's golden `up` projection."""
from pathlib import Path

import cocotb
import numpy as np

from refmodel.cocotb import GoldenSet, StreamBench, pack_lanes, run_bench

RTL = Path(__file__).parent / "user" / "systolic_matmul.sv"
R, C, ROWS = 4, 8, 4                          # the DUT's R x C array; check the first ROWS rows of `up`


@cocotb.test()
async def up_within_tolerance(dut):
    gs = GoldenSet.from_env()
    x, w, b = gs.stage("up").inputs.values()                  # ln2 [16, 64], w_up [256, 64], b_up [256]
    J, K = len(w) // C, x.shape[1]                            # tile columns, inner dimension
    t, k = np.divmod(np.arange(ROWS // R * J * K), K)         # one beat per (tile t, step k)
    r, c = (t // J)[:, None] * R + np.arange(R), (t % J)[:, None] * C + np.arange(C)
    a_, w_, b_ = pack_lanes(x[r, k[:, None]], 16), pack_lanes(w[c, k[:, None]], 8), pack_lanes(b[c], 16)
    beats = [dict(a=p, w=q, b=s, last=int(n == K - 1)) for p, q, s, n in zip(a_, w_, b_, k, strict=True)]
    tb = StreamBench(dut, source="in", sink="out", source_fields=["a", "w", "b", "last"], sink_fields=["y"])
    tb.set_pauses(idle="rand30", backpressure="rand30")
    await tb.reset()
    out = await tb.run(beats, n_out=ROWS * J)                 # R rows of C codes per tile
    got = np.zeros((len(x), len(w)), np.int64)
    got[:ROWS] = tb.sink.codes(out, lanes=C).reshape(-1, J, R, C).transpose(0, 2, 1, 3).reshape(ROWS, -1)
    tb.sb.check_stage(gs, "up", got, where=np.arange(len(x))[:, None] < ROWS, exact=False)   # local tier
    tb.finish()


def test_systolic_up(bug=0, sims=("verilator", "icarus")):
    gs = GoldenSet.open("tiny_gpt2_hw")
    mac = gs.units["up"]["mac"]                               # the plan's bias alignment and output shift
    runs = [run_bench(__name__, sources=[RTL], toplevel="systolic_matmul", simulator=sim, golden=gs,
                      parameters={"BIAS_LSH": mac["BIAS_LSH"], "SHIFT": mac["SHIFT"], "BUG": bug}) for sim in sims]
    assert all(r.identity() == runs[0].identity() for r in runs)  # the same outcome, cycle for cycle
