"""The mutant list of the RTL mutation run (rtl_tests/mutants.toml, benchmarks/mutate_rtl.py).

Fast checks (default suite): the list loads; it holds >= 60 mutants across every unit and
layer_top; each mutant's ``find`` occurs exactly once in its file, the mutated file still
elaborates under Icarus, every test it names exists, and every mutant listed as equivalent carries
an argument. The full run (``--run-slow``) applies every mutant and needs >= 98 % killed.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest
from harness import ROOT

from refmodel.rtl_build import SOURCES

_spec = importlib.util.spec_from_file_location("mutate_rtl", ROOT / "benchmarks" / "mutate_rtl.py")
assert _spec is not None and _spec.loader is not None
mutate_rtl = importlib.util.module_from_spec(_spec)
sys.modules["mutate_rtl"] = mutate_rtl
_spec.loader.exec_module(mutate_rtl)

RTL = ROOT / "rtl"
#: every RTL file of the product (simulation wrappers excluded)
UNITS = sorted(p.name for p in RTL.glob("*.v") if not p.name.endswith("_tb.v"))


@pytest.fixture(scope="module")
def mutants() -> list:
    return mutate_rtl.load_mutants()


def test_list_covers_every_unit(mutants):
    """>= 60 mutants; every RTL file (each unit and layer_top) has at least one, layer_top many."""
    assert len(mutants) >= 60
    files = {m.file for m in mutants}
    assert files == set(UNITS), f"files without mutants: {sorted(set(UNITS) - files)}"
    assert sum(m.file == "layer_top.v" for m in mutants) >= 20


def test_each_mutant_applies_once_and_elaborates(mutants, tmp_path):
    """Each ``find`` occurs exactly once in its file and the mutated file still elaborates under
    Icarus (a mutant that does not compile would be killed for nothing)."""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not found (apt-get install -y iverilog)")
    tops = {"layer_top.v": ("layer_top", SOURCES), "fp8_mac.v": ("fp8_mac", ["fp8_mac.v", "fp8_decode.v",
                                                                           "fp8_acc_to_fp32.v"]),
            "fp8_decode.v": ("fp8_decode", ["fp8_decode.v"]), "rsqrt.v": ("rsqrt", ["rsqrt.v", "reciprocal.v",
                                                                                 "rsqrt_isqrt.v"]),
            "softmax_row.v": ("softmax_row", ["softmax_row.v", "reciprocal.v"]),
            "layernorm.v": ("layernorm", ["layernorm.v", "rsqrt.v", "reciprocal.v", "rsqrt_isqrt.v"])}
    bad = []
    for m in mutants:
        d = tmp_path / m.id
        d.mkdir()
        (d / m.file).write_text(mutate_rtl.mutated_text(m))
        top, srcs = tops.get(m.file, (m.file[:-2], [m.file]))
        files = [str(d / s) if s == m.file else str(RTL / s) for s in srcs]
        r = subprocess.run(["iverilog", "-g2012", "-t", "null", "-I", str(RTL), "-s", top, *files],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or "error" in (r.stdout + r.stderr).lower():
            bad.append(f"{m.id}: {(r.stdout + r.stderr).strip()[:300]}")
    assert not bad, "mutants that do not elaborate:\n" + "\n".join(bad)


def test_named_tests_exist(mutants):
    """Every test the list names is collected by pytest (no typo silently runs nothing)."""
    named = sorted({t for m in mutants for t in m.tests})
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        *sorted({t.split("::")[0] for t in named})],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    collected = {ln.strip() for ln in r.stdout.splitlines() if "::" in ln}
    missing = [t for t in named if t not in collected]
    assert not missing, f"tests named in mutants.toml that pytest does not collect: {missing}"


def test_equivalents_and_survivors_are_argued(mutants):
    """A mutant listed as equivalent says why it cannot change an output; one listed as surviving
    says why no bench reaches the case; together they stay few (the score needs >= 98 % killed)."""
    for m in mutants:
        for why in (m.equivalent, m.survives):
            if why is not None:
                assert len(why.split()) >= 12, f"{m.id}: the argument is too short"
    assert sum(m.equivalent is not None for m in mutants) <= len(mutants) // 10
    assert sum(m.survives is not None for m in mutants) <= len(mutants) // 50


def test_bad_lists_are_refused(tmp_path):
    """A find that occurs twice (or not at all), a duplicate id, an unknown --only id: clear errors."""
    m = mutate_rtl.Mutant("x", "layer_seq.v", "c1_reg  <= {CW{1'b0}};", "c1_reg  <= c1_reg;", "w", ("t",))
    with pytest.raises(mutate_rtl.MutantError, match=r"occurs \d+ times in layer_seq.v"):
        mutate_rtl.mutated_text(m)
    with pytest.raises(mutate_rtl.MutantError, match="occurs 0 times"):
        mutate_rtl.mutated_text(m.__class__("x", "layer_seq.v", "no such text", "y", "w", ("t",)))
    p = tmp_path / "m.toml"
    p.write_text('[[mutant]]\nid="a"\nfile="requant.v"\nfind="x"\nreplace="y"\nwhat="w"\ntests=["t"]\n' * 2)
    with pytest.raises(mutate_rtl.MutantError, match="listed twice"):
        mutate_rtl.load_mutants(p)
    assert mutate_rtl.main(["--only", "no_such_mutant"]) == 2


@pytest.mark.slow
def test_mutation_score(tmp_path):
    """The full run: every mutant applied to a copy of rtl/, its benches run; >= 98 % of the
    non-equivalent mutants killed and no listed equivalent killed (about half an hour on 2 cores)."""
    report = tmp_path / "mutants.json"
    code = mutate_rtl.main(["--jobs", "2", "--json", str(report)])
    assert code == 0, report.read_text()[:4000]


def test_rtl_dir_follows_the_environment(monkeypatch, tmp_path):
    """REFMODEL_RTL_DIR points every bench at another copy of rtl/ (how each mutant is run)."""
    from refmodel.resources import RTL_DIR_ENV, rtl_dir

    monkeypatch.delenv(RTL_DIR_ENV, raising=False)
    assert (rtl_dir() / "layer_top.v").is_file()
    copy = mutate_rtl.make_copy(None, tmp_path)
    monkeypatch.setenv(RTL_DIR_ENV, str(copy))
    assert rtl_dir() == copy.resolve() and (rtl_dir() / "layer_top.v").read_text() == (RTL / "layer_top.v").read_text()
