"""PrecisionPlan: presets, completeness, validation messages, JSON/TOML round trips, table."""

import json

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from refmodel.layer.config import LayerConfig
from refmodel.layer.forward import tensor_names
from refmodel.layer.plan import (
    ALL_TENSORS,
    ALL_WEIGHTS,
    PRESET_NAMES,
    PrecisionPlan,
    TensorPrecision,
    UnitSettings,
    WeightPrecision,
    plan_schema,
    validate_acc,
    validate_format,
)
from refmodel.layer.weights import weight_names

ARCH_CFGS = [LayerConfig.from_name(n) for n in ("tiny", "tiny-bert", "tiny-llama")]


def test_tensor_and_weight_unions_cover_every_arch():
    assert set(ALL_TENSORS) == {n for c in ARCH_CFGS for n in tensor_names(c)}
    assert set(ALL_WEIGHTS) == {n for c in ARCH_CFGS for n in weight_names(c)}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_complete_and_round_trip(name, tmp_path):
    p = PrecisionPlan.from_name(name)
    assert p.name == name and p.description
    for c in ARCH_CFGS:
        assert p.check(c) is p and p.missing(c) == []
    assert PrecisionPlan.from_dict(p.to_dict()) == p
    assert PrecisionPlan.from_json(p.to_json()) == p
    text = p.to_toml()
    assert tomllib.loads(text) == json.loads(p.to_json())  # the hand-written TOML is the same document
    assert PrecisionPlan.from_toml(text) == p
    for suffix in (".json", ".toml"):
        f = p.save(tmp_path / f"plan{suffix}")
        assert PrecisionPlan.load(f) == p


def test_preset_semantics():
    assert set(PRESET_NAMES) == {"float64", "fp32", "fp16", "fp16-acc16", "bf16", "fp8", "mxfp8", "fixed16", "hw"}
    f64 = PrecisionPlan.from_name("float64")
    assert {t.format for t in f64.tensors.values()} == {"float64"} and {t.acc for t in f64.tensors.values()} == {"exact"}
    # fp16: fp16 storage, fp32 accumulation (what GPUs and torch on CPU do); fp16-acc16 accumulates in fp16
    for name, acc_fmt in (("fp16", "fp32"), ("fp16-acc16", "fp16")):
        p = PrecisionPlan.from_name(name)
        assert {t.format for t in p.tensors.values()} == {"fp16"} and {w.format for w in p.weights.values()} == {"fp16"}
        assert p.tensor("q").acc == f"sequential:{acc_fmt}" and p.tensor("ln1").acc == f"sequential:{acc_fmt}"
        assert p.tensor("res1").acc == "exact"  # add: no reduction
        assert p.summary()["accumulation"] == f"sequential:{acc_fmt}, exact" or \
            p.summary()["accumulation"].startswith(f"sequential:{acc_fmt}")
    fp8 = PrecisionPlan.from_name("fp8")
    assert fp8.weight("wq").format == "e4m3fn" and fp8.weight("bq").format == "fp32"
    assert fp8.tensor("ln1").format == "e4m3fn" and fp8.tensor("probs").format == "e4m3fn"
    assert fp8.tensor("scores").format == "fp32" and fp8.tensor("proj").format == "fp32"
    assert {t.acc for t in fp8.tensors.values()} == {"exact"}
    assert PrecisionPlan.from_name("mxfp8").weight("w_up").format == "mxfp8_e4m3"
    for n in ("fixed16", "hw"):
        p = PrecisionPlan.from_name(n)
        assert p.units.softmax == "exp2_lut" and p.units.act == "table"
        assert all(t.format[0] in "su" for t in p.tensors.values())  # fixed point everywhere
        # s8.7 matrices times a per-tensor power of two, only where the weights would saturate
        assert p.weight("wq") == WeightPrecision("s8.7", scale="tensor", scale_kind="pow2", scale_rule="fit")
        assert not p.weight("bq").scaled and not p.weight("ln1_g").scaled
    assert PrecisionPlan.from_name("hw").slanc and PrecisionPlan.from_name("hw").slanc_pow2
    assert not PrecisionPlan.from_name("fixed16").slanc  # the integer norm sums exactly: no SLaNC needed
    assert PrecisionPlan.from_name("fixed16").tensor("x").format.startswith("s16.")


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError, match="unknown precision plan 'fp4'; presets: float64, fp32, fp16"):
        PrecisionPlan.from_name("fp4")


def test_schema_every_knob_has_default_and_help():
    rows = plan_schema()
    keys = [k for k, _, _ in rows]
    assert "units.softmax_lut_bits" in keys and "tensors.<name>.acc" in keys and "slanc" in keys
    for k, default, help_ in rows:
        assert default and help_ and len(help_) > 8, k
    UnitSettings()  # every unit knob has a default
    TensorPrecision()
    WeightPrecision()


@pytest.mark.parametrize(
    "patch, where",
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"tensors": {"qq": {"format": "fp16"}}}, r"tensors\.qq: unknown tensor name"),
        ({"tensors": {"q": {"acum": "exact"}}}, r"tensors\.q\.acum: unknown key"),
        ({"tensors": {"q": {"format": "fp17"}}}, r"tensors\.q\.format: .*'fp17'"),
        ({"tensors": {"q": {"format": 16}}}, r"tensors\.q\.format: expected str"),
        ({"tensors": {"q": {"acc": "blocked:fp32:0"}}}, r"tensors\.q\.acc: bad accumulation policy"),
        ({"tensors": {"q": {"acc": "acc:fp16:sat"}}}, r"tensors\.q\.acc: bad accumulation policy 'acc:fp16:sat'"),
        ({"tensors": {"q": {"acc": "kahan"}}}, r"tensors\.q\.acc: unknown accumulation policy 'kahan'"),
        ({"tensors": {"q": {"rounding": "nearest"}}}, r"tensors\.q\.rounding: unknown rounding mode 'nearest'"),
        ({"weights": {"wq": {"overflow": "clip"}}}, r"weights\.wq\.overflow: .*'clip'"),
        ({"weights": {"w_q": "fp16"}}, r"weights\.w_q: unknown weight name"),
        ({"units": {"softmax": "lut"}}, r"units\.softmax: 'lut' is not one of float, exp2_lut"),
        ({"units": {"softmax_lut_bits": "6"}}, r"units\.softmax_lut_bits: expected int"),
        ({"units": {"act_table_in": "fp16"}}, r"units\.act_table_in: .*fixed-point"),
        ({"units": {"rsqrt_iters": 2}}, r"units\.rsqrt_iters: unknown key"),
        ({"slanc": "yes"}, r"slanc: expected bool"),
        ({"slanc_mlp": "opt"}, r"slanc_mlp: 'opt' is not one of dmx, auth"),
        ({"base": "fp5"}, r"unknown precision plan 'fp5'"),
    ],
)
def test_errors_name_the_bad_key(patch, where):
    d = PrecisionPlan.from_name("fp16").to_dict()
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            for kk, vv in v.items():
                d[k][kk] = {**d[k].get(kk, {}), **vv} if isinstance(vv, dict) else vv
        else:
            d[k] = v
    with pytest.raises(ValueError, match=where):
        PrecisionPlan.from_dict(d)


def test_base_and_overrides_from_toml(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('base = "fp16-acc16"\nname = "fp16-fp32scores"\nslanc = true\n\n[tensors.scores]\nformat = "fp32"\n'
                 'acc = "blocked:fp32:32"\n\n[tensors]\nprobs = "bf16"\n\n[units]\nsoftmax_lut_bits = 8\n')
    p = PrecisionPlan.load(f)
    assert p.name == "fp16-fp32scores" and p.slanc is True
    assert p.tensor("scores") == TensorPrecision("fp32", "blocked:fp32:32")
    assert p.tensor("probs").format == "bf16" and p.tensor("probs").acc == "sequential:fp16"  # kept from base
    assert p.tensor("q").format == "fp16" and p.units.softmax_lut_bits == 8
    assert p.check(ARCH_CFGS[2]) is p


def test_incomplete_plan_lists_missing():
    p = PrecisionPlan(tensors={"x": TensorPrecision("fp16")}, weights={"wq": WeightPrecision("fp16")})
    with pytest.raises(ValueError, match=r"incomplete for arch 'llama': missing tensors\.ln1, .*tensors\.q_rope.*"
                                         r"weights\.w_gate"):
        p.check(ARCH_CFGS[2])
    assert "tensors.res2" in p.missing(ARCH_CFGS[1]) and "tensors.res2" not in p.missing(ARCH_CFGS[0])


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match=r"expected a \.json or \.toml"):
        PrecisionPlan.load(tmp_path / "plan.yaml")
    with pytest.raises(ValueError, match="nope.json"):
        PrecisionPlan.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.toml"
    bad.write_text("[tensors.q]\nformat = fp16\n")  # unquoted string: TOML syntax error
    with pytest.raises(ValueError, match="bad.toml.*plan TOML"):
        PrecisionPlan.load(bad)
    badj = tmp_path / "bad.json"
    badj.write_text(json.dumps({"tensors": {"q": {"format": "s16.99x"}}}))
    with pytest.raises(ValueError, match=r"bad.json.*tensors\.q\.format"):
        PrecisionPlan.load(badj)


def test_toml_writer_strings():
    p = PrecisionPlan.from_name("fp16").replace(name="x", description='quote " backslash \\ é\ttab')
    assert PrecisionPlan.from_toml(p.to_toml()).description == p.description


def test_format_and_acc_validators():
    for ok in ("float64", "s16.12", "u8.8", "fp16", "bf16", "e4m3fn", "e5m2:sat", "mxfp8_e4m3", "mxfp4"):
        assert validate_format(ok)
    for bad in ("", "s16", "fp17", "e4m3fnq", "mxfp9"):
        with pytest.raises(ValueError):
            validate_format(bad)
    for ok in ("exact", "sequential:fp16", "blocked:fp32:32", "acc:s48.24:sat", "acc:s40:wrap", "sequential:s32.16"):
        assert validate_acc(ok) == ok
    for bad in ("exact:fp32", "sequential", "blocked:fp32", "blocked:fp32:x", "acc:s48.24:clip", "acc:s32.16",
                "tree:fp16", "sequential:fp99"):
        with pytest.raises(ValueError):
            validate_acc(bad)


def test_table_render():
    p = PrecisionPlan.from_name("hw")
    text = p.render(ARCH_CFGS[2], width=140)
    for n in tensor_names(ARCH_CFGS[2]) + weight_names(ARCH_CFGS[2]):
        assert f" {n} " in text, n
    assert "exp2_lut" in text and "s8.7" in text and "'hw'" in text
    assert " res2 " not in text  # llama has no res2
    full = p.render(width=140)
    assert " res2 " in full and " b_up " in full
