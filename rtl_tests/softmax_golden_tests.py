"""cocotb golden-set test for ``rtl/softmax_row.v`` (run by ``test_softmax.py::test_softmax_golden``).

Every row of the golden set's attention scores (``[heads, seq, seq]``, causal mask per row: key
``j`` masked for query ``i < j``) goes through ``softmax_row`` built with ``units.probs.softmax``
and the set's own ``exp2_lut.hex`` as the ``$readmemh`` table; every output (masked ones are 0) is
compared bit-exactly with the golden probs codes, ``m_last`` on each row's last element, then the
decoded probabilities within the set's tolerance tier.
"""

from __future__ import annotations

import cocotb
import numpy as np
from golden_common import allowed_mask, softmax_params

from refmodel.cocotb import GoldenSet, StreamBench, check_parameters, hexw, log_rate


@cocotb.test()
async def softmax_golden_probs(dut):
    """Golden scores rows -> softmax_row -> golden probs codes, bit-exact; tolerance tier."""
    gs = GoldenSet.from_env()
    p = softmax_params(gs.units["probs"]["softmax"])
    check_parameters(dut, p.to_hdl(), "manifest's units.probs.softmax")
    scores = gs.codes(gs.inputs("probs")[0])
    h, s, t = scores.shape
    masked = ~np.broadcast_to(allowed_mask(gs, s, t), scores.shape)
    last = np.broadcast_to(np.arange(t) == t - 1, scores.shape)
    items = [{"data": int(v), "mask": int(m), "last": int(e)}
             for v, m, e in zip(scores.ravel().tolist(), masked.ravel().tolist(), last.ravel().tolist(), strict=True)]
    tb = StreamBench(dut, source_fields=("data", "mask", "last"), sink_fields=("data", "last"))
    await tb.reset()
    out = await tb.run(items, cycles_per_item=8 + p.k)
    await tb.expect_no_more(len(items), p.cycles(t) + 8)

    def describe(ix: tuple[int, ...]) -> str:
        x = int(scores[ix])
        row = ix[:2]
        return (f"score {hexw(x, p.in_w)} ({x / 2 ** p.in_f:+.4f}){' masked' if masked[ix] else ''}, "
                f"row max {int(scores[row][~masked[row]].max())}")

    tb.sb.check_stage(gs, "probs", np.array([o["data"] for o in out]).reshape(scores.shape), describe=describe)
    tb.sb.exact(f"{gs.name}/probs m_last", np.array([o["last"] for o in out]).reshape(scores.shape), last,
                describe=describe, cover=False)
    log_rate(dut, "softmax_golden[probs]", len(items), tb.seconds)
    tb.finish()
