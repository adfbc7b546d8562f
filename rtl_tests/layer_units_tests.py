"""cocotb benches for layer_top's own small units (run by test_layer_units.py):

* ``layer_sat_add`` (residual add): every pair of ``W``-bit codes when ``W <= 8``, else random
  pairs with every corner (both extremes, 0, -1), against
  ``refmodel.numerics.fixed.apply_overflow(a + b, saturate)`` -- the model's same-format add;
* ``layer_acc`` (per-stage accumulator): dot products of random length with operands drawn to
  overflow often, under several (width, wrap/saturate) modes and lane counts, against
  ``refmodel.numerics.units.mac.dot_acc_int`` (the MAC model every MAC stage follows).

Environment: RM_W (layer_sat_add width); RM_LANES, RM_A_W, RM_W_W, RM_BEAT_W, RM_ACC_W (layer_acc).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge, Timer

from refmodel.cocotb.stream import StreamSink, StreamSource, random_pause, reset, start_clock
from refmodel.numerics.fixed import FixedFormat, apply_overflow
from refmodel.numerics.units.mac import MacParams, dot_acc_int


def signed(u: int, width: int) -> int:
    """Two's-complement reading of the unsigned ``width``-bit integer ``u``."""
    u &= (1 << width) - 1
    return u - (1 << width) if u >> (width - 1) else u


def compare(got: list[int], expected: list[int], *, what: str, describe) -> None:
    """AssertionError naming the first five mismatches (index, inputs, expected, got) and the count."""
    bad = [i for i, (g, e) in enumerate(zip(got, expected, strict=False)) if int(g) != int(e)]
    if len(got) != len(expected):
        raise AssertionError(f"{what}: {len(got)} outputs, expected {len(expected)}")
    if bad:
        lines = [f"  #{i}: {describe(i)} expected {expected[i]} got {got[i]}" for i in bad[:5]]
        raise AssertionError(f"{what}: {len(bad)} of {len(expected)} mismatched\n" + "\n".join(lines))


@cocotb.test()
async def sat_add_all_pairs(dut):
    """y = saturate(a + b) for every pair (W <= 8) or 4,000 random pairs with the corners."""
    w = int(os.environ["RM_W"])
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    if w <= 8:
        a, b = np.meshgrid(np.arange(lo, hi + 1), np.arange(lo, hi + 1), indexing="ij")
        a, b = a.ravel(), b.ravel()
    else:
        rng = np.random.default_rng(11)
        corners = np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi])
        ca, cb = np.meshgrid(corners, corners, indexing="ij")
        a = np.concatenate([ca.ravel(), rng.integers(lo, hi + 1, 4_000)])
        b = np.concatenate([cb.ravel(), rng.integers(lo, hi + 1, 4_000)])
    exp = apply_overflow(a + b, FixedFormat(w, 0), "saturate")
    got = []
    mask = (1 << w) - 1
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        dut.a.value = x & mask
        dut.b.value = y & mask
        await Timer(1, unit="ns")
        got.append(signed(int(dut.y.value), w))
    assert int(np.sum(a + b > hi)) > 0 and int(np.sum(a + b < lo)) > 0, "no overflow in the vectors"
    compare(got, exp.tolist(), what=f"layer_sat_add W={w}", describe=lambda i: f"a={a[i]} b={b[i]}")


@cocotb.test()
async def acc_modes(dut):
    """Dot products through layer_acc under wrap and saturate at several widths (saturation only
    with one lane, as layer_top allows), random valid idles and output backpressure, against
    dot_acc_int."""
    lanes, a_w, w_w = (int(os.environ[k]) for k in ("RM_LANES", "RM_A_W", "RM_W_W"))
    beat_w, acc_max = int(os.environ["RM_BEAT_W"]), int(os.environ["RM_ACC_W"])
    start_clock(dut)
    dut.hi.value = 0
    dut.sat.value = 0
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)  # power-on state first (the clock's edge at time 0 races a reset)
    await reset(dut, cycles=1)
    src = StreamSource(dut, "s", signals=["beat", "bias", "last"])
    sink = StreamSink(dut, "m", signals=["acc"])
    src.set_idle_generator(random_pause(0.2, seed=5))
    sink.set_backpressure_generator(random_pause(0.3, seed=6))
    rng = np.random.default_rng(21)
    need = a_w + w_w + max(0, (lanes - 1).bit_length())
    widths = sorted({need, need + 3, acc_max})   # the narrow two overflow often, the widest never
    modes = [(wd, "wrap") for wd in widths] + ([(wd, "saturate") for wd in widths] if lanes == 1 else [])
    hit = {"wrap": 0, "saturate": 0}
    for acc_w, ovf in modes:
        lsh = 3
        p = MacParams(a_w=a_w, w_w=w_w, acc_w=acc_w, out_w=acc_w, lanes=lanes, acc_overflow=ovf, b_w=acc_w - lsh - 2,
                      bias_lsh=lsh)
        dut.hi.value = (1 << (acc_w - 1)) - 1
        dut.sat.value = int(ovf == "saturate")
        n_dot = 40
        ks = rng.integers(1, 33, n_dot)
        items, exp = [], []
        for k in ks.tolist():
            big = rng.random() < 0.7  # extreme operands of one sign: overflows long dot products
            sa = rng.choice([-1, 1])
            a = (sa * ((1 << (a_w - 1)) - 1) if big else rng.integers(-(1 << (a_w - 1)), 1 << (a_w - 1), k))
            wv = rng.integers(-(1 << (w_w - 1)), 1 << (w_w - 1), k) if not big else np.full(k, (1 << (w_w - 1)) - 1)
            a = np.broadcast_to(a, (k,)).astype(np.int64)
            wv = wv.astype(np.int64)
            bias = int(rng.integers(-(1 << (p.b_w - 1)), 1 << (p.b_w - 1)))
            acc = int(dot_acc_int(a, wv, p, bias))
            exp.append(acc & ((1 << acc_max) - 1))
            ref_full = int(np.sum(a * wv)) + (bias << lsh)
            if not -(1 << (acc_w - 1)) <= ref_full < (1 << (acc_w - 1)):
                hit[ovf] += 1
            prods = np.concatenate([a * wv, np.zeros(-k % lanes, dtype=np.int64)]).reshape(-1, lanes).sum(axis=1)
            for i, bs in enumerate(prods.tolist()):
                items.append({"beat": bs & ((1 << beat_w) - 1), "bias": (bias << lsh) & ((1 << acc_max) - 1),
                              "last": int(i == len(prods) - 1)})
        sink.clear()
        src.send(items)
        await src.wait_idle()
        await sink.wait_for(n_dot, timeout_cycles=len(items) * 20 + 100)
        for _ in range(4):
            await RisingEdge(dut.clk)
        got = [it["acc"] for it in sink.pop_all()]
        compare([signed(g, acc_max) for g in got], [signed(e, acc_max) for e in exp],
                what=f"layer_acc ACC_W={acc_w} {ovf} LANES={lanes}", describe=lambda i, k=ks: f"K={int(k[i])}")
    assert hit["wrap"] > 0 and (lanes > 1 or hit["saturate"] > 0), f"no overflowing dot product: {hit}"
