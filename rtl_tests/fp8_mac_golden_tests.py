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
every stage), ``m_data``/``m_acc`` against the refmodel (``dot_fp8``, ``dot_fp8_acc``), then the
decoded golden-side values against the float64 reference within the manifest tolerance (or the
bench says the set has none). ``RM_GOLDEN_MAX_BEATS`` > 0 limits the linear stages to evenly spread
sequence rows.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from golden_common import (
    FP8_STAGES,
    Fp8Stage,
    check_tolerance,
    drive_full_rate,
    f32,
    fp8_beats,
    golden_set,
    log_golden,
    stages_from_env,
)
from tb_common import StreamSink, compare, hexw, log_rate, reset, signed, start_clock

from refmodel.numerics.units.fp8mac import FP8_FORMATS, Fp8MacParams, dot_fp8, dot_fp8_acc


def _show32(c: int) -> str:
    return f"{hexw(c, 32)} ({float(f32(np.array([c]))[0])!r})"


@cocotb.test()
async def fp8_golden(dut):
    """Golden fp8 stages through fp8_mac at full rate, bit-exact against the golden codes (through
    the exact post-MAC step) and the model; decoded vs float64 within the manifest tolerance."""
    gs = golden_set("tiny_gpt2_fp8")
    max_beats = int(os.environ.get("RM_GOLDEN_MAX_BEATS", "0"))
    fmt = {v: k for k, v in FP8_FORMATS.items()}[int(dut.FORMAT.value)]
    p = Fp8MacParams(fmt, k_max=int(dut.K_MAX.value), lanes=int(dut.LANES.value))
    assert p.lanes == 1, "the golden bench drives one product per beat"
    start_clock(dut)
    sink = StreamSink(dut, "m", signals=["data", "acc"])
    for name in stages_from_env(FP8_STAGES):
        st = Fp8Stage(gs, name, max_beats=max_beats)
        assert st.format == fmt, f"{name}: inputs are {st.format}, the DUT is built for {fmt}"
        model = dot_fp8(st.a, st.b, p).astype(np.int64)
        model_acc = dot_fp8_acc(st.a, st.b, p).to_int()
        # the derivation must hold on the model before the RTL is asked to meet it
        bad = np.flatnonzero(st.post(model) != st.golden)
        assert bad.size == 0, (f"{name}: golden codes do not follow from the fp8 MAC model as {st.what} "
                               f"({bad.size} elements, first {st.describe(int(bad[0]))}); not an RTL issue")
        await reset(dut)
        sink.clear()
        n = len(st.golden)
        cycles, secs = await drive_full_rate(dut, fp8_beats(st), ("a", "b", "last"))
        await sink.wait_for(n, timeout_cycles=50)
        await ClockCycles(dut.clk, 4)
        assert cycles == st.n_beats, f"{name}: {st.n_beats} beats took {cycles} cycles (not full rate)"
        got = sink.pop_all()
        raw = np.array([g["data"] for g in got], dtype=np.int64)
        inv = np.flatnonzero(st.raw_expected >= 0)
        if inv.size:
            compare(raw[inv].tolist(), st.raw_expected[inv].tolist(),
                    what=f"{gs.name}/{name} m_data vs golden-derived fp32 codes",
                    describe=lambda j: st.describe(int(inv[j])), show=_show32)
        compare(st.post(raw).tolist(), st.golden.tolist(),
                what=f"{gs.name}/{name} {st.what} from m_data vs golden codes", describe=st.describe, show=_show32)
        compare(raw.tolist(), model.tolist(), what=f"{gs.name}/{name} m_data vs model dot_fp8", describe=st.describe,
                show=_show32)
        compare([signed(g["acc"], p.acc_w) for g in got], model_acc, what=f"{gs.name}/{name} m_acc vs model",
                describe=st.describe, show=lambda c: f"{hexw(c, p.acc_w)} ({c})")
        check_tolerance(dut._log, gs, name, st.to_golden_layout(st.post(raw)), where=st.where)
        direct = f"; m_data itself compared on {inv.size}" if inv.size else ""
        log_golden(dut, gs, "fp8_mac", f"{name} ({st.coverage}{direct})", n, secs)
        log_rate(dut, f"fp8_mac_golden[{name}]", st.n_beats, secs)
