#!/usr/bin/env python3
"""bench_fixed: float64 -> s16.12 (round to nearest even, saturate), 1,000,000 values.

Compares, in the same run and on the same data (10 % exact ties k + 1/2 LSB, some out of range):
  * numpy ``clip(rint(x * 2^12))`` -> int64      (baseline; the floor any library can reach)
  * ``refmodel.numerics.fixed.quantize``          (target: <= 2x numpy)
  * APyTypes ``APyFixedArray.from_array(x, 6, 66).cast(4, 12, RND_CONV, SAT)``
    (from_array only rounds RND_INF/WRAP, so go through an exact wide format first;
    target: refmodel >= 10x faster)
  * fxpmath ``Fxp(x, True, 16, 12, rounding='around', overflow='saturate')``

Every result is checked bit-for-bit against the numpy baseline. Prints the median and the minimum
of ``--reps`` runs (after one warm-up) and their ratios to numpy.

    python benchmarks/bench_fixed.py [--n 1000000] [--reps 7] [--fxp-reps 3]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

import numpy as np

from refmodel.numerics.fixed import FixedFormat, quantize

FRAC, QMIN, QMAX = 12, -(1 << 15), (1 << 15) - 1


class T(float):
    """A median in ms that also carries the minimum (``.min``)."""

    min: float


def median_ms(fn, reps: int) -> T:
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    t = T(statistics.median(ts) * 1e3)
    t.min = min(ts) * 1e3
    return t


def data(n: int, seed: int = 20240521) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-10.0, 10.0, n)
    k = rng.integers(-40000, 40000, n // 10)
    x[::10] = (k + 0.5) * 2.0**-FRAC  # exact ties, some beyond the range
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--fxp-reps", type=int, default=3, help="fxpmath is slow; fewer repetitions")
    args = ap.parse_args()

    x = data(args.n)
    fmt = FixedFormat.parse("s16.12")
    ref = np.clip(np.rint(x * 4096.0), QMIN, QMAX).astype(np.int64)
    rows: list[tuple[str, T, str]] = []

    t_np = median_ms(lambda: np.clip(np.rint(x * 4096.0), QMIN, QMAX).astype(np.int64), args.reps)
    rows.append(("numpy clip(rint(x*4096)).astype(int64)", t_np, "reference"))

    t = median_ms(lambda: quantize(x, fmt, "rne", "saturate"), args.reps)
    ok = np.array_equal(quantize(x, fmt, "rne", "saturate").codes, ref)
    rows.append(("refmodel quantize(x, 's16.12', 'rne', 'saturate')", t, "bit-exact" if ok else "MISMATCH"))

    try:
        apy = importlib.import_module("apytypes")
    except ImportError:
        apy = None
    if apy is not None:
        Q, OM = apy.QuantizationMode, apy.OverflowMode

        def run_apy():
            wide = apy.APyFixedArray.from_array(x, int_bits=6, frac_bits=66)
            return wide.cast(int_bits=4, frac_bits=12, quantization=Q.RND_CONV, overflow=OM.SAT)

        t = median_ms(run_apy, args.reps)
        got = run_apy().to_bits(numpy=True).astype(np.int64)
        got = np.where(got >= 1 << 15, got - (1 << 16), got)
        rows.append((f"apytypes {apy.__version__} from_array(6, 66).cast(4, 12, RND_CONV, SAT)", t,
                     "bit-exact" if np.array_equal(got, ref) else "MISMATCH"))

    try:
        import fxpmath
        from fxpmath import Fxp
    except ImportError:
        Fxp = None
    if Fxp is not None:
        def run_fxp():
            return Fxp(x, signed=True, n_word=16, n_frac=12, rounding="around", overflow="saturate")

        t = median_ms(run_fxp, args.fxp_reps)
        got = np.asarray(run_fxp().val).astype(np.int64)
        rows.append((f"fxpmath {fxpmath.__version__} Fxp(x, True, 16, 12, 'around', 'saturate')", t,
                     "bit-exact" if np.array_equal(got, ref) else "MISMATCH"))

    print(f"float64 -> s16.12 rne+saturate, n={args.n}, numpy {np.__version__}, median of {args.reps} "
          f"(fxpmath {args.fxp_reps})")
    print(f"| {'implementation':<68} | {'median ms':>9} | {'x numpy':>8} | {'min ms':>8} | {'x numpy':>8} | check |")
    print(f"|{'-' * 70}|{'-' * 10}:|{'-' * 9}:|{'-' * 9}:|{'-' * 9}:|-------|")
    for name, t, check in rows:
        print(f"| {name:<68} | {t:9.2f} | {t / t_np:8.2f} | {t.min:8.2f} | {t.min / t_np.min:8.2f} | {check} |")
    t_ref = rows[1][1]
    for name, t, _ in rows[2:]:
        print(f"refmodel is {t / t_ref:.1f}x faster than {name.split()[0]} (median; {t.min / t_ref.min:.1f}x by min)")
    print(f"target refmodel <= 2x numpy: {'met' if t_ref <= 2 * t_np else 'MISSED'} ({t_ref / t_np:.2f}x median, "
          f"{t_ref.min / t_np.min:.2f}x min)")


if __name__ == "__main__":
    main()
