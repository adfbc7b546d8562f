"""cocotb golden-set test for ``rtl/layernorm.v`` (run by ``test_layernorm.py::test_layernorm_golden``).

Stage ``RM_GOLDEN_STAGES`` (ln1: ``x`` -> ``ln1``; ln2: ``res1`` -> ``ln2``) of the golden set:
``layernorm`` built with ``units.<stage>.norm_params`` (SLaNC ``SHIFT``, ``EPS``, ... checked
against the DUT) and the set's own gamma/beta files (``<stage>_g.hex``, ``<stage>_b.hex``) as
``GAMMA_MEMFILE`` / ``BETA_MEMFILE``; every input row streamed, every output compared bit-exactly
with the golden codes (``m_last`` on each D-th beat, ``framing_err`` low), then the decoded
outputs within the set's tolerance tier.
"""

from __future__ import annotations

import cocotb
import numpy as np
from golden_common import norm_params, stages_from_env

from refmodel.cocotb import GoldenSet, StreamBench, check_no_xz, check_parameters, hexw, log_rate
from refmodel.cocotb.stream import to_signed


@cocotb.test()
async def layernorm_golden(dut):
    """Golden norm input rows -> layernorm -> golden ln codes, bit-exact; tolerance tier."""
    gs = GoldenSet.from_env()
    (stage,) = stages_from_env(["ln1"])
    p = norm_params(gs, stage)
    check_parameters(dut, p.to_hdl(), f"manifest's units.{stage}.norm_params")
    st = gs.stage(stage)
    (xn, x), (gn, gamma), (bn, beta) = st.inputs.items()
    d = p.d
    last = np.broadcast_to(np.arange(d) == d - 1, x.shape).astype(int)
    items = [{"data": int(v), "last": int(e)} for v, e in zip(x.ravel().tolist(), last.ravel().tolist(), strict=True)]
    tb = StreamBench(dut)
    await tb.reset()
    out = await tb.run(items, cycles_per_item=2 + (3 * p.rsq_k + 20) // d + 4)
    await tb.expect_no_more(len(items), 3 * p.rsq_k + 20)
    assert check_no_xz(dut.framing_err.value, "framing_err") == 0, "framing_err set"
    got = np.array([to_signed(o["data"], p.out_fmt.width) for o in out]).reshape(x.shape)

    def describe(ix: tuple[int, ...]) -> str:
        v, c = int(x[ix]), ix[1]
        return (f"{xn}={hexw(v, p.in_fmt.width)} ({v * 2.0 ** -p.in_fmt.frac:+.6g}), {gn}={int(gamma[c])}, "
                f"{bn}={int(beta[c])}, SHIFT={p.shift}")

    tb.sb.check_stage(gs, stage, got, describe=describe)
    tb.sb.exact(f"{gs.name}/{stage} m_last", np.array([o["last"] for o in out]).reshape(x.shape), last, cover=False)
    dut._log.info("%s: all %d rows of %s, D=%d, SHIFT=%d, EPS=%d", stage, x.shape[0], xn, d, p.shift, p.eps)
    log_rate(dut, f"layernorm_golden[{stage}]", len(items), tb.seconds)
    tb.finish()
