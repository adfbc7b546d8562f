"""cocotb golden-set test for ``rtl/rsqrt.v`` as the norm unit's rsqrt (run by
``test_rsqrt.py::test_rsqrt_golden``).

For every row of the hw golden set's norm inputs (``x`` for ln1, ``res1`` for ln2; stages in
``RM_GOLDEN_STAGES``), :func:`norm_stats_int` with ``units.<stage>.norm_params`` gives the value the
norm unit feeds its rsqrt, ``A_t = A' >> TR`` (the normalised variance + eps, truncated to ``W_R =
min(A_W, RSQ_W)`` bits), and the ``r = floor(2^RSQ_K / sqrt(A_t))`` that produced the golden
ln1/ln2 codes (``norm_int`` must reproduce them, checked). ``A_t`` is streamed into ``rsqrt``
built with ``V_W = W_R``, ``K = RSQ_K`` (the norm's ``rsqrt_params()``); ``m_data`` must equal that
``r`` bit-exactly. ``r`` is internal to the norm unit: it has no golden tensor or tolerance.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from golden_common import golden_set, log_golden, norm_params, stages_from_env
from tb_common import StreamSink, StreamSource, compare, hexw, log_rate, reset, run_stream, start_clock

from refmodel.numerics.units.norm import norm_int, norm_stats_int
from refmodel.numerics.units.rsqrt import rsqrt


@cocotb.test()
async def rsqrt_golden_norm_rows(dut):
    """A_t of every golden norm row -> rsqrt -> the r that produced the golden norm output."""
    gs = golden_set()
    start_clock(dut)
    source = StreamSource(dut, "s", signals=("data",))
    sink = StreamSink(dut, "m", signals=("data",))
    dut_hdl = {"V_W": int(dut.V_W.value), "K": int(dut.K.value)}
    for stage in stages_from_env(["ln1", "ln2"]):
        u = gs.units[stage]
        p = norm_params(gs, stage)
        rp = p.rsqrt_params()
        assert dut_hdl == rp.to_hdl(), f"{stage}: DUT parameters {dut_hdl} != the norm's rsqrt {rp.to_hdl()}"
        x = gs.codes(u["inputs"][0])
        g, b = gs.codes(u["inputs"][1]), gs.codes(u["inputs"][2])
        # precondition (Python only): these statistics are the ones behind the golden codes
        compare(norm_int(x, g, b, p).reshape(-1).tolist(), gs.codes(stage).reshape(-1).tolist(),
                what=f"{gs.name}/{stage}: norm_int vs the golden codes (set inconsistent, not an RTL result)")
        st = norm_stats_int(x, p)
        a_t = (st.a_norm >> np.int64(p.tr)).reshape(-1)
        # r of the model (0 where A = 0: unused there; the unit itself returns all ones)
        expected = np.where(st.a.reshape(-1) == 0, rsqrt(a_t, rp), st.r.reshape(-1))
        await reset(dut)
        sink.clear()
        got, secs = await run_stream(source, sink, [int(v) for v in a_t.tolist()], cycles_per_item=rp.interval + 4)
        await ClockCycles(dut.clk, rp.latency + 4)
        assert len(sink.items) == len(a_t), f"{stage}: {len(sink.items) - len(a_t)} extra outputs"

        def describe(i: int) -> str:
            return (f"{stage} row {i}: A = {int(st.a.reshape(-1)[i])}, e = {int(st.e.reshape(-1)[i])}, "
                    f"A_t = {hexw(int(a_t[i]), rp.v_w)} ({int(a_t[i])})")

        compare([gg["data"] for gg in got], expected.tolist(), what=f"{gs.name}/{stage} rsqrt r vs model",
                describe=describe)
        msg = (f"{gs.name}/{stage}: rsqrt output r is internal to the norm unit (no golden tensor, no tolerance); "
               f"checked bit-exactly against the r that produced the golden {stage} codes")
        dut._log.info(msg)
        print(msg, flush=True)
        log_golden(dut, gs, "rsqrt", f"{stage} A_t (all {len(a_t)} rows of {u['inputs'][0]})", len(a_t), secs)
        log_rate(dut, f"rsqrt_golden[{stage}]", len(a_t), secs)
