"""Scoreboard: check a DUT's output codes bit-exactly or within a tolerance tier, name the first
failing element, and keep a summary (elements checked, max error and error/bound, warnings).

Two modes, one result type (:class:`CheckResult`):

* :meth:`Scoreboard.exact` -- ``got == expected`` code for code (bound 0). The first mismatch is
  reported with its index in the array's shape (multi-dimensional), expected and got codes (hex
  and decoded value when a format is given), the error in value and LSB, and the caller's
  description of the inputs that produced it.
* :meth:`Scoreboard.tolerance` -- ``|decode(got) - reference| <= bound`` elementwise, the bound
  and reference of a :class:`~refmodel.cocotb.golden.Tolerance` tier. An infinite bound is "no
  guarantee": never a failure, counted as ``unbounded``. A second tier given as ``warning=``
  (the statistical tier) counts elements above *its* bound as warnings, reported apart from
  failures and never failing the check.

:meth:`Scoreboard.check_stage` does both for a golden-set stage: bit-exact against the golden
codes, then the ``local`` tier (or, in a schema 1 set that has none, ``end_to_end``, said in the
summary), with the ``warning`` tier's exceedances as warnings.

A failed check raises :class:`ScoreboardError` (an ``AssertionError``: cocotb marks the test
failed with its message). Every check also appends one JSON line to the report file named by
``RM_REPORT`` (set by :func:`refmodel.cocotb.run_bench`), which the pytest side turns into the
summary of the run and compares across simulators (``digest`` is a hash of the checked codes).

The scoreboard's :attr:`Scoreboard.coverage` counts output-code classes of every check
(:mod:`refmodel.cocotb.coverage`). This module does not import cocotb.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .coverage import Coverage
from .golden import GoldenSet, Tolerance, decode_codes

__all__ = ["Scoreboard", "ScoreboardError", "CheckResult", "Element", "REPORT_ENV", "read_report"]

#: environment variable naming the JSON-lines report file (set by run_bench)
REPORT_ENV = "RM_REPORT"

Describe = Callable[[tuple[int, ...]], str]


def format_of(spec: str | None) -> Any:
    """The format object a check result names (``None`` stays ``None``; ``"float64"``, the bit
    patterns of a ``.value`` entry, stays the string :meth:`Element.text` decodes)."""
    if spec is None:
        return None
    from refmodel.numerics.formats import parse_format

    return "float64" if spec == "float64" else parse_format(spec)


class ScoreboardError(AssertionError):
    """A failed check; the message names the first failing element."""


@dataclass
class Element:
    """One reported element: its index, codes, decoded values, reference, error and bound."""

    index: tuple[int, ...]
    got_code: int
    expected_code: int | None
    got_value: float | None
    expected_value: float | None
    error: float
    bound: float
    reference: float | None = None
    inputs: str | None = None

    def text(self, fmt: Any = None) -> str:
        exp = "" if self.expected_code is None else f"expected {_show(self.expected_code, self.expected_value, fmt)}, "
        got = f"got {_show(self.got_code, self.got_value, fmt)}"
        ref = "" if self.reference is None else f", reference {self.reference:+.9g}"
        lsb = _lsb(fmt)
        err = f"|err| {self.error:.6g}" + (f" ({self.error / lsb:.4g} LSB)" if lsb and math.isfinite(self.error) else "")
        inp = f"; inputs: {self.inputs}" if self.inputs else ""
        return f"{list(self.index)}: {exp}{got}{ref}, {err} > bound {self.bound:.6g}{inp}"


@dataclass
class CheckResult:
    """Outcome of one check (see the module docstring for the fields' meaning)."""

    scoreboard: str
    what: str
    mode: str  # "exact" | "tolerance"
    tier: str | None
    checked: int
    failed: int
    max_err: float
    max_ratio: float
    warnings: int = 0
    unbounded: int = 0
    digest: str = ""
    first: Element | None = None
    first_warning: Element | None = None
    fmt: str | None = None
    note: str | None = None
    #: tolerance mode with ``expected`` codes: checked elements whose code differs from them (a DUT
    #: that is not bit-exact with the golden set but within its tolerance); None without ``expected``
    differ: int | None = None

    @property
    def passed(self) -> bool:
        return self.failed == 0

    def line(self) -> str:
        """One summary line."""
        head = f"{self.what}: {self.checked} elements:"
        if self.mode == "exact":
            body = "bit-exact" if self.passed else f"{self.failed} differ"
        else:
            body = (f"within {self.tier} tolerance" if self.passed else f"{self.failed} outside the {self.tier} tolerance")
            body += f" (max |err| {self.max_err:.3g}, max err/bound {self.max_ratio:.3g}"
            body += f", {self.unbounded} without a finite bound" if self.unbounded else ""
            body += f"; {self.differ} codes differ from the expected ones)" if self.differ else ")"
            if self.warnings:
                body += f"; WARNING {self.warnings} above the warning tier"
        if self.note:
            body += f"; {self.note}"
        return f"{head} {body}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return _finite_json(d)


def _finite_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ("nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf"))
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def _lsb(fmt: Any) -> float | None:
    from refmodel.numerics.fixed import FixedFormat

    return fmt.lsb if isinstance(fmt, FixedFormat) else None


def _width(fmt: Any) -> int | None:
    from refmodel.numerics.fixed import FixedFormat
    from refmodel.numerics.minifloat import FloatFormat

    if isinstance(fmt, FixedFormat):
        return fmt.width
    if isinstance(fmt, FloatFormat):
        return fmt.bits
    return None


def _show(code: int, value: float | None, fmt: Any) -> str:
    w = _width(fmt)
    c = f"0x{code & ((1 << w) - 1):0{(w + 3) // 4}x}" if w else str(code)
    return c if value is None else f"{c} ({value:+.9g})"


def _ints(x: Any) -> np.ndarray:
    """int64 array of integer codes, or an object array of Python ints when a code needs more than
    64 bits (wide accumulators)."""
    try:
        return np.asarray(x, dtype=np.int64)
    except OverflowError:
        return np.asarray([int(v) for v in np.asarray(x, dtype=object).ravel()], dtype=object).reshape(np.shape(x))


def _digest(codes: np.ndarray) -> str:
    a = np.asarray(codes)
    data = (np.ascontiguousarray(a, dtype=np.int64).tobytes() if a.dtype != object
            else ",".join(str(int(v)) for v in a.ravel()).encode())
    return hashlib.sha256(repr(a.shape).encode() + data).hexdigest()[:16]


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


_INSTANCES = itertools.count()


class Scoreboard:
    """Checks and their summary (see the module docstring).

    ``name`` labels the report lines; ``report`` is the JSON-lines file (default: ``RM_REPORT``
    from the environment, or none); ``log`` a logger (e.g. ``dut._log``) for the summary lines;
    ``fail_fast`` False records failures without raising (``assert_all()`` raises later);
    ``echo`` False keeps the summary lines off stdout (they still go to ``log`` and ``notes``)."""

    def __init__(self, name: str = "scoreboard", *, log: Any = None, report: str | Path | None = None,
                 fail_fast: bool = True, echo: bool = True):
        self.name = name
        self.log = log
        self.echo = echo
        env = os.environ.get(REPORT_ENV)
        self.report_path = Path(report) if report is not None else (Path(env) if env else None)
        self.fail_fast = fail_fast
        self.results: list[CheckResult] = []
        self.coverage = Coverage(name)
        self.notes: list[str] = []
        #: tells this scoreboard's coverage snapshots apart from those of others with the same name
        self.instance = next(_INSTANCES)

    # ---- the two modes ---------------------------------------------------------------------
    def exact(self, what: str, got: Any, expected: Any, *, fmt: Any = None, where: Any = None,
              describe: Describe | None = None, cover: bool = True) -> CheckResult:
        """``got == expected`` elementwise (int codes, same shape; ``where``: the elements to
        compare). ``fmt`` (format object) decodes codes in the report and feeds coverage."""
        g, e = _ints(got), _ints(expected)
        if g.shape != e.shape:
            if g.size != e.size:
                return self._record(CheckResult(
                    self.name, what, "exact", None, int(e.size), max(int(e.size), int(g.size)), math.inf, math.inf,
                    digest=_digest(g), fmt=str(fmt) if fmt is not None else None,
                    note=f"got {g.size} elements, expected {e.size}"))
            g = g.reshape(e.shape)
        mask = np.ones(e.shape, dtype=bool) if where is None else np.broadcast_to(np.asarray(where, dtype=bool), e.shape)
        bad = np.asarray(g != e, dtype=bool) & mask
        n_bad = int(np.count_nonzero(bad))
        first = None
        max_err = 0.0
        if n_bad:
            flat = int(np.flatnonzero(bad.ravel())[0])
            ix = _index(flat, e.shape)
            gv = ev = None
            err = float(abs(int(g[ix]) - int(e[ix])))
            if fmt is not None:
                gv, ev = (float(decode_codes(np.array([c]), fmt)[0]) for c in (int(g[ix]), int(e[ix])))
                err = abs(gv - ev) if not (math.isnan(gv) or math.isnan(ev)) else math.nan
            first = Element(ix, int(g[ix]), int(e[ix]), gv, ev, err, 0.0, inputs=describe(ix) if describe else None)
            max_err = err
        if cover and fmt is not None:
            self.coverage.add_codes(g, fmt, where=mask)
        return self._record(CheckResult(self.name, what, "exact", None, int(np.count_nonzero(mask)), n_bad, max_err,
                                        math.inf if n_bad else 0.0, digest=_digest(np.where(mask, g, 0)), first=first,
                                        fmt=str(fmt) if fmt is not None else None))

    def tolerance(self, what: str, got: Any, tol: Tolerance, *, fmt: Any, expected: Any = None,
                  warning: Tolerance | None = None, where: Any = None, describe: Describe | None = None,
                  cover: bool = True, note: str | None = None) -> CheckResult:
        """``|decode(got, fmt) - tol.reference| <= tol.abs`` elementwise; ``expected``: the golden
        codes, shown in the report; ``warning``: a tier whose exceedances are warnings."""
        ref = np.asarray(tol.reference, dtype=np.float64)
        bound = np.broadcast_to(np.asarray(tol.abs, dtype=np.float64), ref.shape)
        g = np.asarray(got, dtype=np.int64).reshape(ref.shape)
        mask = np.ones(ref.shape, dtype=bool) if where is None else np.broadcast_to(np.asarray(where, dtype=bool), ref.shape)
        gv = decode_codes(g, fmt)
        with np.errstate(invalid="ignore"):
            err = np.abs(gv - ref)
            same_nan = np.isnan(gv) & np.isnan(ref)
            err = np.where(same_nan, 0.0, err)
            fails = mask & ~(err <= bound) & np.isfinite(bound)
            bounded = mask & np.isfinite(bound)
        n_bad = int(np.count_nonzero(fails))
        e_codes = None if expected is None else np.asarray(expected, dtype=np.int64).reshape(ref.shape)
        first = self._element(fails, g, gv, ref, err, bound, e_codes, fmt, describe) if n_bad else None
        n_warn = 0
        first_warning = None
        if warning is not None:
            wref = np.asarray(warning.reference, dtype=np.float64).reshape(ref.shape)
            wb = np.broadcast_to(np.asarray(warning.abs, dtype=np.float64), ref.shape)
            with np.errstate(invalid="ignore"):
                werr = np.where(np.isnan(gv) & np.isnan(wref), 0.0, np.abs(gv - wref))
                warn = mask & ~fails & ~(werr <= wb) & np.isfinite(wb)
            n_warn = int(np.count_nonzero(warn))
            if n_warn:
                first_warning = self._element(warn, g, gv, wref, werr, wb, e_codes, fmt, describe)
        fe = err[bounded & np.isfinite(err)]
        max_err = float(fe.max()) if fe.size else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(bound > 0, err / bound, np.where(err > 0, np.inf, 0.0))[bounded]
        max_ratio = float(np.nanmax(ratio)) if ratio.size else 0.0
        if cover:
            self.coverage.add_codes(g, fmt, where=mask)
        differ = None if e_codes is None else int(np.count_nonzero(mask & (g != e_codes)))
        if "no_guarantee" in tol.meta and not note:
            note = f"no guarantee for some elements: {tol.meta['no_guarantee']}"
        return self._record(CheckResult(
            self.name, what, "tolerance", tol.tier, int(np.count_nonzero(mask)), n_bad, max_err, max_ratio,
            warnings=n_warn, unbounded=int(np.count_nonzero(mask & ~np.isfinite(bound))),
            digest=_digest(np.where(mask, g, 0)), first=first, first_warning=first_warning, fmt=str(fmt), note=note,
            differ=differ))

    @staticmethod
    def _element(bad: np.ndarray, g: np.ndarray, gv: np.ndarray, ref: np.ndarray, err: np.ndarray, bound: np.ndarray,
                 e_codes: np.ndarray | None, fmt: Any, describe: Describe | None) -> Element:
        ix = _index(int(np.flatnonzero(bad.ravel())[0]), bad.shape)
        ec = None if e_codes is None else int(e_codes[ix])
        ev = None if ec is None else float(decode_codes(np.array([ec]), fmt)[0])
        return Element(ix, int(g[ix]), ec, float(gv[ix]), ev, float(err[ix]), float(bound[ix]), reference=float(ref[ix]),
                       inputs=describe(ix) if describe else None)

    # ---- golden-set stages ------------------------------------------------------------------
    def check_stage(self, gs: GoldenSet, name: str, got: Any, *, where: Any = None, describe: Describe | None = None,
                    exact: bool = True, tier: str = "local") -> list[CheckResult]:
        """Check a stage's output codes (in the golden tensor's shape) against a golden set:
        bit-exact against its codes (``exact``), then within ``tier`` (``local`` falls back to
        ``end_to_end`` in a set without local tiers; the summary says so), with the ``warning``
        tier's exceedances as warnings. A tensor without any tier is checked bit-exactly only and
        the summary says it has no tolerance."""
        fmt = gs.fmt(name)
        gold = gs.codes(name)
        out = []
        for remark in gs.notes:
            self._say(f"NOTE {remark}")
        gs.notes.clear()
        if exact:
            out.append(self.exact(f"{gs.name}/{name}", got, gold, fmt=fmt, where=where, describe=describe, cover=False))
        self.coverage.add_codes(np.asarray(got, dtype=np.int64).reshape(gold.shape), fmt, where=where, prefix=f"{name}.",
                                golden=gold, golden_label=f"golden set {gs.name}/{name}")  # (where: computed ones)
        tol = gs.tolerance(name, tier)
        note: str | None = None
        if tol is None and tier == "local":
            tol = gs.tolerance(name, "end_to_end")
            if tol is not None:
                note = f"no local tier in this set (schema {gs.schema_version}): end-to-end tolerance"
        if tol is None:
            self._say(f"NO TOLERANCE {gs.name}/{name}: the set carries no tolerance for it; bit-exact check only")
            return out
        warn = gs.tolerance(name, "warning") if tol.tier == "local" else None
        out.append(self.tolerance(f"{gs.name}/{name}", got, tol, fmt=fmt, expected=gold, warning=warn, where=where,
                                  describe=describe, cover=False, note=note))
        return out

    # ---- bookkeeping ------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        self.notes.append(line)
        if self.log is not None:
            self.log.info(line)
        if self.echo:
            print(line, flush=True)

    def _record(self, r: CheckResult) -> CheckResult:
        self.results.append(r)
        if self.report_path is not None:
            with open(self.report_path, "a") as f:
                f.write(json.dumps({"kind": "check", **r.to_json()}) + "\n")
                f.write(json.dumps(self._coverage_line()) + "\n")
        self._say(("CHECK " if r.passed else "FAIL ") + r.line())
        if r.first_warning is not None:
            self._say(f"WARNING {r.what}: {r.warnings} elements above the warning tier; first at "
                      f"{r.first_warning.text(self._fmt(r))}")
        if not r.passed and self.fail_fast:
            raise ScoreboardError(self.failure_text(r))
        return r

    @staticmethod
    def _fmt(r: CheckResult) -> Any:
        return format_of(r.fmt)

    def failure_text(self, r: CheckResult) -> str:
        """The failure message of a check: count, mode and the first failing element."""
        kind = "differ from the expected codes" if r.mode == "exact" else f"are outside the {r.tier} tolerance"
        msg = f"{r.what}: {r.failed} of {r.checked} elements {kind}"
        if r.first is not None:
            msg += f"; first at {r.first.text(self._fmt(r))}"
        if r.note:
            msg += f" ({r.note})"
        return msg

    def record_coverage(self) -> None:
        """Write the coverage snapshot to the report (after adding stream counters)."""
        if self.report_path is not None:
            with open(self.report_path, "a") as f:
                f.write(json.dumps(self._coverage_line()) + "\n")

    def _coverage_line(self) -> dict[str, Any]:
        return {"kind": "coverage", "scoreboard": self.name, "instance": self.instance, **self.coverage.to_dict()}

    def assert_all(self) -> None:
        """Raise for the first failed check (with ``fail_fast=False``)."""
        for r in self.results:
            if not r.passed:
                raise ScoreboardError(self.failure_text(r))

    def summary(self) -> dict[str, Any]:
        """Elements checked, failures, max error and error/bound, warnings, per-check lines."""
        rs = self.results
        tol = [r for r in rs if r.mode == "tolerance"]
        return {
            "scoreboard": self.name,
            "checks": len(rs),
            "elements": sum(r.checked for r in rs),
            "failed": sum(r.failed for r in rs),
            "warnings": sum(r.warnings for r in rs),
            "max_err": max((r.max_err for r in tol), default=0.0),
            "max_ratio": max((r.max_ratio for r in tol), default=0.0),
            "lines": [r.line() for r in rs],
        }

    def report(self) -> str:
        """Multi-line summary: one line per check, then the totals and the coverage."""
        s = self.summary()
        lines = [f"SCOREBOARD {self.name}: {s['checks']} checks, {s['elements']} elements, {s['failed']} failed, "
                 f"{s['warnings']} warnings, max err/bound {s['max_ratio']:.3g}"]
        lines += [f"  {x}" for x in s["lines"]]
        lines.append(self.coverage.summary())
        return "\n".join(lines)


def read_report(path: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of a report file (empty when the file does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
