"""pytest runner for rtl/layernorm.v (cocotb tests in layernorm_tests.py).

Each configuration is a refmodel NormParams; its integer parameters come from to_hdl(), the
gamma/beta tables are written with write_memh into the build tree and handed to the RTL as the
string parameters GAMMA_MEMFILE / BETA_MEMFILE (quoted) and to the bench as RM_LN_GAMMA /
RM_LN_BETA, so both sides read the same files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict

import numpy as np
import pytest
from golden_common import GOLDEN_ROOT, collect, norm_params
from harness import RTL, SIM_ROOT, assert_gap_hits, assert_golden_gaps, run_matrix, run_unit

from refmodel.cocotb import GoldenSet
from refmodel.golden.hexfile import write_memh
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.units.norm import NormParams, eps_code

SOURCES = ["layernorm.v", "rsqrt.v", "reciprocal.v", "rsqrt_isqrt.v"]


def _params(eps: float = 1e-5, **kw) -> NormParams:
    p = NormParams(**kw)
    return NormParams(**{**_kwargs(p), "eps": eps_code(eps, p)})


def _kwargs(p: NormParams) -> dict:
    d = asdict(p)
    for k in ("in_fmt", "gamma_fmt", "beta_fmt", "out_fmt"):
        d[k] = str(d[k]) if not isinstance(d[k], dict) else str(FixedFormat(**d[k]))
    d["out_rounding"] = p.out_rounding.value
    return d


def _tables(kind: str, p: NormParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gf, bf = p.gamma_fmt, p.beta_fmt
    one = 1 << gf.frac
    if kind == "random":  # gamma around 1 (+-50 %), beta small
        g = np.clip(np.round(one * rng.uniform(0.5, 1.5, p.d)), gf.min_code, gf.max_code)
        b = np.clip(np.round(rng.normal(0, 0.25, p.d) * (1 << bf.frac)), bf.min_code, bf.max_code)
    elif kind == "gamma0_beta_extreme":  # output = round(beta): beta at min / max / 0 / +-1
        g = np.zeros(p.d)
        b = np.resize([bf.max_code, bf.min_code, 0, 1, -1, bf.max_code - 1, bf.min_code + 1], p.d)
    elif kind == "gamma_extreme":  # gamma at its min / max codes: saturation both ways
        g = np.resize([gf.max_code, gf.min_code, one, -one, gf.max_code, 0], p.d)
        b = np.resize([0, bf.max_code, bf.min_code, 0], p.d)
    else:
        raise ValueError(kind)
    return g.astype(np.int64), b.astype(np.int64)


# name -> (NormParams, tables kind, environment)
CONFIGS = {
    # 160 rows x 64 = 10,240 random elements, power-of-two D, no SLaNC shift
    "ln_d64": (_params(d=64), "random", {"RM_LN_ROWS": "160"}),
    # D not a power of two (768 = 3 * 256), wide variance accumulator
    "ln_d768": (_params(d=768), "random", {"RM_LN_ROWS": "6", "RM_LN_STALL_ROWS": "1", "RM_LN_STALLS": "some"}),
    # SLaNC shift 5 on s20.8 inputs with outlier channels ~1e3 (real), eps held wide (EPS_G=4)
    "ln_d100_shift5_outliers": (
        _params(d=100, in_fmt="s20.8", shift=5, eps_g=4, sqd_f=34),  # SQD > 2^32: 64-bit parameter
        "random",
        {"RM_LN_ROWS": "40", "RM_LN_OUTLIERS": "1000"},
    ),
    # RMSNorm, SLaNC shift 2, odd D, rne output into a narrower format
    "rms_d96_shift2_rne": (
        _params(d=96, rms=True, shift=2, out_fmt="s12.8", out_rounding="rne", eps=1e-6),
        "random",
        {"RM_LN_ROWS": "40"},
    ),
    # gamma = 0 everywhere: the output is beta (its extremes, rounded to the output format)
    "ln_d48_gamma0": (_params(d=48, out_fmt="s16.10"), "gamma0_beta_extreme",
                      {"RM_LN_ROWS": "10", "RM_LN_UNREACHABLE": json.dumps(dict.fromkeys(
                          ("saturation", "max_code", "min_code"), "gamma = 0: the output is beta, inside s16.10"))}),
    # gamma extremes into s8.4: saturation at both ends; tiny odd D, eps = 0 (A = 0 path)
    "ln_d3_sat_eps0": (
        _params(eps=0.0, d=3, in_fmt="s8.4", n_f=6, gamma_fmt="s8.5", beta_fmt="s8.4", out_fmt="s8.4"),
        "gamma_extreme",
        {"RM_LN_ROWS": "200"},
    ),
    # no output rounding (OSH = 0) and an output wider than z (sign extension, no clamp); 400 rows:
    # the rs rounding (round_half_up(r SQD / 2^SQD_F), not floor) shows in about 1 element of 800
    "ln_d12_osh0_wide": (
        _params(d=12, in_fmt="s10.2", n_f=8, gamma_fmt="s6.2", beta_fmt="s6.1", out_fmt="s24.10"),
        "random",
        {"RM_LN_ROWS": "400", "RM_LN_STALLS": "some", "RM_LN_UNREACHABLE": json.dumps(dict.fromkeys(
            ("saturation", "max_code", "min_code"), "the output s24.10 is wider than z: it never clamps"))},
    ),
    # one rounding bit (OSH = 1, no sticky bits) under rne: every odd z is a tie; OUT_W = Z_W
    "ln_d12_osh1_rne": (
        _params(d=12, in_fmt="s10.2", n_f=8, gamma_fmt="s6.2", beta_fmt="s6.1", out_fmt="s19.9", out_rounding="rne"),
        "random",
        {"RM_LN_ROWS": "40", "RM_LN_STALLS": "some", "RM_LN_UNREACHABLE": json.dumps(dict.fromkeys(
            ("saturation", "max_code", "min_code"), "OUT_W = Z_W: z rounded by one bit never clamps"))},
    ),
}


#: the configuration that also runs on Verilator (results must be identical to Icarus)
MATRIX_CONFIG = "ln_d12_osh1_rne"


def _run(name: str, matrix: bool = False):
    p, kind, env = CONFIGS[name]
    d = SIM_ROOT / "layernorm_tables"
    d.mkdir(parents=True, exist_ok=True)
    g, b = _tables(kind, p, seed=len(name))
    gpath = write_memh(d / f"{name}_gamma.hex", g, p.gamma_fmt.width)
    bpath = write_memh(d / f"{name}_beta.hex", b, p.beta_fmt.width)
    kw = {"parameters": dict(p.to_hdl(), GAMMA_MEMFILE=gpath, BETA_MEMFILE=bpath),
          "extra_env": {"RM_LN_PARAMS": json.dumps(_kwargs(p)), "RM_LN_GAMMA": str(gpath), "RM_LN_BETA": str(bpath),
                        **env}}
    if matrix:
        return run_matrix("layernorm", SOURCES, "layernorm_tests", **kw)["icarus"]
    return run_unit("layernorm", sources=SOURCES, test_module="layernorm_tests", **kw)


@pytest.mark.parametrize("name", [n for n in CONFIGS if n != MATRIX_CONFIG])
def test_layernorm(name):
    r = _run(name)
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_gap_hits(r, name, GOLDEN_GAPS)


def test_layernorm_icarus_verilator():
    """One configuration on both simulators: identical results, every coverage bin hit."""
    cov = _run(MATRIX_CONFIG, matrix=True).coverage_total()
    assert cov.missing() == [], cov.summary()


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_layernorm_short_beta_stops_simulation(sim):
    """A beta file one word short stops the simulation at time 0 with the RTL's load check, in the
    4-state and in the 2-state simulator (where the missing word would load as zero)."""
    p = _params(d=8, in_fmt="s12.4")
    d = SIM_ROOT / "layernorm_tables"
    d.mkdir(parents=True, exist_ok=True)
    g, b = _tables("random", p, seed=2)
    gpath = write_memh(d / "short_gamma.hex", g, p.gamma_fmt.width)
    bpath = write_memh(d / "short_beta.hex", b[:-1], p.beta_fmt.width)
    with pytest.raises(pytest.fail.Exception) as ei:
        run_unit("layernorm", sources=SOURCES, test_module="layernorm_tests", simulator_name=sim, waves="never",
                 parameters=dict(p.to_hdl(), GAMMA_MEMFILE=gpath, BETA_MEMFILE=bpath),
                 extra_env={"RM_LN_PARAMS": json.dumps(_kwargs(p)), "RM_LN_GAMMA": str(gpath),
                            "RM_LN_BETA": str(bpath)})
    assert "gamma/beta not loaded" in str(ei.value) and "fewer than D = 8 words" in str(ei.value)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_layernorm_lint(name):
    """verilator --lint-only -Wall is clean for every configuration the benches run."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not found (apt-get install -y verilator)")
    p = CONFIGS[name][0]
    # the two 64-bit parameters get sized literals (an unsized -G value is 32 bits to Verilator)
    gen = [f"-G{k}=64'd{v}" if k in ("EPS", "SQD") else f"-G{k}={v}" for k, v in p.to_hdl().items()]
    gen += ['-GGAMMA_MEMFILE="/nonexistent/g.hex"', '-GBETA_MEMFILE="/nonexistent/b.hex"']
    res = subprocess.run(
        ["verilator", "--lint-only", "-Wall", "--top-module", "layernorm", *gen, *[str(RTL / s) for s in SOURCES]],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr[:3000]


def test_layernorm_x_is_caught():
    """gamma word 0 loaded as X ($readmemh 'x' digits): the bench must report X/Z on m_data (a
    4-state simulator's matter: Icarus whatever RM_SIM says)."""
    p = _params(d=8, in_fmt="s12.4")
    d = SIM_ROOT / "layernorm_tables"
    d.mkdir(parents=True, exist_ok=True)
    g, b = _tables("random", p, seed=1)
    gpath = write_memh(d / "xcase_gamma.hex", g, p.gamma_fmt.width)
    lines = gpath.read_text().splitlines()
    lines[0] = "x" * len(lines[0])
    gpath.write_text("\n".join(lines) + "\n")
    bpath = write_memh(d / "xcase_beta.hex", b, p.beta_fmt.width)
    run_unit(
        "layernorm",
        simulator_name="icarus",
        sources=SOURCES,
        test_module="layernorm_tests",
        parameters=dict(p.to_hdl(), GAMMA_MEMFILE=gpath, BETA_MEMFILE=bpath),
        extra_env={"RM_LN_PARAMS": json.dumps(_kwargs(p)), "RM_LN_GAMMA": str(gpath),
                   "RM_LN_BETA": str(bpath), "RM_LN_EXPECT_X": "1"},
    )


# ---- golden set (cocotb module layernorm_golden_tests.py) ------------------------------------------

GOLDEN_HW = GOLDEN_ROOT / "tiny_gpt2_hw"
#: output classes the golden set cannot produce -> the random configuration that must hit them
GOLDEN_GAPS = {f"{st}.{c}": "ln_d3_sat_eps0" for st in ("ln1", "ln2") for c in ("zero", "max_code", "min_code")}
GOLDEN_NORM_STAGES = collect(lambda: {n: n for n, u in GoldenSet(GOLDEN_HW).units.items() if u.get("kind") == "norm"})


@pytest.mark.parametrize("stage", list(GOLDEN_NORM_STAGES))
def test_layernorm_golden(stage):
    """ln1 (x -> ln1) / ln2 (res1 -> ln2) of the hw golden set with units.<stage>.norm_params and
    the set's gamma/beta hex files as GAMMA_MEMFILE / BETA_MEMFILE."""
    if stage == "unavailable":
        pytest.fail(GOLDEN_NORM_STAGES[stage], pytrace=False)
    gs = GoldenSet(GOLDEN_HW)
    _, g, b = gs.inputs(stage)
    params = dict(norm_params(gs, stage).to_hdl(), GAMMA_MEMFILE=gs.file(g), BETA_MEMFILE=gs.file(b))
    r = run_unit("layernorm", sources=SOURCES, test_module="layernorm_golden_tests", parameters=params,
                 golden=GOLDEN_HW, extra_env={"RM_GOLDEN_STAGES": stage})
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_golden_gaps(r, GOLDEN_GAPS, [stage])
