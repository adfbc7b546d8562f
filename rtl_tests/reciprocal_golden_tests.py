"""cocotb golden-set test for ``rtl/reciprocal.v`` as the softmax's divider (run by
``test_reciprocal.py::test_reciprocal_golden``).

For every row of the hw golden set's scores, the softmax model (:func:`softmax` with
``return_parts=True``, parameters ``units.probs.softmax``; it must reproduce the golden probs,
checked) gives the exact exp sum ``S`` and the ``R = floor(2^K / S)`` that produced the golden
probs. ``S`` is sent to the divider built with the softmax's ``DividerParams`` (``NUM_W = K + 1``,
``DEN_W = S_W``) with ``s_num = 2^K``; the RTL quotient must equal that ``R`` and the remainder
``2^K - R S``, bit-exactly; then the probs recomputed from the RTL's ``R`` (contract step 5:
``min((e R + 2^(K-OUT_F-1)) >> (K-OUT_F), 2^OUT_W - 1)``) must equal the golden probs codes and lie
within the manifest tolerance of the float64 reference.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from golden_common import allowed_mask, check_tolerance, golden_set, log_golden, softmax_params
from tb_common import StreamSink, StreamSource, compare, log_rate, reset, run_stream, start_clock

from refmodel.numerics.units.softmax import softmax


@cocotb.test()
async def reciprocal_golden_softmax_sums(dut):
    """Golden softmax row sums S -> divider -> R that produced the golden probs, bit-exact."""
    gs = golden_set()
    p = softmax_params(gs.units["probs"]["softmax"])
    dp = p.divider
    dut_hdl = {k: int(getattr(dut, k).value) for k in dp.to_hdl()}
    assert dut_hdl == dp.to_hdl(), f"DUT parameters {dut_hdl} != softmax divider {dp.to_hdl()}"
    scores = gs.codes(gs.units["probs"]["inputs"][0])
    golden = gs.codes("probs")
    h, s, t = scores.shape
    masked = ~np.broadcast_to(allowed_mask(gs, s, t), scores.shape)
    y, e, S, R = softmax(scores, p, masked=masked, return_parts=True)
    # precondition (Python only): these S, R are the ones behind the golden probs
    compare(y.reshape(-1).tolist(), golden.reshape(-1).tolist(),
            what=f"{gs.name}/probs: the softmax model vs the golden codes (set inconsistent, not an RTL result)")
    sums = S.reshape(-1)
    r_model = R.reshape(-1)
    num = 1 << p.k

    start_clock(dut)
    source = StreamSource(dut, "s", signals=("num", "den"))
    sink = StreamSink(dut, "m", signals=("quot", "rem"))
    await reset(dut)
    got, secs = await run_stream(source, sink, [{"num": num, "den": int(v)} for v in sums.tolist()],
                                 cycles_per_item=dp.num_w + 4)
    await ClockCycles(dut.clk, dp.num_w + 4)
    assert len(sink.items) == len(sums), f"{len(sink.items) - len(sums)} extra outputs"
    quot = np.array([g["quot"] for g in got], dtype=np.int64)

    def describe(i: int) -> str:
        hh, ss = divmod(i, s)
        n_terms = int((~masked[hh, ss]).sum())
        return f"probs row [{hh},{ss}]: S = {int(sums[i])} ({n_terms} unmasked terms), num = 2^{p.k}"

    compare(quot.tolist(), r_model.tolist(), what=f"{gs.name}/probs softmax R = floor(2^K/S): m_quot vs model R",
            describe=describe)
    compare([g["rem"] for g in got], (num - r_model * sums).tolist(), what=f"{gs.name}/probs m_rem", describe=describe)
    # the golden probs from the RTL's R (softmax contract step 5)
    sh = np.int64(p.k - p.out_f)
    probs = np.minimum((e * quot.reshape(R.shape) + (np.int64(1) << (sh - 1))) >> sh, np.int64((1 << p.out_w) - 1))
    compare(probs.reshape(-1).tolist(), golden.reshape(-1).tolist(),
            what=f"{gs.name}/probs from the RTL R vs golden codes",
            describe=lambda i: f"{describe(i // t)} elem {i % t}: e = {int(e.reshape(-1)[i])}")
    msg = "the divider output R is internal to the softmax unit (no golden tensor); the tolerance applies to the probs"
    dut._log.info(msg)
    print(msg, flush=True)
    check_tolerance(dut._log, gs, "probs", probs)
    log_golden(dut, gs, "reciprocal", f"probs row sums (all {len(sums)} rows)", len(sums), secs)
    log_rate(dut, "reciprocal_golden[softmax S]", len(sums), secs)
