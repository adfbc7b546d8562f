"""Stage-by-stage check of an RTL layer run against its golden set: bit-exactness, the local
tolerance, and warnings from the statistical tier.

:func:`check_layer` takes the stage codes an RTL run dumped (a :class:`refmodel.rtl_layer.LayerSim`,
or any mapping ``stage -> codes`` in the golden tensors' shapes) and, for every stage in forward
order (x ln1 q k v scores probs attn proj res1 ln2 up act down out, those present), asks
:meth:`refmodel.cocotb.Scoreboard.check_stage` two questions:

* **bit-exact** (exact mode): do the RTL codes equal the golden codes (the integer model)? The
  count of differing codes and the first one are kept; a difference alone is not a tolerance
  failure.
* **local tolerance** (tolerance mode): ``|decode(code) - lref| <= ltol`` elementwise, where
  ``lref`` (``<stage>.lref.hex``) is the float64 op applied to the stage's own quantised golden
  inputs and ``ltol`` (``<stage>.ltol.hex``) the stage's rigorous local rounding bound
  (:mod:`refmodel.bounds.layer.local`). An element outside it fails the stage. Elements inside it
  but above the **statistical tier** (``<stage>.wtol.hex``: exceeded by correct hardware with at
  most the tier's ``failure_probability`` per element) are counted as warnings, never failures.

Numeric contract: codes are decoded exactly (fixed point ``code * 2^-frac``, minifloat, float64)
and compared in float64 with the float64 reference, ``err <= bound`` (NaN never passes unless
both sides are NaN); the written bounds are rounded *up* to 12 significant bits
(:func:`refmodel.golden.generate.written_bound`), so a correct stage is never failed by the
rounding of its bound. An infinite bound is "no guarantee": never a failure, counted as
``unbounded``. A zero bound (a saturating residual add of exact codes) admits only the exact value.
Codes are read modulo the format's width with the format's signedness (a dump read signed or
unsigned compares the same). A set without local tiers (schema 1) is checked against its
end-to-end tier instead; the row's ``tier`` says so.

Locality: the local references are those of the *golden* inputs. A stage whose inputs in this run
equal the golden codes (``inputs_exact``: every stage it reads was bit-exact) is checked exactly
locally. Downstream of a stage that differs, a stage computes from other inputs than its reference
assumes and may inherit the error: the failure message names the first failing stage in forward
order (the culprit, with its first bad element and its err/bound ratio) and lists the failing
stages downstream of it as consequences.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cocotb.golden import GoldenSet
from .cocotb.scoreboard import CheckResult, Element, Scoreboard, ScoreboardError, format_of
from .numerics.fixed import FixedFormat

__all__ = ["StageCheck", "LayerCheck", "check_layer", "forward_stages", "ratio_text"]


@dataclass
class StageCheck:
    """One stage of :func:`check_layer`.

    ``bit_exact`` / ``n_differ`` / ``first_diff``: the exact comparison with the golden codes;
    ``tier`` (``local``, or ``end_to_end`` in a set without local tiers), ``failed`` (elements
    outside it), ``max_err`` (max ``|value - reference|`` over bounded elements), ``max_bound``
    (max finite bound), ``ratio`` (max over bounded elements of err/bound; inf where a zero bound
    is exceeded), ``first_fail`` (first element outside the bound, row-major in the golden shape);
    ``warnings`` / ``first_warning``: elements within the bound but above the statistical tier;
    ``unbounded``: elements with an infinite bound; ``inputs_exact``: every stage this one reads
    was bit-exact in the run (the check is then exactly local)."""

    stage: str
    fmt: str
    elements: int
    bit_exact: bool
    n_differ: int
    tier: str | None
    failed: int
    max_err: float
    max_bound: float
    ratio: float
    warnings: int
    unbounded: int
    inputs_exact: bool
    inputs: tuple[str, ...] = ()
    first_diff: Element | None = None
    first_fail: Element | None = None
    first_warning: Element | None = None
    note: str | None = None

    @property
    def passed(self) -> bool:
        """Within the tolerance tier (bit-exactness is reported separately)."""
        return self.failed == 0

    def _fmt(self) -> Any:
        return format_of(self.fmt)

    def failure_text(self) -> str:
        """``stage <name>: <n> of <m> elements outside the <tier> tolerance (max err/bound r); first
        at [index]: expected .., got .., reference .., |err| e > bound b (err/bound r1)``."""
        head = (f"stage {self.stage}: {self.failed} of {self.elements} elements outside the {self.tier} tolerance "
                f"(max err/bound {ratio_text(self.ratio)}, max |err| {self.max_err:.6g}, max bound {self.max_bound:.6g})")
        if self.first_fail is not None:
            e = self.first_fail
            head += f"; first at {e.text(self._fmt())} (err/bound {ratio_text(_elem_ratio(e))})"
        if self.note:
            head += f" ({self.note})"
        return head

    def difference_text(self) -> str:
        """``stage <name>: <n> of <m> codes differ from the golden codes; first at [index]: expected
        .., got ..`` (None-safe: empty when bit-exact)."""
        if self.bit_exact:
            return ""
        head = f"stage {self.stage}: {self.n_differ} of {self.elements} codes differ from the golden codes"
        e = self.first_diff
        if e is not None:
            fmt = self._fmt()
            head += (f"; first at {list(e.index)}: expected {_show(e.expected_code, e.expected_value, fmt)}, "
                     f"got {_show(e.got_code, e.got_value, fmt)}")
        return head


@dataclass
class LayerCheck:
    """All stages of one RTL run (forward order) and the scoreboard that checked them."""

    set_name: str
    stages: list[StageCheck]
    scoreboard: Scoreboard = field(repr=False)

    def __getitem__(self, stage: str) -> StageCheck:
        for s in self.stages:
            if s.stage == stage:
                return s
        raise KeyError(f"stage {stage!r} was not checked (checked: {', '.join(s.stage for s in self.stages)})")

    @property
    def passed(self) -> bool:
        """Every stage within its local tolerance (warnings do not fail)."""
        return all(s.passed for s in self.stages)

    @property
    def bit_exact(self) -> bool:
        return all(s.bit_exact for s in self.stages)

    @property
    def warnings(self) -> int:
        return sum(s.warnings for s in self.stages)

    @property
    def first_failure(self) -> StageCheck | None:
        """The first stage (forward order) outside its tolerance."""
        return next((s for s in self.stages if not s.passed), None)

    @property
    def first_difference(self) -> StageCheck | None:
        """The first stage (forward order) whose codes differ from the golden ones."""
        return next((s for s in self.stages if not s.bit_exact), None)

    def failure_text(self) -> str:
        """The first failing stage with its first bad element and err/bound ratio, then the later
        failing stages: those whose inputs were golden (failing on their own) and those downstream
        of a stage that differs (empty when every stage passes)."""
        first = self.first_failure
        if first is None:
            return ""
        msg = f"{self.set_name}: " + first.failure_text()
        if not first.inputs_exact:
            up = [s.stage for s in self.stages if s.stage in first.inputs and not s.bit_exact]
            msg += f" -- its inputs {', '.join(up)} differ from the golden codes (within their tolerance)"
        later = [s for s in self.stages[self.stages.index(first) + 1:] if not s.passed]

        def listed(ss: list[StageCheck]) -> str:
            return ", ".join(f"{s.stage} ({s.failed}, max err/bound {ratio_text(s.ratio)})" for s in ss)

        own = [s for s in later if s.inputs_exact]
        inherited = [s for s in later if not s.inputs_exact]
        if own:
            msg += f"; also outside their local tolerance with golden inputs: {listed(own)}"
        if inherited:
            msg += f"; also outside their local tolerance downstream (inputs differ from the golden ones): " \
                   f"{listed(inherited)}"
        return msg

    def assert_passed(self, *, exact: bool = False) -> None:
        """:class:`ScoreboardError` (an ``AssertionError``) naming the first stage outside its
        tolerance; with ``exact``, then the first stage that is not bit-exact."""
        if not self.passed:
            raise ScoreboardError(self.failure_text())
        d = self.first_difference
        if exact and d is not None:
            others = [s.stage for s in self.stages if not s.bit_exact and s is not d]
            raise ScoreboardError(f"{self.set_name}: {d.difference_text()} (within the {d.tier} tolerance: err/bound "
                                  f"{ratio_text(d.ratio)})" + (f"; later stages that differ: {', '.join(others)}"
                                                           if others else ""))

    def summary(self) -> str:
        """One line: stages checked, bit-exact, within tolerance, warnings, max err/bound."""
        n = len(self.stages)
        worst = max(self.stages, key=lambda s: s.ratio if not math.isnan(s.ratio) else -1.0, default=None)
        w = f", max err/bound {ratio_text(worst.ratio)} ({worst.stage})" if worst is not None else ""
        return (f"{self.set_name}: {n} stages; {sum(s.bit_exact for s in self.stages)}/{n} bit-exact, "
                f"{sum(s.passed for s in self.stages)}/{n} within the local tolerance{w}, "
                f"{self.warnings} warnings (statistical tier)")

    def table(self) -> str:
        """A fixed-width text table (under 80 columns), one row per stage."""
        lines = [f"{'stage':<7}{'exact':>6}{'differ':>8}{'max |err|':>11}{'max bnd':>11}{'err/bnd':>9}"
                 f"{'warn':>6}{'fail':>7}  tier"]
        for s in self.stages:
            lines.append(f"{s.stage:<7}{'yes' if s.bit_exact else 'NO':>6}{s.n_differ:>8}{s.max_err:>11.4g}"
                         f"{s.max_bound:>11.4g}{ratio_text(s.ratio):>9}{s.warnings:>6}{s.failed:>7}  {s.tier or '-'}")
        return "\n".join(lines)


def ratio_text(r: float) -> str:
    """err/bound to 4 significant digits, more where needed so that the text compares with 1 as
    the ratio does (0.99996 is not shown as 1, nor 1.00004)."""
    if not math.isfinite(r):
        return str(r)
    for digits in range(4, 18):
        text = f"{r:.{digits}g}"
        v = float(text)
        if (v < 1.0) == (r < 1.0) and (v > 1.0) == (r > 1.0):
            return text
    return repr(r)


def _elem_ratio(e: Element) -> float:
    if e.bound > 0:
        return e.error / e.bound
    return math.inf if e.error > 0 else 0.0


def _show(code: int | None, value: float | None, fmt: Any) -> str:
    if code is None:
        return "-"
    w = fmt.width if isinstance(fmt, FixedFormat) else getattr(fmt, "bits", None)  # minifloat: its word
    c = f"0x{code & ((1 << w) - 1):0{(w + 3) // 4}x}" if isinstance(w, int) else str(code)
    return c if value is None else f"{c} ({value:+.9g})"


def forward_stages(gs: GoldenSet) -> list[str]:
    """The set's stage tensors in forward order (the layer's :func:`tensor_names`), then any other
    stage the manifest lists."""
    from .layer.config import LayerConfig
    from .layer.forward import tensor_names

    stages = gs.stages()
    try:
        order = tensor_names(LayerConfig.from_dict(gs.config))
    except (KeyError, ValueError, TypeError):
        order = []
    return [n for n in order if n in stages] + [n for n in stages if n not in order]


def _as_codes(got: Any, gs: GoldenSet, name: str) -> np.ndarray:
    """The codes in the golden tensor's shape, read modulo the format's width with its signedness."""
    gold = gs.codes(name)
    g = np.asarray(got)
    if g.size != gold.size:
        raise ValueError(f"stage {name}: {g.size} codes given, the golden set has {gold.size} (shape {list(gold.shape)})")
    g = g.astype(np.int64).reshape(gold.shape)
    fmt = gs.fmt(name)
    if isinstance(fmt, FixedFormat) and fmt.width < 64:
        u = g & np.int64((1 << fmt.width) - 1)
        g = np.where(u >= (1 << (fmt.width - 1)), u - (1 << fmt.width), u) if fmt.signed else u
    return g


def _row(gs: GoldenSet, name: str, results: list[CheckResult], exact_of: dict[str, bool]) -> StageCheck:
    """The :class:`StageCheck` of one stage from its scoreboard results (exact, then tolerance)."""
    ex = next(r for r in results if r.mode == "exact")
    tol = next((r for r in results if r.mode == "tolerance"), None)
    inputs = tuple(gs.inputs(name))
    inputs_exact = all(exact_of.get(i, True) for i in inputs)
    if tol is None:  # a tensor without any tier: bit-exact only
        return StageCheck(name, str(gs.fmt(name)), ex.checked, ex.passed, ex.failed, None, 0, math.nan, math.nan,
                          math.nan, 0, 0, inputs_exact, inputs, ex.first, note="no tolerance in the set")
    t = gs.tolerance(name, tol.tier or "local")
    bound = np.asarray(t.abs if t is not None else [], dtype=np.float64)
    fin = bound[np.isfinite(bound)]
    return StageCheck(name, str(gs.fmt(name)), tol.checked, ex.passed, ex.failed, tol.tier, tol.failed, tol.max_err,
                      float(fin.max()) if fin.size else math.inf, tol.max_ratio, tol.warnings, tol.unbounded,
                      inputs_exact, inputs, ex.first, tol.first, tol.first_warning, tol.note)


def check_layer(golden_set_dir: str | Path | GoldenSet, sim_result: Any, *, log: Any = None, echo: bool = False,
                scoreboard: Scoreboard | None = None, progress: Callable[[str], None] | None = None) -> LayerCheck:
    """Check every stage of an RTL run against the golden set, in forward order (module docstring).

    ``sim_result``: a :class:`refmodel.rtl_layer.LayerSim` (its ``codes``) or a mapping
    ``stage -> codes`` in the golden tensors' shapes; stages it lacks are not checked, a name that is
    not a stage of the set is a ``ValueError``. ``log`` (a logger with ``info``) and ``echo``
    (print) receive the scoreboard's lines; ``scoreboard``: check into this one (its ``fail_fast``
    is honoured) instead of a new non-failing one, e.g. to share a bench's report. ``progress`` is
    called with each stage's name before it is checked. Returns the :class:`LayerCheck`; nothing
    is raised for a failing stage (:meth:`LayerCheck.assert_passed` does)."""
    gs = golden_set_dir if isinstance(golden_set_dir, GoldenSet) else GoldenSet.open(golden_set_dir)
    codes: Mapping[str, Any] = getattr(sim_result, "codes", sim_result)
    order = forward_stages(gs)
    unknown = [n for n in codes if n not in order]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a stage of golden set {gs.name} (stages: {', '.join(order)})")
    sb = scoreboard or Scoreboard(f"layer {gs.name}", log=log, fail_fast=False, echo=echo)
    rows: list[StageCheck] = []
    exact_of: dict[str, bool] = {}
    for name in order:
        if name not in codes:
            continue
        if progress is not None:
            progress(name)
        got = _as_codes(codes[name], gs, name)
        rows.append(_row(gs, name, sb.check_stage(gs, name, got), exact_of))
        exact_of[name] = rows[-1].bit_exact
    return LayerCheck(gs.name, rows, sb)
