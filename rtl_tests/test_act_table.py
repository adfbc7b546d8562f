"""pytest runner for rtl/act_table.v (cocotb tests in act_table_tests.py).

Each configuration writes its table with the model (ActParams.table -> write_table) into the build
tree and hands the absolute path to the RTL as the string parameter TABLE_MEMFILE (quoted: an
unquoted string parameter is silently ignored by iverilog).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from golden_common import GOLDEN_ROOT
from harness import RTL, SIM_ROOT, assert_gap_hits, assert_golden_gaps, run_matrix, run_unit

from refmodel.cocotb import GoldenSet
from refmodel.golden.hexfile import write_memh, write_table
from refmodel.numerics.units.activation import ActParams, act_table

CONFIGS = [
    # kind, in spec, out spec, lanes: every config runs all 2^IN_W input codes
    ("gelu_tanh", "s16.12", "s16.12", 4),
    ("silu", "s16.11", "s16.9", 2),
    ("gelu_erf", "s12.8", "s16.10", 1),
    ("gelu_erf", "s8.3", "s8.5", 3),  # heavy output clamping, odd lane count
]


def _table_file(p: ActParams, variant: str = ""):
    """Write the model's table; ``variant``: "" (as is), "poison" (the words at codes 0, 1,
    max and min replaced by ``x`` digits, which $readmemh loads as X; the last word, code -1, is
    left valid for the RTL's load check), "short" (half the words)."""
    d = SIM_ROOT / "act_tables"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{p.kind}_{p.in_fmt}_{p.out_fmt}{'_' + variant if variant else ''}.hex"
    table = act_table(p.kind, p.in_fmt, p.out_fmt)
    if variant == "short":
        return write_memh(path, table[: p.depth // 2], p.out_fmt.width)
    write_table(path, p.table())
    if variant == "poison":
        lines = path.read_text().splitlines()
        f = p.in_fmt
        for code in (0, 1, f.max_code, f.min_code):
            lines[code & (p.depth - 1)] = "x" * len(lines[0])
        path.write_text("\n".join(lines) + "\n")
    return path


#: the configuration that also runs on Verilator (results must be identical to Icarus)
MATRIX_CONFIG = ("gelu_erf", "s8.3", "s8.5", 3)


def _run(kind, in_spec, out_spec, lanes, matrix: bool = False):
    p = ActParams(kind, in_spec, out_spec, lanes)
    kw = {"parameters": dict(p.to_hdl(), TABLE_MEMFILE=_table_file(p)),
          "extra_env": {"RM_ACT_KIND": kind, "RM_ACT_IN": in_spec, "RM_ACT_OUT": out_spec}}
    if matrix:
        return run_matrix("act_table", ["act_table.v"], "act_table_tests", **kw)["icarus"]
    return run_unit("act_table", sources=["act_table.v"], test_module="act_table_tests", **kw)


@pytest.mark.parametrize("kind,in_spec,out_spec,lanes", [c for c in CONFIGS if c != MATRIX_CONFIG],
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-L{c[3]}" for c in CONFIGS if c != MATRIX_CONFIG])
def test_act_table(kind, in_spec, out_spec, lanes):
    r = _run(kind, in_spec, out_spec, lanes)
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_gap_hits(r, f"{kind}-{in_spec}-{out_spec}-L{lanes}", GOLDEN_GAPS)


def test_act_table_icarus_verilator():
    """The heavily clamping configuration on both simulators: identical results."""
    cov = _run(*MATRIX_CONFIG, matrix=True).coverage_total()
    assert cov.missing() == [], cov.summary()


def test_act_table_x_is_caught():
    """Table words loaded as X: the bench must report X/Z on the output beats that read them (a
    4-state simulator's matter: Icarus whatever RM_SIM says)."""
    p = ActParams("silu", "s8.4", "s8.4", 1)
    path = _table_file(p, "poison")
    run_unit(
        "act_table",
        simulator_name="icarus",
        sources=["act_table.v"],
        test_module="act_table_tests",
        parameters=dict(p.to_hdl(), TABLE_MEMFILE=path),
        extra_env={"RM_ACT_KIND": p.kind, "RM_ACT_IN": "s8.4", "RM_ACT_OUT": "s8.4", "RM_ACT_EXPECT_X": "1"},
    )


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_act_table_short_file_stops_simulation(sim):
    """A short table file must stop the simulation at time 0 with the RTL's load check, in the
    4-state and in the 2-state simulator (where the missing words would load as zeros)."""
    p = ActParams("silu", "s8.4", "s8.4", 1)
    path = _table_file(p, "short")
    with pytest.raises(pytest.fail.Exception) as ei:
        run_unit("act_table", sources=["act_table.v"], test_module="act_table_tests", simulator_name=sim,
                 parameters=dict(p.to_hdl(), TABLE_MEMFILE=path), waves="never",
                 extra_env={"RM_ACT_KIND": p.kind, "RM_ACT_IN": "s8.4", "RM_ACT_OUT": "s8.4"})
    assert "table not loaded" in str(ei.value) and "fewer than 2^IN_W = 256 words" in str(ei.value)


@pytest.mark.parametrize("kind,in_spec,out_spec,lanes", CONFIGS, ids=[f"{c[0]}-{c[1]}-{c[2]}-L{c[3]}" for c in CONFIGS])
def test_act_table_lint(kind, in_spec, out_spec, lanes):
    """verilator --lint-only -Wall is clean for every configuration the benches run."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not found (apt-get install -y verilator)")
    gen = [f"-G{k}={v}" for k, v in ActParams(kind, in_spec, out_spec, lanes).to_hdl().items()]
    res = subprocess.run(
        ["verilator", "--lint-only", "-Wall", "--top-module", "act_table", *gen,
         '-GTABLE_MEMFILE="/nonexistent/t.hex"', str(RTL / "act_table.v")],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr[:3000]


# ---- golden set (cocotb module act_table_golden_tests.py) ------------------------------------------

GOLDEN_HW = GOLDEN_ROOT / "tiny_gpt2_hw"
#: output classes the golden set cannot produce -> the random configuration that must hit them
GOLDEN_GAPS = {"act.max_code": "gelu_tanh-s16.12-s16.12-L4",
               "act.min_code": "cannot: GELU(x) >= -0.17, far above the s16.10 min code"}


def test_act_table_golden():
    """The hw golden set's up -> (requantised to units.act.table_in) -> act_table with the set's
    own act_table.hex as TABLE_MEMFILE -> golden act."""
    gs = GoldenSet(GOLDEN_HW)
    params = {k: int(v) for k, v in gs.units["act"]["act_params"].items()}
    params["TABLE_MEMFILE"] = gs.file("act_table")
    r = run_unit("act_table", sources=["act_table.v"], test_module="act_table_golden_tests", parameters=params,
                 golden=GOLDEN_HW)
    cov = r.coverage_total()
    assert cov.missing() == [], cov.summary()
    assert_golden_gaps(r, GOLDEN_GAPS, ["act"])
