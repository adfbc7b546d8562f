"""cocotb golden-set test for ``rtl/layernorm.v`` (run by ``test_layernorm.py::test_layernorm_golden``).

Stage ``RM_GOLDEN_STAGES`` (ln1: ``x`` -> ``ln1``; ln2: ``res1`` -> ``ln2``) of the hw golden set:
``layernorm`` built with ``units.<stage>.norm_params`` (SLaNC ``SHIFT``, ``EPS``, ... checked
against the DUT) and the set's own gamma/beta files (``<stage>_g.hex``, ``<stage>_b.hex``) as
``GAMMA_MEMFILE`` / ``BETA_MEMFILE``; every input row streamed, every output compared bit-exactly
with the golden codes (``m_last`` on each D-th beat, ``framing_err`` low), then the decoded
outputs against the float64 reference within the manifest tolerance.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from golden_common import check_tolerance, golden_set, log_golden, norm_params, stages_from_env
from tb_common import (
    StreamSink,
    StreamSource,
    check_no_xz,
    compare,
    hexw,
    log_rate,
    reset,
    run_stream,
    signed,
    start_clock,
)


@cocotb.test()
async def layernorm_golden(dut):
    """Golden norm input rows -> layernorm -> golden ln codes, bit-exact; float64 tolerance."""
    gs = golden_set()
    (stage,) = stages_from_env(["ln1"])
    u = gs.units[stage]
    p = norm_params(gs, stage)
    dut_hdl = {k: int(getattr(dut, k).value) for k in p.to_hdl()}
    assert dut_hdl == p.to_hdl(), f"DUT parameters {dut_hdl} != manifest units.{stage}.norm_params {p.to_hdl()}"
    xn, gn, bn = u["inputs"]
    x, gamma, beta = gs.codes(xn), gs.codes(gn), gs.codes(bn)
    golden = gs.codes(stage)
    d = p.d
    in_mask = (1 << p.in_fmt.width) - 1
    items = [{"data": int(v) & in_mask, "last": int(i % d == d - 1)} for i, v in enumerate(x.reshape(-1).tolist())]

    start_clock(dut)
    source = StreamSource(dut, "s")
    sink = StreamSink(dut, "m")
    await reset(dut)
    got, secs = await run_stream(source, sink, items, cycles_per_item=2 + (3 * p.rsq_k + 20) // d + 4)
    await ClockCycles(dut.clk, 3 * p.rsq_k + 20)
    assert len(sink.items) == len(items), f"{len(sink.items) - len(items)} extra outputs"
    assert check_no_xz(dut.framing_err.value, "framing_err") == 0, "framing_err set"
    w = p.out_fmt.width
    data = [signed(g["data"], w) for g in got]
    xf = x.reshape(-1)

    def describe(i: int) -> str:
        r, c = divmod(i, d)
        v = int(xf[i])
        return (f"{stage}[{r},{c}]: {xn}={hexw(v, p.in_fmt.width)} ({v * 2.0 ** -p.in_fmt.frac:+.6g}), "
                f"{gn}={int(gamma[c])}, {bn}={int(beta[c])}, SHIFT={p.shift}")

    def show(c: int) -> str:
        return f"{hexw(c, w)} ({c * 2.0 ** -p.out_fmt.frac:+.6g})"

    compare(data, golden.reshape(-1).tolist(), what=f"{gs.name}/{stage} m_data vs golden codes", describe=describe,
            show=show)
    compare([g["last"] for g in got], [it["last"] for it in items], what=f"{gs.name}/{stage} m_last")
    check_tolerance(dut._log, gs, stage, np.array(data, dtype=np.int64).reshape(golden.shape))
    log_golden(dut, gs, "layernorm", f"{stage} (all {x.shape[0]} rows of {xn}, D={d}, SHIFT={p.shift}, EPS={p.eps})",
               len(items), secs)
    log_rate(dut, f"layernorm_golden[{stage}]", len(items), secs)
