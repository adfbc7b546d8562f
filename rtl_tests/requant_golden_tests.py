"""cocotb golden-set test for ``rtl/requant.v`` (run by ``test_requant.py::test_requant_golden``).

The attention scores of the hw golden set are ``requant(q.k accumulator, M, SHIFT)`` with the
parameters of ``units.scores`` (``requant`` entry, the dyadic multiplier ``multiplier``). The
accumulators are computed here from the golden q and k codes as exact Python integers (they must
fit the unit's signed ``IN_W`` input, checked), the causal (unmasked) entries are streamed at full
rate with ``s_mult = M``, and ``m_data`` is compared bit-exactly with the golden scores codes
(``m_sat`` with the model's flag); masked entries are 0 in the golden set and are not computed by
the unit. Decoded outputs are then checked against the float64 reference within the manifest
tolerance (or the bench says the set has none).
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from golden_common import ROUNDING_OF_CODE, allowed_mask, check_tolerance, drive_full_rate, golden_set, log_golden
from tb_common import StreamSink, compare, hexw, log_rate, reset, signed, start_clock

from refmodel.numerics.units.requant import RequantParams, requant_with_flags


@cocotb.test()
async def requant_golden_scores(dut):
    """Golden q.k accumulators -> requant -> golden scores codes, bit-exact; float64 tolerance."""
    gs = golden_set()
    u = gs.units["scores"]
    h = u["requant"]
    p = RequantParams(in_w=h["IN_W"], m_w=h["M_W"], shift=h["SHIFT"], out_w=h["OUT_W"],
                      rounding=ROUNDING_OF_CODE[h["ROUND_MODE"]])
    dut_hdl = {k: int(getattr(dut, k).value) for k in p.to_hdl()}
    assert dut_hdl == p.to_hdl(), f"DUT parameters {dut_hdl} != manifest units.scores.requant {p.to_hdl()}"
    mult = int(u["multiplier"])
    qn, kn = u["inputs"]
    q, k = gs.codes(qn), gs.codes(kn)  # [h, s, hd], [h, t, hd] (no GQA in these sets: same heads)
    assert q.shape[0] == k.shape[0], f"GQA ({q.shape[0]} query heads, {k.shape[0]} kv heads) not handled here"
    # exact integer accumulators (Python ints through object arrays, no int64 rounding or wrap)
    acc = np.einsum("hsd,htd->hst", q.astype(object), k.astype(object))
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    flat = [int(v) for v in acc.ravel()]
    assert all(lo <= v <= hi for v in flat), f"a q.k accumulator does not fit the requant input s{p.in_w}"
    allowed = np.broadcast_to(allowed_mask(gs, q.shape[1], k.shape[1]), acc.shape)
    hh, ss, tt = np.nonzero(allowed)
    x = np.array(flat, dtype=np.int64).reshape(acc.shape)[hh, ss, tt]  # fits: |x| < 2^(IN_W-1) <= 2^61
    golden = gs.codes("scores")
    expected = golden[hh, ss, tt]
    assert np.all(golden[~allowed] == 0), "masked golden scores must be 0"
    model_y, model_sat = requant_with_flags(x, mult, p)

    start_clock(dut)
    sink = StreamSink(dut, "m", signals=("data", "sat"))
    await reset(dut)
    mask = (1 << p.in_w) - 1
    beats = [(int(v) & mask, mult) for v in x.tolist()]
    cycles, secs = await drive_full_rate(dut, beats, ("data", "mult"))
    await sink.wait_for(len(x), timeout_cycles=50)
    await ClockCycles(dut.clk, 4)
    assert cycles == len(x), f"{len(x)} beats took {cycles} cycles (not full rate)"
    got = sink.pop_all()
    data = [signed(g["data"], p.out_w) for g in got]

    def describe(i: int) -> str:
        return f"scores[{hh[i]},{ss[i]},{tt[i]}]: acc = {qn}.{kn} = {int(x[i])} ({hexw(int(x[i]), p.in_w)}), M={mult}"

    compare(data, expected.tolist(), what=f"{gs.name}/scores m_data vs golden codes", describe=describe,
            show=lambda c: f"{hexw(c, p.out_w)} ({c})")
    compare([g["sat"] for g in got], model_sat.astype(int).tolist(), what=f"{gs.name}/scores m_sat vs model",
            describe=describe)
    assert np.array_equal(model_y, expected), "model requant disagrees with the golden scores (set inconsistent)"
    full = np.zeros(golden.shape, dtype=np.int64)
    full[hh, ss, tt] = data
    check_tolerance(dut._log, gs, "scores", full, where=allowed)
    log_golden(dut, gs, "requant", f"scores (all {len(x)} causal entries of {golden.size})", len(x), secs)
    log_rate(dut, "requant_golden[scores]", len(x), secs)
