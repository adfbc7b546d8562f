"""cocotb golden-set test for ``rtl/act_table.v`` (run by ``test_act_table.py::test_act_table_golden``).

The golden set's ``up`` codes are requantised to the table's input format ``units.act.table_in``
exactly as ``QuantOps._fixed_act`` does (``round_shift`` by the fraction difference with the act
tensor's rounding, then saturation), streamed at full rate (``s_last`` on each row's last element)
through ``act_table`` built with ``units.act.act_params`` and the set's own ``act_table.hex`` as
``TABLE_MEMFILE``; every output is compared bit-exactly with the golden ``act`` codes, ``m_last``
with ``s_last``, then the decoded outputs within the set's tolerance tier.
"""

from __future__ import annotations

import cocotb
import numpy as np

from refmodel.cocotb import GoldenSet, StreamBench, check_parameters, hexw, log_rate
from refmodel.cocotb.stream import to_signed
from refmodel.numerics.fixed import FixedFormat, apply_overflow
from refmodel.numerics.rounding import Overflow, round_shift


@cocotb.test()
async def act_golden(dut):
    """Golden up -> table input format -> act_table -> golden act codes, bit-exact; tolerance tier."""
    gs = GoldenSet.from_env()
    st = gs.stage("act")
    hdl = {k: int(v) for k, v in st.unit["act_params"].items()}
    check_parameters(dut, hdl, "manifest's units.act.act_params")
    assert hdl["LANES"] == 1, "the golden bench drives one element per beat"
    tin = FixedFormat.parse(st.unit["table_in"])
    assert tin.width == hdl["IN_W"], f"table_in {tin} does not match IN_W={hdl['IN_W']}"
    tab_fmt = FixedFormat.parse(gs.entry("act_table")["table_in"])
    assert tab_fmt == tin, f"act_table.hex was written for {tab_fmt}, units.act.table_in is {tin}"
    ((hn, h),) = st.inputs.items()
    hf = gs.fmt(hn)
    rounding = gs.manifest["plan"]["tensors"]["act"]["rounding"]
    c = round_shift(h, hf.frac - tin.frac, rounding) if hf.frac >= tin.frac else h << np.int64(tin.frac - hf.frac)
    c = apply_overflow(c, tin, Overflow.SATURATE)
    last = np.broadcast_to(np.arange(h.shape[-1]) == h.shape[-1] - 1, h.shape).astype(int)
    tb = StreamBench(dut, source_fields=("data", "last"), sink_fields=("data", "last"))
    await tb.reset()
    out = await tb.run_full_rate(list(zip(c.ravel().tolist(), last.ravel().tolist(), strict=True)), ("data", "last"))
    await tb.expect_no_more(c.size, 4)
    got = np.array([to_signed(o["data"], hdl["OUT_W"]) for o in out]).reshape(h.shape)

    def describe(ix: tuple[int, ...]) -> str:
        return (f"{hn}={int(h[ix])} ({int(h[ix]) * 2.0 ** -hf.frac:+.6g}) -> table input "
                f"{hexw(int(c[ix]), tin.width)} ({int(c[ix]) * 2.0 ** -tin.frac:+.6g})")

    tb.sb.check_stage(gs, "act", got, describe=describe)
    tb.sb.exact(f"{gs.name}/act m_last", np.array([o["last"] for o in out]).reshape(h.shape), last, cover=False)
    n_sat = int(np.count_nonzero((c == tin.max_code) | (c == tin.min_code)))
    dut._log.info("act: %d elements of %s; %d saturated into %s", c.size, hn, n_sat, tin)
    log_rate(dut, "act_table_golden[act]", c.size, tb.seconds)
    tb.finish()
