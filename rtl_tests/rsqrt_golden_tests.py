"""cocotb golden-set test for ``rtl/rsqrt.v`` as the norm unit's rsqrt (run by
``test_rsqrt.py::test_rsqrt_golden``).

For every row of the golden set's norm inputs (``x`` for ln1, ``res1`` for ln2; stages in
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
from golden_common import norm_params, stages_from_env

from refmodel.cocotb import GoldenSet, StreamBench, check_parameters, hexw, log_rate
from refmodel.numerics.units.norm import norm_int, norm_stats_int
from refmodel.numerics.units.rsqrt import rsqrt


@cocotb.test()
async def rsqrt_golden_norm_rows(dut):
    """A_t of every golden norm row -> rsqrt -> the r that produced the golden norm output."""
    gs = GoldenSet.from_env()
    tb = StreamBench(dut, source_fields=("data",), sink_fields=("data",))
    for stage in stages_from_env(["ln1", "ln2"]):
        p = norm_params(gs, stage)
        rp = p.rsqrt_params()
        check_parameters(dut, rp.to_hdl(), f"{stage} norm's rsqrt parameters")
        st = gs.stage(stage)
        x, g, b = st.inputs.values()
        # precondition (Python only): these statistics are the ones behind the golden codes
        tb.sb.exact(f"{gs.name}/{stage}: norm_int vs the golden codes (set consistency, not an RTL result)",
                    norm_int(x, g, b, p), st.output, cover=False)
        stats = norm_stats_int(x, p)
        a_t = (stats.a_norm >> np.int64(p.tr)).reshape(-1)
        # r of the model (0 where A = 0: unused there; the unit itself returns all ones)
        expected = np.where(stats.a.reshape(-1) == 0, rsqrt(a_t, rp), stats.r.reshape(-1))
        await tb.reset()
        out = await tb.run([int(v) for v in a_t.tolist()], cycles_per_item=rp.interval + 4)
        await tb.expect_no_more(len(a_t), rp.latency + 4)

        def describe(ix: tuple[int, ...], stage: str = stage, st=stats, a_t=a_t, rp=rp) -> str:
            i = ix[0]
            return (f"{stage} row {i}: A = {int(st.a.reshape(-1)[i])}, e = {int(st.e.reshape(-1)[i])}, "
                    f"A_t = {hexw(int(a_t[i]), rp.v_w)} ({int(a_t[i])})")

        tb.sb.exact(f"{gs.name}/{stage} rsqrt r (internal to the norm unit: no golden tensor, no tolerance) vs the "
                    f"r behind the golden codes", [o["data"] for o in out], expected, describe=describe, cover=False)
        log_rate(dut, f"rsqrt_golden[{stage}]", len(a_t), tb.seconds)
    tb.finish()
