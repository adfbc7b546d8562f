"""Functional coverage of a bench: which special cases its checked outputs and its handshakes hit.

A :class:`Coverage` is a set of named bins with hit counts. Each bin is *declared* either
reachable (a bench that runs long enough must hit it: :meth:`Coverage.missing` lists the ones it
did not) or unreachable with the reason (the summary prints the reason, e.g. "the output format
cannot saturate: 16 bits hold every result"). Bins are hit by:

* :meth:`add_codes` -- classes of output codes in their format (:func:`code_classes`):
  fixed point ``zero``, ``max_code``, ``min_code``; minifloat ``zero``, ``subnormal``,
  ``max_finite``, ``inf``, ``nan`` (each declared only where the format has it);
* :meth:`add_mask` -- a unit's own events from its model: ``saturation`` (the exact result was
  clamped), ``tie`` (the exact result sat halfway between two codes), ...;
* :meth:`add_stream` -- handshake patterns seen by a :class:`~refmodel.cocotb.stream.StreamSource`
  or :class:`~refmodel.cocotb.stream.StreamSink`: ``source_idle`` (the bench held valid low
  between beats), ``dut_stall`` (the DUT held ready low against a valid beat), ``sink_backpressure``
  (the bench held ready low against a valid output), ``back_to_back`` (transfers on consecutive
  edges).

This module does not import cocotb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.minifloat import FloatFormat

__all__ = ["Coverage", "code_classes", "classify_codes", "STREAM_BINS"]

#: handshake bins a stream endpoint can hit (see :meth:`Coverage.add_stream`)
STREAM_BINS = ("source_idle", "dut_stall", "sink_backpressure", "back_to_back")


def code_classes(fmt: Any) -> dict[str, str | None]:
    """Output-code classes of a format: name -> None (the format has it) or the reason it cannot
    occur."""
    if isinstance(fmt, FixedFormat):
        out: dict[str, str | None] = {"zero": None, "max_code": None, "min_code": None}
        if not fmt.signed:
            out["min_code"] = f"{fmt} is unsigned: its min code is zero"
        return out
    if isinstance(fmt, FloatFormat):
        return {
            "zero": None if fmt.has_zero else f"{fmt} has no zero",
            "subnormal": None if fmt.subnormals and fmt.man > 0 else f"{fmt} has no subnormals",
            "max_finite": None,
            "inf": None if fmt.has_inf else f"{fmt} has no inf",
            "nan": None if fmt.has_nan else f"{fmt} has no NaN",
        }
    return {}


def classify_codes(codes: np.ndarray, fmt: Any) -> dict[str, int]:
    """Count of each class of :func:`code_classes` in ``codes`` (int codes of ``fmt``)."""
    c = np.asarray(codes, dtype=np.int64)
    if isinstance(fmt, FixedFormat):
        return {"zero": int(np.count_nonzero(c == 0)), "max_code": int(np.count_nonzero(c == fmt.max_code)),
                "min_code": int(np.count_nonzero(c == fmt.min_code)) if fmt.signed else 0}
    if isinstance(fmt, FloatFormat):
        from refmodel.numerics.minifloat import decode

        v = decode(c & ((1 << fmt.bits) - 1), fmt)
        a = np.abs(v)
        with np.errstate(invalid="ignore"):
            return {
                "zero": int(np.count_nonzero(v == 0)),
                "subnormal": int(np.count_nonzero((a > 0) & (a < fmt.min_normal))),
                "max_finite": int(np.count_nonzero(a == fmt.max)),
                "inf": int(np.count_nonzero(np.isinf(v))),
                "nan": int(np.count_nonzero(np.isnan(v))),
            }
    return {}


@dataclass
class Coverage:
    """Named bins with hit counts and reachability (see the module docstring)."""

    name: str = "coverage"
    hits: dict[str, int] = field(default_factory=dict)
    #: bin -> None (reachable: must be hit) or the reason it cannot be hit in this configuration
    reachable: dict[str, str | None] = field(default_factory=dict)

    def declare(self, bin_name: str, reason_unreachable: str | None = None) -> None:
        """Declare a bin: reachable (the default) or unreachable for the given reason. A reason
        wins over any reachable declaration, earlier or later (a bench that knows its
        configuration cannot produce a class says so once)."""
        if reason_unreachable is not None:
            self.reachable[bin_name] = reason_unreachable
        else:
            self.reachable.setdefault(bin_name, None)
        self.hits.setdefault(bin_name, 0)

    def hit(self, bin_name: str, count: int = 1) -> None:
        self.hits[bin_name] = self.hits.get(bin_name, 0) + int(count)
        self.reachable.setdefault(bin_name, None)

    def add_codes(self, codes: np.ndarray, fmt: Any, *, where: np.ndarray | None = None, prefix: str = "",
                  golden: np.ndarray | None = None, golden_label: str = "the golden set") -> None:
        """Declare the format's code classes (as ``<prefix><class>``) and count them in ``codes``
        (``where``: the elements that were computed). With ``golden`` (the golden tensor, same
        shape, restricted to ``where`` too), a class the golden codes never contain is declared
        unreachable ("not in <label>"): the bench cannot hit it from that set, and the summary
        says so."""
        c = np.asarray(codes)
        if where is not None:
            w = np.broadcast_to(np.asarray(where, dtype=bool), c.shape)
            c = c[w]
            golden = None if golden is None else np.asarray(golden)[w]
        in_golden = classify_codes(golden, fmt) if golden is not None else None
        for k, why in code_classes(fmt).items():
            if why is None and in_golden is not None and not in_golden.get(k):
                why = f"not in {golden_label}"
            self.declare(prefix + k, why)
        for k, n in classify_codes(c, fmt).items():
            if n:
                self.hit(prefix + k, n)

    def add_mask(self, bin_name: str, mask: np.ndarray | bool, *, reason_unreachable: str | None = None) -> None:
        """Declare ``bin_name`` (reachable unless a reason is given) and count the true entries."""
        self.declare(bin_name, reason_unreachable)
        n = int(np.count_nonzero(mask))
        if n:
            self.hit(bin_name, n)

    def add_stream(self, endpoint: Any) -> None:
        """Hits of the handshake bins from a stream endpoint's counters (``coverage_counts()``).
        Only bins with hits are added: a bench that must see a pattern declares its bin."""
        for k, n in endpoint.coverage_counts().items():
            if n:
                self.hit(k, n)

    def merge(self, other: Coverage) -> None:
        for k, why in other.reachable.items():
            self.declare(k, why)
        for k, n in other.hits.items():
            if n:
                self.hit(k, n)

    def missing(self) -> list[str]:
        """Reachable bins with no hit."""
        return [k for k, why in self.reachable.items() if why is None and self.hits.get(k, 0) == 0]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "hits": dict(self.hits), "reachable": dict(self.reachable)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Coverage:
        return cls(d.get("name", "coverage"), dict(d.get("hits", {})), dict(d.get("reachable", {})))

    def summary(self) -> str:
        """``COVERAGE <name>: zero 12, max_code 3, min_code MISSED; cannot occur: inf (...)``."""
        hit = [f"{k} {self.hits.get(k, 0)}" for k, why in self.reachable.items()
               if why is None and self.hits.get(k, 0)]
        missed = self.missing()
        never = [f"{k} ({why})" for k, why in self.reachable.items() if why is not None]
        parts = [", ".join(hit) or "nothing hit"]
        if missed:
            parts.append("MISSED: " + ", ".join(missed))
        if never:
            parts.append("cannot occur here: " + "; ".join(never))
        return f"COVERAGE {self.name}: " + "; ".join(parts)
