"""A stream bench in one object: clock, reset, one source, one sink and a scoreboard.

Most units (and most user DUTs) take one valid/ready input stream and give one output stream::

    tb = StreamBench(dut, source="s", sink="m", source_fields=("data", "last"))
    await tb.reset()
    out = await tb.run(items)                        # or run_full_rate(beats, fields)
    tb.sb.check_stage(gs, "probs", codes)            # exact + tolerance tiers
    tb.finish()                                      # handshake coverage + summary in the log

The bench's clock is a C-side clock (:func:`~refmodel.cocotb.stream.start_clock`), the reset is
synchronous (``rst`` active high unless told otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from cocotb.triggers import ClockCycles

from .scoreboard import Scoreboard
from .stream import CLK_NS, StreamSink, StreamSource, reset, start_clock

__all__ = ["StreamBench", "log_rate"]


def log_rate(dut: Any, unit: str, vectors: int, seconds: float) -> float:
    """Log ``<vectors> checked in <s>`` and print the line ``RATE <unit> <vectors/s>``."""
    rate = vectors / seconds if seconds > 0 else float("inf")
    dut._log.info("%s: checked %d vectors in %.3f s", unit, vectors, seconds)
    print(f"RATE {unit} {rate:.0f}", flush=True)
    return rate


class StreamBench:
    """Clock + reset + :class:`StreamSource` on ``source`` + :class:`StreamSink` on ``sink`` +
    :class:`Scoreboard` (``sb``). Prefixes, field lists and explicit signal names are passed on
    to the endpoints; ``source=None``/``sink=None`` leaves that side out."""

    def __init__(self, dut: Any, *, source: str | None = "s", sink: str | None = "m",
                 source_fields: Iterable[str] | None = None, sink_fields: Iterable[str] | None = None,
                 source_names: Mapping[str, str] | None = None, sink_names: Mapping[str, str] | None = None,
                 clk: str = "clk", rst: str = "rst", reset_active_high: bool = True, period_ns: float = CLK_NS,
                 name: str | None = None, scoreboard: Scoreboard | None = None):
        self.dut = dut
        self.clk_name, self.rst_name = clk, rst
        self.reset_active_high = reset_active_high
        self.period_ns = period_ns
        self.clock = start_clock(dut, period_ns, clk)
        self.source = (StreamSource(dut, source, clk=clk, rst=rst, signals=source_fields, names=source_names,
                                    reset_active_high=reset_active_high) if source is not None else None)
        self.sink = (StreamSink(dut, sink, clk=clk, rst=rst, signals=sink_fields, names=sink_names,
                                reset_active_high=reset_active_high) if sink is not None else None)
        self.sb = scoreboard or Scoreboard(name or dut._name, log=dut._log)

    @property
    def clk(self) -> Any:
        return getattr(self.dut, self.clk_name)

    async def reset(self, cycles: int = 2, settle: int = 2, clear_sink: bool = True) -> None:
        """Reset the DUT; outputs captured before it are dropped (``clear_sink``; keep them to
        assert that nothing came out)."""
        await reset(self.dut, cycles, self.rst_name, self.clk_name, settle, self.reset_active_high)
        if self.sink is not None and clear_sink:
            self.sink.clear()

    def set_pauses(self, idle: str | Iterator[bool] | None = None,
                   backpressure: str | Iterator[bool] | None = None) -> None:
        """Source idle and sink backpressure patterns (names of PAUSE_PATTERNS or generators).
        A pattern that is set makes its coverage bin (``source_idle``/``sink_backpressure``)
        required: :meth:`finish` reports it missing if the run never paused."""
        if idle is not None and idle != "none":
            self.sb.coverage.declare("source_idle")
        if backpressure is not None and backpressure != "none":
            self.sb.coverage.declare("sink_backpressure")
        if self.source is not None:
            self.source.set_idle_generator(idle)
        if self.sink is not None:
            self.sink.set_backpressure_generator(backpressure)

    async def run(self, items: Sequence[int | dict[str, int]], n_out: int | None = None,
                  cycles_per_item: int = 20) -> list[dict[str, int]]:
        """Send ``items``, wait for ``n_out`` (default one per item) new outputs and return them.
        Fails after ``cycles_per_item * len(items) + 200`` cycles."""
        assert self.source is not None and self.sink is not None
        n0 = len(self.sink.items)
        n_out = len(items) if n_out is None else n_out
        t0 = time.perf_counter()
        self.source.send(items)
        await self.sink.wait_for(n0 + n_out, timeout_cycles=cycles_per_item * len(items) + 200,
                                 period_ns=self.period_ns)
        self.seconds = time.perf_counter() - t0
        return self.sink.items[n0:n0 + n_out]

    async def run_full_rate(self, beats: Sequence[Sequence[int]], fields: Sequence[str], n_out: int | None = None,
                            drain_cycles: int = 50) -> list[dict[str, int]]:
        """Drive ``beats`` one per clock (the sink must be always ready) and return the new
        outputs; asserts that the DUT took every beat on consecutive edges (full rate)."""
        assert self.source is not None and self.sink is not None
        n0 = len(self.sink.items)
        n_out = len(beats) if n_out is None else n_out
        t0 = time.perf_counter()
        cycles = await self.source.send_full_rate(beats, fields)
        await self.sink.wait_for(n0 + n_out, timeout_cycles=drain_cycles, period_ns=self.period_ns)
        self.seconds = time.perf_counter() - t0
        assert cycles == len(beats), f"{len(beats)} beats took {cycles} cycles (not full rate)"
        return self.sink.items[n0:n0 + n_out]

    async def expect_no_more(self, total: int, cycles: int) -> None:
        """Wait ``cycles`` and assert the sink holds exactly ``total`` outputs (no extra beats)."""
        assert self.sink is not None
        await ClockCycles(self.clk, cycles)
        extra = len(self.sink.items) - total
        assert extra == 0, f"{extra} extra outputs" if extra > 0 else f"{-extra} outputs missing"

    def finish(self) -> str:
        """Add the endpoints' handshake counters to the coverage, record it, log the summary."""
        for ep in (self.source, self.sink):
            if ep is not None:
                self.sb.coverage.add_stream(ep)
        self.sb.record_coverage()
        text = self.sb.report()
        self.dut._log.info(text)
        return text
