"""The end-to-end walk: every tensor of a quantized layer run against the float64 reference.

:class:`LayerWalk` visits the op records of a :class:`~refmodel.layer.quantized.LayerRun` in
forward order and hands each to its op module (:mod:`.matmul`, :mod:`.norm`, :mod:`.softmax`,
:mod:`.elementwise`), which returns the tensor's :class:`~.state.ValueChain` (rigorous tier) and
:class:`~.state.StatError` (statistical tier); :meth:`LayerWalk.finish` turns them into a
:class:`~.state.TensorBound` and keeps them as the inputs of later ops. The bound formulas and
their sources are in the op modules' docstrings and in :mod:`refmodel.bounds.layer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...numerics.fixed import FixedFormat
from ...numerics.formats import parse_format
from ..model import lambda_azuma
from ..mx import is_mx_spec, mx_scale_exponents
from .models import FORMULA_REL, Unsupported
from .state import StatError, TensorBound, ValueChain
from .weights import WeightError, weight_errors

if TYPE_CHECKING:
    from ...layer.quantized import OpRecord

__all__ = ["LayerWalk", "layer_bounds", "isolation_reference"]


class LayerWalk:
    """State of one end-to-end walk (module docstring).

    ``errors``: rigorous bound of every tensor so far; ``stats``: their statistical states;
    ``weight_err``: ``|w_hat - w|`` of every weight (:func:`weight_errors`); ``iso`` / ``ref_q``:
    the isolated walk's bounds and the float64 layer on the quantised weights (isolation);
    ``voided``: set once a value overflowed or a weight may have been clipped (from then on
    isolation, which would absorb that effect exactly, cannot lift a "no guarantee" downstream).
    ``local``: the local mode of :mod:`.local` (inputs exact, no propagation).
    """

    def __init__(self, run: Any, ref: Mapping[str, np.ndarray], weights: Any, alpha: float,
                 iso: Mapping[str, TensorBound] | None = None, ref_q: Mapping[str, np.ndarray] | None = None,
                 weight_err: dict[str, WeightError] | None = None, *, local: bool = False) -> None:
        #: local mode: every op's inputs are taken as exact (the stage's own quantised inputs and
        #: weights): the bound of each tensor is its op's own rounding error (:mod:`.local`)
        self.local = local
        self.iso = iso
        self.ref_q = ref_q
        self.run = run
        self.ref = ref
        self.plan = run.plan
        self.cfg = run.config
        self.alpha = alpha
        self.lam = lambda_azuma(alpha)
        self.errors: dict[str, np.ndarray] = {}
        self.stats: dict[str, StatError] = {}
        self.out: dict[str, TensorBound] = {}
        self.shared_events = 0
        self.weight_err = weight_errors(run, weights) if weight_err is None else weight_err
        self.voided = any(r for _, r, _ in self.weight_err.values())
        self.fixed = self._is_fixed()

    def _is_fixed(self) -> bool:
        specs = [self.plan.tensor(n).format for n in self.run.tensors]
        return all((not is_mx_spec(s)) and s != "float64" and isinstance(parse_format(s), FixedFormat) for s in specs)

    # ---- access to the run's tensors and their error state ----------------------------------------------
    def val(self, name: str) -> np.ndarray:
        """The run's float64 value of a tensor or weight."""
        if name in self.run.tensors:
            return np.asarray(self.run.tensors[name].values, dtype=np.float64)
        return np.asarray(self.run.weights[name].values, dtype=np.float64)

    def qt(self, name: str) -> Any:
        """The run's :class:`QTensor` of a tensor or weight."""
        return self.run.tensors[name] if name in self.run.tensors else self.run.weights[name]

    def err(self, name: str) -> np.ndarray:
        """Rigorous error bound of a tensor, or of a weight (its quantisation error); 0 in local mode."""
        if self.local:
            return np.zeros(self.val(name).shape)
        return self.errors[name] if name in self.errors else self.weight_err[name][0]

    def mag(self, name: str) -> np.ndarray:
        """An error bound for magnitude estimates (the reference's own rounding, ``ref64``): the
        rigorous bound where finite, else the statistical one (the rigorous tier is void there)."""
        E = self.err(name)
        if np.all(np.isfinite(E)):
            return E
        return np.where(np.isfinite(E), E, self.stat_bound(name))

    def stat_of(self, name: str) -> StatError:
        """A copy of the statistical state of a tensor, or of a weight (its quantisation error)."""
        if self.local:
            return StatError(self.val(name).shape)
        if name in self.stats:
            return self.stats[name].copy()
        E, _, biased = self.weight_err[name]
        Ef = np.where(np.isfinite(E), E, 0.0)
        return StatError(E.shape, 0.0, np.where(biased, Ef, 0.0), 0.0, 0.0, np.where(biased, 0.0, Ef * Ef))

    def stat_bound(self, name: str) -> np.ndarray:
        """The statistical bound of an input (tensor or weight) as an array."""
        return self.stat_of(name).bound(self.lam)

    def weight_parts(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean-zero, biased) parts of a weight's error bound (for ``shared`` and ``det``)."""
        E, _, biased = self.weight_err[name]
        Ef = np.where(np.isfinite(E), E, 0.0)
        return np.where(biased, 0.0, Ef), np.where(biased, Ef, 0.0)

    def inherited(self, names: tuple[str, ...]) -> list[str]:
        """The no-guarantee reasons an op inherits from its inputs."""
        rs = []
        for n in names:
            r = self.err(n)
            if not np.all(np.isfinite(r)):
                k = int(np.count_nonzero(~np.isfinite(r)))
                if n not in self.errors and self.weight_err[n][1]:
                    rs += self.weight_err[n][1]  # the weight's own reason (clipped, overflowed, poisoned)
                    continue
                src = "weight" if n in self.run.weights else "tensor"
                rs.append(f"no guarantee: input {src} {n} has no guarantee in {k} element(s)")
        return rs

    def tp(self, name: str) -> Any:
        return self.plan.tensor(name)

    def running(self, n: int, accum: Any, out: Any = None) -> bool:
        """Whether to bound a float accumulation of ``n`` roundings a posteriori from its partial
        sums (:func:`refmodel.bounds.accum.running_error`, one more pass over the terms): in local
        mode unless a narrower output rounding ``out`` dominates (``n u_acc < u_out / 4``); end to
        end where the a priori ``gamma_n`` is large (``n u >= 2^-10``: it is then vacuous or loose)."""
        if accum.kind not in ("sequential", "blocked", "rounded"):
            return False
        nu = n * accum.model.rel
        if self.local:
            return nu >= (0.0 if out is None else out.rel) / 4
        return nu >= 2.0 ** -10

    def stored_X(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The block exponents of an MX tensor of the run."""
        return mx_scale_exponents(self.run.tensors[name].mx, shape)

    # ---- results ----------------------------------------------------------------------------------------
    def finish(self, rec: OpRecord, chain: ValueChain, st: StatError, *, shared_events: int = 0,
               extra_reasons: list[str] | None = None, ref_magnitude: Any = None) -> None:
        """Record the bound of ``rec``'s tensor from its chain and statistical state (and, with
        isolation, the minimum with the isolated bound plus the exact quantisation effect).

        ``ref_magnitude``: an a priori bound on ``|reference output|`` from the op's inputs and
        their error bounds (a softmax is in [0, 1], a norm within ``|g| sqrt(d) + |beta|``, ...).
        Where the propagated bound is larger or not finite, ``|value| + ref_magnitude`` caps it
        (``|v - ref| <= |v| + |ref|``): finite whenever the run and its inputs' bounds are."""
        rig = chain.rigorous()
        name = rec.name
        v = self.val(name)
        st.det = st.det + chain.ref64
        stat = st.bound(self.lam)
        stat = np.where(chain.void, np.inf, stat)
        with np.errstate(over="ignore"):
            rig = rig * (1 + FORMULA_REL)
            stat = stat * (1 + FORMULA_REL)
        self.shared_events += shared_events
        reasons = list(dict.fromkeys(self.inherited(rec.inputs) + (extra_reasons or []) + chain.reasons))
        nf = ~np.isfinite(v)
        if np.any(nf & np.isfinite(rig)):
            reasons.append(f"no guarantee: tensor {name} ({rec.out_format}) holds {int(nf.sum())} non-finite value(s)")
            rig = np.where(nf, np.inf, rig)
            stat = np.where(nf, np.inf, stat)
        if np.any(~np.isfinite(rig)) and not reasons:
            reasons.append(f"no guarantee: tensor {name}: bound not finite in {int(np.sum(~np.isfinite(rig)))} element(s)")
        stat = np.where(np.isfinite(rig), np.minimum(stat, rig), stat)
        parts: dict[str, Any] = {}
        notes = list(dict.fromkeys(chain.notes))
        pf = min(1.0, self.alpha * (int(np.prod(v.shape)) + self.shared_events))
        if self.iso is not None and self.ref_q is not None and name in self.iso:
            # isolation: |t - ref| <= |t - t_q| + |t_q - ref| with t_q the float64 layer on the quantised
            # weights and input (its own float64 error is in the isolated bound's ref64)
            ib = self.iso[name]
            q_eff = np.abs(np.asarray(self.ref_q[name]) - np.asarray(self.ref[name])) * (1 + 2.0 ** -52)
            irig = ib.rigorous + q_eff
            istat = ib.statistical + q_eff
            parts.update(iso_rigorous=ib.rigorous, iso_statistical=ib.statistical, quant_effect=q_eff,
                         iso_reference=np.asarray(self.ref_q[name]), prop_rigorous=rig, prop_statistical=stat)
            if self.voided:  # only where the propagation itself is finite
                rig = np.where(np.isfinite(rig), np.minimum(rig, irig), np.inf)
                stat = np.where(np.isfinite(stat), np.minimum(stat, istat), np.inf)
            else:
                rig = np.minimum(rig, irig)
                stat = np.minimum(stat, istat)
            pf = min(1.0, pf + ib.failure_prob)
            notes = list(dict.fromkeys(notes + ib.notes))
            # a reason stays only if some element has no guarantee in both decompositions
            if np.all(np.isfinite(rig)):
                notes += [f"{name}: bounded by the isolated decomposition where the propagation has none ({r})"
                          for r in reasons]
                reasons = []
            else:
                reasons = list(dict.fromkeys(reasons + ib.no_guarantee))
        if ref_magnitude is not None:
            with np.errstate(invalid="ignore", over="ignore"):
                cap = (np.abs(v) + np.broadcast_to(ref_magnitude, v.shape)) * (1 + FORMULA_REL)
            capped = np.isfinite(cap) & ~(rig <= cap)
            if np.any(capped):
                why = f" ({reasons[0]})" if reasons else ""
                notes.append(f"{name}: {int(capped.sum())} element(s) bounded by |value| + the a priori range of the "
                             f"reference{why}")
                rig = np.where(capped, cap, rig)
                stat = np.where(np.isfinite(stat), np.minimum(stat, rig), rig)
                if np.all(np.isfinite(rig)):
                    reasons = []
        self.errors[name] = rig
        void = chain.void | nf  # overflow / saturation / non-finite: the statistical state is void too
        if np.any(void):
            self.voided = True
            st.indep = np.where(void, np.inf, st.indep)
            st.shared = np.where(void, np.inf, st.shared)
            st.det = np.where(void, np.inf, st.det)
        self.stats[name] = st
        parts.update({"propagated": chain.propagated, "local": chain.local, "ref64": chain.ref64,
                      "stat_indep": st.indep, "stat_det": st.det, "stat_row_rel": st.row_rel,
                      "stat_row_base": st.row_base, "stat_shared": st.shared})
        self.out[name] = TensorBound(name, rec.kind, rig, stat, reasons, notes, pf, parts)

    def fail(self, rec: OpRecord, reason: str) -> None:
        """No guarantee for ``rec``'s whole tensor (an unmodelled op or policy)."""
        shape = self.val(rec.name).shape
        self.errors[rec.name] = np.full(shape, np.inf)
        self.stats[rec.name] = StatError(shape, np.inf, np.inf, 0.0, 0.0, np.inf)
        reasons = list(dict.fromkeys(self.inherited(rec.inputs) + [f"no guarantee: tensor {rec.name}: {reason}"]))
        self.out[rec.name] = TensorBound(rec.name, rec.kind, np.full(shape, np.inf), np.full(shape, np.inf),
                                         reasons, [], 1.0)

    def run_all(self) -> dict[str, TensorBound]:
        """Walk every record of the run; returns ``{tensor name: TensorBound}`` in forward order."""
        from .elementwise import walk_act, walk_add, walk_input, walk_mul, walk_rope
        from .matmul import walk_linear, walk_mix, walk_scores
        from .norm import walk_norm
        from .softmax import walk_softmax

        handlers = {"input": walk_input, "linear": walk_linear, "norm": walk_norm, "rope": walk_rope,
                    "scores": walk_scores, "softmax": walk_softmax, "mix": walk_mix, "act": walk_act,
                    "mul": walk_mul, "add": walk_add}
        for rec in self.run.records:
            h = handlers.get(rec.kind)
            try:
                if h is None:
                    raise Unsupported(f"op kind {rec.kind!r} has no bound")
                with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                    h(self, rec)
            except Unsupported as e:
                self.fail(rec, str(e))
            except ValueError as e:  # an op bound refusing its inputs (non-finite logits, ...)
                self.fail(rec, f"{e}")
        return self.out


def layer_bounds(run: Any, ref: Mapping[str, np.ndarray], *, weights: Any = None,
                 alpha: float | None = None, isolate: bool = True) -> dict[str, TensorBound]:
    """End-to-end error bound of every tensor of ``run`` against ``ref`` (:mod:`refmodel.bounds.layer`).

    ``run``: :func:`refmodel.layer.quantized.run_quantized` result; ``ref``:
    :func:`refmodel.layer.reference.run_reference` of the same config, UNQUANTISED weights and input
    (default ``softmax_shifted=True``, no SLaNC); ``weights``: the unquantised
    :class:`LayerWeights` (optional: exact ``|w_hat - w|`` instead of the format's model);
    ``alpha``: failure probability of one statistical term (default
    :data:`refmodel.bounds.model.DEFAULT_ALPHA`); ``isolate``: also bound each tensor as (its
    distance to the float64 layer on the quantised weights and input, the arithmetic roundings
    alone) + (that layer's exact distance to ``ref``: the quantisation effect) and keep the smaller
    bound. Returns ``{tensor name: TensorBound}`` in forward order;
    ``|run.tensors[n].values - ref[n]| <= rigorous`` everywhere.
    """
    from ..model import DEFAULT_ALPHA

    a = DEFAULT_ALPHA if alpha is None else alpha
    missing = [n for n in run.tensors if n not in ref]
    if missing:
        raise ValueError(f"layer_bounds: the reference has no tensor {missing[0]!r} (pass run_reference of the "
                         f"same config)")
    for n, t in run.tensors.items():
        if np.shape(ref[n]) != t.values.shape:
            raise ValueError(f"layer_bounds: reference tensor {n!r} has shape {list(np.shape(ref[n]))}, the run "
                             f"{list(t.values.shape)}")
    iso = ref_q = None
    if isolate:
        got = isolation_reference(run)
        if got is not None:
            ref_q, qw = got
            zero: dict[str, WeightError] = {n: (np.zeros(np.shape(t.values)), [], np.zeros(np.shape(t.values), bool)) for n, t in run.weights.items()}
            iso = LayerWalk(run, ref_q, qw, a, weight_err=zero).run_all()
    return LayerWalk(run, ref, weights, a, iso=iso, ref_q=ref_q).run_all()


def run_mask_and_positions(run: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The attention mask and the RoPE positions a run used (from its op records)."""
    mask = positions = None
    for rec in run.records:
        if rec.kind == "scores":
            mask = rec.details.get("mask")
        if rec.kind == "rope" and rec.details.get("positions") is not None:
            positions = np.asarray(rec.details["positions"])
    return mask, positions


def isolation_reference(run: Any) -> tuple[dict[str, np.ndarray], Any] | None:
    """The float64 layer on the run's QUANTISED weights and input (same mask and positions), or
    None when it cannot be built (non-finite quantised values, a mask that is not causal/padding)."""
    from ...layer.forward import attention_mask
    from ...layer.reference import run_reference
    from ...layer.weights import LayerWeights

    cfg = run.config
    x = np.asarray(run.tensors["x"].values, dtype=np.float64)
    s = x.shape[0]
    mask, positions = run_mask_and_positions(run)
    pad = None
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        pad = m[-1] if cfg.causal else m[0]
        if pad.all():
            pad = None
        want = attention_mask(cfg, s, pad)
        if not np.array_equal(np.broadcast_to(m, (s, s)), np.ones((s, s), bool) if want is None else want):
            return None
    try:
        qw = LayerWeights({n: np.asarray(t.values, dtype=np.float64) for n, t in run.weights.items()})
        with np.errstate(all="ignore"):
            ref_q = run_reference(cfg, qw, x, pad_mask=pad, positions=positions)
    except ValueError:
        return None
    if not all(np.all(np.isfinite(v)) for v in ref_q.values()):
        return None
    return ref_q, qw
