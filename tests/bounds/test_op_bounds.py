"""Empirical validation of the per-op bounds: every case of refmodel.bounds.validate.CASES is
emulated with exactly the modelled roundings and compared with float64 -- zero violations of
the rigorous tier, non-vacuous statistical tier on random inputs -- plus targeted checks of the
no-guarantee flags, the outlier and attention-sink behaviour and op-by-op chaining."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refmodel.bounds import (
    EXACT,
    Accum,
    NormSteps,
    SoftmaxSteps,
    activation,
    activation_bound,
    linear_bound,
    matmul_bound,
    norm_bound,
    rounding_model,
    softmax_bound,
)
from refmodel.bounds.emulate import emu_matmul, emu_norm, emu_softmax, func_model, rnd
from refmodel.bounds.validate import BOUND_REL, CASES, RANDOM_KINDS, REF_REL, summarize

_RESULTS: dict[int, object] = {}


def _run(i: int):
    if i not in _RESULTS:
        _RESULTS[i] = CASES[i].run()
    return _RESULTS[i]


def _id(c) -> str:
    return f"{c.op}|{c.config}|{c.kind}".replace(" ", "_")


@pytest.mark.parametrize("i", range(len(CASES)), ids=[_id(c) for c in CASES])
def test_case_has_no_violation(i):
    c = CASES[i]
    r = _run(i)
    assert r.viol_rig == 0, f"{r.viol_rig} rigorous violations; reasons {r.reasons}"
    assert r.viol_stat == 0, f"{r.viol_stat} statistical violations"
    if c.expect_nog:
        assert r.no_guarantee > 0 and any("no guarantee" in s for s in r.reasons)
    else:
        assert r.no_guarantee == 0, r.reasons
        assert r.trials > 0 and np.all(np.isfinite(r.ratio_rig))
    if (c.kind in RANDOM_KINDS and c.op in ("matmul", "layernorm", "rmsnorm", "softmax") and not c.expect_nog
            and c.stat_tight):
        # non-vacuity: the statistical tier is within 10x of the largest observed error
        assert r.max_stat >= 0.1, f"statistical tier too loose: max observed/bound = {r.max_stat:.3g}"


def test_total_trials():
    res = [_run(i) for i in range(len(CASES))]
    s = summarize(res)
    assert s["trials"] >= 2000
    assert s["viol_rig"] == 0
    ops = {r.op for r in res}
    assert {"matmul", "linear", "logits", "attn_mix", "layernorm", "rmsnorm", "softmax", "gelu", "silu", "swiglu",
            "add", "cast", "scale", "mul", "rope"} <= ops


def test_emulator_matches_project_accumulate():
    """The matmul emulator reproduces refmodel.numerics.accumulate.matmul bit for bit, so the bounds
    are validated against the project's own accumulation contract."""
    from refmodel.numerics import accumulate as acm
    from refmodel.numerics.fixed import quantize
    from refmodel.numerics.minifloat import decode, encode

    rng = np.random.default_rng(5)
    for fin, pol, out, K in [("fp16", "sequential:fp16", "fp16", 300), ("bf16", "blocked:fp32:32", "bf16", 300),
                             ("e4m3fn", "exact", "bf16", 300), ("fp16", "sequential:fp32", "fp16", 100),
                             ("bf16", "blocked:bf16:8", "bf16", 100)]:
        a = np.clip(rng.standard_normal((6, K)) * np.exp(2 * rng.standard_normal((6, K))), -400, 400)
        A, B = encode(a, fin), encode(rng.standard_normal((K, 5)), fin)
        y1 = decode(acm.matmul(A, B, pol, out).codes, rounding_model(out).fmt)
        y2 = emu_matmul(decode(A.codes, A.fmt), decode(B.codes, B.fmt), accum=Accum.from_policy(pol), products=EXACT,
                        out=rounding_model(out))
        assert np.array_equal(y1, y2), pol
    a, b = quantize(rng.standard_normal((6, 200)) * 4, "s16.8"), quantize(rng.standard_normal((200, 5)), "s16.8")
    for pol in ["acc:s48:sat", "acc:s24:sat", "acc:s24:wrap"]:
        y1 = acm.matmul(a, b, pol, "s16.8").to_float()
        y2 = emu_matmul(a.to_float(), b.to_float(), accum=Accum.from_policy(pol, product_frac=16), products=EXACT,
                        out=rounding_model("s16.8"))
        assert np.array_equal(y1, y2), pol


def test_saturating_accumulator_flag_is_real():
    """Components flagged 'may overflow' really saturate (large error); the others obey the bound."""
    rng = np.random.default_rng(2)
    a = rnd(rounding_model("s8.4"), np.abs(rng.standard_normal((8, 128))) * 2)
    b = rnd(rounding_model("s8.4"), np.abs(rng.standard_normal((128, 8))) * np.linspace(0.05, 1, 8))
    acc = Accum.from_policy("acc:s16:sat", product_frac=8)
    out = rounding_model("s24.8")
    B = matmul_bound(a, b, accum=acc, out=out)
    y = emu_matmul(a, b, accum=acc, products=EXACT, out=out)
    err = np.abs(y - a @ b)
    flagged = ~np.isfinite(B.rig)
    assert flagged.any() and (~flagged).any()
    assert any("may overflow" in r for r in B.reasons)
    assert np.max(err[flagged]) > 1.0  # saturation lost whole units
    assert np.all(err[~flagged] <= B.rig[~flagged])


def test_wrapping_accumulator_intermediate_overflow_is_harmless():
    """A wrapping accumulator whose partial sums overflow but whose final sum fits is exact."""
    a = rnd(rounding_model("s8.4"), np.array([[7.0, 7.0, -7.0, -7.0, 1.0]]))
    b = rnd(rounding_model("s8.4"), np.array([[7.0], [7.0], [7.0], [7.0], [0.5]]))
    acc = Accum.from_policy("acc:s16:wrap", product_frac=8)  # max 127.99: 49 + 49 = 98, then 147 wraps
    acc_small = Accum.from_policy("acc:s15:wrap", product_frac=8)  # max 63.99: 98 already wraps
    out = rounding_model("s16.8")
    for ac in (acc, acc_small):
        B = matmul_bound(a, b, accum=ac, out=out)
        y = emu_matmul(a, b, accum=ac, products=EXACT, out=out)
        assert B.guaranteed and not B.reasons
        assert y[0, 0] == 0.5 and np.all(np.abs(y - a @ b) <= B.rig)
    sat = Accum.from_policy("acc:s15:sat", product_frac=8)
    assert not matmul_bound(a, b, accum=sat, out=out).guaranteed


def test_vacuous_gamma_keeps_statistical_tier():
    rng = np.random.default_rng(0)
    a = rnd(rounding_model("bf16"), rng.standard_normal((2, 512)))
    b = rnd(rounding_model("bf16"), rng.standard_normal((512, 3)))
    B = matmul_bound(a, b, accum=Accum.sequential("bf16"), out=rounding_model("bf16"))
    assert np.all(np.isinf(B.rig)) and np.all(np.isfinite(B.stat))
    assert any("vacuous" in r for r in B.reasons)


def test_hm_statistical_form_is_looser_than_partial_sums():
    """stat_mode='hm' (gamma_tilde * sum|terms|) versus the partial-sum Azuma form on random data."""
    rng = np.random.default_rng(1)
    a = rnd(rounding_model("fp16"), rng.standard_normal((40, 8, 1024)))
    b = rnd(rounding_model("fp16"), rng.standard_normal((40, 1024, 8)))
    acc = Accum.sequential("fp16")
    kw = dict(accum=acc, out=EXACT)
    ps = matmul_bound(a, b, stat_mode="partial_sums", **kw)
    hm = matmul_bound(a, b, stat_mode="hm", **kw)
    y = emu_matmul(a, b, accum=acc, products=EXACT, out=EXACT)
    err = np.abs(y - np.einsum("tmk,tkn->tmn", a, b))
    assert np.all(ps.stat <= hm.stat) and np.all(err <= ps.stat)
    assert np.max(err / hm.stat) < 0.1 <= np.max(err / ps.stat)


def _ln_row(M: float, d: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((50, d))
    x[:, 5] = M
    return x


def test_layernorm_outlier_regime_mean_subtraction_dominates():
    """Outlier regime (stability.md 3.4): LayerNorm's background outputs carry an absolute
    mean-subtraction error ~ gamma_d mean|x| / r that dominates their bound and makes a
    componentwise-relative tolerance unusable (entries with c_i ~ 0); RMSNorm's bound is
    componentwise relative and data independent. Both bounds hold."""
    m = rounding_model("fp16")
    steps = NormSteps.floating("fp16", rsqrt=func_model(m))
    g256 = 256 * 2.0 ** -11 / (1 - 256 * 2.0 ** -11)
    for M in (10.0, 100.0, 1000.0):
        s = 64.0
        xh = rnd(m, _ln_row(M) / s)
        bg = np.ones(xh.shape[-1], bool)
        bg[5] = False
        for center in (True, False):
            B = norm_bound(xh, center=center, eps=1e-5, steps=steps, slanc_scale=s)
            y = emu_norm(xh, center=center, eps=1e-5, steps=steps, slanc_scale=s)
            n = B.parts["n"]
            assert np.all(np.abs(y - n) <= B.rig)
            rel = B.rig[:, bg] / np.abs(n[:, bg])
            if center:
                share = B.parts["mean_subtraction"][:, bg] / B.parts["normalised"][:, bg]
                assert np.median(share) > 0.5  # the mean-subtraction term dominates the background
                est = g256 * np.mean(np.abs(xh), -1, keepdims=True) * B.parts["R"]  # gamma_d mean|x| / r
                assert np.all((B.parts["mean_subtraction"] >= est) & (B.parts["mean_subtraction"] <= 1.2 * est))
                assert np.max(rel) > 5  # some background c_i ~ 0: a relative tolerance is unusable
            else:
                assert np.max(rel) < 0.2  # ~ gamma_d / 2 + few u, whatever M is


def test_softmax_attention_sink_tightening():
    """On sink rows the attention-weighted gap s^T a is tiny next to the largest gap, and the
    local bound is several times tighter than the generic (max-gap) form; both still hold."""
    rng = np.random.default_rng(4)
    m = rounding_model("bf16")
    steps = SoftmaxSteps.floating("bf16", acc=Accum.sequential("fp32"), exp=func_model(m))
    logits = 2 * rng.standard_normal((200, 512))
    logits[:, 0] += 25
    lh = rnd(m, logits)
    B = softmax_bound(lh, steps=steps)
    y = emu_softmax(lh, steps=steps)
    w = np.exp(lh - lh.max(-1, keepdims=True))
    ref = w / w.sum(-1, keepdims=True)
    assert np.all(np.abs(y - ref) <= B.rig)
    assert np.all(B.parts["weighted_gap"] < 0.05 * B.parts["max_gap"])
    assert np.median(B.parts["generic_local"][:, 1:] / B.parts["local"][:, 1:]) > 2
    # unshifted evaluation with an argument-reducing exp loses u |l|: its bound is much larger
    st_arg = SoftmaxSteps.floating("fp32", exp_arg_rel=(1 + 2.0 ** -24) ** 2 - 1)
    l32 = rnd(rounding_model("fp32"), 3 * rng.standard_normal((20, 64)) + 60)
    sh = softmax_bound(l32, steps=st_arg, shifted=True)
    un = softmax_bound(l32, steps=st_arg, shifted=False)
    assert not un.reasons and np.median(un.rig / sh.rig) > 2


def test_softmax_propagation_rigorous_vs_first_order():
    """The rigorous propagated form is close to the first-order s_j (E_j + s^T E) for small E,
    never exceeds the coarse s_j (e^{2M} - 1), and holds for large logit errors."""
    from refmodel.bounds.softmax import softmax_propagation

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((100, 32)) * 2
    s = np.exp(logits - logits.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    for scale in (1e-6, 0.5, 3.0):
        E = scale * rng.uniform(0, 1, logits.shape)
        fine, coarse = softmax_propagation(s, E)
        assert np.all(fine <= coarse * (1 + 1e-12))
        if scale == 1e-6:
            first = s * (E + np.sum(s * E, -1, keepdims=True))
            assert np.allclose(fine, first, rtol=1e-4)
        for _ in range(20):
            lt = logits + E * rng.uniform(-1, 1, logits.shape)
            st = np.exp(lt - lt.max(-1, keepdims=True))
            st /= st.sum(-1, keepdims=True)
            assert np.all(np.abs(st - s) <= fine * (1 + 1e-12) + 1e-300)


def test_chained_ops_propagate():
    """LayerNorm -> linear (bf16 weights, quantised reference) -> GELU -> linear, each bound fed
    the previous Bound as its input error, against float64 of the whole chain: zero violations."""
    rng = np.random.default_rng(3)
    T, d, f = 64, 128, 256
    m16, mb = rounding_model("fp16"), rounding_model("bf16")
    x = rng.standard_normal((T, d)) * 2
    W1 = rng.standard_normal((f, d)) / math.sqrt(d)
    W2 = rng.standard_normal((d, f)) / math.sqrt(f)
    W1h, W2h = rnd(mb, W1), rnd(mb, W2)
    xh = rnd(m16, x)
    steps = NormSteps.floating("fp32", out="fp16", rsqrt=func_model(rounding_model("fp32")))
    acc = Accum.sequential("fp32")
    unit = func_model(m16)
    # hardware
    h0 = emu_norm(xh, center=True, eps=1e-5, steps=steps, g=np.ones(d), beta=np.zeros(d))
    h1 = emu_matmul(h0, W1h.T, accum=acc, products=EXACT, out=m16)
    h2 = rnd(unit, activation("gelu_tanh", h1))
    h3 = emu_matmul(h2, W2h.T, accum=acc, products=EXACT, out=m16)
    # bounds, op by op
    Ex = np.abs(xh - x)
    B0 = norm_bound(xh, Ex, center=True, eps=1e-5, steps=steps, g=np.ones(d), beta=np.zeros(d))
    B1 = linear_bound(h0, W1h, E_x=B0, E_w=np.abs(W1h - W1), accum=acc, out=m16)
    B2 = activation_bound(h1, B1, fn="gelu_tanh", unit=unit)
    B3 = linear_bound(h2, W2h, E_x=B2, E_w=np.abs(W2h - W2), accum=acc, out=m16)
    # float64 reference of the chain on the exact inputs and weights
    mu = x.mean(-1, keepdims=True)
    r0 = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
    r3 = activation("gelu_tanh", r0 @ W1.T) @ W2.T
    for h, r, B in ((h0, r0, B0), (h3, r3, B3)):
        err = np.abs(h - r)
        assert np.all(err <= B.rig * (1 + BOUND_REL) + REF_REL * np.abs(r))
        assert np.all(err <= B.stat * (1 + BOUND_REL) + REF_REL * np.abs(r))
    assert B3.guaranteed and np.max(np.abs(h3 - r3) / B3.rig) > 1e-3  # and not absurdly loose


def test_running_error_bound_and_its_compiled_kernel():
    """The a posteriori running error bound of a sequential / blocked float accumulation holds on
    hard data (alternating, cancelling, repeated and zero terms; gamma_n vacuous for fp16 over
    4096 terms), is much tighter than gamma_n sum|terms| on mean-zero data, and the compiled
    kernel of the matmul case gives the numpy loop's bits."""
    from refmodel.bounds.accum import Accum, MatmulTerms, matmul_coherent, running_error
    from refmodel.numerics import accumulate as acc
    from refmodel.numerics.minifloat import encode

    rng = np.random.default_rng(3)
    for fmt, K in (("fp32", 300), ("fp16", 300), ("bf16", 300), ("fp16", 4096)):
        a = rng.standard_normal((12, K)) * np.exp(rng.standard_normal((12, K)))
        a[0] = 1.0  # a row of identical terms
        a[1, ::2] = 0.0  # exact zeros
        a[2] = (-1.0) ** np.arange(K) * 1e3  # cancellation
        b = rng.standard_normal((K, 7))
        b[:, 0] = 1.0
        qa, qb = encode(a, fmt), encode(b, fmt)
        av, bv = qa.to_float(), qb.to_float()
        exact = av @ bv
        A = np.abs(av) @ np.abs(bv)
        for pol in (f"sequential:{fmt}", f"blocked:{fmt}:8"):
            got = acc.matmul(qa, qb, pol, fmt, "rne").to_float()
            accum = Accum.from_policy(pol)
            r = running_error(MatmulTerms(av, bv), accum, A=A, compiled=False)
            fin = np.isfinite(got)  # an accumulator that overflowed: its peak partial sum says so
            assert np.all(np.abs(got - exact)[fin] <= r.error[fin]), (fmt, K, pol)
            assert np.all(r.peak[~fin] > accum.model.max), (fmt, K, pol)
            if pol.startswith("sequential"):
                coh = rng.random((12, K)) < 0.3
                c1 = running_error(MatmulTerms(av, bv), accum, A=A, coherent=matmul_coherent(coh))
                c0 = running_error(MatmulTerms(av, bv), accum, A=A, coherent=matmul_coherent(coh), compiled=False)
                for f in ("error", "peak", "ss_outer"):
                    assert np.array_equal(getattr(c1, f), getattr(c0, f)), f
                assert np.array_equal(c1.error, r.error)
                g = accum.error(K, A)[0]
                if np.all(np.isfinite(g)):
                    assert np.median(r.error[3:] / g[3:]) < 0.2  # random rows: far below gamma_n
                else:  # n u >= 1: no a priori bound, the running one is finite
                    assert K * accum.model.rel >= 1 and np.all(np.isfinite(r.error))
