"""Clock, reset and timing helpers for benches that drive the DUT without stream endpoints (the
layer bench). Everything here is :mod:`refmodel.cocotb`; this module only keeps the names those
benches import."""

from __future__ import annotations

from refmodel.cocotb.stream import CLK_NS, Stopwatch, reset, start_clock

__all__ = ["CLK_NS", "Stopwatch", "reset", "start_clock"]
