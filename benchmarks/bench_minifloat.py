#!/usr/bin/env python3
"""Minifloat encode/decode speed and correctness: refmodel vs ml_dtypes vs APyTypes.

Run:  python benchmarks/bench_minifloat.py [--n 1000000] [--reps 7] [--sample 20000]

Each timing is the median of ``--reps`` runs after one warm-up (time.perf_counter). Rows:

  1. 1M float32 -> e4m3fn, rne. Data as peerbench task (c): N(0, 8^2) clipped to +-239 (so the
     IEEE-style E4M3 of APyTypes, max 240, gives the same answers), 10 % exact E4M3 ties
     (subnormal ties included). Check: refmodel codes == ml_dtypes codes, and APyTypes values.
  2. 1M float64 -> e4m3fn, rne. 90 % N(0, 8^2), 10 % float64 values a hair off an E4M3 tie
     (tie * (1 +- 2^-40)): rounding through float32 first lands those on the tie. Check: both
     libraries against the Fraction oracle of tests/oracle.py on a ``--sample`` subset
     (stratified: all near-tie rows in the sample plus random ones).
  3. decode 1M e4m3fn codes -> float64 (refmodel table vs ml_dtypes view + astype).
  4. 1M float32 -> fp16 (refmodel integer kernel vs numpy astype), bit-exact check.
  5. 1M float32 -> mxfp8_e4m3 blocks of 32 (refmodel only; no peer emits MX codes).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from refmodel.numerics.block import mx_quantize  # noqa: E402
from refmodel.numerics.minifloat import PRESETS, decode, encode  # noqa: E402

SEED = 20240521


def median_ms(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def e4m3_ties(rng, m: int) -> np.ndarray:
    mant = rng.integers(0, 8, m)
    ex = rng.integers(-6, 7, m)
    sub = rng.random(m) < 0.2
    lo = np.where(sub, mant * 2.0**-9, (1 + mant / 8.0) * np.ldexp(1.0, ex))
    step = np.where(sub, 2.0**-9, np.ldexp(1.0, ex - 3))
    sgn = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    return sgn * (lo + step / 2)


def data_f32(rng, n: int) -> np.ndarray:
    x = np.clip(rng.standard_normal(n) * 8.0, -239.0, 239.0).astype(np.float32)
    x[::10] = e4m3_ties(rng, len(x[::10])).astype(np.float32)  # exact in float32
    return x


def data_f64(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal(n) * 8.0
    t = e4m3_ties(rng, len(x[::10]))
    x[::10] = t * (1 + np.where(rng.random(len(t)) < 0.5, -1, 1) * 2.0**-40)
    near = np.zeros(n, dtype=bool)
    near[::10] = True
    return x, near


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--sample", type=int, default=20_000, help="oracle-checked sample size for row 2")
    args = ap.parse_args()
    n, reps = args.n, args.reps
    rng = np.random.default_rng(SEED)
    e4 = PRESETS["e4m3fn"]
    rows: list[tuple[str, str, float, str, str]] = []

    import ml_dtypes

    # ---- 1. float32 -> e4m3fn ---------------------------------------------------------------
    x32 = data_f32(rng, n)
    t_ml = median_ms(lambda: x32.astype(ml_dtypes.float8_e4m3fn), reps)
    t_ref = median_ms(lambda: encode(x32, e4), reps)
    ml_codes = x32.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    ref = encode(x32, e4)
    diff = int(np.count_nonzero(ref.codes != ml_codes))
    rows.append(("1M float32 -> e4m3fn rne", "ml_dtypes x.astype(float8_e4m3fn)", t_ml, "1.00", "reference"))
    rows.append(("", "refmodel encode(x, 'e4m3fn')", t_ref, f"{t_ref / t_ml:.2f}",
                 "bit-exact vs ml_dtypes" if diff == 0 else f"{diff} codes differ from ml_dtypes"))
    try:
        import apytypes as apy

        def run_apy():
            with apy.APyFloatQuantizationContext(apy.QuantizationMode.TIES_EVEN):
                return apy.APyFloatArray.from_array(x32, exp_bits=4, man_bits=3, bias=7)

        t_apy = median_ms(run_apy, reps)
        got = run_apy().to_numpy().astype(np.float64)
        want = ref.to_float()
        bad = int(np.count_nonzero(~((got == want) & (np.signbit(got) == np.signbit(want)))))
        rows.append(("", f"apytypes {apy.__version__} APyFloatArray.from_array(x, 4, 3, 7) (IEEE-style)",
                     t_apy, f"{t_apy / t_ml:.2f}", "same values" if bad == 0 else f"{bad} values differ"))
    except ImportError:
        rows.append(("", "apytypes (not installed)", float("nan"), "-", "skipped"))

    # ---- 2. float64 -> e4m3fn: speed and correct rounding ------------------------------------
    x64, near = data_f64(rng, n)
    t_ml64 = median_ms(lambda: x64.astype(ml_dtypes.float8_e4m3fn), reps)
    t_ref64 = median_ms(lambda: encode(x64, e4), reps)
    from oracle import encode_oracle

    idx = np.concatenate([np.flatnonzero(near)[: args.sample // 2],
                          rng.choice(np.flatnonzero(~near), args.sample // 2, replace=False)])
    want = np.array([encode_oracle(float(v), e4, "rne") for v in x64[idx]])
    ml_wrong = int(np.count_nonzero(x64[idx].astype(ml_dtypes.float8_e4m3fn).view(np.uint8) != want))
    ref_wrong = int(np.count_nonzero(encode(x64[idx], e4).codes != want))
    ml_near = int(np.count_nonzero(x64[idx][: args.sample // 2].astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
                                   != want[: args.sample // 2]))
    rows.append(("1M float64 -> e4m3fn rne", "ml_dtypes x.astype(float8_e4m3fn)", t_ml64, "1.00",
                 f"{ml_wrong} of {len(idx)} wrong vs Fraction oracle ({ml_near} of {args.sample // 2} near-tie)"))
    rows.append(("", "refmodel encode(x, 'e4m3fn')", t_ref64, f"{t_ref64 / t_ml64:.2f}",
                 f"{ref_wrong} of {len(idx)} wrong vs Fraction oracle"))

    # ---- 3. decode ---------------------------------------------------------------------------
    codes = ref.codes
    t_mld = median_ms(lambda: codes.view(ml_dtypes.float8_e4m3fn).astype(np.float64), reps)
    t_refd = median_ms(lambda: decode(codes, e4), reps)
    with np.errstate(invalid="ignore"):
        dref = codes.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    dd = decode(codes, e4)
    same = bool(np.array_equal(dd, dref, equal_nan=True))
    rows.append(("decode 1M e4m3fn -> float64", "ml_dtypes view + astype(float64)", t_mld, "1.00", "reference"))
    rows.append(("", "refmodel decode(codes, 'e4m3fn')", t_refd, f"{t_refd / t_mld:.2f}",
                 "same values" if same else "values differ"))

    # ---- 4. float32 -> fp16 ------------------------------------------------------------------
    xw = (rng.standard_normal(n) * np.exp2(rng.integers(-30, 20, n))).astype(np.float32)
    with np.errstate(over="ignore"):
        t_np = median_ms(lambda: xw.astype(np.float16), reps)
        want16 = xw.astype(np.float16).view(np.uint16)
    t_ref16 = median_ms(lambda: encode(xw, "fp16"), reps)
    bad16 = int(np.count_nonzero(encode(xw, "fp16").codes != want16))
    rows.append(("1M float32 -> fp16 rne", "numpy x.astype(float16)", t_np, "1.00", "reference"))
    rows.append(("", "refmodel encode(x, 'fp16') (integer kernel)", t_ref16, f"{t_ref16 / t_np:.2f}",
                 "bit-exact vs numpy" if bad16 == 0 else f"{bad16} codes differ"))

    # ---- 5. MX --------------------------------------------------------------------------------
    xm = x32.reshape(-1, 1000)
    t_mx = median_ms(lambda: mx_quantize(xm, "mxfp8_e4m3"), reps)
    rows.append(("1M float32 -> mxfp8_e4m3 (block 32)", "refmodel mx_quantize(x, 'mxfp8_e4m3')", t_mx, "-", "no peer emits MX codes"))

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os

    print(f"# Python {platform.python_version()} ({cpu}, {os.cpu_count()} cpus), numpy {np.__version__}, "
          f"ml_dtypes {ml_dtypes.__version__}; median of {reps} runs after 1 warm-up; n = {n}")
    print("| workload | implementation | median ms | ratio to first row | check |")
    print("|---|---|---:|---:|---|")
    for task, name, t, ratio, chk in rows:
        print(f"| {task} | {name} | {t:.2f} | {ratio} | {chk} |")


if __name__ == "__main__":
    main()
