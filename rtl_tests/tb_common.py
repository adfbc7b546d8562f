"""Shared cocotb test-bench helpers: clock, reset, valid/ready source and sink, idle and
backpressure generators, X/Z checks, mismatch reporting and rate logging.

Stable API (other benches import it; add to it, do not change signatures):

* ``start_clock(dut, period_ns=10, clk="clk")`` -- a C-side (``impl="gpi"``) clock.
* ``async reset(dut, cycles=2, rst="rst", clk="clk", settle=2)`` -- synchronous active-high
  reset: ``rst=1`` for ``cycles`` rising edges, then ``rst=0`` and ``settle`` more edges.
* ``StreamSource(dut, prefix, clk=None, rst=None, signals=None)`` -- drives
  ``<prefix>_valid`` and the payload signals (``<prefix>_data``, ``<prefix>_last``, ...), samples
  ``<prefix>_ready``. ``send(items)`` queues items (an ``int`` is the ``data`` field, a ``dict``
  gives every field by name: ``{"data": 5, "last": 1}``); ``await wait_idle()``;
  ``set_idle_generator(gen)`` (gen yields truthy = keep valid low this cycle, only between items:
  once valid is high it holds until the transfer, AXI rule); ``clear()`` drops everything queued
  and deasserts valid; ``count`` transfers so far.
* ``StreamSink(dut, prefix, clk=None, rst=None, signals=None)`` -- drives ``<prefix>_ready``
  and captures every transfer (``valid & ready`` at a rising edge, ``rst`` low) into ``items``
  (list of dicts of unsigned ints, one key per payload signal). Any X/Z on a payload signal of a
  transfer raises (through ``await wait_for``/``check``). ``set_backpressure_generator(gen)``
  (gen yields truthy = ready low this cycle); ``await wait_for(n, timeout_cycles)``; ``clear()``;
  ``pop_all()``.
* Generators: ``random_pause(prob, seed)``, ``cycle_pause(pattern)``, ``PAUSE_PATTERNS`` (name ->
  factory), ``STALL_CASES`` ((idle, backpressure) name pairs for ``@cocotb.parametrize``).
* ``check_no_xz(value, name) -> int`` -- unsigned int of a ``LogicArray``, or AssertionError
  naming the signal and showing its bits.
* ``compare(got, expected, *, what, describe, max_report=5)`` -- AssertionError listing the first
  ``max_report`` mismatches (index, inputs via ``describe(i)``, expected, got), plus a count.
* ``log_rate(dut, unit, vectors, seconds)`` -- logs and prints ``RATE <unit> <vectors/s>``.
* ``signed(u, width)`` / ``hexw(u, width)`` -- small formatting helpers.
* ``await run_stream(source, sink, items, n_out=None, cycles_per_item=20)`` -- send ``items``,
  wait for ``n_out`` (default ``len(items)``) new outputs, return ``(outputs, seconds)``.

Timing model: every sample happens right after ``RisingEdge(clk)``, i.e. the values the flops
saw at that edge; new values are driven immediately after, for the next edge. To keep Python cost
low, a source holding valid against a low ready (and a sink with ready high waiting for valid)
sleeps until the other side's signal rises instead of waking every cycle.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, First, ReadOnly, RisingEdge, Timer

__all__ = [
    "start_clock",
    "reset",
    "StreamSource",
    "StreamSink",
    "random_pause",
    "cycle_pause",
    "PAUSE_PATTERNS",
    "STALL_CASES",
    "check_no_xz",
    "compare",
    "log_rate",
    "signed",
    "hexw",
    "Stopwatch",
    "run_stream",
]

CLK_NS = 10


def start_clock(dut, period_ns: float = CLK_NS, clk: str = "clk") -> Clock:
    """Start a C-side (gpi) clock on ``dut.<clk>``: 1.5-3x faster than the Python one."""
    c = Clock(getattr(dut, clk), period_ns, unit="ns", impl="gpi")
    c.start()
    return c


async def reset(dut, cycles: int = 2, rst: str = "rst", clk: str = "clk", settle: int = 2) -> None:
    """Synchronous active-high reset: rst=1 for ``cycles`` edges, then rst=0 and ``settle`` edges."""
    r = getattr(dut, rst)
    c = getattr(dut, clk)
    r.value = 1
    await ClockCycles(c, cycles)
    r.value = 0
    if settle:
        await ClockCycles(c, settle)


# ---- pause generators ---------------------------------------------------------------------


def random_pause(prob: float, seed: int = 1) -> Iterator[bool]:
    """Infinite generator: True (pause) with probability ``prob`` each cycle, seeded."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < prob


def cycle_pause(pattern: Sequence[int] = (1, 1, 1, 0)) -> Iterator[bool]:
    """Infinite repetition of ``pattern`` (1 = pause); the cocotbext-axi default is 3 of 4."""
    return itertools.cycle(bool(p) for p in pattern)


#: name -> factory of a fresh generator, for @cocotb.parametrize over pause patterns.
PAUSE_PATTERNS: dict[str, Callable[[], Iterator[bool]] | None] = {
    "none": None,
    "3of4": lambda: cycle_pause((1, 1, 1, 0)),
    "rand30": lambda: random_pause(0.3, seed=7),
}


#: (idle, backpressure) pattern-name pairs every data test runs: no stalls, each side alone, both.
STALL_CASES: list[tuple[str, str]] = [
    ("none", "none"),
    ("rand30", "none"),
    ("none", "rand30"),
    ("3of4", "3of4"),
    ("rand30", "rand30"),
]


# ---- value helpers -------------------------------------------------------------------------


def check_no_xz(value: Any, name: str) -> int:
    """Unsigned int of a cocotb ``LogicArray``/``Logic`` value; AssertionError on any X/Z/U/W."""
    if not value.is_resolvable:
        raise AssertionError(f"X/Z on {name}: {value}")
    return _uint(value)


def signed(u: int, width: int) -> int:
    """Two's-complement reading of the unsigned ``width``-bit integer ``u``."""
    u &= (1 << width) - 1
    return u - (1 << width) if u >> (width - 1) else u


def hexw(u: int, width: int) -> str:
    """``0x`` + exactly ceil(width/4) hex digits of ``u`` masked to ``width`` bits."""
    return f"0x{u & ((1 << width) - 1):0{(width + 3) // 4}x}"


def compare(
    got: Sequence[int],
    expected: Sequence[int],
    *,
    what: str,
    describe: Callable[[int], str] | None = None,
    show: Callable[[int], str] | None = None,
    max_report: int = 5,
) -> None:
    """Assert ``got == expected`` element-wise and in length; on failure the message lists the
    first ``max_report`` mismatches: index, ``describe(i)`` (the inputs), expected and got as
    ``show(code)`` (hex + decoded), then how many mismatched in total."""
    show = show or (lambda c: hex(c))
    lines = []
    bad = 0
    for i, (g, e) in enumerate(zip(got, expected)):
        if int(g) != int(e):
            bad += 1
            if bad <= max_report:
                inp = f" inputs {describe(i)}" if describe else ""
                lines.append(f"  #{i}:{inp} expected {show(int(e))} got {show(int(g))}")
    if len(got) != len(expected):
        lines.append(f"  length: expected {len(expected)} outputs, got {len(got)}")
    if lines:
        more = f" (first {max_report} shown)" if bad > max_report else ""
        raise AssertionError(f"{what}: {bad} of {len(expected)} mismatched{more}\n" + "\n".join(lines))


def log_rate(dut, unit: str, vectors: int, seconds: float) -> float:
    """Log ``<vectors> checked in <s>`` and print the line ``RATE <unit> <vectors/s>``."""
    rate = vectors / seconds if seconds > 0 else float("inf")
    dut._log.info("%s: checked %d vectors in %.3f s", unit, vectors, seconds)
    print(f"RATE {unit} {rate:.0f}", flush=True)
    return rate


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds`` (wall clock)."""

    def __enter__(self) -> Stopwatch:
        self.t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0


# ---- stream driver and monitor --------------------------------------------------------------

_PAYLOAD = ("data", "last", "user", "mask", "keep", "id", "dest")


def _payload_signals(dut, prefix: str, signals: Iterable[str] | None) -> dict[str, Any]:
    names = list(signals) if signals is not None else [n for n in _PAYLOAD if hasattr(dut, f"{prefix}_{n}")]
    out = {}
    for n in names:
        if not hasattr(dut, f"{prefix}_{n}"):
            raise AttributeError(f"{dut._name} has no signal {prefix}_{n}")
        out[n] = getattr(dut, f"{prefix}_{n}")
    return out


def _rst_handle(dut, rst):
    if rst is None:
        return getattr(dut, "rst", None) if hasattr(dut, "rst") else None
    if isinstance(rst, str):
        return getattr(dut, rst)
    return rst


def _uint(val) -> int:
    """Unsigned int of a resolvable LogicArray (vector) or Logic (1-bit) value."""
    return int(val.to_unsigned()) if hasattr(val, "to_unsigned") else int(val)


def _in_reset(rst) -> bool:
    """True when rst is high or unknown (before the first reset)."""
    if rst is None:
        return False
    v = rst.value
    return (not v.is_resolvable) or int(v) == 1


class StreamSource:
    """valid/ready master driving ``<prefix>_valid`` and payload signals. See module docstring."""

    def __init__(self, dut, prefix: str, clk=None, rst=None, signals: Iterable[str] | None = None):
        self.dut = dut
        self.prefix = prefix
        self.clk = clk if clk is not None else dut.clk
        self.rst = _rst_handle(dut, rst)
        self.valid = getattr(dut, f"{prefix}_valid")
        self.ready = getattr(dut, f"{prefix}_ready")
        self.fields = _payload_signals(dut, prefix, signals)
        self.queue: deque = deque()
        self.count = 0
        self._idle_gen: Iterator[bool] | None = None
        self._kick = Event()
        self._idle_ev = Event()
        self.valid.value = 0
        for h in self.fields.values():
            h.value = 0
        self._task = cocotb.start_soon(self._run())

    # -- public ------------------------------------------------------------------------------
    def set_idle_generator(self, gen: Iterator[bool] | None) -> None:
        self._idle_gen = gen

    def send(self, items: Iterable[int | dict]) -> None:
        self.queue.extend(items)
        self._kick.set()

    def send_nowait(self, item: int | dict) -> None:
        self.queue.append(item)
        self._kick.set()

    def clear(self) -> None:
        """Drop queued items and the one being presented; valid goes low now."""
        self._task.cancel()
        self.queue.clear()
        self.valid.value = 0
        self._idle_ev.set()
        self._task = cocotb.start_soon(self._run())

    def idle(self) -> bool:
        return not self.queue and not self._busy

    async def wait_idle(self) -> None:
        while not self.idle():
            self._idle_ev.clear()
            await self._idle_ev.wait()

    # -- internals ---------------------------------------------------------------------------
    _busy = False

    def _drive(self, item) -> None:
        if isinstance(item, dict):
            for k, v in item.items():
                self.fields[k].value = int(v)
        else:
            self.fields["data"].value = int(item)
        self.valid.value = 1

    async def _run(self) -> None:
        clk, ready, rst = self.clk, self.ready, self.rst
        self._busy = False
        while True:
            if not self._busy:
                if not self.queue:
                    self.valid.value = 0
                    self._idle_ev.set()
                    self._kick.clear()
                    await self._kick.wait()
                    continue
                if self._idle_gen is not None and next(self._idle_gen):
                    self.valid.value = 0
                    await RisingEdge(clk)
                    continue
                self._drive(self.queue[0])
                self._busy = True
            await RisingEdge(clk)
            ok = ready.value
            if ok.is_resolvable and int(ok) == 1 and not _in_reset(rst):
                self.queue.popleft()
                self.count += 1
                self._busy = False
                continue
            # still holding: sleep until ready can be high at the next edge
            await ReadOnly()
            rv = ready.value
            if not (rv.is_resolvable and int(rv) == 1):
                await RisingEdge(ready)


class StreamSink:
    """valid/ready slave: drives ``<prefix>_ready``, captures transfers. See module docstring."""

    def __init__(self, dut, prefix: str, clk=None, rst=None, signals: Iterable[str] | None = None):
        self.dut = dut
        self.prefix = prefix
        self.clk = clk if clk is not None else dut.clk
        self.rst = _rst_handle(dut, rst)
        self.valid = getattr(dut, f"{prefix}_valid")
        self.ready = getattr(dut, f"{prefix}_ready")
        self.fields = _payload_signals(dut, prefix, signals)
        self.items: list[dict[str, int]] = []
        self.errors: list[str] = []
        self._bp_gen: Iterator[bool] | None = None
        self._got = Event()
        self.ready.value = 1
        self._task = cocotb.start_soon(self._run())

    def set_backpressure_generator(self, gen: Iterator[bool] | None) -> None:
        self._bp_gen = gen

    def clear(self) -> None:
        self.items.clear()
        self.errors.clear()

    def pop_all(self) -> list[dict[str, int]]:
        out, self.items = self.items, []
        return out

    def field(self, name: str = "data") -> list[int]:
        return [it[name] for it in self.items]

    def check(self) -> None:
        """Raise on any X/Z seen on a transferred payload."""
        if self.errors:
            raise AssertionError(f"{len(self.errors)} X/Z outputs; first: {self.errors[0]}")

    async def wait_for(self, n: int, timeout_cycles: int, period_ns: float = CLK_NS) -> None:
        """Wait until ``n`` items are captured; AssertionError after ``timeout_cycles`` clock
        periods of simulated time without reaching ``n``."""
        deadline = get_sim_time("ns") + timeout_cycles * period_ns
        while len(self.items) < n:
            self.check()
            left = deadline - get_sim_time("ns")
            if left <= 0:
                raise AssertionError(
                    f"{self.prefix}: timeout after {timeout_cycles} cycles with {len(self.items)} of {n} outputs"
                )
            self._got.clear()
            await First(self._got.wait(), Timer(min(left, 64 * period_ns), unit="ns"))
        self.check()

    async def _run(self) -> None:
        clk, valid, rst, fields = self.clk, self.valid, self.rst, self.fields
        rdy = 1
        self.ready.value = 1
        while True:
            await RisingEdge(clk)
            v = valid.value
            in_rst = _in_reset(rst)
            if rdy and not in_rst:
                if not v.is_resolvable:
                    self.errors.append(f"{self.prefix}_valid is {v} at {get_sim_time('ns')} ns")
                    self._got.set()
                elif int(v) == 1:
                    item = {}
                    for k, h in fields.items():
                        val = h.value
                        if not val.is_resolvable:
                            self.errors.append(f"X/Z on {self.prefix}_{k} = {val} (output #{len(self.items)})")
                            item[k] = -1
                        else:
                            item[k] = _uint(val)
                    self.items.append(item)
                    self._got.set()
            if self._bp_gen is not None:
                rdy = 0 if next(self._bp_gen) else 1
                self.ready.value = rdy
                continue
            if not rdy:
                rdy = 1
                self.ready.value = 1
                continue
            # ready stays high: sleep until valid can be high at the next edge
            await ReadOnly()
            vv = valid.value
            if vv.is_resolvable and int(vv) == 0 and not in_rst:
                await RisingEdge(valid)


async def run_stream(source: StreamSource, sink: StreamSink, items: Sequence[int | dict],
                     n_out: int | None = None, cycles_per_item: int = 20) -> tuple[list[dict[str, int]], float]:
    """Send ``items``, wait for ``n_out`` (default one per item) new outputs; return the new
    outputs and the wall-clock seconds. Times out after ``cycles_per_item * len(items) + 200``
    cycles."""
    n0 = len(sink.items)
    n_out = len(items) if n_out is None else n_out
    t0 = time.perf_counter()
    source.send(items)
    await sink.wait_for(n0 + n_out, timeout_cycles=cycles_per_item * len(items) + 200)
    dt = time.perf_counter() - t0
    return sink.items[n0:], dt
