"""The whole chain on one layer: build it, compute SLaNC scales, write a golden set, bound every
stage's error, simulate the RTL layer (Icarus or Verilator), and judge every stage.

A stage passes when the RTL codes equal the golden (integer model) codes bit for bit, every
element lies within the stage's local tolerance (against the float64 op on the stage's own golden
inputs; :func:`refmodel.rtl_layer_check.check_layer`, which also counts the elements above the
statistical tier as warnings) and within the end-to-end tolerance of the float64 layer.
The RTL step runs whenever the plan's content is one the RTL implements
(:func:`refmodel.rtl_layer.rtl_support`), whatever the plan is called; when it cannot run,
:func:`rtl_blocker` says why and :func:`run_demo` raises instead of leaving the RTL column empty.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .golden.generate import generate_set
from .golden.manifest import LoadedTensor, load_tensor, read_manifest
from .layer.config import LayerConfig
from .layer.plan import PrecisionPlan
from .numerics.fixed import FixedFormat

if TYPE_CHECKING:
    from .rtl_layer_check import StageCheck

__all__ = ["StageResult", "DemoResult", "run_demo", "rtl_blocker", "plot_stages"]

#: a progress-bar factory: ``bar(description, total)`` is a context manager yielding ``advance(n=1)``
ProgressBar = Callable[[str, int], AbstractContextManager[Callable[..., None]]]


@contextmanager
def _no_bar(description: str, total: int) -> Iterator[Callable[..., None]]:
    yield lambda n=1: None


@dataclass
class StageResult:
    stage: str
    bit_exact: bool | None  # None: no RTL run
    max_err: float  # max |decoded - float64 reference|
    bound: float  # max tolerance (inf: no guarantee)
    ratio: float  # max over elements of err / tolerance
    verdict: str
    local_ratio: float = float("nan")  # max err / local bound (against the float64 op on the stage's own inputs)
    local_failed: int = 0  # elements outside the local bound
    warnings: int = 0  # elements within the local bound but above the statistical tier

    @property
    def local_text(self) -> str:
        """``<max err/local bound> (<warnings>)``, e.g. ``0.9995 (0)``; ``-`` without a local tier."""
        if math.isnan(self.local_ratio):
            return "-"
        from .rtl_layer_check import ratio_text

        return f"{ratio_text(self.local_ratio)} ({self.warnings})"


@dataclass
class DemoResult:
    stages: list[StageResult]
    golden_dir: Path
    slanc: dict[str, Any] | None
    rtl_ran: bool
    rtl_note: str
    rtl_seconds: float | None
    cycles: int | None
    simulator: str | None = None

    @property
    def passed(self) -> bool:
        return all(s.verdict == "PASS" for s in self.stages)


def _decode_entry(codes: np.ndarray, entry: dict[str, Any]) -> np.ndarray:
    """Exact float64 values of a manifest entry's codes (fixed point, minifloat, or float64 bit
    patterns: an MX stage's exact values)."""
    from .cocotb.golden import FLOAT64_SPEC, decode_codes
    from .numerics.formats import parse_format

    spec = entry["format"]
    return decode_codes(codes, FLOAT64_SPEC if spec == FLOAT64_SPEC else parse_format(spec))


def _judge(stage: str, got: np.ndarray, t: LoadedTensor, bit_exact: bool | None,
           local: StageCheck | None = None) -> StageResult:
    res = _judge_e2e(stage, got, t, bit_exact)
    if local is not None and local.tier == "local":
        res.local_ratio, res.local_failed, res.warnings = local.ratio, local.failed, local.warnings
        if bit_exact is not False and local.failed:
            res.verdict = "FAIL (local bound)"
    return res


def _judge_e2e(stage: str, got: np.ndarray, t: LoadedTensor, bit_exact: bool | None) -> StageResult:
    ref = t["reference"]
    tol = t.get("tolerance")
    err = np.abs(got - ref)
    max_err = float(err.max()) if err.size else 0.0
    if tol is None:
        return StageResult(stage, bit_exact, max_err, float("nan"), float("nan"), "NO BOUND")
    finite = np.isfinite(tol)
    bound = float(tol.max()) if tol.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(tol > 0, err / tol, np.where(err > 0, np.inf, 0.0))
    ratio = float(r[finite].max()) if finite.any() else float("nan")
    if bit_exact is False:
        verdict = "FAIL (RTL != model)"
    elif not finite.all():
        verdict = "NO GUARANTEE"
    elif np.all(err <= tol):
        verdict = "PASS"
    else:
        verdict = "FAIL (error > bound)"
    return StageResult(stage, bit_exact, max_err, bound, ratio, verdict)


def rtl_blocker(config: LayerConfig, plan: PrecisionPlan, *, sim: str = "icarus", lanes: int = 1) -> str | None:
    """Why the RTL step cannot run for this config and plan here (None: it can): the features the
    plan needs that the RTL lacks, a missing simulator, or RTL sources that are not installed."""
    from .rtl_layer import rtl_support, simulator_available, sources_missing

    why = rtl_support(config, plan, lanes)
    if why:
        return f"the RTL layer cannot run plan {plan.name!r}: " + "; ".join(why)
    return sources_missing() or simulator_available(sim)


def run_demo(
    out_dir: str | Path,
    config: LayerConfig | str = "tiny",
    plan: PrecisionPlan | str = "hw",
    seed: int = 0,
    *,
    rtl: bool = True,
    sim: str = "icarus",
    lanes: int = 1,
    log: Callable[[str], None] = print,
    bar: ProgressBar | None = None,
) -> DemoResult:
    """Run the chain; golden set in ``out_dir/golden``, RTL run in ``out_dir/rtl_build``. With
    ``rtl`` the RTL layer must run: :class:`refmodel.rtl_layer.RtlUnavailable` /
    :class:`~refmodel.rtl_layer.UnsupportedSet` say why it cannot. ``bar`` makes progress bars."""
    bar = bar or _no_bar
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = LayerConfig.from_name(config) if isinstance(config, str) else config
    p = PrecisionPlan.from_name(plan) if isinstance(plan, str) else plan
    log(f"layer: {cfg.arch}, d_model {cfg.d_model}, {cfg.n_heads} heads, d_ff {cfg.d_ff}, seq {cfg.seq_len}; "
        f"plan {p.name}; seed {seed}")
    if rtl:
        from .rtl_layer import RtlUnavailable

        why = rtl_blocker(cfg, p, sim=sim, lanes=lanes)
        if why:
            raise RtlUnavailable(why)
    gdir = out_dir / "golden"
    t0 = time.perf_counter()
    with bar("golden set", 1) as advance:
        generate_set(cfg, p, gdir, seed=seed, force=True)  # the demo's own output directory
        advance()
    m = read_manifest(gdir)
    log(f"golden set: {gdir} ({len(m['tensors'])} tensors) in {time.perf_counter() - t0:.2f} s")
    if m.get("slanc"):
        for k, e in m["slanc"].items():
            log(f"SLaNC {k}: s = {e['s']:.4g} -> input shift 2^-{e['shift']}")
    from .layer.forward import tensor_names

    # forward order; an MX stage by its unit name, judged on its exact values (``<name>.value``)
    stages = [n for n in tensor_names(cfg) if n in m["tensors"] or f"{n}.value" in m["tensors"]]
    entry_of = {n: n if n in m["tensors"] else f"{n}.value" for n in stages}
    rtl_codes: dict[str, np.ndarray] | None = None
    note, secs, cycles = "", None, None
    if rtl:
        from .rtl_layer import simulate_layer

        steps = 1000
        with bar(f"RTL layer ({sim}, {lanes} lane{'s' if lanes > 1 else ''})", steps) as advance:
            shown = 0

            def progress(done: int, total: int) -> None:
                nonlocal shown
                k = steps * done // max(total, 1)
                if k > shown:
                    advance(k - shown)
                    shown = k

            sim_run = simulate_layer(gdir, out_dir / "rtl_build", lanes=lanes, sim=sim, log=log, progress=progress)
        secs, rtl_codes, cycles = sim_run.seconds, sim_run.codes, sim_run.cycles
        build = f", build {sim_run.build_seconds:.1f} s" if sim_run.build_seconds else ", cached build"
        name = {"icarus": "Icarus", "verilator": "Verilator"}.get(sim, sim)
        note = (f"RTL layer simulated on {name} in {secs:.1f} s ({cycles} cycles, "
                f"{sim_run.cycles_per_second:.3g} cycles/s{build})")
    else:
        note = "RTL simulation not requested"
    log(note)
    from .rtl_layer_check import check_layer

    # stage by stage against the local tier: the RTL's codes, or without a run the model's own
    if rtl_codes is not None:
        judged = rtl_codes
    else:
        from .cocotb.golden import GoldenSet

        gs = GoldenSet(gdir)
        judged = {n: gs.codes(n) for n in stages}
    local = check_layer(gdir, {n: judged[n] for n in stages if n in judged})
    results = []
    for name in stages:
        t = load_tensor(gdir, entry_of[name], m)
        codes = t["codes"]
        be = None
        if rtl_codes is not None and name in rtl_codes:
            got_codes = np.asarray(rtl_codes[name]).reshape(codes.shape)
            fmt = FixedFormat.parse(t["entry"]["format"])
            exp = codes if fmt.signed else codes & np.int64((1 << fmt.width) - 1)
            be = bool(np.array_equal(got_codes, exp))
            got = _decode_entry(got_codes, t["entry"])
        else:
            got = _decode_entry(codes, t["entry"])
        results.append(_judge(name, got, t, be, next((c for c in local.stages if c.stage == name), None)))
    return DemoResult(results, gdir, m.get("slanc"), rtl_codes is not None, note, secs, cycles,
                      sim if rtl else None)


def plot_stages(res: DemoResult, path: str | Path, title: str) -> Path:
    """Bars of max error vs float64 and the bound, per stage, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = res.stages
    x = np.arange(len(st))
    err = np.array([max(s.max_err, 1e-12) for s in st])
    bnd = np.array([s.bound if np.isfinite(s.bound) else np.nan for s in st])
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(st)), 4.5))
    ax.bar(x - 0.2, err, 0.4, label="max |error| vs float64", color="tab:blue")
    ax.bar(x + 0.2, np.nan_to_num(bnd, nan=0.0), 0.4, label="bound (max tolerance)", color="tab:orange", alpha=0.8)
    for i, s in enumerate(st):
        mark = "ok" if s.verdict == "PASS" else ("NG" if s.verdict.startswith("NO") else "FAIL")
        color = "green" if mark == "ok" else ("gray" if mark == "NG" else "red")
        ax.annotate(mark, (i, max(err[i], np.nan_to_num(bnd[i], nan=err[i])) * 1.6), ha="center", fontsize=7,
                    color=color)
    ax.set_yscale("log")
    top = np.nanmax(np.concatenate([err, bnd]))
    ax.set_ylim(top=top * 8)  # room for the verdict marks
    ax.set_xticks(x)
    ax.set_xticklabels([s.stage for s in st], rotation=45, ha="right")
    ax.set_ylabel("absolute error")
    ax.set_title(title)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def clean(out_dir: str | Path) -> None:
    shutil.rmtree(out_dir, ignore_errors=True)
