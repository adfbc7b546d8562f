"""cocotb golden-set test for ``rtl/softmax_row.v`` (run by ``test_softmax.py::test_softmax_golden``).

Every row of the hw golden set's attention scores (``[heads, seq, seq]``, causal mask per row:
key ``j`` masked for query ``i < j``) goes through ``softmax_row`` built with ``units.probs.softmax``
and the set's own ``exp2_lut.hex`` as the ``$readmemh`` table; every output (masked ones are 0) is
compared bit-exactly with the golden probs codes, ``m_last`` on each row's last element, then the
decoded probabilities with the float64 reference within the manifest tolerance.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from golden_common import allowed_mask, check_tolerance, golden_set, log_golden, softmax_params
from tb_common import StreamSink, StreamSource, compare, hexw, log_rate, reset, run_stream, start_clock


@cocotb.test()
async def softmax_golden_probs(dut):
    """Golden scores rows -> softmax_row -> golden probs codes, bit-exact; float64 tolerance."""
    gs = golden_set()
    p = softmax_params(gs.units["probs"]["softmax"])
    dut_hdl = {k: int(getattr(dut, k).value) for k in p.to_hdl()}
    assert dut_hdl == p.to_hdl(), f"DUT parameters {dut_hdl} != manifest units.probs.softmax {p.to_hdl()}"
    scores = gs.codes(gs.units["probs"]["inputs"][0])
    golden = gs.codes("probs")
    h, s, t = scores.shape
    masked = ~np.broadcast_to(allowed_mask(gs, s, t), scores.shape)
    rows = scores.reshape(-1, t)
    mrows = masked.reshape(-1, t)
    in_mask = (1 << p.in_w) - 1
    items = [{"data": int(v) & in_mask, "mask": int(m), "last": int(j == t - 1)}
             for r in range(rows.shape[0]) for j, (v, m) in enumerate(zip(rows[r].tolist(), mrows[r].tolist()))]

    start_clock(dut)
    source = StreamSource(dut, "s", signals=("data", "mask", "last"))
    sink = StreamSink(dut, "m", signals=("data", "last"))
    await reset(dut)
    got, secs = await run_stream(source, sink, items, cycles_per_item=8 + p.k)
    await ClockCycles(dut.clk, p.cycles(t) + 8)
    assert len(sink.items) == len(items), f"{len(sink.items) - len(items)} extra outputs"

    def describe(i: int) -> str:
        r, j = divmod(i, t)
        hh, ss = divmod(r, s)
        x = int(rows[r, j])
        return (f"probs[{hh},{ss},{j}]: score {hexw(x, p.in_w)} ({x / 2 ** p.in_f:+.4f})"
                f"{' masked' if mrows[r, j] else ''}, row max {int(rows[r][~mrows[r]].max())}")

    def show(c: int) -> str:
        return f"{hexw(c, p.out_w)} ({c / 2 ** p.out_f:.6f})"

    compare([g["data"] for g in got], golden.reshape(-1).tolist(), what=f"{gs.name}/probs m_data vs golden codes",
            describe=describe, show=show)
    compare([g["last"] for g in got], [it["last"] for it in items], what=f"{gs.name}/probs m_last", describe=describe)
    check_tolerance(dut._log, gs, "probs", np.array([g["data"] for g in got], dtype=np.int64).reshape(golden.shape))
    log_golden(dut, gs, "softmax_row", f"probs (all {h * s} rows of {t}, causal masks)", len(items), secs)
    log_rate(dut, "softmax_golden[probs]", len(items), secs)
