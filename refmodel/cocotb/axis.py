"""AXI-Stream DUTs: cocotbext-axi's ``AxiStreamSource``/``AxiStreamSink`` with golden-set codes.

cocotbext-axi (installed with ``refmodel[rtl]``) drives and monitors ``<prefix>_tdata``,
``tvalid``, ``tready``, ``tlast``, ``tkeep``, ``tuser``... with frames, idle and backpressure
generators. These helpers only translate between frames and integer codes:

* one element per byte lane: ``tdata`` is ``lanes * width`` bits, lane ``i`` in bits
  ``[i*width +: width]`` (cocotbext-axi's ``byte_lanes``/``byte_size``, no ``tkeep`` needed);
* one frame per row (``tlast`` on the row's last beat), so a ``[rows, n]`` tensor is ``rows``
  frames of ``n`` elements.

Create the endpoints before the clock runs and give the reset an edge before the first clock edge
(cocotbext-axi takes reset only from an edge of the signal; otherwise its endpoints sample the X
that a 4-state simulator shows on ``tready`` before the DUT's reset)::

    src, sink = axis_endpoints(dut, "s_axis", "m_axis", lanes=1)
    dut.rst.value = 1
    await Timer(1, unit="ns")
    start_clock(dut)
    await reset(dut)
    for f in frames_from_codes(gs.codes("up"), width=16):
        await src.send(f)
    frames = [await sink.recv() for _ in range(rows)]
    got = codes_from_frames(frames, width=16, signed=True)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["axis_endpoints", "frames_from_codes", "codes_from_frames"]


def axis_endpoints(dut: Any, source_prefix: str = "s_axis", sink_prefix: str = "m_axis", *, clk: str = "clk",
                   rst: str = "rst", lanes: int = 1, reset_active_high: bool = True) -> tuple[Any, Any]:
    """cocotbext-axi ``(AxiStreamSource, AxiStreamSink)`` on the two prefixes, ``lanes`` elements
    per beat."""
    from cocotbext.axi import AxiStreamBus, AxiStreamSink, AxiStreamSource

    c, r = getattr(dut, clk), getattr(dut, rst)
    level = bool(reset_active_high)
    src = AxiStreamSource(AxiStreamBus.from_prefix(dut, source_prefix), c, r, reset_active_level=level,
                          byte_lanes=lanes)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, sink_prefix), c, r, reset_active_level=level,
                         byte_lanes=lanes)
    return src, sink


def frames_from_codes(codes: np.ndarray, width: int) -> list[Any]:
    """One ``AxiStreamFrame`` per row of ``codes`` (last axis = elements of a frame), codes
    masked to ``width`` bits."""
    from cocotbext.axi import AxiStreamFrame

    c = np.asarray(codes, dtype=np.int64)
    rows = c.reshape(-1, c.shape[-1]) if c.ndim else c.reshape(1, 1)
    mask = (1 << width) - 1
    return [AxiStreamFrame((r & mask).tolist()) for r in rows]


def codes_from_frames(frames: Iterable[Any], width: int, *, signed: bool) -> np.ndarray:
    """Codes of received frames, one row per frame (frames of equal length), sign-extended from
    ``width`` bits when ``signed``."""
    rows = [list(f.tdata) for f in frames]
    a = np.array(rows, dtype=np.int64)
    if signed:
        sign = np.int64(1) << np.int64(width - 1)
        a = (a ^ sign) - sign
    return a
