"""cocotb golden-set test for ``rtl/act_table.v`` (run by ``test_act_table.py::test_act_table_golden``).

The hw golden set's ``up`` codes are requantised to the table's input format ``units.act.table_in``
exactly as ``QuantOps._fixed_act`` does (``round_shift`` by the fraction difference with the act
tensor's rounding, then saturation), streamed at full rate (``s_last`` on each row's last element)
through ``act_table`` built with ``units.act.act_params`` and the set's own ``act_table.hex`` as
``TABLE_MEMFILE``; every output is compared bit-exactly with the golden ``act`` codes, ``m_last``
with ``s_last``, then the decoded outputs with the float64 reference within the manifest tolerance.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from golden_common import check_tolerance, drive_full_rate, golden_set, log_golden
from tb_common import StreamSink, compare, hexw, log_rate, reset, signed, start_clock

from refmodel.numerics.fixed import FixedFormat, apply_overflow
from refmodel.numerics.rounding import Overflow, round_shift


@cocotb.test()
async def act_golden(dut):
    """Golden up -> table input format -> act_table -> golden act codes, bit-exact; tolerance."""
    gs = golden_set()
    u = gs.units["act"]
    hdl = {k: int(v) for k, v in u["act_params"].items()}
    dut_hdl = {k: int(getattr(dut, k).value) for k in hdl}
    assert dut_hdl == hdl, f"DUT parameters {dut_hdl} != manifest units.act.act_params {hdl}"
    assert hdl["LANES"] == 1, "the golden bench drives one element per beat"
    tin = FixedFormat.parse(u["table_in"])
    assert tin.width == hdl["IN_W"], f"table_in {tin} does not match IN_W={hdl['IN_W']}"
    tab_fmt = FixedFormat.parse(gs.entry("act_table")["table_in"])
    assert tab_fmt == tin, f"act_table.hex was written for {tab_fmt}, units.act.table_in is {tin}"
    (hn,) = u["inputs"]
    h = gs.codes(hn)
    hf = gs.fmt(hn)
    rounding = gs.manifest["plan"]["tensors"]["act"]["rounding"]
    c = round_shift(h, hf.frac - tin.frac, rounding) if hf.frac >= tin.frac else h << np.int64(tin.frac - hf.frac)
    c = apply_overflow(c, tin, Overflow.SATURATE)
    golden = gs.codes("act")
    n_row = h.shape[-1]
    in_mask = (1 << tin.width) - 1
    flat = c.reshape(-1)
    beats = [(int(v) & in_mask, int(i % n_row == n_row - 1)) for i, v in enumerate(flat.tolist())]

    start_clock(dut)
    sink = StreamSink(dut, "m", signals=("data", "last"))
    await reset(dut)
    cycles, secs = await drive_full_rate(dut, beats, ("data", "last"))
    await sink.wait_for(len(beats), timeout_cycles=50)
    await ClockCycles(dut.clk, 4)
    assert cycles == len(beats), f"{len(beats)} beats took {cycles} cycles (not full rate)"
    assert len(sink.items) == len(beats), f"{len(sink.items) - len(beats)} extra outputs"
    got = sink.pop_all()
    w = hdl["OUT_W"]
    data = [signed(g["data"], w) for g in got]
    hflat = h.reshape(-1)
    of = gs.fmt("act")

    def describe(i: int) -> str:
        r, col = divmod(i, n_row)
        return (f"act[{r},{col}]: {hn}={int(hflat[i])} ({int(hflat[i]) * 2.0 ** -hf.frac:+.6g}) -> table input "
                f"{hexw(int(flat[i]), tin.width)} ({int(flat[i]) * 2.0 ** -tin.frac:+.6g})")

    compare(data, golden.reshape(-1).tolist(), what=f"{gs.name}/act m_data vs golden codes", describe=describe,
            show=lambda v: f"{hexw(v, w)} ({v * 2.0 ** -of.frac:+.6g})")
    compare([g["last"] for g in got], [b[1] for b in beats], what=f"{gs.name}/act m_last")
    check_tolerance(dut._log, gs, "act", np.array(data, dtype=np.int64).reshape(golden.shape))
    n_sat = int(np.count_nonzero((flat == tin.max_code) | (flat == tin.min_code)))
    log_golden(dut, gs, "act_table", f"act (all {len(beats)} elements of {hn}; {n_sat} saturated into {tin})",
               len(beats), secs)
    log_rate(dut, "act_table_golden[act]", len(beats), secs)
