"""valid/ready stream endpoints for cocotb benches, configurable by signal names and widths.

* :class:`StreamSource` drives ``valid`` and the payload signals, samples ``ready``.
* :class:`StreamSink` drives ``ready`` and captures every transfer.
* :class:`StreamMonitor` captures transfers without driving anything (beside a sink, or on an
  internal interface).

Signals are found as ``<prefix>_<field>`` (``s_data``, ``s_last``, ``m_valid``...) or named one by
one with ``names={"data": "in_tdata", "valid": "in_tvalid", "ready": "in_tready"}``. Payload values
are written masked to each signal's width (a negative code can be sent as is) and read back as
unsigned ints; :func:`to_signed` and :func:`unpack_lanes` turn them into codes.

Timing model: every sample is taken right after ``RisingEdge(clk)`` (the values the flops saw at
that edge) and new values are driven immediately after, for the next edge. A transfer is
``valid & ready`` at a rising edge with reset inactive. A source holds valid and its payload until
the transfer (AXI rule); idle cycles (``set_idle_generator``) only happen between beats. To keep
Python cost low, a source holding valid against a low ready, and a sink with ready high waiting for
valid, sleep until the other side's signal rises instead of waking every cycle.

For a DUT that speaks AXI-Stream (``tdata``/``tvalid``/``tready``/``tlast``/``tkeep``...), use
cocotbext-axi's ``AxiStreamSource``/``AxiStreamSink`` (see :mod:`refmodel.cocotb.axis`).

Handshake coverage (:meth:`StreamSource.coverage_counts`, :meth:`StreamSink.coverage_counts`):
``source_idle`` idle cycles the source inserted, ``dut_stall`` beats the DUT held with ready low,
``sink_backpressure`` edges where the sink held ready low against a valid output, ``back_to_back``
transfers on consecutive edges.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, First, ReadOnly, RisingEdge, Timer

__all__ = [
    "CLK_NS",
    "start_clock",
    "reset",
    "StreamSource",
    "StreamSink",
    "StreamMonitor",
    "random_pause",
    "cycle_pause",
    "PAUSE_PATTERNS",
    "STALL_CASES",
    "pause_generator",
    "check_no_xz",
    "to_signed",
    "hexw",
    "Stopwatch",
    "run_stream",
    "dut_parameters",
    "check_parameters",
]

#: default clock period of :func:`start_clock` (ns)
CLK_NS = 10
#: payload fields looked up by default (those present on the DUT are used)
PAYLOAD = ("data", "last", "user", "mask", "keep", "id", "dest")


def start_clock(dut: Any, period_ns: float = CLK_NS, clk: str = "clk") -> Clock:
    """Start a C-side (``impl="gpi"``) clock on ``dut.<clk>``: 1.5-3x faster than a Python one."""
    c = Clock(getattr(dut, clk), period_ns, unit="ns", impl="gpi")
    c.start()
    return c


async def reset(dut: Any, cycles: int = 2, rst: str = "rst", clk: str = "clk", settle: int = 2,
                active_high: bool = True) -> None:
    """Synchronous reset: ``rst`` active for ``cycles`` rising edges, then inactive and ``settle``
    more edges."""
    r, c = getattr(dut, rst), getattr(dut, clk)
    r.value = 1 if active_high else 0
    await ClockCycles(c, cycles)
    r.value = 0 if active_high else 1
    if settle:
        await ClockCycles(c, settle)


# ---- pause generators ----------------------------------------------------------------------


def random_pause(prob: float, seed: int = 1) -> Iterator[bool]:
    """Infinite generator: True (pause this cycle) with probability ``prob``, seeded."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < prob


def cycle_pause(pattern: Sequence[int] = (1, 1, 1, 0)) -> Iterator[bool]:
    """Infinite repetition of ``pattern`` (1 = pause); cocotbext-axi's default is 3 of 4."""
    return itertools.cycle(bool(p) for p in pattern)


#: name -> factory of a fresh generator (None: never pause), for @cocotb.parametrize
PAUSE_PATTERNS: dict[str, Callable[[], Iterator[bool]] | None] = {
    "none": None,
    "3of4": lambda: cycle_pause((1, 1, 1, 0)),
    "rand30": lambda: random_pause(0.3, seed=7),
}

#: (idle, backpressure) pattern pairs every data test runs: no stalls, each side alone, both
STALL_CASES: list[tuple[str, str]] = [
    ("none", "none"),
    ("rand30", "none"),
    ("none", "rand30"),
    ("3of4", "3of4"),
    ("rand30", "rand30"),
]


def pause_generator(pattern: str | Iterator[bool] | None) -> Iterator[bool] | None:
    """A fresh generator from a :data:`PAUSE_PATTERNS` name (or a generator, passed through)."""
    if pattern is None or not isinstance(pattern, str):
        return pattern
    if pattern not in PAUSE_PATTERNS:
        raise ValueError(f"unknown pause pattern {pattern!r}: one of {', '.join(PAUSE_PATTERNS)}")
    make = PAUSE_PATTERNS[pattern]
    return make() if make else None


# ---- value helpers -------------------------------------------------------------------------


def _uint(val: Any) -> int:
    """Unsigned int of a resolvable LogicArray (vector) or Logic (1-bit) value."""
    return int(val.to_unsigned()) if hasattr(val, "to_unsigned") else int(val)


def check_no_xz(value: Any, name: str) -> int:
    """Unsigned int of a cocotb ``LogicArray``/``Logic`` value; AssertionError on any X/Z/U/W."""
    if not value.is_resolvable:
        raise AssertionError(f"X/Z on {name}: {value}")
    return _uint(value)


def to_signed(u: int, width: int) -> int:
    """Two's-complement reading of the unsigned ``width``-bit integer ``u``."""
    u &= (1 << width) - 1
    return u - (1 << width) if u >> (width - 1) else u


def hexw(u: int, width: int) -> str:
    """``0x`` + exactly ceil(width/4) hex digits of ``u`` masked to ``width`` bits."""
    return f"0x{u & ((1 << width) - 1):0{(width + 3) // 4}x}"


def dut_parameters(dut: Any, names: Iterable[str]) -> dict[str, int]:
    """Integer values of the DUT's parameters ``names`` (read through the simulator)."""
    return {n: int(getattr(dut, n).value) for n in names}


def check_parameters(dut: Any, expected: Mapping[str, int], what: str = "expected") -> None:
    """AssertionError naming every DUT parameter that differs from ``expected``."""
    got = dut_parameters(dut, expected)
    bad = {k: (got[k], int(v)) for k, v in expected.items() if got[k] != int(v)}
    if bad:
        raise AssertionError(f"DUT parameters differ from the {what}: "
                             + ", ".join(f"{k}={g} (expected {e})" for k, (g, e) in bad.items()))


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds`` (wall clock)."""

    def __enter__(self) -> Stopwatch:
        self.t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


# ---- endpoints -----------------------------------------------------------------------------


def _handle(dut: Any, name: str) -> Any:
    if not hasattr(dut, name):
        raise AttributeError(f"{dut._name} has no signal {name}")
    return getattr(dut, name)


def _resolve(dut: Any, prefix: str, role: str, names: Mapping[str, str] | None) -> Any:
    full = (names or {}).get(role) or (f"{prefix}_{role}" if prefix else role)
    return _handle(dut, full)


def _payload(dut: Any, prefix: str, signals: Iterable[str] | None, names: Mapping[str, str] | None) -> dict[str, Any]:
    names = dict(names or {})
    if signals is None:
        fields = [f for f in names if f not in ("valid", "ready")]
        fields += [f for f in PAYLOAD if f not in fields and hasattr(dut, f"{prefix}_{f}" if prefix else f)]
    else:
        fields = list(signals)
    return {f: _resolve(dut, prefix, f, names) for f in fields}


def _rst_handle(dut: Any, rst: Any) -> Any:
    if rst is None:
        return getattr(dut, "rst", None) if hasattr(dut, "rst") else None
    return getattr(dut, rst) if isinstance(rst, str) else rst


def _clk_handle(dut: Any, clk: Any) -> Any:
    return getattr(dut, clk) if isinstance(clk, str) else clk


class _Endpoint:
    """Common set-up: handles, widths, reset level."""

    def __init__(self, dut: Any, prefix: str, *, clk: Any = "clk", rst: Any = None,
                 signals: Iterable[str] | None = None, names: Mapping[str, str] | None = None,
                 reset_active_high: bool = True):
        self.dut = dut
        self.prefix = prefix
        self.clk = _clk_handle(dut, clk)
        self.rst = _rst_handle(dut, rst)
        self.reset_active_high = reset_active_high
        self.valid = _resolve(dut, prefix, "valid", names)
        self.fields = _payload(dut, prefix, signals, names)
        #: signal width per payload field
        self.widths = {k: len(h) for k, h in self.fields.items()}

    def _in_reset(self) -> bool:
        """True when reset is active or unknown (before the first reset)."""
        if self.rst is None:
            return False
        v = self.rst.value
        if not v.is_resolvable:
            return True
        return int(v) == (1 if self.reset_active_high else 0)


class StreamSource(_Endpoint):
    """valid/ready master. ``send(items)`` queues items (an ``int`` is the ``data`` field, a
    ``dict`` names its fields); ``await wait_idle()``; ``set_idle_generator(gen)`` (truthy = keep
    valid low this cycle, only between beats); ``clear()`` drops everything queued;
    ``await send_full_rate(beats, fields)`` drives a long list one beat per clock with no queue;
    ``count`` transfers so far."""

    def __init__(self, dut: Any, prefix: str = "s", *, clk: Any = "clk", rst: Any = None,
                 signals: Iterable[str] | None = None, names: Mapping[str, str] | None = None,
                 reset_active_high: bool = True):
        super().__init__(dut, prefix, clk=clk, rst=rst, signals=signals, names=names,
                         reset_active_high=reset_active_high)
        self.ready = _resolve(dut, prefix, "ready", names)
        self._masks = {k: (1 << w) - 1 for k, w in self.widths.items()}
        #: the field a plain ``int`` item drives: ``data``, or the only payload field
        self.default_field = "data" if "data" in self.fields else (next(iter(self.fields)) if len(self.fields) == 1 else None)
        self.queue: deque[Any] = deque()
        self.count = 0
        self.idle_cycles = 0
        self.stalled_beats = 0
        self.back_to_back = 0
        self._idle_gen: Iterator[bool] | None = None
        self._kick = Event()
        self._idle_ev = Event()
        self._busy = False
        self.valid.value = 0
        for h in self.fields.values():
            h.value = 0
        self._task = cocotb.start_soon(self._run())

    def set_idle_generator(self, gen: Iterator[bool] | str | None) -> None:
        self._idle_gen = pause_generator(gen)

    def send(self, items: Iterable[int | dict[str, int]]) -> None:
        self.queue.extend(items)
        self._kick.set()

    def send_nowait(self, item: int | dict[str, int]) -> None:
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

    def coverage_counts(self) -> dict[str, int]:
        return {"source_idle": self.idle_cycles, "dut_stall": self.stalled_beats, "back_to_back": self.back_to_back}

    async def send_full_rate(self, beats: Iterable[Sequence[int]], fields: Sequence[str]) -> int:
        """Drive ``beats`` (tuples of field values in the order of ``fields``) one per clock with
        valid high, holding a beat while ready is low. Much leaner than ``send`` for long golden
        streams (no queue, only changed fields written). Returns the clock edges it took; valid
        is low again when it returns. The queue must be empty."""
        if not self.idle():
            raise RuntimeError(f"{self.prefix}: send_full_rate while items are queued")
        handles = [self.fields[f] for f in fields]
        masks = [self._masks[f] for f in fields]
        ready = self.ready
        edge = RisingEdge(self.clk)
        prev: list[int | None] = [None] * len(handles)
        cycles = 0
        n = 0
        self.valid.value = 1
        for b in beats:
            for j, h in enumerate(handles):
                v = int(b[j]) & masks[j]
                if v != prev[j]:
                    h.value = v
                    prev[j] = v
            waited = 0
            while True:
                await edge
                cycles += 1
                r = ready.value
                if r.is_resolvable and int(r) == 1 and not self._in_reset():
                    break
                waited += 1
            n += 1
            self.stalled_beats += waited > 0
            self.back_to_back += waited == 0 and n > 1
        self.valid.value = 0
        self.count += n
        return cycles

    def _drive(self, item: int | dict[str, int]) -> None:
        if isinstance(item, dict):
            for k, v in item.items():
                self.fields[k].value = int(v) & self._masks[k]
        else:
            f = self.default_field
            if f is None:
                raise TypeError(f"{self.prefix}: an int item needs a 'data' field or a single payload field; "
                                f"send dicts naming the fields {list(self.fields)}")
            self.fields[f].value = int(item) & self._masks[f]
        self.valid.value = 1

    async def _run(self) -> None:
        clk, ready = self.clk, self.ready
        self._busy = False
        chained = False  # the previous beat transferred at the previous edge
        while True:
            if not self._busy:
                if not self.queue:
                    self.valid.value = 0
                    self._idle_ev.set()
                    self._kick.clear()
                    chained = False
                    await self._kick.wait()
                    continue
                if self._idle_gen is not None and next(self._idle_gen):
                    self.valid.value = 0
                    self.idle_cycles += 1
                    chained = False
                    await RisingEdge(clk)
                    continue
                self._drive(self.queue[0])
                self._busy = True
                stalled = False
            await RisingEdge(clk)
            ok = ready.value
            if ok.is_resolvable and int(ok) == 1 and not self._in_reset():
                self.queue.popleft()
                self.count += 1
                self._busy = False
                self.back_to_back += chained and not stalled
                self.stalled_beats += stalled
                chained = True
                continue
            stalled = True
            chained = False
            # still holding: sleep until ready can be high at the next edge
            await ReadOnly()
            rv = ready.value
            if not (rv.is_resolvable and int(rv) == 1):
                await RisingEdge(ready)


class StreamMonitor(_Endpoint):
    """Passive: captures every transfer (``valid & ready`` at a rising edge, reset inactive) into
    ``items`` (dicts of unsigned ints, one key per payload field). X/Z on a transferred payload is
    recorded in ``errors`` and raised by ``check()``/``wait_for()``."""

    def __init__(self, dut: Any, prefix: str = "m", *, clk: Any = "clk", rst: Any = None,
                 signals: Iterable[str] | None = None, names: Mapping[str, str] | None = None,
                 reset_active_high: bool = True, start: bool = True):
        super().__init__(dut, prefix, clk=clk, rst=rst, signals=signals, names=names,
                         reset_active_high=reset_active_high)
        self.ready = _resolve(dut, prefix, "ready", names)
        self.items: list[dict[str, int]] = []
        self.errors: list[str] = []
        self.back_to_back = 0
        self._got = Event()
        if start:
            self._task = cocotb.start_soon(self._run())

    def clear(self) -> None:
        self.items.clear()
        self.errors.clear()

    def pop_all(self) -> list[dict[str, int]]:
        out, self.items = self.items, []
        return out

    def field(self, name: str = "data") -> list[int]:
        return [it[name] for it in self.items]

    def codes(self, items: Sequence[dict[str, int]] | None = None, field: str | None = None, *, signed: bool = True,
              lanes: int = 1) -> np.ndarray:
        """Codes of ``field`` (default: ``data`` or the only field) in ``items`` (default: all
        captured), sign-extended from the lane width (signal width / ``lanes``) when ``signed``;
        shape ``(len(items),)`` or ``(len(items), lanes)``."""
        f = field or ("data" if "data" in self.fields else next(iter(self.fields)))
        width = self.widths[f] // lanes
        words = [it[f] for it in (self.items if items is None else items)]
        mask = (1 << width) - 1
        out = np.array([[(w >> (i * width)) & mask for i in range(lanes)] for w in words], dtype=np.int64)
        if signed:
            sign = np.int64(1) << np.int64(width - 1)
            out = (out ^ sign) - sign
        return out.reshape(-1) if lanes == 1 else out

    def check(self) -> None:
        """Raise on any X/Z seen on a transferred payload or on valid."""
        if self.errors:
            raise AssertionError(f"{len(self.errors)} X/Z outputs; first: {self.errors[0]}")

    def coverage_counts(self) -> dict[str, int]:
        return {"back_to_back": self.back_to_back}

    async def wait_for(self, n: int, timeout_cycles: int, period_ns: float = CLK_NS) -> None:
        """Wait until ``n`` items are captured; AssertionError after ``timeout_cycles`` clock
        periods of simulated time without reaching ``n``."""
        deadline = get_sim_time("ns") + timeout_cycles * period_ns
        while len(self.items) < n:
            self.check()
            left = deadline - get_sim_time("ns")
            if left <= 0:
                raise AssertionError(
                    f"{self.prefix}: timeout after {timeout_cycles} cycles with {len(self.items)} of {n} outputs")
            self._got.clear()
            await First(self._got.wait(), Timer(min(left, 64 * period_ns), unit="ns"))
        self.check()

    def _capture(self, v: Any) -> bool:
        """Record the transfer of this edge (``v`` = sampled valid); True if one happened."""
        if not v.is_resolvable:
            self.errors.append(f"{self.valid._name} is {v} at {get_sim_time('ns')} ns")
            self._got.set()
            return False
        if int(v) != 1:
            return False
        item = {}
        for k, h in self.fields.items():
            val = h.value
            if not val.is_resolvable:
                self.errors.append(f"X/Z on {h._name} = {val} (output #{len(self.items)})")
                item[k] = -1
            else:
                item[k] = _uint(val)
        self.items.append(item)
        self._got.set()
        return True

    async def _run(self) -> None:
        clk, ready = self.clk, self.ready
        chained = False
        while True:
            await RisingEdge(clk)
            r = ready.value
            if r.is_resolvable and int(r) == 1 and not self._in_reset():
                got = self._capture(self.valid.value)
                self.back_to_back += got and chained
                chained = got
            else:
                chained = False


class StreamSink(StreamMonitor):
    """valid/ready slave: drives ``ready`` (high unless a backpressure generator says otherwise)
    and captures every transfer like :class:`StreamMonitor`. ``set_backpressure_generator(gen)``
    (truthy = ready low this cycle)."""

    def __init__(self, dut: Any, prefix: str = "m", *, clk: Any = "clk", rst: Any = None,
                 signals: Iterable[str] | None = None, names: Mapping[str, str] | None = None,
                 reset_active_high: bool = True):
        super().__init__(dut, prefix, clk=clk, rst=rst, signals=signals, names=names,
                         reset_active_high=reset_active_high, start=False)
        self.backpressure_cycles = 0
        self._bp_gen: Iterator[bool] | None = None
        self.ready.value = 1
        self._task = cocotb.start_soon(self._run())

    def set_backpressure_generator(self, gen: Iterator[bool] | str | None) -> None:
        self._bp_gen = pause_generator(gen)

    def coverage_counts(self) -> dict[str, int]:
        return {"sink_backpressure": self.backpressure_cycles, "back_to_back": self.back_to_back}

    async def _run(self) -> None:
        clk, valid = self.clk, self.valid
        rdy = 1
        chained = False
        self.ready.value = 1
        while True:
            await RisingEdge(clk)
            v = valid.value
            in_rst = self._in_reset()
            if not in_rst:
                if rdy:
                    got = self._capture(v)
                    self.back_to_back += got and chained
                    chained = got
                else:
                    chained = False
                    if v.is_resolvable and int(v) == 1:
                        self.backpressure_cycles += 1
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
                chained = False
                await RisingEdge(valid)


async def run_stream(source: StreamSource, sink: StreamMonitor, items: Sequence[int | dict[str, int]],
                     n_out: int | None = None, cycles_per_item: int = 20) -> tuple[list[dict[str, int]], float]:
    """Send ``items``, wait for ``n_out`` (default one per item) new outputs; return the new
    outputs and the wall-clock seconds. Times out after ``cycles_per_item * len(items) + 200``
    cycles."""
    n0 = len(sink.items)
    n_out = len(items) if n_out is None else n_out
    t0 = time.perf_counter()
    source.send(items)
    await sink.wait_for(n0 + n_out, timeout_cycles=cycles_per_item * len(items) + 200)
    return sink.items[n0:], time.perf_counter() - t0
