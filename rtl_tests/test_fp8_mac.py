"""pytest runners for rtl/fp8_mac.v (+ fp8_decode.v, fp8_acc_to_fp32.v, fp8_mac_hex_tb.v): one
Icarus build per parameter set; cocotb benches in fp8_mac_tests.py; model
refmodel.numerics.units.fp8mac."""

from __future__ import annotations

import json

import numpy as np
import pytest
from golden_common import GOLDEN_ROOT
from harness import assert_gap_hits, assert_golden_gaps, build_dir_for, run_matrix, run_unit

from refmodel.golden.hexfile import write_memh
from refmodel.numerics.units.fp8mac import Fp8MacParams

FP8_SOURCES = ["fp8_mac.v", "fp8_decode.v", "fp8_acc_to_fp32.v"]

STREAM_SETS = {
    "e4m3fn_l1_k4096": Fp8MacParams("e4m3fn", k_max=4096, lanes=1),
    "e5m2_l1_k4096": Fp8MacParams("e5m2", k_max=4096, lanes=1),
    "e4m3fn_l2_k16": Fp8MacParams("e4m3fn", k_max=16, lanes=2),  # wraps beyond 16 products
    "e5m2_l4_k16": Fp8MacParams("e5m2", k_max=16, lanes=4),
}


#: the parameter set that also runs on Verilator (results must be identical to Icarus)
MATRIX_CONFIG = "e5m2_l4_k16"


@pytest.mark.parametrize("name", [n for n in STREAM_SETS if n != MATRIX_CONFIG])
def test_fp8_mac_stream(name: str) -> None:
    r = run_unit("fp8_mac", sources=FP8_SOURCES, test_module="fp8_mac_tests", parameters=STREAM_SETS[name].to_hdl())
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_gap_hits(r, name, GOLDEN_GAPS)


def test_fp8_mac_icarus_verilator() -> None:
    """The 4-lane e5m2 stream (inf and NaN inputs, accumulator wrap beyond K_MAX) on both
    simulators: identical results."""
    out = run_matrix("fp8_mac", FP8_SOURCES, "fp8_mac_tests", parameters=STREAM_SETS[MATRIX_CONFIG].to_hdl())
    cov = out["icarus"].coverage_total()
    assert cov.missing() == [], cov.summary()


def _run_hex(fmt: str, words: np.ndarray, nout: int, stall: int) -> None:
    p = Fp8MacParams(fmt)
    params = {"FORMAT": p.to_hdl()["FORMAT"], "K_MAX": p.k_max, "DEPTH": len(words), "NOUT": nout, "STALL": stall}
    bdir = build_dir_for("fp8_mac_hex_tb", params)
    bdir.mkdir(parents=True, exist_ok=True)
    stim, result = bdir / "stim.hex", bdir / "result.hex"
    write_memh(stim, words, 17)
    result.unlink(missing_ok=True)
    r = run_unit("fp8_mac_hex_tb", sources=FP8_SOURCES + ["fp8_mac_hex_tb.v"], test_module="fp8_mac_tests",
                 parameters=params, plusargs=[f"+STIM={stim}", f"+RESULT={result}"],
                 extra_env={"RM_FP8_STIM": str(stim), "RM_FP8_RESULT": str(result)})
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()


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


ACC_TO_FP32 = [(49, 18), (77, 32), (64, 170), (64, -70), (40, 160)]


@pytest.mark.parametrize("acc_w,acc_frac", ACC_TO_FP32)
def test_fp8_acc_to_fp32(acc_w: int, acc_frac: int) -> None:
    """The final normaliser + RNE alone, incl. formats that reach fp32 subnormals / overflow."""
    r = run_unit("fp8_acc_to_fp32", sources=["fp8_acc_to_fp32.v"], test_module="fp8_mac_tests",
                 parameters={"ACC_W": acc_w, "ACC_FRAC": acc_frac},
                 extra_env={"RM_FP8_UNREACHABLE": json.dumps(acc_to_fp32_unreachable(acc_w, acc_frac))})
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_gap_hits(r, f"acc_to_fp32-{acc_w}-{acc_frac}", GOLDEN_GAPS)


def acc_to_fp32_unreachable(acc_w: int, acc_frac: int) -> dict[str, str]:
    """fp32 classes an ACC_W-bit accumulator with ACC_FRAC fraction bits cannot produce."""
    top = acc_w - 1 - acc_frac  # log2 of the largest magnitude
    low = -acc_frac  # log2 of the smallest nonzero magnitude
    out = {}
    if low >= -126:
        out["subnormal"] = f"the smallest accumulator step 2^{low} is a normal fp32 number"
    if top < 128:
        out["inf"] = f"|acc| < 2^{top}: no fp32 overflow"
        if top < 127 or acc_w - 1 < 24:
            out["max_finite"] = f"|acc| < 2^{top}: below the fp32 max"
    return out


# ---- golden set (cocotb module fp8_mac_golden_tests.py) --------------------------------------------

GOLDEN_FP8 = GOLDEN_ROOT / "tiny_gpt2_fp8"
#: fp32 output classes the golden set cannot produce -> the random configuration that must hit them
#: (subnormal and max finite are out of an fp8 dot product's reach: the normaliser alone, with
#: wider accumulator formats, produces them)
GOLDEN_GAPS = {f"{st}.{c}": cfg for st in ("scores", "proj", "up", "down")
               for c, cfg in (("zero", "e4m3fn_l1_k4096"), ("nan", "e4m3fn_l1_k4096"), ("inf", "e5m2_l1_k4096"),
                              ("subnormal", "acc_to_fp32-64-170"), ("max_finite", "acc_to_fp32-64--70"))}
#: per-stage beat budget of the default run (up and down have 262,144 beats each: 4 of their 16
#: sequence rows run by default, all of them with --run-slow)
GOLDEN_MAX_BEATS = 65536


def _run_golden(max_beats: int) -> None:
    r = run_unit("fp8_mac", sources=FP8_SOURCES, test_module="fp8_mac_golden_tests",
                 parameters=Fp8MacParams("e4m3fn").to_hdl(), golden=GOLDEN_FP8,
                 extra_env={"RM_GOLDEN_MAX_BEATS": str(max_beats)})
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_golden_gaps(r, GOLDEN_GAPS, ["scores", "proj", "up", "down"])


def test_fp8_mac_golden() -> None:
    """The fp8 golden set's tensors that follow exactly from the fp32 MAC result (scores = fp32(q.k)
    * 0.25; proj/up/down = fp32(fp32(x.w) + b)) through fp8_mac (e4m3fn), bit-exact."""
    _run_golden(GOLDEN_MAX_BEATS)


@pytest.mark.slow
def test_fp8_mac_golden_all_rows() -> None:
    """test_fp8_mac_golden on every sequence row (about 600k products)."""
    _run_golden(0)
