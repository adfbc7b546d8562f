"""cocotb golden-set test for ``rtl/mac_dot.v`` (run by ``test_mac_dot.py::test_mac_dot_golden``).

For every stage in ``RM_GOLDEN_STAGES`` (all with the MAC parameters of this build, checked against
the manifest's ``units.<stage>.mac``), the golden inputs (:class:`golden_common.MacStage`: linear
``x W^T + b`` or the attention mix ``probs[h] @ v[h]``) are streamed one product per clock at full
rate (``golden_common.drive_full_rate``; the sink is always ready, so ``s_ready`` stays high and
the cycle count is checked); every result is compared bit-exactly, ``m_data`` with the golden
codes and ``m_acc`` with the refmodel accumulator; then the decoded outputs with the float64
reference within the manifest tolerance (or the bench says the set has none).

``RM_GOLDEN_MAX_BEATS`` (> 0) limits a stage to evenly spread sequence rows within that many beats
(the pytest runner's default for the 262k-beat stages; ``--run-slow`` runs every row).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from golden_common import MAC_HDL, MacStage, check_tolerance, drive_full_rate, golden_set, log_golden, stages_from_env
from tb_common import StreamSink, compare, hexw, log_rate, reset, signed, start_clock


@cocotb.test()
async def mac_golden(dut):
    """Golden-set stages through mac_dot at full rate: m_data bit-exact vs the golden codes,
    m_acc vs the model accumulator, decoded output vs float64 within the manifest tolerance."""
    gs = golden_set()
    max_beats = int(os.environ.get("RM_GOLDEN_MAX_BEATS", "0"))
    start_clock(dut)
    sink = StreamSink(dut, "m", signals=["data", "acc"])
    dut_hdl = {k: int(getattr(dut, k).value) for k in MAC_HDL}
    for name in stages_from_env(["q"]):
        st = MacStage(gs, name, max_beats=max_beats)
        assert dut_hdl == st.hdl, f"{name}: DUT parameters {dut_hdl} != manifest units.{name}.mac {st.hdl}"
        await reset(dut)
        sink.clear()
        n = len(st.expected)
        cycles, secs = await drive_full_rate(dut, st.beats(), ("a", "w", "bias", "last"))
        await sink.wait_for(n, timeout_cycles=50)
        await ClockCycles(dut.clk, 4)
        assert cycles == st.n_beats, f"{name}: {st.n_beats} beats took {cycles} cycles (not full rate)"
        got = sink.pop_all()
        p = st.p
        data = [signed(g["data"], p.out_w) for g in got]
        acc = [signed(g["acc"], p.acc_w) for g in got]
        compare(data, st.expected.tolist(), what=f"{gs.name}/{name} m_data vs golden codes", describe=st.describe,
                show=lambda c: f"{hexw(c, p.out_w)} ({c})")
        compare(acc, st.acc.tolist(), what=f"{gs.name}/{name} m_acc vs model accumulator", describe=st.describe,
                show=lambda c: f"{hexw(c, p.acc_w)} ({c})")
        codes, where = st.to_golden_layout(np.array(data, dtype=np.int64))
        check_tolerance(dut._log, gs, name, codes, where=where)
        log_golden(dut, gs, "mac_dot", f"{name} ({st.coverage})", n, secs)
        log_rate(dut, f"mac_dot_golden[{name}]", st.n_beats, secs)
