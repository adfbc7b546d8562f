"""cocotb golden-set test for ``rtl/reciprocal.v`` as the softmax's divider (run by
``test_reciprocal.py::test_reciprocal_golden``).

For every row of the golden set's scores, the softmax model (:func:`softmax` with
``return_parts=True``, parameters ``units.probs.softmax``; it must reproduce the golden probs,
checked) gives the exact exp sum ``S`` and the ``R = floor(2^K / S)`` that produced the golden
probs. ``S`` is sent to the divider built with the softmax's ``DividerParams`` (``NUM_W = K + 1``,
``DEN_W = S_W``) with ``s_num = 2^K``; the RTL quotient must equal that ``R`` and the remainder
``2^K - R S``, bit-exactly; then the probs recomputed from the RTL's ``R`` (contract step 5:
``min((e R + 2^(K-OUT_F-1)) >> (K-OUT_F), 2^OUT_W - 1)``) must equal the golden probs codes and lie
within the set's tolerance tier. ``R`` itself is internal to the softmax unit: no golden tensor.
"""

from __future__ import annotations

import cocotb
import numpy as np
from golden_common import allowed_mask, softmax_params

from refmodel.cocotb import GoldenSet, StreamBench, check_parameters, log_rate
from refmodel.numerics.units.softmax import softmax


@cocotb.test()
async def reciprocal_golden_softmax_sums(dut):
    """Golden softmax row sums S -> divider -> R that produced the golden probs, bit-exact."""
    gs = GoldenSet.from_env()
    p = softmax_params(gs.units["probs"]["softmax"])
    dp = p.divider
    check_parameters(dut, dp.to_hdl(), "softmax's divider parameters")
    scores = gs.codes(gs.inputs("probs")[0])
    golden = gs.codes("probs")
    h, s, t = scores.shape
    masked = ~np.broadcast_to(allowed_mask(gs, s, t), scores.shape)
    y, e, S, R = softmax(scores, p, masked=masked, return_parts=True)
    tb = StreamBench(dut, source_fields=("num", "den"), sink_fields=("quot", "rem"))
    # precondition (Python only): these S, R are the ones behind the golden probs
    tb.sb.exact(f"{gs.name}/probs: the softmax model vs the golden codes (set consistency, not an RTL result)", y,
                golden, cover=False)
    num = 1 << p.k
    await tb.reset()
    out = await tb.run([{"num": num, "den": int(v)} for v in S.reshape(-1).tolist()], cycles_per_item=dp.num_w + 4)
    await tb.expect_no_more(S.size, dp.num_w + 4)
    quot = np.array([o["quot"] for o in out], dtype=np.int64).reshape(R.shape)

    def describe(ix: tuple[int, ...]) -> str:
        row = ix[:2]
        return f"S = {int(S[row][0])} ({int((~masked[row]).sum())} unmasked terms), num = 2^{p.k}"

    tb.sb.exact(f"{gs.name}/probs softmax R = floor(2^K/S): m_quot vs model R", quot, R, describe=describe,
                cover=False)
    tb.sb.exact(f"{gs.name}/probs m_rem", np.array([o["rem"] for o in out]).reshape(R.shape), num - R * S,
                describe=describe, cover=False)
    # the golden probs from the RTL's R (softmax contract step 5)
    sh = np.int64(p.k - p.out_f)
    probs = np.minimum((e * quot + (np.int64(1) << (sh - 1))) >> sh, np.int64((1 << p.out_w) - 1))
    tb.sb.check_stage(gs, "probs", probs, describe=lambda ix: f"{describe(ix)}, e = {int(e[ix])}")
    log_rate(dut, "reciprocal_golden[softmax S]", S.size, tb.seconds)
    tb.finish()
