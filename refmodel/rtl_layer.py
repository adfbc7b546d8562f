"""Run the RTL layer (rtl/layer_top.v) on a golden set, on Icarus or Verilator, without cocotb.

* :func:`rtl_support` (:mod:`refmodel.rtl_capability`) -- what a (config, precision plan) needs
  that layer_top does not implement, one line per missing feature (empty: the RTL runs it, whatever
  the plan is called).
* :func:`layer_params` -- a golden set's manifest mapped to layer_top's Verilog parameters
  (refuses, with :class:`UnsupportedSet` naming the reason, a set the RTL cannot run).
* :func:`simulate_layer` -- build (cached by a hash of the sources and the parameters,
  :mod:`refmodel.rtl_build`) and run ``rtl/layer_top_tb.v`` under a small synchronous driver, read
  back every stage buffer the wrapper dumps, in the golden tensors' shapes; :func:`check_set`
  compares them with the set. ``python -m refmodel.rtl_layer SET_DIR --sim verilator`` does both.

The cocotb bench (rtl_tests/test_layer_top.py) uses the same parameter map.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .golden.manifest import read_manifest
from .numerics.fixed import FixedFormat
from .rtl_build import (
    INCLUDES,
    SIMULATORS,
    SOURCES,
    TB_SOURCES,
    RtlUnavailable,
    build,
    driver,
    parameter_decls,
    parameter_names,
    simulator_available,
    sources_missing,
)
from .rtl_capability import BIASES, LINEAR, MAC_STAGES, MATRICES, ROUND_MODE, STAGE_TENSORS, rtl_support

__all__ = ["SOURCES", "TB_SOURCES", "INCLUDES", "SIMULATORS", "STAGES", "MAC_STAGES", "UnsupportedSet",
           "RtlUnavailable", "rtl_support", "layer_params", "parameter_decls", "parameter_names", "check_set",
           "cycle_budget", "estimate_stage_cycles", "from_rtl_layout", "read_dump", "compare_stage",
           "read_stage_cycles", "simulate_layer", "simulator_available", "sources_missing", "LayerSim", "main"]

#: stage codes of layer_top's `stage` output
STAGES = ("LOAD", "LN1", "Q", "K", "V", "SC", "SM", "MIX", "PROJ", "RES1", "LN2", "UP", "ACT", "DOWN", "OUT",
          "DRAIN", "SKIP")
#: golden-set file of each *_MEMFILE parameter
MEMFILES = {
    "WQ": "wq", "WK": "wk", "WV": "wv", "WO": "wo", "W_UP": "w_up", "W_DOWN": "w_down",
    "BQ": "bq", "BK": "bk", "BV": "bv", "BO": "bo", "B_UP": "b_up", "B_DOWN": "b_down",
    "LN1_G": "ln1_g", "LN1_B": "ln1_b", "LN2_G": "ln2_g", "LN2_B": "ln2_b",
    "EXP2": "exp2_lut", "ACT_TABLE": "act_table",
}
#: manifest norm_params keys passed as LN1_* / LN2_* (D, IN_W, OUT_W, RMS are fixed by the top)
NORM_KEYS = ("SHIFT", "MEAN_G", "EPS_G", "EPS", "N_F", "RSQ_K", "RSQ_W", "SQD_F", "SQD", "G_W", "G_F", "B_W",
             "B_F", "OUT_F", "OUT_RNE")
SOFTMAX_KEYS = ("IN_F", "N_MAX", "LUT_BITS", "LUT_W", "GUARD", "OUT_F", "LOG2E_F", "LOG2E", "K")


class UnsupportedSet(ValueError):
    """The golden set needs something layer_top does not implement (message names it)."""


# ==== parameter map ==================================================================================
def _need(cond: bool, what: str) -> None:
    if not cond:
        raise UnsupportedSet(f"layer_top cannot run this golden set: {what}")


def _memh_words(path: Path) -> int:
    """Words in a $readmemh file (one per line, as refmodel writes them; blank lines ignored)."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip() and not line.lstrip().startswith(b"//"))


def layer_params(set_dir: str | Path, lanes: int) -> dict[str, Any]:
    """Verilog parameters of layer_top for the golden set in ``set_dir``: the *_MEMFILE ones are the
    set's files (absolute, quoted). :class:`UnsupportedSet` names every feature the set's plan needs
    that the RTL lacks (:func:`rtl_support`), or the first unit parameter it cannot take."""
    from .layer.config import LayerConfig
    from .layer.plan import PrecisionPlan

    set_dir = Path(set_dir)
    m = read_manifest(set_dir)
    cfg, units = m["config"], m["units"]
    try:
        config = LayerConfig.from_dict(cfg)
        plan = PrecisionPlan.from_dict(m["plan"])
    except (KeyError, ValueError, TypeError) as e:
        raise UnsupportedSet(f"layer_top cannot run this golden set: its config/plan do not load: {e}") from None
    why = rtl_support(config, plan, lanes)
    if why:
        raise UnsupportedSet("layer_top cannot run this golden set: " + "; ".join(why))
    t = m["tensors"]
    fmt = {n: FixedFormat.parse(t[n]["format"]) for n in STAGE_TENSORS}
    act_w = fmt["x"].width
    rnd = ROUND_MODE[plan.tensors["q"].rounding]
    wgt = {FixedFormat.parse(t[n]["format"]).width for n in MATRICES}
    bias = {FixedFormat.parse(t[n]["format"]).width for n in BIASES}
    _need(len(wgt) == 1 and len(bias) == 1, f"weight widths {sorted(wgt)}, bias widths {sorted(bias)}")
    wgt_w, bias_w = wgt.pop(), bias.pop()

    p: dict[str, Any] = {
        "D_MODEL": cfg["d_model"], "N_HEADS": cfg["n_heads"], "D_FF": cfg["d_ff"], "SEQ": cfg["seq_len"],
        "LANES": lanes, "ACT_W": act_w, "PROB_W": fmt["probs"].width, "WGT_W": wgt_w, "BIAS_W": bias_w,
        "ROUND_MODE": rnd,
    }
    macs = {n: units[n]["mac"] for n in MAC_STAGES}
    for n, key in MAC_STAGES.items():
        mc = macs[n]
        _need(mc["ACC_SAT"] in (0, 1) and 2 <= mc["ACC_W"] <= 62, f"{n}: accumulator {mc}")
        _need(mc["ACC_SAT"] == 0 or lanes == 1,
              f"tensor {n}: a saturating accumulator needs LANES = 1 (asked for {lanes})")
        p[f"{key}_ACC_W"], p[f"{key}_ACC_SAT"] = mc["ACC_W"], mc["ACC_SAT"]
    for n, key in LINEAR.items():
        mc = macs[n]
        _need("bias_requant" not in units[n],
              f"tensor {n}: bias {units[n].get('bias_requant')} is finer than the accumulator's LSB and rounded "
              f"offline -- the RTL adds biases unrounded")
        _need(mc["A_W"] == act_w and mc["W_W"] == wgt_w and mc["OUT_W"] == act_w and mc["ROUND_MODE"] == rnd
              and mc["LANES"] == 1, f"{n}: MAC parameters {mc}")
        _need(mc["B_W"] == bias_w,
              f"tensor {n}: the {mc['ACC_W']}-bit accumulator leaves {mc['B_W']} bits for the {bias_w}-bit bias "
              f"(the model clips it) -- the RTL adds the bias unclipped")
        p[f"{key}_SHIFT"], p[f"{key}_BIAS_LSH"] = mc["SHIFT"], mc["BIAS_LSH"]
    sc, rq = macs["scores"], units["scores"]["requant"]
    _need(sc["A_W"] == act_w and sc["W_W"] == act_w and sc["SHIFT"] == 0, f"scores MAC {sc}")
    _need(rq["OUT_W"] == act_w and rq["ROUND_MODE"] == rnd, f"scores requant {rq}")
    p["SC_MULT"], p["SC_SHIFT"] = units["scores"]["multiplier"], rq["SHIFT"]
    mix = macs["attn"]
    _need(mix["A_W"] == fmt["probs"].width + 1 and mix["W_W"] == act_w and mix["OUT_W"] == act_w
          and mix["ROUND_MODE"] == rnd, f"attention mix MAC {mix}")
    p["MIX_SHIFT"] = mix["SHIFT"]
    sm = units["probs"]["softmax"]
    _need(sm["IN_W"] == act_w and sm["OUT_W"] == fmt["probs"].width, f"softmax widths {sm}")
    p.update({f"SM_{k}": sm[k] for k in SOFTMAX_KEYS})
    act = units["act"]
    tin = FixedFormat.parse(act["table_in"])
    _need(act["act_params"]["OUT_W"] == act_w and tin.signed and tin.frac <= fmt["up"].frac,
          f"activation table {act}")
    p["ACT_IN_W"], p["ACT_SHIFT"] = act["act_params"]["IN_W"], fmt["up"].frac - tin.frac
    for ln in ("ln1", "ln2"):
        npar = units[ln]["norm_params"]
        _need(npar["D"] == cfg["d_model"] and npar["IN_W"] == act_w and npar["OUT_W"] == act_w and npar["RMS"] == 0,
              f"{ln} norm parameters {npar}")
        slanc = (m.get("slanc") or {}).get(ln)
        _need(slanc is None or slanc["shift"] == npar["SHIFT"], f"{ln}: SLaNC shift {slanc} != norm SHIFT")
        p.update({f"{ln.upper()}_{k}": npar[k] for k in NORM_KEYS})
    _check_requant_fits(p)
    for key, name in MEMFILES.items():
        entry = t[name]
        f = (set_dir / entry["file"]).resolve()
        _need(f.exists(), f"file {f} missing")
        n_words = int(np.prod(entry["shape"]))
        got = _memh_words(f)
        _need(got == n_words, f"file {f} holds {got} words, the manifest says {n_words}")
        p[f"{key}_MEMFILE"] = f'"{f}"'
    return p


def _check_requant_fits(p: dict[str, Any]) -> None:
    """The shared requantiser's widths (as layer_top derives them) fit its 62-bit limit."""
    shifts = [p[f"{k}_SHIFT"] for k in LINEAR.values()] + [p["MIX_SHIFT"]]
    rq_shift = max(max(shifts), p["SC_SHIFT"])
    m_sc = p["SC_MULT"] << (rq_shift - p["SC_SHIFT"])
    m_w = max(rq_shift - min(shifts) + 1, m_sc.bit_length())
    acc_max = max(p[f"{k}_ACC_W"] for k in MAC_STAGES.values())
    in_w = min(acc_max, p["ACT_W"] + rq_shift + 1)
    _need(min(shifts) >= 0 and in_w + m_w <= 62,
          f"the shared requantiser needs {in_w} + {m_w} bits (stage shifts {min(shifts)}..{rq_shift}; at most 62)")


# ==== cycles =========================================================================================
def estimate_stage_cycles(p: dict[str, Any]) -> dict[str, int]:
    """Cycles per stage as the schedule gives them (MAC stages exactly: beats + 7; the streamed
    stages to within a few cycles): the progress total, and where the cycles of a run go."""
    s, d, f, h, lanes = p["SEQ"], p["D_MODEL"], p["D_FF"], p["N_HEADS"], p["LANES"]
    hd = d // h
    c = math.ceil
    ln = s * (2 * d + 3 * p["LN1_RSQ_K"] + 10)
    sc_beats = h * sum((i + 1) * c(hd / lanes) + (s - i - 1) for i in range(s))
    mix_beats = h * hd * sum(c((i + 1) / lanes) for i in range(s))
    return {
        "LOAD": s * d, "LN1": ln, "Q": s * d * c(d / lanes) + 7, "K": s * d * c(d / lanes) + 7,
        "V": s * d * c(d / lanes) + 7, "SC": sc_beats + 7, "SM": h * s * (3 * s + p["SM_K"] + 3),
        "MIX": mix_beats + 7, "PROJ": s * d * c(d / lanes) + 7, "RES1": s * d + 2, "LN2": ln,
        "UP": s * f * c(d / lanes) + 7, "ACT": s * f + 5, "DOWN": s * d * c(f / lanes) + 7, "OUT": s * d + 2,
        "DRAIN": s * d + 1,
    }


def cycle_budget(p: dict[str, Any]) -> int:
    """A generous cycle limit for one run (3x the schedule's estimate, plus stalls)."""
    return 3 * sum(estimate_stage_cycles(p).values()) + 10_000


def from_rtl_layout(name: str, flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A flat DUT dump in the golden tensor's shape: the DUT keeps q/k/v as [S, H*hd] (head h at
    columns h*hd..), the golden set as [H, S, hd]; every other buffer has the golden layout."""
    if name in ("q", "k", "v"):
        h, s, hd = shape
        return flat.reshape(s, h, hd).transpose(1, 0, 2)
    return flat.reshape(shape)


def read_dump(path: Path, width: int, signed: bool, count: int) -> np.ndarray:
    """A ``$writememh`` dump (Icarus or Verilator) as int64 codes. ``RuntimeError`` naming the
    file when it is missing, holds X/Z or does not hold ``count`` words."""
    if not path.exists():
        raise RuntimeError(f"dump {path} missing: the simulation did not finish")
    words = []
    for line in path.read_text().splitlines():
        text = line.split("//", 1)[0].strip()
        if text and not text.startswith("@"):
            words += text.split()
    if len(words) != count:
        raise RuntimeError(f"{path.name}: {len(words)} words, expected {count}")
    joined = "".join(words).lower()
    if "x" in joined or "z" in joined:
        bad = next(i for i, w in enumerate(words) if set(w.lower()) & {"x", "z"})
        raise RuntimeError(f"{path.name}: words hold X/Z (first at index {bad})")
    u = np.array([int(w, 16) for w in words], dtype=np.uint64) & np.uint64((1 << width) - 1)
    v = u.astype(np.int64)
    if signed:
        v = np.where(v >= (1 << (width - 1)), v - (1 << width), v)
    return v


def compare_stage(name: str, got: np.ndarray, exp: np.ndarray, fmt: FixedFormat, max_report: int = 5) -> str | None:
    """None when ``got`` equals ``exp``, else a report: the mismatch count and the first ``max_report``
    mismatches (index in the golden shape, expected and got as hex code and decoded value)."""
    bad = np.argwhere(got != exp)
    if bad.size == 0:
        return None
    lines = [f"stage {name} ({fmt}, shape {list(exp.shape)}): {len(bad)} of {exp.size} codes differ"]
    for ix in bad[:max_report]:
        t = tuple(int(i) for i in ix)
        e, g = int(exp[t]), int(got[t])
        w = fmt.width
        lines.append(f"  {name}{list(t)}: expected 0x{e & ((1 << w) - 1):0{(w + 3) // 4}x} ({e * fmt.lsb:+.6g})"
                     f" got 0x{g & ((1 << w) - 1):0{(w + 3) // 4}x} ({g * fmt.lsb:+.6g})")
    return "\n".join(lines)


@dataclass
class LayerSim:
    """One RTL run: the stage codes (golden shapes), cycles, and where time and cycles went."""

    codes: dict[str, np.ndarray]  # stage tensor -> codes in the golden shape
    cycles: int
    seconds: float  # simulation wall time (without the build)
    simulator: str = "icarus"
    build_seconds: float = 0.0
    stage_cycles: dict[str, int] = field(default_factory=dict)
    out_stream: np.ndarray | None = None
    cpu_seconds: float = 0.0  # CPU time of the simulator process (less sensitive to a shared machine)

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.seconds if self.seconds > 0 else float("inf")


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished child processes."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def read_stage_cycles(path: Path) -> dict[str, int]:
    """Cycles spent in each stage, from the wrapper's stages.txt ("<stage> <cycle>" lines)."""
    marks = []
    for line in path.read_text().splitlines():
        if line.strip():
            a, b = line.split()
            marks.append((a, int(b)))
    out: dict[str, int] = {}
    for (st, c0), (_, c1) in zip(marks, marks[1:], strict=False):
        key = STAGES[int(st)] if st.isdigit() else st
        out[key] = out.get(key, 0) + (c1 - c0)
    return out


def _prepare_work(work: Path) -> None:
    """``work`` becomes an empty run directory; an existing one is replaced only when refmodel made
    it (it holds the marker file), never a directory of the user's."""
    marker = work / ".refmodel-rtl-run"
    if work.exists():
        if not work.is_dir():
            raise RtlUnavailable(f"{work} exists and is not a directory")
        if any(work.iterdir()) and not marker.exists():
            raise RtlUnavailable(f"{work} exists and was not written by refmodel: not touching it")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    marker.write_text("refmodel RTL layer run directory (replaced by the next run)\n")


def simulate_layer(set_dir: str | Path, work_dir: str | Path, *, lanes: int = 1, sim: str = "icarus",
                   progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None,
                   cache_dir: str | Path | None = None, progress_every: int = 0) -> LayerSim:
    """Build (or reuse) and run the RTL layer on the golden set in ``set_dir`` under ``sim``
    (``icarus`` or ``verilator``); the stage codes it computed. ``progress(done, total)`` is called
    as the run advances (cycles; total estimated from the schedule). Raises
    :class:`RtlUnavailable` when the simulator or the rtl/ sources are missing, and
    :class:`UnsupportedSet` when the set needs something layer_top does not implement."""
    set_dir, work = Path(set_dir).resolve(), Path(work_dir).resolve()
    why = simulator_available(sim) or sources_missing()
    if why:
        raise RtlUnavailable(why)
    params = layer_params(set_dir, lanes)
    m = read_manifest(set_dir)
    est = estimate_stage_cycles(params)
    total = sum(est.values())
    # the ROM files are taken from the run directory (mem/), so one build serves every set of a shape
    run_params = dict(params)
    for key, name in MEMFILES.items():
        run_params[f"{key}_MEMFILE"] = f'"mem/{name}.hex"'
    text = driver(run_params, cycle_budget(params))
    exe, build_secs = build(sim, text, cache_dir, log)
    _prepare_work(work)
    (work / "mem").mkdir()
    for name in MEMFILES.values():
        src = (set_dir / m["tensors"][name]["file"]).resolve()
        try:
            (work / "mem" / f"{name}.hex").symlink_to(src)
        except OSError:
            shutil.copyfile(src, work / "mem" / f"{name}.hex")
    dump = work / "dump"
    dump.mkdir()
    every = progress_every or max(1 << 16, total // 200)
    args = [f"+X_FILE={set_dir / m['tensors']['x']['file']}", f"+DUMP_DIR={dump}", f"+PROGRESS={every}"]
    cmd = ["vvp", "-n", str(exe), *args] if sim == "icarus" else [str(exe), *args]
    t0 = time.perf_counter()
    cpu0 = _children_cpu()
    lines: list[str] = []
    done_at = 0
    with subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(("RM_PROGRESS", "RM_STAGE")):
                try:
                    done_at = max(done_at, int(line.split()[-1]))
                except ValueError:
                    continue
                if progress:
                    progress(min(done_at, total), total)
        rc = proc.wait()
    secs = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    out = "".join(lines)
    done = [ln for ln in out.splitlines() if ln.startswith("LAYER_DONE")]
    if rc != 0 or not done:
        tail = "\n".join(ln for ln in out.splitlines() if not ln.startswith(("RM_PROGRESS", "RM_STAGE")))
        raise RuntimeError(f"RTL layer simulation ({sim}) did not finish:\n{tail[-2000:]}")
    fields = dict(kv.split("=") for kv in done[-1].split()[1:])
    if fields.get("err") != "0":
        raise RuntimeError("RTL layer raised err (framing error on a stream or in a layernorm)")
    if progress:
        progress(total, total)
    codes: dict[str, np.ndarray] = {}
    for name in STAGE_TENSORS:
        e = m["tensors"][name]
        fmt = FixedFormat.parse(e["format"])
        shape = tuple(e["shape"])
        flat = read_dump(dump / f"{name}.hex", fmt.width, fmt.signed, int(np.prod(shape)))
        codes[name] = from_rtl_layout(name, flat, shape)
    fo = FixedFormat.parse(m["tensors"]["out"]["format"])
    stream = read_dump(dump / "out_stream.hex", fo.width, fo.signed, codes["out"].size).reshape(codes["out"].shape)
    return LayerSim(codes, int(fields["cycles"]), secs, sim, build_secs, read_stage_cycles(dump / "stages.txt"), stream,
                    cpu)


def check_set(set_dir: str | Path, sim: LayerSim) -> list[str]:
    """Reports of the stages whose RTL codes differ from the golden set's (empty: bit-exact)."""
    from .golden.manifest import load_tensor

    m = read_manifest(set_dir)
    reports = []
    for name, got in sim.codes.items():
        g = load_tensor(Path(set_dir), name, m)
        fmt = FixedFormat.parse(g["entry"]["format"])
        exp = g["codes"] if fmt.signed else g["codes"] & np.int64((1 << fmt.width) - 1)
        r = compare_stage(name, got, exp, fmt)
        if r:
            reports.append(r)
    return reports


def main(argv: list[str] | None = None) -> int:
    """``python -m refmodel.rtl_layer SET_DIR [--sim icarus|verilator] [--lanes N]``: run the RTL
    layer on a golden set and check every stage (bit-exact, and within its local tolerance with the
    statistical tier's warnings: :func:`refmodel.rtl_layer_check.check_layer`); exit 0 every stage
    bit-exact and within its tolerance, 1 a stage differs or fails, 2 the set or the environment
    cannot run it."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m refmodel.rtl_layer",
                                 description="Run the RTL layer on a golden set and compare every stage.")
    ap.add_argument("set_dir", type=Path, help="golden set directory")
    ap.add_argument("--sim", choices=SIMULATORS, default="icarus")
    ap.add_argument("--lanes", type=int, default=1, help="MAC products per cycle")
    ap.add_argument("--work", type=Path, default=Path("rtl_run"), help="run directory (replaced if refmodel made it)")
    args = ap.parse_args(argv)
    try:
        s = simulate_layer(args.set_dir, args.work, lanes=args.lanes, sim=args.sim, log=print)
    except (RtlUnavailable, UnsupportedSet, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = check_set(args.set_dir, s)
    print(f"{args.sim}, LANES={args.lanes}: {s.cycles} cycles in {s.seconds:.2f} s "
          f"({s.cycles_per_second:.3g} cycles/s; build {s.build_seconds:.1f} s); "
          f"{len(s.codes) - len(bad)}/{len(s.codes)} stages bit-exact")
    print("cycles per stage: " + ", ".join(f"{k} {v}" for k, v in s.stage_cycles.items()))
    for r in bad:
        print(r)
    from .rtl_layer_check import check_layer

    local = check_layer(args.set_dir, s)
    print(local.table())
    print(local.summary())
    if not local.passed:
        print(local.failure_text())
    return 1 if bad or not local.passed else 0


if __name__ == "__main__":
    raise SystemExit(main())
