"""cocotb golden-set test for ``rtl/mac_dot.v`` (run by ``test_mac_dot.py::test_mac_dot_golden``
on the top ``mac_dot_golden_tb``: a stimulus ROM in front of ``mac_dot``, so the golden streams run
at full rate without per-cycle Python).

For every stage in ``RM_GOLDEN_STAGES`` (all with the MAC parameters of this build, checked against
the manifest's ``units.<stage>.mac``): the golden inputs (:class:`golden_common.MacStage`: linear
``x W^T + b``, or the attention mix ``probs[h] @ v[h]``) are written as the ROM file, loaded and
streamed one beat per clock; every result is compared bit-exactly, ``m_data`` with the golden
codes and ``m_acc`` with the model accumulator; then the decoded outputs with the float64
reference within the manifest tolerance (or the bench says the set has none).
"""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

from golden_common import MAC_HDL, MacStage, check_tolerance, golden_set, log_golden, stages_from_env
from refmodel.golden.hexfile import write_memh
from tb_common import StreamSink, Stopwatch, compare, hexw, log_rate, reset, signed


@cocotb.test()
async def mac_golden(dut):
    """Golden-set stages through mac_dot at full rate: m_data bit-exact vs the golden codes,
    m_acc vs the model accumulator, decoded output vs float64 within the manifest tolerance."""
    gs = golden_set()
    stim_path = Path(os.environ["RM_GOLDEN_STIM"])
    dut.load.value = 0
    dut.start.value = 0
    dut.n_beats.value = 0
    sink = StreamSink(dut, "m", signals=["data", "acc"])
    dut_hdl = {k: int(getattr(dut.dut, k).value) for k in MAC_HDL}
    depth = int(dut.DEPTH.value)
    for name in stages_from_env(["q"]):
        st = MacStage(gs, name)
        assert dut_hdl == st.hdl, f"{name}: DUT parameters {dut_hdl} != manifest units.{name}.mac {st.hdl}"
        assert st.n_beats <= depth, f"{name}: {st.n_beats} beats > DEPTH={depth} (the runner sizes DEPTH)"
        words, width = st.stim_words()
        write_memh(stim_path, words, width)
        await reset(dut)
        sink.clear()
        dut.n_beats.value = st.n_beats
        await ClockCycles(dut.clk, 1)
        dut.load.value = 1
        await ClockCycles(dut.clk, 1)
        dut.load.value = 0
        n = len(st.expected)
        with Stopwatch() as sw:
            dut.start.value = 1
            await First(RisingEdge(dut.done), Timer(20 * (st.n_beats + 100), unit="ns"))
            assert int(dut.done.value) == 1, f"{name}: timeout with {len(sink.items)} of {n} results"
            dut.start.value = 0
            await sink.wait_for(n, timeout_cycles=50)
        await ClockCycles(dut.clk, 8)
        cycles = int(dut.cycles.value)
        assert cycles == st.n_beats, f"{name}: {st.n_beats} beats took {cycles} cycles with valid high (not full rate)"
        got = sink.pop_all()
        p = st.p
        data = [signed(g["data"], p.out_w) for g in got]
        acc = [signed(g["acc"], p.acc_w) for g in got]
        compare(data, st.expected.tolist(), what=f"{gs.name}/{name} m_data vs golden codes", describe=st.describe,
                show=lambda c: f"{hexw(c, p.out_w)} ({c})")
        compare(acc, st.acc.tolist(), what=f"{gs.name}/{name} m_acc vs model accumulator", describe=st.describe,
                show=lambda c: f"{hexw(c, p.acc_w)} ({c})")
        check_tolerance(dut._log, gs, name, st.to_golden_layout(np.array(data, dtype=np.int64)))
        log_golden(dut, gs, "mac_dot", name, n, sw.seconds)
        log_rate(dut, f"mac_dot_golden[{name}]", st.n_beats, sw.seconds)
