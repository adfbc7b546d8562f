"""LayerNorm / RMSNorm integer model (refmodel.numerics.units.norm) against an independent
slow oracle (Python ints and Fraction, written from the numeric contract), plus the proofs the
contract relies on: exact mean by constant multiplication, the variance identity the RTL uses,
every intermediate width, the float64 error bound and SLaNC scale invariance."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.units.norm import (
    NormParams,
    eps_code,
    layernorm_int,
    mean_constants,
    norm_error,
    norm_error_bound,
    norm_int,
    norm_ref,
    norm_stats_int,
    random_rows,
    rmsnorm_int,
)

RTL = Path(__file__).resolve().parents[2] / "rtl"


# ---- the oracle --------------------------------------------------------------------------------


def _rhu(q: Fraction) -> int:
    """round half up (ties toward +inf) of an exact rational."""
    return math.floor(q + Fraction(1, 2))


def _rne(q: Fraction) -> int:
    f = math.floor(q)
    r = q - f
    if r > Fraction(1, 2) or (r == Fraction(1, 2) and f % 2 == 1):
        return f + 1
    return f


def _rsqrt_search(a: int, k: int) -> int:
    """Largest r with r^2 * a <= 4^k (= floor(2^k / sqrt(a))), by bisection on exact ints."""
    lo, hi = 0, 1 << (k + 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid * mid * a <= 1 << (2 * k):
            lo = mid
        else:
            hi = mid - 1
    return lo


def oracle_row(x: list[int], gamma: list[int], beta: list[int], p: NormParams) -> list[int]:
    """The numeric contract, step by step, in Python ints / Fraction, no numpy."""
    d, g = p.d, (0 if p.rms else p.mean_g)
    x1 = [_rhu(Fraction(v, 1 << p.shift)) for v in x]
    s = sum(x1)
    mu = 0 if p.rms else _rhu(Fraction(s * (1 << g), d))
    y = [v * (1 << g) - mu for v in x1]
    v = sum(t * t for t in y)
    a = v * 4 ** p.eps_g + d * p.eps
    a_w = 2 * (p.in_fmt.width - (0 if p.shift == 0 else p.shift - 1) + g) + (d - 1).bit_length() + 2 * p.eps_g + 1
    a_w += a_w % 2
    e = 0 if a == 0 else (a_w - a.bit_length()) // 2
    w_r = min(a_w, p.rsq_w)
    a_t = (a << (2 * e)) >> (a_w - w_r)
    r = _rsqrt_search(a_t, p.rsq_k)
    sqd = _rhu(Fraction(math.isqrt(d << (2 * p.sqd_f + 40)), 1 << 20))  # floor(sqrt(D) 2^(F+20)) / 2^20
    rs = 0 if a == 0 else _rhu(Fraction(r * sqd, 1 << p.sqd_f))
    sh = p.rsq_k + (a_w - w_r) // 2 - e - p.eps_g - p.n_f
    out = []
    rnd = _rne if p.out_rounding.value == "rne" else _rhu
    for yi, gi, bi in zip(y, gamma, beta, strict=True):
        n = _rhu(Fraction(yi * rs, 1 << sh))
        z = Fraction(n * gi, 1 << (p.n_f + p.gamma_fmt.frac)) + Fraction(bi, 1 << p.beta_fmt.frac)
        o = rnd(z * (1 << p.out_fmt.frac))
        out.append(min(max(o, p.out_fmt.min_code), p.out_fmt.max_code))
    return out


CONFIGS = [
    dict(d=64),
    dict(d=3, in_fmt="s8.4", n_f=6, gamma_fmt="s8.5", beta_fmt="s8.4", out_fmt="s8.4"),
    dict(d=100, in_fmt="s20.8", shift=5, eps_g=4),
    dict(d=96, rms=True, shift=2, out_fmt="s12.8", out_rounding="rne"),
    dict(d=768, mean_g=8),
    dict(d=7, in_fmt="s12.4", shift=11, mean_g=0, out_rounding="rne"),  # x1 in {-1, 0, 1}
    dict(d=48, rsq_k=20, rsq_w=12, n_f=8),  # heavy truncation before the rsqrt
    dict(d=2, rms=True, in_fmt="s32.16", shift=8, n_f=10, gamma_fmt="s6.3", beta_fmt="s6.1", out_fmt="s24.6"),
]


def _with_eps(kw: dict, eps: float) -> NormParams:
    p = NormParams(**kw)
    return NormParams(**{**kw, "eps": eps_code(eps, p)})


def _tables(p: NormParams, rng) -> tuple[np.ndarray, np.ndarray]:
    gf, bf = p.gamma_fmt, p.beta_fmt
    g = rng.integers(gf.min_code, gf.max_code + 1, p.d)
    g[:3] = [gf.min_code, gf.max_code, 0][: min(3, p.d)]
    b = rng.integers(bf.min_code, bf.max_code + 1, p.d)
    return g, b


def _adversarial(p: NormParams, rng) -> np.ndarray:
    f, d = p.in_fmt, p.d
    i = np.arange(d)
    rows = [
        np.full(d, f.max_code), np.full(d, f.min_code), np.zeros(d, np.int64),
        np.where(i % 2 == 0, f.max_code, f.min_code), np.where(i == 0, f.max_code, f.min_code),
        np.where(i == d - 1, f.min_code, f.max_code), np.where(i == 1, f.max_code, 0),
        np.where(i == 0, 1, 0), np.where(i % 2 == 0, 1, -1),
    ]
    return np.concatenate([np.asarray(rows, dtype=np.int64), random_rows(p, 12, int(rng.integers(1 << 30))),
                           random_rows(p, 4, 5, outliers=f.max * 0.9)])


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("eps", [0.0, 1e-5])
def test_model_matches_oracle(kw, eps):
    p = _with_eps(kw, eps)
    rng = np.random.default_rng(len(str(kw)))
    rows = _adversarial(p, rng)
    g, b = _tables(p, rng)
    got = norm_int(rows, g, b, p)
    for r in range(rows.shape[0]):
        want = oracle_row(rows[r].tolist(), g.tolist(), b.tolist(), p)
        assert got[r].tolist() == want, f"row {r} {rows[r][:6].tolist()}...: model {got[r][:6]} oracle {want[:6]}"


def test_vectorised_over_leading_axes():
    p = _with_eps(dict(d=16, in_fmt="s10.4"), 1e-3)
    rows = random_rows(p, 24, 3).reshape(2, 3, 4, 16)
    g, b = _tables(p, np.random.default_rng(0))
    out = norm_int(rows, g, b, p)
    assert out.shape == rows.shape
    assert np.array_equal(out.reshape(-1, 16), norm_int(rows.reshape(-1, 16), g, b, p))
    one = rows.reshape(-1, 16)[5]
    assert np.array_equal(norm_int(one, g, b, p), out.reshape(-1, 16)[5])  # a single 1-D row
    assert norm_int(np.zeros((0, 16), np.int64), g, b, p).shape == (0, 16)


# ---- proofs the contract relies on ----------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3, 5, 7, 12, 64, 96, 100, 384, 768, 1000, 4096])
@pytest.mark.parametrize("in_w,shift,g", [(8, 0, 0), (8, 0, 4), (16, 0, 4), (16, 3, 8), (20, 0, 4), (24, 6, 4), (20, 5, 4)])
def test_mean_constant_is_exact(d, in_w, shift, g):
    """(U*M) >> MK == U // (2D) for every 0 <= U < 2^U_W: the Granlund-Montgomery condition,
    plus a direct check at the interval ends and on random U (Python ints)."""
    p = NormParams(d=d, in_fmt=FixedFormat(in_w, 0), shift=shift, mean_g=g, n_f=4)
    c = mean_constants(p)
    u_w, mk, m = c["U_W"], c["MK"], c["M"]
    err = m * 2 * d - (1 << mk)
    assert 0 <= err < 2 * d <= 1 << (mk - u_w)
    rng = np.random.default_rng(d + in_w)
    us = [0, 1, 2 * d - 1, 2 * d, (1 << u_w) - 1, (1 << u_w) - 2 * d] + [int(v) for v in rng.integers(0, 1 << min(u_w, 62), 2000)]
    for u in us:
        assert (u * m) >> mk == u // (2 * d)


@pytest.mark.parametrize("d", [2, 3, 5, 6, 7, 10, 31, 64, 100])
@pytest.mark.parametrize("g", [0, 2, 4])
def test_mean_path_exhaustive_small(d, g):
    """Every possible row sum S of s6 inputs: the RTL's U/M/OFF path gives the model's mu."""
    p = NormParams(d=d, in_fmt="s6.0", mean_g=g, n_f=2)
    c = mean_constants(p)
    s = np.arange(d * p.in_fmt.min_code, d * p.in_fmt.max_code + 1, dtype=np.int64)
    u = (s << (g + 1)) + d + 2 * d * c["OFF"]
    assert int(u.min()) >= 0 and int(u.max()) < 1 << c["U_W"]
    mu_rtl = ((u * c["M"]) >> c["MK"]) - c["OFF"]  # < 2^62 for these sizes
    mu_model = ((s << (g + 1)) + d) // (2 * d)
    assert np.array_equal(mu_rtl, mu_model)
    frac = [_rhu(Fraction(int(v) << g, d)) for v in s[:: max(1, len(s) // 300)]]
    assert mu_model[:: max(1, len(s) // 300)].tolist() == frac


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_variance_identity_used_by_rtl(kw):
    """V = 4^G Q - 2^(G+1) mu S + D mu^2 with Q = sum x1^2 equals sum (x1 2^G - mu)^2."""
    p = _with_eps(kw, 0.0)
    rows = _adversarial(p, np.random.default_rng(1))
    st = norm_stats_int(rows, p)
    x1 = [[int(v) for v in r] for r in st.x1]
    for i, r in enumerate(x1):
        q = sum(v * v for v in r)
        s, mu = sum(r), int(st.mu[i])
        v = (4 ** p.g) * q - (1 << (p.g + 1)) * mu * s + p.d * mu * mu
        assert v == int(st.v[i])


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_every_intermediate_fits_its_width(kw):
    """Adversarial rows (extremes, maximal variance, spikes, outliers) stay inside every stated
    width; eps at its largest legal code stresses A."""
    p0 = NormParams(**kw)
    eps_max = ((1 << (p0.v_w + 2 * p0.eps_g)) - 1) // p0.d
    for eps in (0, eps_max):
        p = NormParams(**{**kw, "eps": eps})
        rows = _adversarial(p, np.random.default_rng(2))
        st = norm_stats_int(rows, p)

        def fits_s(a, w):  # two's complement w bits
            return -(1 << (w - 1)) <= int(np.min(a)) and int(np.max(a)) < 1 << (w - 1)

        assert fits_s(st.x1, p.x1_w) and fits_s(st.s, p.s_w) and fits_s(st.y, p.y_w)
        assert fits_s(st.mu, p.x1_w + p.g + 1)
        assert int(st.v.max()) < 1 << p.v_w and int(st.a.max()) < 1 << p.a_w
        nz = st.a > 0
        assert np.all(st.a_norm[nz] >= 1 << (p.a_w - 2)) and np.all(st.a_norm < 1 << p.a_w)
        assert np.all(st.r[nz] <= 1 << (p.rsq_p + 1)) and np.all(st.r[nz] >= (1 << p.rsq_p) - 1)
        assert int(st.rs.max()) < 1 << p.rs_w and int(st.sh.min()) >= 0
        prod = [abs(int(yv) * int(rv)) for yr, rv in zip(st.y.reshape(-1, p.d), st.rs.ravel(), strict=True) for yv in yr]
        assert max(prod) < 1 << (p.y_w + p.rs_w - 1)
        assert fits_s(st.n, p.n_w)
        gf, bf = p.gamma_fmt, p.beta_fmt
        zmax = int(np.abs(st.n).max()) * (1 << (gf.width - 1)) + (1 << (bf.width - 1)) * (1 << (p.p_f - p.b_f))
        assert zmax < 1 << (p.z_w - 1)


def test_spike_row_reaches_the_normalised_maximum():
    """One spike in a constant row: |n| = sqrt(D - 1) (eps = 0), the largest LayerNorm value,
    and it is still inside N_W."""
    p = NormParams(d=256, n_f=12)
    row = np.where(np.arange(256) == 5, p.in_fmt.max_code, p.in_fmt.min_code)[None, :]
    st = norm_stats_int(row, p)
    n_spike = st.n[0, 5] / 2 ** p.n_f
    assert abs(n_spike - math.sqrt(255)) < 1e-3
    assert abs(int(st.n[0, 5])) < 1 << (p.n_w - 1)


# ---- float64 reference and error bound ------------------------------------------------------


def test_norm_ref_against_fraction():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 3, (4, 7))
    g, b = rng.normal(1, 0.2, 7), rng.normal(0, 0.1, 7)
    ref = norm_ref(x, g, b, 1e-3, rms=False)
    for r in range(4):
        xs = [Fraction(float(v)) for v in x[r]]
        m = sum(xs) / 7
        var = sum((v - m) ** 2 for v in xs) / 7 + Fraction(1e-3)
        for c in range(7):
            want = float((xs[c] - m) / Fraction(math.sqrt(float(var)))) * g[c] + b[c]
            assert abs(ref[r, c] - want) < 1e-12
    rms = norm_ref(x, g, None, 1e-3, rms=True)
    assert np.allclose(rms, x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-3) * g, rtol=1e-14)


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_error_bound_holds(kw):
    p = _with_eps(kw, 1e-5)
    rng = np.random.default_rng(11)
    rows = _adversarial(p, rng)
    g, b = _tables(p, rng)
    out = norm_int(rows, g, b, p).astype(np.float64)
    x = np.ldexp(rows.astype(np.float64), -p.in_fmt.frac)
    ref = norm_ref(x, np.ldexp(g.astype(float), -p.gamma_fmt.frac), np.ldexp(b.astype(float), -p.beta_fmt.frac),
                   p.eps_real, p.rms)
    ref = np.clip(np.ldexp(ref, p.out_fmt.frac), p.out_fmt.min_code, p.out_fmt.max_code)
    bound = norm_error_bound(rows, g, b, p)
    assert np.all(np.abs(out - ref) <= bound)
    e = norm_error(p, rows=64, seed=4, outliers=p.in_fmt.max * 0.5)
    ratio = float(re.search(r"max err/bound ([0-9.]+)", e.note).group(1))
    assert ratio <= 1.0 and e.n == 64 * p.d


def test_error_bound_is_tight_for_well_scaled_rows():
    """A design-quality claim: rows whose std is >= 2^7 input LSB (s16.8, no shift, gamma = 1)
    come out within 1.5 output LSB of float64, and the bound says so (< 2 LSB)."""
    p = _with_eps(dict(d=768), 1e-5)
    rng = np.random.default_rng(5)
    rows = np.clip(np.round(rng.normal(0, 1, (8, 768)) * rng.uniform(1, 16, (8, 1)) * 256), -32768, 32767).astype(np.int64)
    one = np.full(768, 1 << 12)
    e = norm_error(p, gamma_codes=one, x_codes=rows)
    assert e.max_abs_err <= 1.5
    assert float(norm_error_bound(rows, one, None, p).max()) < 2.0


# ---- semantics --------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 6])
def test_slanc_shift_is_scale_invariant(k):
    """x * 2^k through SHIFT=k equals x through SHIFT=0 bit for bit (x1 is identical and the eps
    code is already eps/s^2), i.e. LN(x/s; eps/s^2) = LN(x; eps)."""
    p0 = NormParams(d=50, in_fmt="s16.8", eps=37)
    pk = NormParams(d=50, in_fmt=f"s{16 + k}.8", shift=k, eps=37)
    rows = random_rows(p0, 20, k)
    g, b = _tables(p0, np.random.default_rng(k))
    assert np.array_equal(norm_int(rows, g, b, p0), norm_int(rows << k, g, b, pk))
    assert math.isclose(pk.eps_real, p0.eps_real * 4 ** k)


def test_constant_row_and_gamma_zero_give_beta():
    p = NormParams(d=10, in_fmt="s12.4", beta_fmt="s12.6", out_fmt="s12.4")
    b = np.array([-2048, 2047, 0, 1, -1, 2, -2, 3, -3, 33])
    g = np.full(10, 1 << 12)
    want = [_rhu(Fraction(int(v), 4)) for v in b]  # beta rounded from 6 to 4 fraction bits
    for const in (0, 5, -2048, 2047):
        assert norm_int(np.full((1, 10), const), g, b, p)[0].tolist() == want
    rows = random_rows(p, 5, 0)
    assert norm_int(rows, np.zeros(10, np.int64), b, p).tolist() == [want] * 5


def test_output_rounding_modes_differ_only_on_ties():
    kw = dict(d=16, in_fmt="s10.2", n_f=6, gamma_fmt="s8.0", beta_fmt="s8.2", out_fmt="s16.2")
    a = NormParams(**kw, out_rounding="half_up")
    r = NormParams(**kw, out_rounding="rne")
    rows = random_rows(a, 40, 9)
    g = np.arange(16) - 8
    oa, orr = norm_int(rows, g, None, a), norm_int(rows, g, None, r)
    z = norm_stats_int(rows, a).n * g  # frac 6, output frac 2: ties where the low 4 bits are 1000
    tie = (z & 15) == 8
    assert np.array_equal(oa[~tie], orr[~tie]) and tie.any()
    assert np.all((oa - orr)[tie] >= 0) and np.all(orr[tie] % 2 == 0)


def test_params_and_errors():
    with pytest.raises(ValueError, match="row length\\) must be in 2..4096, got 1"):
        NormParams(d=1)
    with pytest.raises(ValueError, match="shift must be in 0..15, got 16"):
        NormParams(d=8, shift=16)
    with pytest.raises(ValueError, match="must be signed"):
        NormParams(d=8, out_fmt="u16.8")
    with pytest.raises(ValueError, match="out_rounding must be half_up or rne"):
        NormParams(d=8, out_rounding="floor")
    with pytest.raises(ValueError, match="eps code .* too large"):
        NormParams(d=8, in_fmt="s8.0", eps=1 << 40)
    with pytest.raises(ValueError, match="RSQ_P .* must be >= n_f"):
        NormParams(d=8, rsq_k=10, rsq_w=12, n_f=12)
    p = NormParams(d=4, in_fmt="s8.4")
    with pytest.raises(ValueError, match="rows must have length D=4"):
        norm_int(np.zeros((2, 5), np.int64), np.zeros(4), np.zeros(4), p)
    with pytest.raises(ValueError, match="input code 128 outside s8.4"):
        norm_int(np.array([[0, 1, 2, 128]]), np.zeros(4), np.zeros(4), p)
    with pytest.raises(ValueError, match="gamma must have shape"):
        norm_int(np.zeros((1, 4), np.int64), np.zeros(3), np.zeros(4), p)
    with pytest.raises(ValueError, match="params.rms is True"):
        layernorm_int(np.zeros((1, 4), np.int64), np.zeros(4), None, NormParams(d=4, rms=True))
    with pytest.raises(ValueError, match="params.rms is False"):
        rmsnorm_int(np.zeros((1, 4), np.int64), np.zeros(4), None, p)
    with pytest.raises(ValueError, match="eps must be a finite value"):
        eps_code(float("nan"), p)


@pytest.mark.parametrize("d,f", [(2, 1), (3, 20), (64, 21), (100, 34), (768, 22), (4096, 40), (1000, 17)])
def test_sqd_is_rounded_sqrt(d, f):
    """SQD = round(sqrt(D) 2^F)  <=>  (2 SQD - 1)^2 <= 4 D 4^F < (2 SQD + 1)^2 (exact ints)."""
    sqd = NormParams(d=d, sqd_f=f, in_fmt="s8.0").sqd
    assert (2 * sqd - 1) ** 2 <= 4 * d * 4 ** f < (2 * sqd + 1) ** 2


def test_eps_code_round_trip():
    p = NormParams(d=64, in_fmt="s16.8", shift=3, eps_g=5)
    c = eps_code(1e-5, p)
    q = NormParams(d=64, in_fmt="s16.8", shift=3, eps_g=5, eps=c)
    lsb = 2.0 ** (2 * (p.shift - p.in_fmt.frac - p.g - p.eps_g))
    assert abs(q.eps_real - 1e-5) <= 0.5 * lsb


def test_to_hdl_matches_rtl_parameters():
    """Every parameter of rtl/layernorm.v is produced by to_hdl except the two file names."""
    text = (RTL / "layernorm.v").read_text()
    head = text[text.index("module layernorm"):text.index(") (")]
    names = set(re.findall(r"parameter\s+(?:integer\s+)?(?:\[[^\]]*\]\s*)?([A-Z_][A-Z0-9_]*)\s*=", head))
    assert names - {"GAMMA_MEMFILE", "BETA_MEMFILE"} == set(NormParams(d=8).to_hdl())


# ---- property test over random configurations ---------------------------------------------------



@st.composite
def _config_and_rows(draw):
    in_w = draw(st.integers(2, 24))
    kw = dict(
        d=draw(st.integers(2, 40)),
        in_fmt=f"s{in_w}.{draw(st.integers(-2, in_w))}",
        shift=draw(st.integers(0, in_w - 1)),
        rms=draw(st.booleans()),
        mean_g=draw(st.integers(0, 8)),
        eps_g=draw(st.integers(0, 6)),
        n_f=draw(st.integers(0, 16)),
        rsq_k=draw(st.integers(16, 31)),
        gamma_fmt=f"s{draw(st.integers(2, 16))}.{draw(st.integers(0, 8))}",
        beta_fmt=f"s{draw(st.integers(2, 16))}.{draw(st.integers(0, 8))}",
        out_fmt=f"s{draw(st.integers(2, 20))}.{draw(st.integers(0, 8))}",
        out_rounding=draw(st.sampled_from(["half_up", "rne"])),
    )
    try:
        p0 = NormParams(**kw)
        eps = draw(st.integers(0, ((1 << (p0.v_w + 2 * p0.eps_g)) - 1) // p0.d))
        p = NormParams(**{**kw, "eps": eps})
    except ValueError:
        assume(False)
    f = p.in_fmt
    code = st.integers(f.min_code, f.max_code)
    rows = draw(st.lists(st.lists(code, min_size=p.d, max_size=p.d), min_size=1, max_size=3))
    g = draw(st.lists(st.integers(p.gamma_fmt.min_code, p.gamma_fmt.max_code), min_size=p.d, max_size=p.d))
    b = draw(st.lists(st.integers(p.beta_fmt.min_code, p.beta_fmt.max_code), min_size=p.d, max_size=p.d))
    return p, rows, g, b


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(_config_and_rows())
def test_model_matches_oracle_random_configs(case):
    p, rows, g, b = case
    got = norm_int(np.array(rows, dtype=np.int64), np.array(g), np.array(b), p)
    for r, row in enumerate(rows):
        assert got[r].tolist() == oracle_row(row, g, b, p)
    bound = norm_error_bound(np.array(rows, dtype=np.int64), np.array(g), np.array(b), p)
    x = np.ldexp(np.array(rows, dtype=np.float64), -p.in_fmt.frac)
    ref = norm_ref(x, np.ldexp(np.array(g, float), -p.gamma_fmt.frac), np.ldexp(np.array(b, float), -p.beta_fmt.frac),
                   p.eps_real, p.rms)
    ref = np.clip(np.ldexp(ref, p.out_fmt.frac), p.out_fmt.min_code, p.out_fmt.max_code)
    assert np.all(np.abs(got - ref) <= bound)
