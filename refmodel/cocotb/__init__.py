"""refmodel's cocotb verification library (installed with ``pip install refmodel[rtl]``).

Everything a testbench needs to verify RTL against a golden set, on Icarus Verilog or Verilator:

* :class:`GoldenSet` -- open a set; tensors as codes or values; per-stage inputs and outputs;
  tolerance tiers ``local``, ``warning``, ``end_to_end`` (:mod:`refmodel.cocotb.golden`);
* :class:`Scoreboard` -- ``exact`` and ``tolerance`` checks naming the first failing element
  (index, expected and got codes, error, bound), warnings from the warning tier, a summary and
  functional coverage (:mod:`refmodel.cocotb.scoreboard`, :mod:`refmodel.cocotb.coverage`);
* :class:`StreamSource`, :class:`StreamSink`, :class:`StreamMonitor` -- valid/ready endpoints
  configurable by signal names and widths; :class:`StreamBench` -- clock, reset, one source, one
  sink and a scoreboard; AXI-Stream DUTs use cocotbext-axi (:mod:`refmodel.cocotb.axis`);
  :func:`pack_lanes`/:func:`unpack_lanes` -- codes to and from packed-array port words;
* :func:`run_bench` -- the pytest entry point: build and run a DUT on either simulator, pass or
  fail with the scoreboard summary and, on failure, a waveform (:mod:`refmodel.cocotb.runner`).

The golden-set, scoreboard and coverage parts do not need cocotb; the stream parts and
:func:`run_bench` import it (and cocotb_tools) when first used. See docs/verify.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from refmodel.golden.hexfile import pack_lanes, unpack_lanes

from .coverage import Coverage
from .golden import GoldenSet, Stage, Tolerance, golden_sets_dir
from .scoreboard import CheckResult, Scoreboard, ScoreboardError

if TYPE_CHECKING:  # pragma: no cover
    from .bench import StreamBench, log_rate
    from .runner import BenchResult, run_bench
    from .stream import (
        PAUSE_PATTERNS,
        STALL_CASES,
        Stopwatch,
        StreamMonitor,
        StreamSink,
        StreamSource,
        check_no_xz,
        check_parameters,
        cycle_pause,
        dut_parameters,
        hexw,
        random_pause,
        reset,
        start_clock,
        to_signed,
    )

__all__ = [
    "GoldenSet", "Stage", "Tolerance", "golden_sets_dir",
    "Scoreboard", "ScoreboardError", "CheckResult", "Coverage",
    "StreamSource", "StreamSink", "StreamMonitor", "StreamBench",
    "start_clock", "reset", "PAUSE_PATTERNS", "STALL_CASES", "random_pause", "cycle_pause",
    "check_no_xz", "check_parameters", "dut_parameters", "to_signed", "hexw", "Stopwatch", "log_rate",
    "run_bench", "BenchResult", "pack_lanes", "unpack_lanes",
]

_LAZY = {
    "StreamBench": "bench", "log_rate": "bench",
    "run_bench": "runner", "BenchResult": "runner",
    **{n: "stream" for n in ("StreamSource", "StreamSink", "StreamMonitor", "start_clock", "reset", "PAUSE_PATTERNS",
                             "STALL_CASES", "random_pause", "cycle_pause", "check_no_xz", "check_parameters",
                             "dut_parameters", "to_signed", "hexw", "Stopwatch")},
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'refmodel.cocotb' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{mod}", __name__), name)
