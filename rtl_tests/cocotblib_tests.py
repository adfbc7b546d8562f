"""cocotb benches of refmodel.cocotb itself (run by test_cocotblib.py), on the tutorial's user DUT
(user/scores_requant.sv) and its AXI-Stream wrapper:

* ``scores_requant``: the valid/ready endpoints under heavy source idle and sink backpressure, with
  a passive StreamMonitor beside the sink: every item arrives once, in order, equal to the model;
  monitor and sink agree; the handshake counters saw every pattern.
* ``scores_requant_axis``: cocotbext-axi's AxiStreamSource/AxiStreamSink (frames with tlast, pause
  generators) feeding the golden set through refmodel.cocotb.axis, checked by the Scoreboard.
"""

from __future__ import annotations

import itertools
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, Timer

from refmodel.cocotb import GoldenSet, StreamBench, StreamMonitor, dut_parameters, reset, start_clock
from refmodel.cocotb.axis import axis_endpoints, codes_from_frames, frames_from_codes
from refmodel.cocotb.scoreboard import Scoreboard
from refmodel.numerics.units.requant import RequantParams, requant_with_flags

TOP = os.environ.get("COCOTB_TOPLEVEL", "")


def golden_scores_inputs(gs: GoldenSet) -> tuple[np.ndarray, np.ndarray]:
    q, k = gs.stage("scores").inputs.values()
    acc = np.einsum("hsd,htd->hst", q, k)
    return acc, np.broadcast_to(np.tril(np.ones(acc.shape[1:], bool)), acc.shape)


if TOP == "scores_requant":

    @cocotb.test()
    @cocotb.parametrize((("idle", "backpressure"), [("rand30", "rand30"), ("none", "3of4"), ("3of4", "rand30")]))
    async def endpoints_under_backpressure(dut, idle, backpressure):
        """Random accumulators through the DUT with source idle and sink backpressure."""
        prm = dut_parameters(dut, ["IN_W", "M_W", "OUT_W", "MULT", "SHIFT"])
        p = RequantParams(in_w=prm["IN_W"], m_w=prm["M_W"], shift=prm["SHIFT"], out_w=prm["OUT_W"], rounding="rne")
        rng = np.random.default_rng([cocotb.RANDOM_SEED, len(idle), len(backpressure)])
        x = rng.integers(-(1 << 24), 1 << 24, 600)
        tb = StreamBench(dut, source="in", sink="out", source_fields=["acc"], sink_fields=["score"])
        monitor = StreamMonitor(dut, "out", signals=["score"])
        tb.set_pauses(idle, backpressure)
        await tb.reset()
        out = await tb.run(x.tolist(), cycles_per_item=30)
        await tb.expect_no_more(len(x), 20)
        expected, _ = requant_with_flags(x, prm["MULT"], p)
        tb.sb.exact(f"idle={idle} bp={backpressure}", tb.sink.codes(out), expected)
        assert [m["score"] for m in monitor.items] == [o["score"] for o in out], "monitor and sink disagree"
        assert tb.source.count == len(x)
        src, snk = tb.source.coverage_counts(), tb.sink.coverage_counts()
        assert (src["source_idle"] > 0) == (idle != "none"), f"source idle cycles: {src}"
        assert snk["sink_backpressure"] > 0, f"the sink never held ready low against a valid output: {snk}"
        if idle == "none":  # a source that always has data meets the DUT's ready low
            assert src["dut_stall"] > 0, f"the DUT never stalled the source: {src}"
        tb.finish()


if TOP == "scores_requant_axis":

    @cocotb.test()
    async def axis_golden_scores(dut):
        """The golden scores through cocotbext-axi AXI-Stream endpoints: one frame per query row,
        pauses on both sides, bit-exact and within the tolerance tier."""
        gs = GoldenSet.from_env()
        acc, causal = golden_scores_inputs(gs)
        src, sink = axis_endpoints(dut, "s_axis", "m_axis")
        dut.rst.value = 1  # a reset edge before the clock runs: the endpoints sample no X handshake
        await Timer(1, unit="ns")
        start_clock(dut)
        src.set_pause_generator(itertools.cycle([0, 1, 0]))
        sink.set_pause_generator(itertools.cycle([1, 0, 0, 1]))
        await reset(dut)
        frames = frames_from_codes(acc, width=len(dut.s_axis_tdata))
        for f in frames:
            await src.send(f)
        got_frames = [await sink.recv() for _ in frames]
        await ClockCycles(dut.clk, 10)
        assert sink.empty(), "extra output frames"
        assert [len(f.tdata) for f in got_frames] == [acc.shape[-1]] * len(frames), "tlast framing changed"
        got = codes_from_frames(got_frames, width=len(dut.m_axis_tdata), signed=True).reshape(acc.shape)
        sb = Scoreboard("scores_requant_axis", log=dut._log)
        sb.check_stage(gs, "scores", got, where=causal)
        sb.record_coverage()
        dut._log.info(sb.report())
