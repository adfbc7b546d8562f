"""RTL layer simulation speed: Verilator vs Icarus, MAC lanes, and a GPT-2-small layer end to end.

    python benchmarks/bench_rtl.py                         # tiny set: both simulators, lanes 1 4 16
    python benchmarks/bench_rtl.py --lanes 1 8 32 --reps 3
    python benchmarks/bench_rtl.py --gpt2-small --gpt2-lanes 64   # + the d768/12 heads/ff3072/seq 128 layer

Every run is the package's runner (``refmodel.rtl_layer.simulate_layer``) on a golden set and is
checked bit-exactly, stage by stage, against the set. Tables:

1. simulators: the same set and lanes on Icarus and Verilator, runs interleaved (median of
   ``--reps``), cycles, simulation wall time (process start, ROM loads and dumps included, build
   excluded: builds are cached by a hash of sources + parameters and reported apart), cycles/s,
   and the Verilator/Icarus speed ratio (goal >= 40x);
2. lanes: cycles per layer and where they go (MAC stages vs the rest) for each ``--lanes``, on
   Verilator and Icarus, with the cycle reduction against one lane and the simulation speed;
3. ``--gpt2-small``: golden generation, build, simulation wall time, cycles, cycles/s, and the
   number of bit-exact stages (goal: under 10 minutes end to end on a 2-core machine).

Timings depend on the machine and its load; cycles do not. A shared machine inflates wall times:
the ratios (same process, interleaved) are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refmodel.resources import golden_sets_dir  # noqa: E402
from refmodel.rtl_layer import MAC_STAGES, LayerSim, check_set, simulate_layer  # noqa: E402

MAC = set(MAC_STAGES.values())


def bit_exact_stages(set_dir: Path, sim: LayerSim) -> tuple[int, int]:
    """(stages equal to the golden codes, stages)."""
    return len(sim.codes) - len(check_set(set_dir, sim)), len(sim.codes)


def simulators(set_dir: Path, lanes: int, reps: int, work: Path, cache: Path) -> None:
    runs: dict[str, list[LayerSim]] = {"icarus": [], "verilator": []}
    builds: dict[str, float] = {}
    for r in range(reps):
        for sim in runs:
            s = simulate_layer(set_dir, work / f"{sim}_{lanes}", lanes=lanes, sim=sim, cache_dir=cache)
            if r == 0:
                builds[sim] = s.build_seconds
            ok, n = bit_exact_stages(set_dir, s)
            if ok != n:
                raise SystemExit(f"MISMATCH: {sim} LANES={lanes}: {n - ok} of {n} stages differ")
            runs[sim].append(s)
    print(f"\n## Simulators: {set_dir.name}, LANES={lanes} (median of {reps} interleaved runs; all bit-exact)\n")
    print("| simulator | cycles | sim wall (s) | cycles/s (wall) | sim CPU (s) | cycles/s (CPU) | build (s, cached after) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rate, crate = {}, {}
    for sim, ss in runs.items():
        secs = statistics.median(s.seconds for s in ss)
        cpu = statistics.median(s.cpu_seconds for s in ss)
        rate[sim], crate[sim] = ss[0].cycles / secs, ss[0].cycles / cpu
        print(f"| {sim} | {ss[0].cycles:,} | {secs:.2f} | {rate[sim]:,.0f} | {cpu:.2f} | {crate[sim]:,.0f} | "
              f"{builds[sim]:.1f} |")
    ratio, cratio = rate["verilator"] / rate["icarus"], crate["verilator"] / crate["icarus"]
    print(f"\nVerilator / Icarus speed: {ratio:.1f}x wall, {cratio:.1f}x CPU "
          f"(goal >= 40x: {'met' if min(ratio, cratio) >= 40 else 'MISSED'})")


def lanes_table(set_dir: Path, lanes: list[int], sims: list[str], work: Path, cache: Path) -> None:
    print(f"\n## MAC lanes: {set_dir.name} (all bit-exact)\n")
    print("| simulator | LANES | cycles | MAC stages | other stages | cycles vs LANES=1 | sim wall (s) | "
          "cycles/s (wall) | cycles/s (CPU) | build (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for sim in sims:
        base: int | None = None
        for n in lanes:
            s = simulate_layer(set_dir, work / f"lanes_{sim}_{n}", lanes=n, sim=sim, cache_dir=cache)
            ok, k = bit_exact_stages(set_dir, s)
            if ok != k:
                raise SystemExit(f"MISMATCH: {sim} LANES={n}: {k - ok} of {k} stages differ")
            mac = sum(v for st, v in s.stage_cycles.items() if st in MAC)
            if n == 1:
                base = s.cycles
            red = f"{base / s.cycles:.1f}x" if base else "-"
            print(f"| {sim} | {n} | {s.cycles:,} | {mac:,} | {s.cycles - mac:,} | {red} | {s.seconds:.2f} | "
                  f"{s.cycles / s.seconds:,.0f} | {s.cycles / s.cpu_seconds:,.0f} | {s.build_seconds:.1f} |", flush=True)


def gpt2_small(lanes: int, set_dir: Path | None, work: Path, cache: Path) -> None:
    from refmodel.golden.generate import generate_set

    t0 = time.perf_counter()
    if set_dir is None:
        set_dir = generate_set("gpt2-small", "hw", 0, work / "gpt2_small_hw")
    gen = time.perf_counter() - t0
    t1 = time.perf_counter()
    s = simulate_layer(set_dir, work / "gpt2_small_run", lanes=lanes, sim="verilator", cache_dir=cache)
    ok, n = bit_exact_stages(set_dir, s)
    total = time.perf_counter() - t0
    print(f"\n## GPT-2-small layer (d768, 12 heads, ff3072, seq 128), hw plan, LANES={lanes}, Verilator\n")
    print("| golden set (s) | build (s) | simulation (s) | sim CPU (s) | end to end (s) | cycles | cycles/s | "
          "bit-exact stages |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {gen:.1f} | {s.build_seconds:.1f} | {s.seconds:.1f} | {s.cpu_seconds:.1f} | {total:.1f} | {s.cycles:,} | "
          f"{s.cycles / s.seconds:,.0f} | {ok}/{n} |")
    print(f"\ncycles per stage: {s.stage_cycles}")
    print(f"end to end {total / 60:.1f} min (goal < 10 min: {'met' if total < 600 and ok == n else 'MISSED'}); "
          f"runner wall {time.perf_counter() - t1:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, default=golden_sets_dir() / "tiny_gpt2_hw", help="golden set (hw-like plan)")
    ap.add_argument("--sim-lanes", type=int, default=1, help="LANES of the simulator comparison")
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 4, 16], help="LANES of the lanes table")
    ap.add_argument("--lanes-sims", nargs="+", default=["verilator", "icarus"], help="simulators of the lanes table")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions per simulator")
    ap.add_argument("--no-compare", action="store_true", help="skip the simulator comparison (table 1)")
    ap.add_argument("--gpt2-small", action="store_true", help="also run the GPT-2-small layer end to end")
    ap.add_argument("--gpt2-lanes", type=int, default=64)
    ap.add_argument("--gpt2-set", type=Path, default=None, help="an existing gpt2-small golden set (skips generation)")
    ap.add_argument("--cache", type=Path, default=None, help="build cache (default: a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_rtl_") as d:
        work = Path(d)
        cache = args.cache or work / "cache"
        if not args.no_compare:
            simulators(args.set, args.sim_lanes, args.reps, work, cache)
        lanes_table(args.set, args.lanes, args.lanes_sims, work, cache)
        if args.gpt2_small:
            gpt2_small(args.gpt2_lanes, args.gpt2_set, work, cache)


if __name__ == "__main__":
    main()
