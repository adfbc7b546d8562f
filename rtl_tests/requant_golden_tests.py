"""cocotb golden-set test for ``rtl/requant.v`` (run by ``test_requant.py::test_requant_golden``).

The attention scores of the golden set are ``requant(q.k accumulator, M, SHIFT)`` with the
parameters of ``units.scores`` (``requant`` entry, the dyadic multiplier ``multiplier``). The
accumulators are computed here from the golden q and k codes as exact Python integers (they must
fit the unit's signed ``IN_W`` input, checked), the causal (unmasked) entries are streamed at full
rate with ``s_mult = M``, and ``m_data`` is compared bit-exactly with the golden scores codes
(``m_sat`` with the model's flag); masked entries are 0 in the golden set and are not computed by
the unit. The scoreboard then checks the decoded outputs within the set's tolerance tier.
"""

from __future__ import annotations

import cocotb
import numpy as np
from golden_common import ROUNDING_OF_CODE, allowed_mask

from refmodel.cocotb import GoldenSet, StreamBench, check_parameters, hexw, log_rate
from refmodel.cocotb.stream import to_signed
from refmodel.numerics.units.requant import RequantParams, requant_with_flags


@cocotb.test()
async def requant_golden_scores(dut):
    """Golden q.k accumulators -> requant -> golden scores codes, bit-exact; tolerance tier."""
    gs = GoldenSet.from_env()
    st = gs.stage("scores")
    h = st.unit["requant"]
    p = RequantParams(in_w=h["IN_W"], m_w=h["M_W"], shift=h["SHIFT"], out_w=h["OUT_W"],
                      rounding=ROUNDING_OF_CODE[h["ROUND_MODE"]])
    check_parameters(dut, p.to_hdl(), "manifest's units.scores.requant")
    mult = int(st.unit["multiplier"])
    qn, kn = st.inputs
    q, k = st.inputs[qn], st.inputs[kn]  # [h, s, hd], [h, t, hd] (no GQA in these sets: same heads)
    assert q.shape[0] == k.shape[0], f"GQA ({q.shape[0]} query heads, {k.shape[0]} kv heads) not handled here"
    # exact integer accumulators (Python ints through object arrays, no int64 rounding or wrap)
    acc = np.einsum("hsd,htd->hst", q.astype(object), k.astype(object))
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    flat = [int(v) for v in acc.ravel()]
    assert all(lo <= v <= hi for v in flat), f"a q.k accumulator does not fit the requant input s{p.in_w}"
    allowed = np.broadcast_to(allowed_mask(gs, q.shape[1], k.shape[1]), acc.shape)
    x = np.array(flat, dtype=np.int64).reshape(acc.shape)  # fits: |x| < 2^(IN_W-1) <= 2^61
    assert np.all(st.output[~allowed] == 0), "masked golden scores must be 0"
    model_y, model_sat = requant_with_flags(x[allowed], mult, p)
    assert np.array_equal(model_y, st.output[allowed]), "model requant disagrees with the golden scores (set inconsistent)"

    tb = StreamBench(dut, source_fields=("data", "mult"), sink_fields=("data", "sat"))
    await tb.reset()
    out = await tb.run_full_rate([(int(v), mult) for v in x[allowed].tolist()], ("data", "mult"))
    got = np.zeros(acc.shape, dtype=np.int64)
    got[allowed] = [to_signed(o["data"], p.out_w) for o in out]

    def describe(ix: tuple[int, ...]) -> str:
        return f"acc = {qn}.{kn} = {int(x[ix])} ({hexw(int(x[ix]), p.in_w)}), M={mult}"

    tb.sb.check_stage(gs, "scores", got, where=allowed, describe=describe)
    tb.sb.exact(f"{gs.name}/scores m_sat vs model", [o["sat"] for o in out], model_sat.astype(int), cover=False)
    await tb.expect_no_more(len(out), 4)
    log_rate(dut, "requant_golden[scores]", len(out), tb.seconds)
    tb.finish()
