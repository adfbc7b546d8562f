"""Empirical validation of the layer bounds (:func:`refmodel.bounds.layer.layer_bounds`).

A *trial* is one quantized layer run (:func:`refmodel.layer.quantized.run_quantized`) on seeded
random weights and input, compared tensor by tensor with the float64 reference
(:func:`refmodel.layer.reference.run_reference`, unquantised weights and input):

* a **rigorous violation** is an element with ``|run - ref| > rigorous`` (strict: the bound
  includes the reference's own float64 error);
* a **statistical violation** is an element with ``|run - ref| > statistical``; per tensor the
  number of trials with at least one is compared with the tensor's stated ``failure_prob``
  (expected at most ``sum of failure_prob`` over the trials);
* **tightness**: ``observed / bound`` over the elements where the bound is finite and > 0 (max
  and median over all elements of all trials), per tier; ``iso`` is the same for the arithmetic
  part alone (``|run - layer on the quantised weights| / isolated bound``);
* **no guarantee**: elements with an infinite rigorous bound (and the reasons met).

Input kinds (``KINDS``): ``random`` (fan-in weights, N(0, 1) input), ``outlier`` (two residual
channels at 10^1..10^3 sigma in every token: the massive-activation regime; beyond a fixed-point
range they saturate and must be reported as no guarantee), ``sink`` (one key takes almost all
the attention weight: a rank-one change of W_K / W_Q, or of the query bias, that adds 9..14 to
every query's logit for key 0), ``tie`` (near-tie scores: W_K scaled by 1e-3), ``long``
(sequences of ``long_seq`` tokens on a narrow layer), ``scaled`` (input x 8: larger values).
Configs (``CONFIGS``): narrow gpt2 / bert / llama layers (``d_model`` 32, llama with GQA) so that
thousands of trials run in seconds; ``long-*`` configs with ``d_model`` 16 for long sequences.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..layer.config import LayerConfig
from ..layer.plan import PrecisionPlan
from ..layer.quantized import QuantizedLayer
from ..layer.reference import run_reference
from ..layer.weights import LayerWeights, random_inputs, random_weights
from .layer import layer_bounds

__all__ = ["CONFIGS", "KINDS", "ALL_KINDS", "TensorStats", "LocalStats", "LayerReport", "run_trials", "make_trial", "report_markdown",
           "DEFAULT_PLANS", "LINEAR_KINDS", "nonvacuity", "merged", "merged_markdown"]

#: trial configurations (narrow layers: the bounds' cost is per op, not per element)
CONFIGS: dict[str, LayerConfig] = {
    "gpt2": LayerConfig("gpt2", d_model=32, n_heads=2, d_ff=64, seq_len=8),
    "bert": LayerConfig("bert", d_model=32, n_heads=2, d_ff=64, seq_len=8),
    "llama": LayerConfig("llama", d_model=32, n_heads=4, d_ff=48, seq_len=8, n_kv_heads=2),
    "long-gpt2": LayerConfig("gpt2", d_model=16, n_heads=2, d_ff=32, seq_len=128),
    "long-llama": LayerConfig("llama", d_model=16, n_heads=2, d_ff=24, seq_len=128, n_kv_heads=1),
    # the default test suite's configs: every op of every arch at the smallest useful width
    "small-gpt2": LayerConfig("gpt2", d_model=16, n_heads=2, d_ff=32, seq_len=6),
    "small-bert": LayerConfig("bert", d_model=16, n_heads=2, d_ff=32, seq_len=6),
    "small-llama": LayerConfig("llama", d_model=16, n_heads=4, d_ff=24, seq_len=6, n_kv_heads=2),
}
KINDS = ("random", "outlier", "sink", "tie", "long", "scaled")
#: every trial kind :func:`make_trial` builds: also ``repeat`` (one token repeated over the whole
#: sequence, the others random: the coherent-rounding case of the statistical tiers)
ALL_KINDS = KINDS + ("repeat",)
#: presets validated by default (float64 is the reference itself)
DEFAULT_PLANS = ("fp32", "fp16", "bf16", "fp8", "mxfp8", "fixed16", "hw")
#: op kinds whose statistical tier must be non-vacuous on random inputs (matmul, norms, softmax)
LINEAR_KINDS = ("linear", "norm", "softmax")


@dataclass
class TensorStats:
    """Accumulated comparison of one tensor (of one config) over trials."""

    config: str
    name: str
    kind: str = ""
    trials: int = 0
    elements: int = 0
    viol_rig: int = 0
    viol_stat: int = 0
    trials_stat_viol: int = 0
    expected_stat_fail: float = 0.0
    no_guarantee: int = 0
    trials_no_guarantee: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    _rig: list[np.ndarray] = field(default_factory=list, repr=False)
    _stat: list[np.ndarray] = field(default_factory=list, repr=False)
    _iso: list[np.ndarray] = field(default_factory=list, repr=False)
    _random_stat_max: float = 0.0
    _points: list[tuple[float, float, float]] = field(default_factory=list, repr=False)

    def add(self, obs: np.ndarray, tb: Any, kind: str, obs_iso: np.ndarray | None, keep_points: int = 0,
            rng: np.random.Generator | None = None) -> None:
        self.trials += 1
        self.kind = tb.kind
        rig, stat = tb.rigorous, tb.statistical
        fin = np.isfinite(rig)
        self.elements += obs.size
        with np.errstate(invalid="ignore"):
            bad = fin & ~(obs <= rig)  # NaN observed under a finite bound is a violation too
            sbad = np.isfinite(stat) & ~(obs <= stat)
        self.viol_rig += int(np.count_nonzero(bad))
        self.viol_stat += int(np.count_nonzero(sbad))
        self.trials_stat_viol += int(np.any(sbad))
        self.expected_stat_fail += float(tb.failure_prob)
        ng = int(np.count_nonzero(~fin))
        self.no_guarantee += ng
        self.trials_no_guarantee += int(ng > 0)
        for r in tb.no_guarantee:
            key = r if len(r) < 160 else r[:157] + "..."
            self.reasons[key] = self.reasons.get(key, 0) + 1
        with np.errstate(divide="ignore", invalid="ignore"):
            pr = (rig > 0) & fin
            self._rig.append(np.where(obs[pr] == 0, 0.0, obs[pr] / rig[pr]).astype(np.float32))
            ps = (stat > 0) & np.isfinite(stat)
            rs = np.where(obs[ps] == 0, 0.0, obs[ps] / stat[ps]).astype(np.float32)
            self._stat.append(rs)
            if kind == "random" and rs.size:
                self._random_stat_max = max(self._random_stat_max, float(np.nanmax(rs)))
            ib = tb.parts.get("iso_rigorous")
            if obs_iso is not None and ib is not None:
                pi = (ib > 0) & np.isfinite(ib)
                self._iso.append(np.where(obs_iso[pi] == 0, 0.0, obs_iso[pi] / ib[pi]).astype(np.float32))
        if keep_points and pr.any():
            o, b, sb = obs[pr].ravel(), rig[pr].ravel(), stat[pr].ravel()
            idx = np.arange(o.size) if o.size <= keep_points or rng is None else rng.choice(o.size, keep_points, False)
            self._points.extend(zip(b[idx].tolist(), sb[idx].tolist(), o[idx].tolist(), strict=True))

    @staticmethod
    def _mm(parts: list[np.ndarray]) -> tuple[float, float]:
        if not parts:
            return float("nan"), float("nan")
        a = np.concatenate(parts)
        a = a[np.isfinite(a)]
        if not a.size:
            return float("nan"), float("nan")
        return float(a.max()), float(np.median(a))

    @property
    def rig_max(self) -> float:
        return self._mm(self._rig)[0]

    @property
    def rig_median(self) -> float:
        return self._mm(self._rig)[1]

    @property
    def stat_max(self) -> float:
        return self._mm(self._stat)[0]

    @property
    def stat_median(self) -> float:
        return self._mm(self._stat)[1]

    @property
    def iso_max(self) -> float:
        return self._mm(self._iso)[0]

    @property
    def iso_median(self) -> float:
        return self._mm(self._iso)[1]

    @property
    def random_stat_max(self) -> float:
        """Max observed / statistical bound over the ``random`` trials (non-vacuity)."""
        return self._random_stat_max

    @property
    def points(self) -> list[tuple[float, float, float]]:
        """Sampled (rigorous bound, statistical bound, observed) triples, for plots."""
        return self._points


@dataclass
class LocalStats:
    """The local tier of one tensor (of one config) over trials: rigorous violations, warning
    exceedances against the expected count (failure probability x elements), max observed / bound,
    and ``nonfinite``: elements without a finite local bound in runs that are finite everywhere."""

    config: str
    name: str
    trials: int = 0
    elements: int = 0
    violations: int = 0
    warnings: int = 0
    expected_warnings: float = 0.0
    max_ratio: float = 0.0
    nonfinite: int = 0


@dataclass
class LayerReport:
    """Result of :func:`run_trials`."""

    plan: str
    trials: int
    seconds: float
    tensors: dict[tuple[str, str], TensorStats]
    errors: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    local: dict[tuple[str, str], LocalStats] = field(default_factory=dict)

    @property
    def viol_local(self) -> int:
        """Rigorous violations of the local tier (``run_trials(local=True)``)."""
        return sum(t.violations for t in self.local.values())

    @property
    def viol_rig(self) -> int:
        return sum(t.viol_rig for t in self.tensors.values())

    @property
    def viol_stat(self) -> int:
        return sum(t.viol_stat for t in self.tensors.values())

    @property
    def no_guarantee(self) -> int:
        return sum(t.no_guarantee for t in self.tensors.values())

    @property
    def elements(self) -> int:
        return sum(t.elements for t in self.tensors.values())

    def rows(self) -> list[TensorStats]:
        return list(self.tensors.values())


# ---- trial construction ---------------------------------------------------------------------------
def _sink_weights(cfg: LayerConfig, w: dict[str, np.ndarray], x: np.ndarray, rng: np.random.Generator
                  ) -> dict[str, np.ndarray]:
    """Make key 0 an attention sink: every query's logit for key 0 gains ~U(9, 14) (in exact
    arithmetic on the unquantised weights) through rank-one changes of W_K and W_Q (or b_Q)."""
    from ..layer.ops import Float64Ops

    ops = Float64Ops()
    if cfg.prenorm:
        h = ops.norm("h", x, w["ln1_g"], w.get("ln1_b"), kind=cfg.norm, eps=cfg.eps)
    else:
        h = x
    s, d = h.shape
    hd = cfg.head_dim
    h0 = h[0]
    # v with v . h_i = 1 for every token (least squares; exact when s <= d)
    v = np.linalg.lstsq(h, np.ones(s), rcond=None)[0]
    wq, wk = w["wq"].copy(), w["wk"].copy()
    g = cfg.group_size
    for kvh in range(cfg.n_kv_heads):
        u = rng.standard_normal(hd)
        u /= np.linalg.norm(u)
        target = rng.uniform(9.0, 14.0) * math.sqrt(hd)
        dk = np.outer(u, h0) / float(h0 @ h0)
        dq = np.outer(u, v)
        # split the product a*b = target so both changes have the same largest entry (and stay
        # inside a fixed-point weight format's range where possible)
        mk, mq = float(np.abs(dk).max()), float(np.abs(dq).max())
        a = math.sqrt(target * mq / mk)
        b = target / a
        cap = 0.7 / max(a * mk, 1e-300)
        if cap < 1.0:  # too strong for |w| < 1: a weaker sink
            a, b = a * cap, b * cap
        wk[kvh * hd:(kvh + 1) * hd] += a * dk
        for qh in range(kvh * g, (kvh + 1) * g):
            wq[qh * hd:(qh + 1) * hd] += b * dq
    out = dict(w)
    out["wq"], out["wk"] = wq, wk
    return out


def make_trial(config: LayerConfig, kind: str, seed: int, *, long_seq: int | None = None
               ) -> tuple[LayerConfig, LayerWeights, np.ndarray]:
    """The (config, weights, input) of one trial of ``kind`` (module docstring)."""
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown trial kind {kind!r}; expected one of {', '.join(ALL_KINDS)}")
    rng = np.random.default_rng(zlib.crc32(f"{config.arch}|{config.d_model}|{kind}|{seed}".encode()))
    cfg = config
    if kind in ("long", "repeat"):
        cfg = config.replace(seq_len=int(long_seq or max(config.seq_len, 128)))
    w = random_weights(cfg, seed=int(rng.integers(2 ** 31)))
    x = random_inputs(cfg, seed=int(rng.integers(2 ** 31)))
    wd = w.to_dict()
    if kind == "outlier":
        ch = rng.choice(cfg.d_model, size=2, replace=False)
        x[:, ch] = x[:, ch] * 0.0 + rng.choice([-1.0, 1.0], 2) * 10.0 ** rng.uniform(1, 3, 2) * (
            1 + 0.1 * rng.standard_normal((x.shape[0], 2)))
    elif kind == "sink":
        wd = _sink_weights(cfg, wd, x, rng)
    elif kind == "tie":
        wd["wk"] = wd["wk"] * 1e-3
    elif kind == "scaled":
        x = 8.0 * x
    elif kind == "repeat":
        x[::2] = x[0]  # every other token is the same token
    return cfg, LayerWeights(wd), x


def _kind_for(i: int, kinds: tuple[str, ...]) -> str:
    return kinds[i % len(kinds)]


def run_trials(plan: PrecisionPlan | str, n_trials: int, seed: int = 0, *,
               configs: Iterable[str] | dict[str, LayerConfig] | None = None,
               kinds: Iterable[str] | None = None, progress: Callable[[int], Any] | None = None,
               long_seq: int | None = None, keep_points: int = 0, alpha: float | None = None,
               exact_weights: bool = False, isolate: bool = True, local: bool = False) -> LayerReport:
    """Run ``n_trials`` layer trials of ``plan`` (cycling over ``configs`` x ``kinds``) and
    compare every tensor with its bounds. ``progress(1)`` is called after each trial.
    ``keep_points``: sample that many (bound, observed) pairs per tensor per trial (plots).
    ``exact_weights``: give the bounds the unquantised weights (exact ``E_w``); ``isolate``:
    passed to :func:`layer_bounds` (False: the pure propagation of input and weight errors);
    ``local``: also check every stage's local tier (:func:`refmodel.bounds.layer.local.local_bounds`)
    and collect it in ``LayerReport.local``."""
    p = PrecisionPlan.from_name(plan) if isinstance(plan, str) else plan
    if configs is None:
        cfgs = {k: CONFIGS[k] for k in ("gpt2", "bert", "llama")}
    elif isinstance(configs, dict):
        cfgs = dict(configs)
    else:
        cfgs = {}
        for c in configs:
            if c not in CONFIGS:
                raise ValueError(f"unknown trial config {c!r}; known: {', '.join(CONFIGS)}")
            cfgs[c] = CONFIGS[c]
    ks = tuple(kinds) if kinds is not None else KINDS
    for k in ks:
        if k not in ALL_KINDS:
            raise ValueError(f"unknown trial kind {k!r}; expected one of {', '.join(ALL_KINDS)}")
    names = list(cfgs)
    rep = LayerReport(p.name, 0, 0.0, {})
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    kw = {} if alpha is None else {"alpha": alpha}
    for i in range(int(n_trials)):
        cname = names[i % len(names)]
        kind = _kind_for(i // len(names), ks)
        cfg, w, x = make_trial(cfgs[cname], kind, seed * 1_000_003 + i, long_seq=long_seq)
        rep.kinds[kind] = rep.kinds.get(kind, 0) + 1
        try:
            with np.errstate(all="ignore"):
                run = QuantizedLayer(cfg, w, p).run(x)
        except (ValueError, OverflowError) as e:
            msg = f"{type(e).__name__}: {e}"
            rep.errors[msg] = rep.errors.get(msg, 0) + 1
            rep.trials += 1
            if progress:
                progress(1)
            continue
        ref = run_reference(cfg, w, x)
        b = layer_bounds(run, ref, weights=w if exact_weights else None, isolate=isolate, **kw)
        for name, tb in b.items():
            key = (cname, name)
            ts = rep.tensors.get(key)
            if ts is None:
                ts = rep.tensors[key] = TensorStats(cname, name)
            v = np.asarray(run.tensors[name].values, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                obs = np.abs(v - ref[name])
            tq = tb.parts.get("iso_reference")
            obs_iso = None if tq is None else np.abs(v - tq)
            ts.add(obs, tb, kind, obs_iso, keep_points, rng)
        if local:
            _add_local(rep, cname, run, x, kw.get("alpha"))
        rep.trials += 1
        if progress:
            progress(1)
    rep.seconds = time.perf_counter() - t0
    return rep


def _add_local(rep: LayerReport, cname: str, run: Any, x: np.ndarray, alpha: float | None) -> None:
    from .layer.local import local_bounds

    run_finite = all(bool(np.all(np.isfinite(t.values))) for t in run.tensors.values())
    for name, lb in local_bounds(run, x=x, **({} if alpha is None else {"alpha": alpha})).items():
        st = rep.local.get((cname, name))
        if st is None:
            st = rep.local[(cname, name)] = LocalStats(cname, name)
        v = np.asarray(run.tensors[name].values, dtype=np.float64)
        fin = np.isfinite(lb.rigorous) & np.isfinite(v)
        fail, warn = lb.check(v)
        st.trials += 1
        st.elements += v.size
        if run_finite:  # a stage whose inputs overflowed has no local bound; a finite run always has one
            st.nonfinite += int(np.count_nonzero(~np.isfinite(lb.rigorous)))
        st.violations += int(np.count_nonzero(fail & fin))
        st.warnings += int(np.count_nonzero(warn & fin))
        st.expected_warnings += lb.failure_probability * v.size
        with np.errstate(divide="ignore", invalid="ignore"):
            obs = np.abs(v - lb.reference)
            r = np.where(fin & (lb.rigorous > 0), obs / np.where(lb.rigorous > 0, lb.rigorous, 1.0), 0.0)
        st.max_ratio = max(st.max_ratio, float(np.max(r)) if r.size else 0.0)


def nonvacuity(rep: LayerReport, threshold: float = 0.1) -> list[tuple[str, str, str, float]]:
    """Tensors of the op kinds in :data:`LINEAR_KINDS` whose statistical bound is more than
    ``1/threshold`` times the largest observed error on random inputs: ``(config, tensor, kind,
    max observed/stat)``. Empty when the statistical tier is within 10x everywhere."""
    out = []
    for ts in rep.rows():
        if ts.kind in LINEAR_KINDS and ts.random_stat_max < threshold:
            out.append((ts.config, ts.name, ts.kind, ts.random_stat_max))
    return out


def merged(rep: LayerReport) -> list[TensorStats]:
    """The per-tensor statistics merged over configs, keyed by (tensor name, op kind) (bert's
    ``out`` is a norm, gpt2's an add: they stay apart), in first-seen order."""
    out: dict[tuple[str, str], TensorStats] = {}
    for t in rep.rows():
        key = (t.name, t.kind)
        m = out.get(key)
        if m is None:
            m = out[key] = TensorStats("all", t.name, t.kind)
        m.trials += t.trials
        m.elements += t.elements
        m.viol_rig += t.viol_rig
        m.viol_stat += t.viol_stat
        m.trials_stat_viol += t.trials_stat_viol
        m.expected_stat_fail += t.expected_stat_fail
        m.no_guarantee += t.no_guarantee
        m.trials_no_guarantee += t.trials_no_guarantee
        for r, n in t.reasons.items():
            m.reasons[r] = m.reasons.get(r, 0) + n
        m._rig += t._rig
        m._stat += t._stat
        m._iso += t._iso
        m._random_stat_max = max(m._random_stat_max, t._random_stat_max)
    return list(out.values())


def merged_markdown(rep: LayerReport) -> str:
    """One row per tensor (merged over the archs), for the docs."""
    lines = ["| tensor | op | trials | rig viol | stat viol (trials) | expected stat fails | rig max | rig median | "
             "stat max | stat median | random: stat max | iso max | iso median | no-guar. elems (trials) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in merged(rep):
        lines.append(f"| {t.name} | {t.kind} | {t.trials} | {t.viol_rig} | {t.viol_stat} ({t.trials_stat_viol}) | "
                     f"{t.expected_stat_fail:.3g} | {_f(t.rig_max)} | {_f(t.rig_median)} | {_f(t.stat_max)} | "
                     f"{_f(t.stat_median)} | {_f(t.random_stat_max)} | {_f(t.iso_max)} | {_f(t.iso_median)} | "
                     f"{t.no_guarantee} ({t.trials_no_guarantee}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m refmodel.bounds.validate_layer [trials [seed [plans]]]``: per-preset markdown."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else 126
    seed = int(argv[1]) if len(argv) > 1 else 0
    plans = argv[2].split(",") if len(argv) > 2 else list(DEFAULT_PLANS)
    for p in plans:
        rep = run_trials(p, n, seed, kinds=ALL_KINDS, local=True)
        lw = sum(t.warnings for t in rep.local.values())
        lexp = sum(t.expected_warnings for t in rep.local.values())
        print(f"### {p}: {rep.trials} trials, {rep.elements} elements, rigorous violations {rep.viol_rig}, "
              f"statistical violations {rep.viol_stat}, {rep.seconds:.1f} s; non-vacuity failures: {nonvacuity(rep)}; "
              f"local tier: rigorous violations {rep.viol_local}, warning exceedances {lw} (expected <= {lexp:.3g})")
        print()
        print(merged_markdown(rep))
        print(flush=True)
    return 0


def _f(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3g}"


def report_markdown(rep: LayerReport) -> str:
    """The per-tensor table in markdown."""
    lines = [f"plan {rep.plan}: {rep.trials} trials, {rep.elements} compared elements, {rep.seconds:.1f} s",
             "",
             "| config | tensor | op | trials | rig viol | stat viol (trials) | expected stat fails | rig max | rig median | "
             "stat max | stat median | iso max | iso median | no-guar. elems (trials) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in rep.rows():
        lines.append(f"| {t.config} | {t.name} | {t.kind} | {t.trials} | {t.viol_rig} | {t.viol_stat} ({t.trials_stat_viol}) | "
                     f"{t.expected_stat_fail:.3g} | {_f(t.rig_max)} | {_f(t.rig_median)} | {_f(t.stat_max)} | "
                     f"{_f(t.stat_median)} | {_f(t.iso_max)} | {_f(t.iso_median)} | {t.no_guarantee} ({t.trials_no_guarantee}) |")
    if rep.errors:
        lines.append("")
        for e, n in rep.errors.items():
            lines.append(f"* run error ({n} trials): {e}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
