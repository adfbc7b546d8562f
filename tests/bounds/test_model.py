"""Rounding models, gamma factors, accumulation policies and activation constants of
refmodel.bounds, each checked against an independent computation or against measured rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refmodel.bounds import (
    Accum,
    Bound,
    PartialSums,
    RoundingModel,
    activation_constants,
    as_tiers,
    gamma,
    gamma_tilde,
    lambda_azuma,
    lambda_hm,
    output_rounding,
    rounding_model,
)
from refmodel.bounds.elementwise import activation, activation_derivative
from refmodel.bounds.emulate import rnd
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.minifloat import FloatFormat


@pytest.mark.parametrize("spec,mode,rel,ab", [
    ("fp16", "rne", 2.0 ** -11, 2.0 ** -25),
    ("bf16", "rne", 2.0 ** -8, 2.0 ** -134),
    ("fp32", "half_away", 2.0 ** -24, 2.0 ** -150),
    ("e4m3fn", "rne", 2.0 ** -4, 2.0 ** -10),
    ("fp16", "rtz", 2.0 ** -10, 2.0 ** -24),
    ("fp16", "stochastic", 2.0 ** -10, 2.0 ** -24),
    (FloatFormat(5, 2, subnormals=False), "rne", 2.0 ** -3, 2.0 ** -14),  # FTZ: a flushed value loses min_normal
    ("s16.8", "rne", 0.0, 2.0 ** -9),
    ("s16.8", "half_up", 0.0, 2.0 ** -9),
    ("s16.8", "floor", 0.0, 2.0 ** -8),
    ("u8.8", "stochastic", 0.0, 2.0 ** -8),
])
def test_rounding_model_values(spec, mode, rel, ab):
    m = rounding_model(spec, mode)
    assert m.rel == rel and m.abs == ab
    assert m.unbiased == (mode in ("rne", "stochastic"))


def test_float64_and_model_passthrough_are_exact():
    assert rounding_model("float64").exact and rounding_model(None).exact
    m = RoundingModel(1e-3, 1e-9)
    assert rounding_model(m) is m
    with pytest.raises(ValueError, match="rel"):
        RoundingModel(-1.0, 0.0)
    with pytest.raises(ValueError, match="unsupported format"):
        rounding_model(3.5)


@pytest.mark.parametrize("spec,mode", [("fp16", "rne"), ("bf16", "rne"), ("e4m3fn:sat", "rne"), ("fp32", "rne"),
                                       ("fp16", "rtz"), ("bf16", "floor"), ("e5m2", "ceil"), ("fp16", "stochastic"),
                                       (FloatFormat(5, 2, subnormals=False), "rne"), ("s16.8", "rne"),
                                       ("s12.4", "floor"), ("s16.8", "stochastic")])
def test_rounding_model_holds_on_measured_roundings(spec, mode):
    """|fl(z) - z| <= rel |z| + abs over values spanning normal and subnormal ranges, and the model
    is attained (max ratio close to 1) -- so it is neither violated nor loose."""
    m = rounding_model(spec, mode)
    rng = np.random.default_rng(7)
    fmt = m.fmt
    if isinstance(fmt, FloatFormat):
        lo, hi = math.log2(fmt.min_subnormal) - 2, math.log2(fmt.max) - 1
    else:
        lo, hi = -fmt.frac - 3, math.log2(fmt.max) - 1
    z = rng.choice([-1.0, 1.0], 200000) * 2.0 ** rng.uniform(lo, hi, 200000)
    y = rnd(m, z, rng=np.random.default_rng(3))
    err = np.abs(y - z)
    bound = m.rel * np.abs(z) + m.abs
    assert np.all(err <= bound)
    assert np.max(err / bound) > 0.85


def test_gamma_and_no_guarantee():
    g = gamma(100, 2.0 ** -11)
    assert g.ok and g.value == pytest.approx(100 * 2.0 ** -11 / (1 - 100 * 2.0 ** -11), rel=1e-15)
    assert gamma(0, 0.1).value == 0.0
    v = gamma(256, 2.0 ** -8)
    assert v.value == math.inf and not v.ok and "no guarantee" in v.reason and "256" in v.reason
    with pytest.raises(ValueError):
        gamma(-1, 0.1)


def test_gamma_bounds_the_product_of_roundings():
    """|prod(1 + d_i) - 1| <= gamma_n(u) for the extreme d_i = +-u."""
    for n, u in [(10, 2.0 ** -4), (100, 2.0 ** -11), (1000, 2.0 ** -11)]:
        assert (1 + u) ** n - 1 <= gamma(n, u).value
        assert 1 - (1 - u) ** n <= gamma(n, u).value


def test_statistical_lambda_and_gamma_tilde():
    n, u, alpha = 4096, 2.0 ** -11, 1e-3
    lam = lambda_hm(n, u, alpha)
    assert 2 * n * math.exp(-lam ** 2 * (1 - u) ** 2 / 2) == pytest.approx(alpha, rel=1e-9)
    assert lam == pytest.approx(5.6, abs=0.1)  # stability.md 5.4: k = 4096, alpha = 1e-3
    gt = gamma_tilde(n, u, lam)
    assert gt == pytest.approx(math.expm1(lam * math.sqrt(n) * u + n * u * u / (1 - u)))
    assert gt < gamma(n // 4, u).value  # much smaller than the worst case for large n
    la = lambda_azuma(1e-6)
    assert 2 * math.exp(-la ** 2 / 2) == pytest.approx(1e-6, rel=1e-9)
    with pytest.raises(ValueError):
        lambda_hm(10, u, 0.0)


def test_gamma_tilde_holds_statistically():
    """Products of n random roundings (RNE of random data) stay within gamma_tilde."""
    rng = np.random.default_rng(0)
    n, u = 512, 2.0 ** -11
    m = rounding_model("fp16")
    x = rng.uniform(1, 2, size=(2000, n))
    d = rnd(m, x) / x - 1  # actual relative rounding errors
    prod = np.abs(np.prod(1 + d, axis=1) - 1)
    assert np.all(prod <= gamma_tilde(n, u, lambda_hm(n, u, 1e-6)))


def test_as_tiers_and_bound_nan_is_no_guarantee():
    r, s = as_tiers(None, (2, 3))
    assert r.shape == (2, 3) and not r.any()
    b = Bound(np.array([1.0, np.nan]), np.array([2.0, 0.5]))
    assert b.rig[1] == math.inf and b.stat[0] == 1.0  # stat is clipped to rig, NaN rig becomes inf
    r, s = as_tiers(b)
    assert s[1] == 0.5
    with pytest.raises(ValueError):
        as_tiers(np.array([-1.0]))


def test_output_rounding_saturation_and_overflow():
    sat = rounding_model("e4m3fn:sat")
    er, es, nog, reasons, notes = output_rounding(np.array([440.0, 10.0]), np.array([20.0, 0.0]),
                                                  np.array([20.0, 0.0]), sat, "y")
    assert not nog.any() and not reasons and notes
    assert er[0] >= 460 - 448  # the overshoot is part of the bound
    inf_fmt = rounding_model("fp16")
    er, es, nog, reasons, notes = output_rounding(np.array([65000.0, 1.0]), np.array([1000.0, 0.0]),
                                                  np.array([1000.0, 0.0]), inf_fmt, "y")
    assert nog.tolist() == [True, False] and "no guarantee" in reasons[0]


def test_measured_unit_model():
    m = RoundingModel.measured(0.75, "u16.15")
    assert m.abs == 0.75 * 2.0 ** -15 and m.rel == 0 and not m.unbiased
    with pytest.raises(ValueError):
        RoundingModel.measured(-1, "u16.15")


def test_accum_error_formulas():
    A = np.array([10.0])
    u, eta = 2.0 ** -11, 2.0 ** -25
    r, s, reasons = Accum.sequential("fp16").error(100, A)
    g = gamma(100, u).value
    assert r[0] == pytest.approx(g * 10 + 100 * eta * (1 + g))
    assert not reasons and 0 < s[0] < r[0]
    r, _, _ = Accum.sequential("fp16").error(100, A, init=True)
    assert r[0] == pytest.approx(gamma(101, u).value * 10 + 101 * eta * (1 + gamma(101, u).value))
    ub = 2.0 ** -24
    r, _, _ = Accum.blocked("fp32", 32).error(1024, A)
    gb = gamma(32, ub).value
    assert r[0] == pytest.approx(gb * 10 + 32 * 2.0 ** -150 * (1 + gb))
    r, _, _ = Accum.blocked("fp32", 32, round_block=True).error(1024, A)
    assert r[0] == pytest.approx((1 + gb) * (ub * 10 + 32 * 2.0 ** -150) + gb * 10 + 32 * 2.0 ** -150 * (1 + gb))
    r, _, _ = Accum.blocked("fp16", 16, inner="fp32").error(256, A)
    gi, go = gamma(16, ub).value, gamma(16, u).value
    inner = gi * 10 + 256 * 2.0 ** -150 * (1 + gi)
    assert r[0] == pytest.approx((1 + go) * inner + go * 10 + 16 * eta * (1 + go))
    r, s, reasons = Accum.sequential("bf16").error(512, A)
    assert r[0] == math.inf and "vacuous" in reasons[0] and math.isfinite(s[0])
    r, s, _ = Accum.exact().error(10, A)
    assert r[0] == 0 and s[0] == 0
    fa = Accum.fixed("s32.8", product_frac=16)
    r, _, _ = fa.error(64, A)
    assert r[0] == 64 * 2.0 ** -9
    assert Accum.fixed("s32.16", product_frac=16).error(64, A)[0][0] == 0


def test_accum_from_policy():
    assert Accum.from_policy("exact").kind == "exact"
    a = Accum.from_policy("sequential:fp16")
    assert a.kind == "sequential" and a.model.rel == 2.0 ** -11
    b = Accum.from_policy("blocked:fp32:32")
    assert b.kind == "blocked" and b.block == 32 and b.round_block
    f = Accum.from_policy("acc:s40:wrap", product_frac=16)
    assert f.kind == "fixed" and f.fmt == FixedFormat(40, 16) and f.model.overflow == "wrap" and f.term.exact
    f = Accum.from_policy("acc:s48.8:sat", product_frac=16)
    assert f.fmt == FixedFormat(48, 8) and f.term.abs == 2.0 ** -9
    with pytest.raises(ValueError, match="product_frac"):
        Accum.from_policy("acc:s40:wrap")


@pytest.mark.parametrize("acc", [Accum.sequential("fp16"), Accum.blocked("fp32", 8), Accum.blocked("fp32", 8, round_block=True),
                                 Accum.blocked("fp16", 8, inner="fp32"), Accum.exact()])
def test_partial_sums_match_brute_force(acc):
    rng = np.random.default_rng(1)
    t = rng.standard_normal((3, 5, 50))
    init = rng.standard_normal((3, 5))
    ps = PartialSums((3, 5), acc, init)
    ps.feed(t[..., :16])
    ps.feed(t[..., 16:])
    full = np.concatenate([init[..., None], t], axis=-1)
    cs = np.cumsum(full, axis=-1)
    assert np.allclose(ps.total, cs[..., -1])
    assert np.allclose(ps.max_abs, np.max(np.abs(cs), axis=-1))
    if acc.kind == "sequential":
        assert np.allclose(ps.ss_outer, np.sqrt(np.sum(cs ** 2, -1)))
    if acc.kind == "blocked":
        ends = list(range(8, 50, 8)) + [50]
        outer = np.stack([init] + [init + t[..., :e].sum(-1) for e in ends], -1)
        assert np.allclose(ps.ss_outer, np.sqrt(np.sum(outer ** 2, -1)))
        blocks = [t[..., s:s + 8] for s in range(0, 50, 8)]
        if acc.inner is not None:
            inner = np.sqrt(sum(np.sum(np.cumsum(b, -1) ** 2, -1) for b in blocks))
            assert np.allclose(ps.ss_inner, inner)
        elif acc.round_block:
            assert np.allclose(ps.ss_inner, np.sqrt(sum(b.sum(-1) ** 2 for b in blocks)))


def _golden_max(f, a, b, it=200):
    g = (math.sqrt(5) - 1) / 2
    for _ in range(it):
        c, d = b - g * (b - a), a + g * (b - a)
        if f(c) > f(d):
            b = d
        else:
            a = c
    return f((a + b) / 2), (a + b) / 2


@pytest.mark.parametrize("name", ["gelu_erf", "gelu_tanh", "silu"])
def test_activation_constants_against_independent_maximisation(name):
    """L = max|phi'| from the grid + margin brackets the true max found by golden-section search
    on phi' (unimodal around its peak), and M2 brackets max|phi''| (central differences)."""
    c = activation_constants(name)
    true_max, xm = _golden_max(lambda t: float(activation_derivative(name, np.array(t))), 0.5, 4.0)
    assert c.L_grid <= true_max + 1e-12 <= c.L
    assert c.L - true_max < 1e-4
    assert abs(c.argmax - xm) < 1e-3
    xs = np.linspace(-12, 12, 480001)
    h = 1e-5
    d2 = (activation_derivative(name, xs + h) - activation_derivative(name, xs - h)) / (2 * h)
    assert np.max(np.abs(d2)) <= c.M2 + 1e-6
    if name == "gelu_erf":
        assert c.L == pytest.approx(1.1289, abs=1e-4)  # stability.md 3.7, checked here, not used
        assert c.M2 == pytest.approx(2 / math.sqrt(2 * math.pi), abs=1e-3)
        assert c.min_d1 == pytest.approx(1 - c.L_grid, abs=1e-6)  # phi'(-x) = 1 - phi'(x)
    # phi(x) - phi(y) <= L |x - y| on random pairs (the constant is used as a Lipschitz bound)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-8, 8, 100000), rng.uniform(-8, 8, 100000)
    assert np.all(np.abs(activation(name, x) - activation(name, y)) <= c.L * np.abs(x - y) + 1e-15)
