"""cocotb golden-set test for ``rtl/mac_dot.v`` (run by ``test_mac_dot.py::test_mac_dot_golden``).

For every stage in ``RM_GOLDEN_STAGES`` (all with the MAC parameters of this build, checked against
the manifest's ``units.<stage>.mac``), the golden inputs (:class:`golden_common.MacStage`: linear
``x W^T + b`` or the attention mix ``probs[h] @ v[h]``) are streamed one product per clock at full
rate (the sink is always ready, so ``s_ready`` stays high and the cycle count is checked); every
result is compared bit-exactly, ``m_data`` with the golden codes and ``m_acc`` with the refmodel
accumulator; then the decoded outputs within the set's tolerance tier.

``RM_GOLDEN_MAX_BEATS`` (> 0) limits a stage to evenly spread sequence rows within that many beats
(the pytest runner's default for the 262k-beat stages; ``--run-slow`` runs every row).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from golden_common import MAC_HDL, MacStage, stages_from_env

from refmodel.cocotb import GoldenSet, StreamBench, check_parameters, dut_parameters, log_rate
from refmodel.cocotb.stream import to_signed


@cocotb.test()
async def mac_golden(dut):
    """Golden-set stages through mac_dot at full rate: m_data bit-exact vs the golden codes,
    m_acc vs the model accumulator, decoded output within the set's tolerance tier."""
    gs = GoldenSet.from_env()
    max_beats = int(os.environ.get("RM_GOLDEN_MAX_BEATS", "0"))
    tb = StreamBench(dut, source_fields=["a", "w", "bias", "last"], sink_fields=["data", "acc"])
    dut_parameters(dut, MAC_HDL)
    for name in stages_from_env(["q"]):
        st = MacStage(gs, name, max_beats=max_beats)
        check_parameters(dut, st.hdl, f"manifest's units.{name}.mac")
        await tb.reset()
        out = await tb.run_full_rate(st.beats(), ("a", "w", "bias", "last"), n_out=len(st.expected))
        await tb.expect_no_more(len(st.expected), 4)
        p = st.p
        data = np.array([to_signed(o["data"], p.out_w) for o in out], dtype=np.int64)
        tb.sb.exact(f"{gs.name}/{name} m_acc vs model accumulator", [to_signed(o["acc"], p.acc_w) for o in out],
                    st.acc, describe=lambda ix, st=st: st.describe(ix[0]), cover=False)
        codes, where = st.to_golden_layout(data)
        tb.sb.check_stage(gs, name, codes, where=where, describe=st.describe_at)
        dut._log.info("%s: %s", name, st.coverage)
        log_rate(dut, f"mac_dot_golden[{name}]", st.n_beats, tb.seconds)
    tb.finish()
