#!/usr/bin/env python3
"""bench_matmul: exact-accumulation matrix products, refmodel vs float64 BLAS of the same shape.

Workloads (same run, same data; each refmodel result is checked bit-for-bit):
  * s16.12 x s16.12, exact accumulation, default output format s(32 + ceil(log2 K)).24
    (no rounding): 256^3 and 1024^3. Baseline: ``af @ bf`` (float64 BLAS on the integer codes,
    arrays converted beforehand). Target: refmodel <= 2x the baseline. Also at 256^3: APyTypes
    ``A @ B`` (exact APyFixedArray matmul), numpy int64 ``@`` (no BLAS), and refmodel with one
    rounding into s16.12 (rne, saturate).
  * e4m3fn x e4m3fn 256^3 (and 1024^3), exact accumulation, one rounding into fp32. Baseline:
    float64 BLAS on the decoded values. Target: refmodel <= 3x. The check is against
    ``(va @ vb).astype(float32)``: that float64 product is exact here (K * 448^2 < 2^53 * 2^-18),
    and numpy's float64 -> float32 cast is one RNE rounding.

Timings alternate refmodel and baseline within each repetition and report the median and the
minimum: on a shared 2-core machine a multi-threaded BLAS call is bimodal (0.3 ms or ~30 ms at
256^3 when another process holds a core), so read the min columns as the uncontended figure.
OPENBLAS_* variables are left as they are.

    python benchmarks/bench_matmul.py [--reps 15] [--no-1024]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

import numpy as np

from refmodel.numerics import minifloat as mf
from refmodel.numerics.accumulate import matmul
from refmodel.numerics.fixed import FixedArray, FixedFormat


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class T(float):
    """A median in ms that also carries the minimum (``.min``)."""

    min: float


def medians(fns: dict, reps: int) -> dict:
    """Median (and min) ms of each function, interleaved: every repetition runs all of them once."""
    for f in fns.values():
        f()  # warm-up
    ts = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            ts[k].append(timed(f))
    out = {}
    for k, v in ts.items():
        out[k] = T(statistics.median(v) * 1e3)
        out[k].min = min(v) * 1e3
    return out


def table(title: str, rows: list[tuple[str, T, str]], base: T) -> None:
    print(f"\n{title}")
    print(f"| {'implementation':<62} | {'median ms':>9} | {'x BLAS':>7} | {'min ms':>8} | {'x BLAS':>7} | check |")
    print(f"|{'-' * 64}|{'-' * 10}:|{'-' * 8}:|{'-' * 9}:|{'-' * 8}:|-------|")
    for name, t, check in rows:
        print(f"| {name:<62} | {t:9.2f} | {t / base:7.2f} | {t.min:8.2f} | {t.min / base.min:7.2f} | {check} |")


def fixed_case(n: int, reps: int, peers: bool) -> float:
    rng = np.random.default_rng(20240521 + n)
    f = FixedFormat.parse("s16.12")
    a = rng.integers(f.min_code, f.max_code + 1, (n, n), dtype=np.int64)
    b = rng.integers(f.min_code, f.max_code + 1, (n, n), dtype=np.int64)
    A, B = FixedArray(a, f), FixedArray(b, f)
    af, bf = a.astype(np.float64), b.astype(np.float64)
    ref = (af @ bf).astype(np.int64)  # exact: |sum| < 2^30 * n < 2^53

    fns = {"blas": lambda: af @ bf, "ref": lambda: matmul(A, B)}
    if peers:
        fns["ref_round"] = lambda: matmul(A, B, "exact", "s16.12")
        fns["int64"] = lambda: a @ b
    apy = None
    if peers:
        try:
            apy = importlib.import_module("apytypes")
        except ImportError:
            apy = None
    if apy is not None:
        PA = apy.APyFixedArray.from_array(a * 2.0**-12, int_bits=4, frac_bits=12)
        PB = apy.APyFixedArray.from_array(b * 2.0**-12, int_bits=4, frac_bits=12)
        fns["apy"] = lambda: PA @ PB
    t = medians(fns, reps)

    r = matmul(A, B)
    rows = [(f"numpy float64 BLAS af @ bf ({n}^3)", t["blas"], "reference")]
    rows.append((f"refmodel matmul(A, B) exact -> {r.fmt}", t["ref"], "bit-exact" if np.array_equal(r.codes, ref) else "MISMATCH"))
    if peers:
        r2 = matmul(A, B, "exact", "s16.12")
        want = np.clip(np.rint(ref * 2.0**-12), f.min_code, f.max_code).astype(np.int64)  # |ref| < 2^53: rint exact
        rows.append(("refmodel matmul(A, B, 'exact', 's16.12') (rne, saturate)", t["ref_round"],
                     "bit-exact" if np.array_equal(r2.codes, want) else "MISMATCH"))
        rows.append(("numpy int64 a @ b (no BLAS)", t["int64"], "bit-exact" if np.array_equal(a @ b, ref) else "MISMATCH"))
    if apy is not None:
        C = PA @ PB
        got = np.rint(C.to_numpy() * 2.0**C.frac_bits).astype(np.int64)
        rows.append((f"apytypes {apy.__version__} A @ B (int_bits={C.int_bits}, frac_bits={C.frac_bits})", t["apy"],
                     "bit-exact" if np.array_equal(got, ref) else "MISMATCH"))
    table(f"s16.12 x s16.12 exact matmul, {n}x{n} @ {n}x{n}", rows, t["blas"])
    ratio = t["ref"] / t["blas"]
    rmin = t["ref"].min / t["blas"].min
    print(f"target refmodel <= 2x BLAS: {'met' if ratio <= 2 else 'MISSED'} ({ratio:.2f}x median, {rmin:.2f}x min)")
    if apy is not None:
        print(f"refmodel vs apytypes: {t['apy'] / t['ref']:.1f}x faster (median), {t['apy'].min / t['ref'].min:.1f}x (min)")
    return ratio


def fp8_case(n: int, reps: int) -> float:
    rng = np.random.default_rng(7 + n)
    ea = mf.encode(rng.standard_normal((n, n)) * 8.0, "e4m3fn")
    eb = mf.encode(rng.standard_normal((n, n)), "e4m3fn")
    va, vb = ea.to_float(), eb.to_float()
    t = medians({"blas": lambda: va @ vb, "ref": lambda: matmul(ea, eb, "exact", "fp32")}, reps)
    r = matmul(ea, eb, "exact", "fp32")
    want = (va @ vb).astype(np.float32).view(np.uint32)
    rows = [(f"numpy float64 BLAS va @ vb on decoded values ({n}^3)", t["blas"], "reference"),
            ("refmodel matmul(A, B, 'exact', 'fp32') (decode, BLAS, encode)", t["ref"],
             "bit-exact" if np.array_equal(r.codes, want) else "MISMATCH")]
    table(f"e4m3fn x e4m3fn exact matmul -> fp32, {n}x{n} @ {n}x{n}", rows, t["blas"])
    ratio = t["ref"] / t["blas"]
    rmin = t["ref"].min / t["blas"].min
    print(f"target refmodel <= 3x BLAS: {'met' if ratio <= 3 else 'MISSED'} ({ratio:.2f}x median, {rmin:.2f}x min)")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--no-1024", action="store_true", help="skip the 1024^3 cases")
    args = ap.parse_args()
    print(f"numpy {np.__version__}; medians of {args.reps} interleaved runs")
    fixed_case(256, args.reps, peers=True)
    if not args.no_1024:
        fixed_case(1024, max(3, args.reps // 2), peers=False)
    fp8_case(256, args.reps)
    if not args.no_1024:
        fp8_case(1024, max(3, args.reps // 2))


if __name__ == "__main__":
    main()
