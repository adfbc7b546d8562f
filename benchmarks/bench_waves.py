#!/usr/bin/env python3
"""bench_waves: what dumping waves on every run would cost, against refmodel.cocotb's default of
dumping only when a test fails (``run_bench(waves="on_failure")``: a passing run writes nothing).

Runs the same passing bench -- the tutorial's user DUT (rtl_tests/user/scores_requant.sv) on the
golden scores, rtl_tests/test_user_requant.py -- with ``waves="never"`` (what a passing run costs
with the default) and ``waves="always"`` (an FST/VCD dump every time), interleaved, ``--reps`` times
each per simulator, and prints the median build and run times and their ratio. The waves builds
are separate directories (Icarus compiles a dump module in; Verilator needs ``--trace`` and a
trace-enabled runtime), so each is warmed up once first.

    python benchmarks/bench_waves.py [--reps 3] [--sim icarus verilator]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "rtl_tests"))

from refmodel.cocotb import GoldenSet, run_bench  # noqa: E402


def one(sim: str, waves: str) -> tuple[float, float, int]:
    gs = GoldenSet.open("tiny_gpt2_hw")
    u = gs.units["scores"]
    t0 = time.perf_counter()
    r = run_bench("test_user_requant", sources=[ROOT / "rtl_tests" / "user" / "scores_requant.sv"],
                  toplevel="scores_requant", simulator=sim, golden=gs, waves=waves,
                  parameters={"MULT": u["multiplier"], "SHIFT": u["requant"]["SHIFT"], "BUG": 0},
                  build_dir=ROOT / "sim_build" / f"bench_waves_{sim}_{waves}")
    wall = time.perf_counter() - t0
    size = r.waves.stat().st_size if r.waves else 0
    return wall, r.test_seconds, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sim", nargs="+", default=["icarus", "verilator"])
    a = ap.parse_args()
    for sim in a.sim:
        one(sim, "never")
        one(sim, "always")  # warm-up: builds both directories (and Verilator's trace runtime)
        res: dict[str, list[tuple[float, float, int]]] = {"never": [], "always": []}
        for _ in range(a.reps):
            for mode in ("never", "always"):
                res[mode].append(one(sim, mode))
        med = {m: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for m, v in res.items()}
        size = res["always"][-1][2]
        print(f"{sim:9s} waves=never  wall {med['never'][0]:6.2f} s  run {med['never'][1]:6.2f} s")
        print(f"{sim:9s} waves=always wall {med['always'][0]:6.2f} s  run {med['always'][1]:6.2f} s  "
              f"dump {size / 1e3:.0f} kB")
        print(f"{sim:9s} always/never: wall x{med['always'][0] / med['never'][0]:.2f}, "
              f"run x{med['always'][1] / med['never'][1]:.2f}")


if __name__ == "__main__":
    main()
