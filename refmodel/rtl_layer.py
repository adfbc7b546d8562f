"""Run the RTL layer (rtl/layer_top.v) on a golden set with Icarus, without cocotb.

:func:`layer_params` maps a golden set's manifest to layer_top's Verilog parameters, refusing (by
name) a set that needs something the RTL does not implement. :func:`simulate_layer` writes a small
plain-Verilog driver around the simulation wrapper ``rtl/layer_top_tb.v`` (reset, one ``start``
pulse, wait for ``done``), compiles with ``iverilog``, runs ``vvp`` and reads back the stage
buffers the wrapper dumps with ``$writememh``, in the golden tensors' shapes. The cocotb bench
(rtl_tests/test_layer_top.py) uses the same parameter map.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .golden.hexfile import read_memh
from .golden.manifest import read_manifest
from .numerics.fixed import FixedFormat
from .resources import rtl_dir

__all__ = ["RTL_DIR", "SOURCES", "TB_SOURCES", "UnsupportedSet", "RtlUnavailable", "layer_params", "cycle_budget",
           "from_rtl_layout", "simulate_layer", "LayerSim"]

RTL_DIR = rtl_dir()
#: layer_top and its submodules (the units it composes)
SOURCES = ["layer_top.v", "layer_seq.v", "layer_ext.v", "layer_sat_add.v", "mac_dot.v", "requant.v",
           "softmax_row.v", "reciprocal.v", "layernorm.v", "rsqrt.v", "rsqrt_isqrt.v", "act_table.v"]
#: simulation-only wrapper ($readmemh input, $writememh dumps)
TB_SOURCES = ["layer_top_tb.v", *SOURCES]
STAGE_TENSORS = ("x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down",
                 "out")


class RtlUnavailable(RuntimeError):
    """Icarus (or the rtl/ sources) are not available here; the message says what is missing."""


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
LINEAR = {"q": "Q", "k": "K", "v": "V", "proj": "PROJ", "up": "UP", "down": "DOWN"}


class UnsupportedSet(ValueError):
    """The golden set needs something layer_top does not implement (message names it)."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise UnsupportedSet(f"layer_top cannot run this golden set: {what}")


def layer_params(set_dir: Path, lanes: int) -> dict[str, Any]:
    """Verilog parameters of layer_top for the golden set in ``set_dir`` (see module docstring).
    ``UnsupportedSet`` names the first assumption the set breaks."""
    m = read_manifest(set_dir)
    cfg, plan, units = m["config"], m["plan"], m["units"]
    _need(cfg["arch"] == "gpt2", f"arch {cfg['arch']!r} (only gpt2: pre-LN, biases, GELU MLP)")
    _need(bool(cfg["causal"]), "non-causal attention")
    _need(cfg["n_kv_heads"] == cfg["n_heads"], "grouped-query attention")
    t = plan["tensors"]
    fmt = {n: FixedFormat.parse(t[n]["format"]) for n in
           ("x", "ln1", "q", "k", "v", "scores", "probs", "attn", "proj", "res1", "ln2", "up", "act", "down", "out")}
    acts = [n for n in fmt if n != "probs"]
    act_w = fmt["x"].width
    _need(all(fmt[n].width == act_w and fmt[n].signed for n in acts), f"activation widths {[str(fmt[n]) for n in acts]}")
    _need(not fmt["probs"].signed, f"signed probs {fmt['probs']}")
    _need(fmt["x"] == fmt["proj"] == fmt["res1"] and fmt["res1"] == fmt["down"] == fmt["out"],
          "residual adds with operands in different formats (only the saturating same-format add is built)")
    rounding = {t[n]["rounding"] for n in fmt if n not in ("x", "res1", "out")}
    _need(len(rounding) == 1 and rounding <= set(ROUND_MODE), f"rounding modes {sorted(rounding)}")
    rnd = ROUND_MODE[rounding.pop()]
    _need(all(t[n]["overflow"] == "saturate" for n in fmt), "a tensor that wraps instead of saturating")
    w = plan["weights"]
    mats = {FixedFormat.parse(w[n]["format"]) for n in ("wq", "wk", "wv", "wo", "w_up", "w_down")}
    biases = {FixedFormat.parse(w[n]["format"]) for n in ("bq", "bk", "bv", "bo", "b_up", "b_down")}
    _need(len(mats) == 1 and len(biases) == 1, "weight or bias matrices in different formats")
    wgt, bias = mats.pop(), biases.pop()

    p: dict[str, Any] = {
        "D_MODEL": cfg["d_model"], "N_HEADS": cfg["n_heads"], "D_FF": cfg["d_ff"], "SEQ": cfg["seq_len"],
        "LANES": lanes, "ACT_W": act_w, "PROB_W": fmt["probs"].width, "WGT_W": wgt.width, "BIAS_W": bias.width,
        "ROUND_MODE": rnd,
    }
    macs = {n: units[n]["mac"] for n in (*LINEAR, "scores", "attn")}
    accs = {(mc["ACC_W"], mc["ACC_SAT"]) for mc in macs.values()}
    _need(len(accs) == 1, f"accumulators differ between stages: {sorted(accs)}")
    p["ACC_W"], p["ACC_SAT"] = accs.pop()
    _need(p["ACC_SAT"] == 0 or lanes == 1, "a saturating accumulator with LANES > 1")
    for n, key in LINEAR.items():
        mc = macs[n]
        _need("bias_requant" not in units[n], f"{n}: bias finer than the accumulator (rounded offline)")
        _need(mc["A_W"] == act_w and mc["W_W"] == wgt.width and mc["OUT_W"] == act_w and mc["B_W"] == bias.width
              and mc["ROUND_MODE"] == rnd and mc["LANES"] == 1, f"{n}: MAC parameters {mc}")
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
    for key, name in MEMFILES.items():
        f = (set_dir / m["tensors"][name]["file"]).resolve()
        _need(f.exists(), f"file {f} missing")
        p[f"{key}_MEMFILE"] = f'"{f}"'
    return p


def cycle_budget(p: dict[str, Any]) -> int:
    """A generous cycle limit for one run: MAC beats (as issued) plus the streamed stages."""
    s, d, f, h, lanes = p["SEQ"], p["D_MODEL"], p["D_FF"], p["N_HEADS"], p["LANES"]
    hd = d // h
    beats = s * d * math.ceil(d / lanes) * 4 + 2 * s * f * math.ceil(d / lanes)  # q k v proj, up down
    beats += h * s * s * math.ceil(hd / lanes) + s * d * sum(math.ceil((i + 1) / lanes) for i in range(s))
    norms = 2 * s * (2 * d + 3 * p["LN1_RSQ_K"] + 20)
    soft = h * s * (3 * p["SM_N_MAX"] + p["SM_K"] + 10)
    return 3 * (beats + norms + soft + 8 * s * (d + f)) + 10_000


def from_rtl_layout(name: str, flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A flat DUT dump in the golden tensor's shape: the DUT keeps q/k/v as [S, H*hd] (head h at
    columns h*hd..), the golden set as [H, S, hd]; every other buffer has the golden layout."""
    if name in ("q", "k", "v"):
        h, s, hd = shape
        return flat.reshape(s, h, hd).transpose(1, 0, 2)
    return flat.reshape(shape)


@dataclass
class LayerSim:
    codes: dict[str, np.ndarray]  # stage tensor -> codes in the golden shape
    cycles: int
    seconds: float


def _vlit(v: Any) -> str:
    if isinstance(v, str):
        return v if v.startswith('"') else f'"{v}"'
    return str(int(v))


def _driver(params: dict[str, Any], timeout_cycles: int) -> str:
    plist = ",\n        ".join(f".{k}({_vlit(v)})" for k, v in params.items())
    return f"""`timescale 1ns / 1ps
module layer_run;
    reg clk = 1'b0, rst = 1'b1, start = 1'b0;
    wire done, err;
    wire [31:0] cycles;
    wire [3:0] stage;
    layer_top_tb #(
        {plist}
    ) tb (.clk(clk), .rst(rst), .start(start), .stall(1'b0), .done(done), .cycles(cycles), .stage(stage), .err(err));
    always #5 clk = ~clk;
    initial begin
        repeat (4) @(posedge clk);
        rst <= 1'b0;
        repeat (2) @(posedge clk);
        start <= 1'b1;
        @(posedge clk);
        start <= 1'b0;
        wait (done);
        repeat (2) @(posedge clk);
        $display("LAYER_DONE cycles=%0d err=%0d", cycles, err);
        $finish;
    end
    initial begin
        #({timeout_cycles}.0 * 10.0);
        $display("LAYER_TIMEOUT stage=%0d", stage);
        $finish;
    end
endmodule
"""


def simulate_layer(set_dir: str | Path, work_dir: str | Path, *, lanes: int = 1,
                   log: Callable[[str], None] | None = None) -> LayerSim:
    """Compile and run the RTL layer on the golden set in ``set_dir``; the stage codes it computed.
    Raises :class:`RtlUnavailable` when iverilog/vvp or the rtl/ sources are missing, and
    :class:`UnsupportedSet` when the set needs something layer_top does not implement."""
    set_dir, work = Path(set_dir).resolve(), Path(work_dir).resolve()
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise RtlUnavailable("Icarus Verilog is not installed (apt-get install -y iverilog)")
    missing = [s for s in TB_SOURCES if not (RTL_DIR / s).exists()]
    if missing:
        raise RtlUnavailable(f"RTL sources not found next to the package ({RTL_DIR}/{missing[0]}): run from a checkout")
    params = layer_params(set_dir, lanes)
    if work.exists():
        shutil.rmtree(work)
    dump = work / "dump"
    dump.mkdir(parents=True)
    drv = work / "layer_run.v"
    drv.write_text(_driver(params, cycle_budget(params)))
    t0 = time.perf_counter()
    comp = subprocess.run(["iverilog", "-g2012", "-o", str(work / "sim.vvp"), "-s", "layer_run", str(drv),
                           *[str(RTL_DIR / s) for s in TB_SOURCES]], capture_output=True, text=True)
    if comp.returncode != 0:
        raise RuntimeError(f"iverilog failed:\n{comp.stderr[-2000:]}")
    if log:
        log(f"compiled rtl/layer_top.v with iverilog in {time.perf_counter() - t0:.1f} s; simulating...")
    run = subprocess.run(["vvp", "-n", str(work / "sim.vvp"), f"+X_FILE={set_dir / 'x.hex'}", f"+DUMP_DIR={dump}"],
                         capture_output=True, text=True, cwd=work)
    secs = time.perf_counter() - t0
    done = [ln for ln in run.stdout.splitlines() if ln.startswith("LAYER_DONE")]
    if run.returncode != 0 or not done:
        raise RuntimeError(f"RTL layer simulation did not finish:\n{(run.stdout + run.stderr)[-2000:]}")
    fields = dict(kv.split("=") for kv in done[-1].split()[1:])
    if fields.get("err") != "0":
        raise RuntimeError("RTL layer raised err (framing error on a stream or in a layernorm)")
    m = read_manifest(set_dir)
    codes: dict[str, np.ndarray] = {}
    for name in STAGE_TENSORS:
        e = m["tensors"][name]
        fmt = FixedFormat.parse(e["format"])
        shape = tuple(e["shape"])
        flat = read_memh(dump / f"{name}.hex", fmt.width, fmt.signed, count=int(np.prod(shape)))
        codes[name] = from_rtl_layout(name, flat, shape)
    return LayerSim(codes, int(fields["cycles"]), secs)
