"""pytest runners for rtl/fp8_mac.v (+ fp8_decode.v, fp8_acc_to_fp32.v, fp8_mac_hex_tb.v): one
Icarus build per parameter set; cocotb benches in fp8_mac_tests.py; model
refmodel.numerics.units.fp8mac."""

from __future__ import annotations

import numpy as np
import pytest
from harness import ROOT, build_dir_for, run_unit

from refmodel.golden.hexfile import write_memh
from refmodel.numerics.units.fp8mac import Fp8MacParams

FP8_SOURCES = ["fp8_mac.v", "fp8_decode.v", "fp8_acc_to_fp32.v"]

STREAM_SETS = {
    "e4m3fn_l1_k4096": Fp8MacParams("e4m3fn", k_max=4096, lanes=1),
    "e5m2_l1_k4096": Fp8MacParams("e5m2", k_max=4096, lanes=1),
    "e4m3fn_l2_k16": Fp8MacParams("e4m3fn", k_max=16, lanes=2),  # wraps beyond 16 products
    "e5m2_l4_k16": Fp8MacParams("e5m2", k_max=16, lanes=4),
}


@pytest.mark.parametrize("name", list(STREAM_SETS))
def test_fp8_mac_stream(name: str) -> None:
    p = STREAM_SETS[name]
    run_unit("fp8_mac", sources=FP8_SOURCES, test_module="fp8_mac_tests", parameters=p.to_hdl())


def _run_hex(fmt: str, words: np.ndarray, nout: int, stall: int) -> None:
    p = Fp8MacParams(fmt)
    params = {"FORMAT": p.to_hdl()["FORMAT"], "K_MAX": p.k_max, "DEPTH": len(words), "NOUT": nout, "STALL": stall}
    bdir = build_dir_for("fp8_mac_hex_tb", params)
    bdir.mkdir(parents=True, exist_ok=True)
    stim, result = bdir / "stim.hex", bdir / "result.hex"
    write_memh(stim, words, 17)
    result.unlink(missing_ok=True)
    run_unit("fp8_mac_hex_tb", sources=FP8_SOURCES + ["fp8_mac_hex_tb.v"], test_module="fp8_mac_tests",
             parameters=params, plusargs=[f"+STIM={stim}", f"+RESULT={result}"],
             extra_env={"RM_FP8_STIM": str(stim), "RM_FP8_RESULT": str(result)})


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_mac_exhaustive_products(fmt: str) -> None:
    """All 65,536 fp8 x fp8 pairs as K = 1 dot products, full rate."""
    a = np.repeat(np.arange(256), 256)
    b = np.tile(np.arange(256), 256)
    _run_hex(fmt, (1 << 16) | (a << 8) | b, 65536, stall=0)


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_mac_hex_random_stalls(fmt: str) -> None:
    """A long random stream (K = 1..48, any codes) with LFSR source idle and sink backpressure."""
    rng = np.random.default_rng(2024 + len(fmt))
    ks = rng.integers(1, 49, 1500)
    n = int(ks.sum())
    a, b = rng.integers(0, 256, n), rng.integers(0, 256, n)
    # mostly finite: remap the top binade (e4m3fn NaN, e5m2 inf/NaN) to other codes 90% of the time
    top = 0x7F if fmt == "e4m3fn" else 0x7C
    for x in (a, b):
        sp = ((x & 0x7F) >= top) & (rng.random(n) < 0.9)
        x[sp] &= 0xBF
    last = np.zeros(n, np.int64)
    last[np.cumsum(ks) - 1] = 1
    _run_hex(fmt, (last << 16) | (a << 8) | b, len(ks), stall=1)


@pytest.mark.parametrize("acc_w,acc_frac", [(49, 18), (77, 32), (64, 170), (64, -70), (40, 160)])
def test_fp8_acc_to_fp32(acc_w: int, acc_frac: int) -> None:
    """The final normaliser + RNE alone, incl. formats that reach fp32 subnormals / overflow."""
    run_unit("fp8_acc_to_fp32", sources=["fp8_acc_to_fp32.v"], test_module="fp8_mac_tests",
             parameters={"ACC_W": acc_w, "ACC_FRAC": acc_frac})


# ---- golden set (cocotb module fp8_mac_golden_tests.py) --------------------------------------------

GOLDEN_FP8 = ROOT / "golden" / "tiny_gpt2_fp8"
#: per-stage beat budget of the default run (up and down have 262,144 beats each: 4 of their 16
#: sequence rows run by default, all of them with --run-slow)
GOLDEN_MAX_BEATS = 65536


def _run_golden(max_beats: int) -> None:
    run_unit("fp8_mac", sources=FP8_SOURCES, test_module="fp8_mac_golden_tests",
             parameters=Fp8MacParams("e4m3fn").to_hdl(),
             extra_env={"RM_GOLDEN_SET": str(GOLDEN_FP8), "RM_GOLDEN_MAX_BEATS": str(max_beats)})


def test_fp8_mac_golden() -> None:
    """The fp8 golden set's tensors that follow exactly from the fp32 MAC result (scores = fp32(q.k)
    * 0.25; proj/up/down = fp32(fp32(x.w) + b)) through fp8_mac (e4m3fn), bit-exact."""
    _run_golden(GOLDEN_MAX_BEATS)


@pytest.mark.slow
def test_fp8_mac_golden_all_rows() -> None:
    """test_fp8_mac_golden on every sequence row (about 600k products)."""
    _run_golden(0)
