"""cocotb golden-set test for ``rtl/fp8_mac.v`` (run by ``test_fp8_mac.py::test_fp8_mac_golden``)
on the fp8 golden set (``golden/tiny_gpt2_fp8``: e4m3fn GEMM inputs, exact accumulation, fp32
outputs).

Only golden tensors that follow EXACTLY from the unit's fp32 result are used
(:class:`golden_common.Fp8Stage`, checked in Python first against the refmodel fp8 MAC):

* ``scores = fp32(fp32(q.k) * 0.25)``: the scale 1/sqrt(16) is a power of two, so ``golden * 4``
  IS the MAC's fp32 code wherever it is a normal number (all causal entries here);
* ``proj``, ``up``, ``down`` (fp32 linears): ``fp32(fp32(x.w) + b)``, the plan's bias add (one fp32
  rounding, done here on the RTL's output).

q, k, v (e4m3fn outputs: ``e4m3(e4m3(exact x.w) + b)``) are NOT derivable from the fp32 MAC result
(rounding exact -> fp32 -> e4m3 is not the model's exact -> e4m3) and are not used.

Per stage (``RM_GOLDEN_STAGES``), streamed one product per clock at full rate: ``m_data`` against
the golden-derived codes (bit-exact, scores), ``post(m_data)`` against the golden codes (bit-exact,
every stage, then within the set's tolerance tier), ``m_data``/``m_acc`` against the refmodel
(``dot_fp8``, ``dot_fp8_acc``). ``RM_GOLDEN_MAX_BEATS`` > 0 limits the linear stages to evenly
spread sequence rows.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from golden_common import FP8_STAGES, Fp8Stage, fp8_beats, stages_from_env

from refmodel.cocotb import GoldenSet, StreamBench, log_rate
from refmodel.cocotb.stream import to_signed
from refmodel.numerics.minifloat import FloatFormat
from refmodel.numerics.units.fp8mac import FP8_FORMATS, Fp8MacParams, dot_fp8, dot_fp8_acc

FP32 = FloatFormat.parse("fp32")


@cocotb.test()
async def fp8_golden(dut):
    """Golden fp8 stages through fp8_mac at full rate, bit-exact against the golden codes (through
    the exact post-MAC step) and the model; decoded within the set's tolerance tier."""
    gs = GoldenSet.from_env()
    max_beats = int(os.environ.get("RM_GOLDEN_MAX_BEATS", "0"))
    fmt = {v: k for k, v in FP8_FORMATS.items()}[int(dut.FORMAT.value)]
    p = Fp8MacParams(fmt, k_max=int(dut.K_MAX.value), lanes=int(dut.LANES.value))
    assert p.lanes == 1, "the golden bench drives one product per beat"
    tb = StreamBench(dut, source_fields=["a", "b", "last"], sink_fields=["data", "acc"])
    for name in stages_from_env(FP8_STAGES):
        st = Fp8Stage(gs, name, max_beats=max_beats)
        assert st.format == fmt, f"{name}: inputs are {st.format}, the DUT is built for {fmt}"
        model = dot_fp8(st.a, st.b, p).astype(np.int64)
        model_acc = dot_fp8_acc(st.a, st.b, p).to_int()
        # the derivation must hold on the model before the RTL is asked to meet it
        tb.sb.exact(f"{gs.name}/{name}: golden codes vs the fp8 MAC model as {st.what} (set consistency, not an "
                    f"RTL result)", st.post(model), st.golden, describe=lambda ix, st=st: st.describe(ix[0]),
                    cover=False)
        await tb.reset()
        out = await tb.run_full_rate(fp8_beats(st), ("a", "b", "last"), n_out=len(st.golden))
        await tb.expect_no_more(len(st.golden), 4)
        raw = np.array([o["data"] for o in out], dtype=np.int64)
        desc = lambda ix, st=st: st.describe(ix[0])  # noqa: E731
        inv = st.raw_expected >= 0
        if inv.any():
            tb.sb.exact(f"{gs.name}/{name} m_data vs golden-derived fp32 codes", raw, st.raw_expected, where=inv,
                        fmt=FP32, describe=desc, cover=False)
        tb.sb.exact(f"{gs.name}/{name} m_data vs model dot_fp8", raw, model, fmt=FP32, describe=desc, cover=False)
        tb.sb.exact(f"{gs.name}/{name} m_acc vs model", [to_signed(o["acc"], p.acc_w) for o in out], model_acc,
                    describe=desc, cover=False)
        tb.sb.check_stage(gs, name, st.to_golden_layout(st.post(raw)), where=st.where, describe=st.describe_at)
        dut._log.info("%s: %s%s", name, st.coverage, f"; m_data itself compared on {int(inv.sum())}" if inv.any() else "")
        log_rate(dut, f"fp8_mac_golden[{name}]", st.n_beats, tb.seconds)
    tb.finish()
