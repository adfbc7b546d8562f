"""OCP MX block formats: scale rule, padding, NaN poisoning, saturation, mxint8, and a
straightforward per-block oracle (Python loops + the Fraction oracle of tests/oracle.py)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from oracle import encode_oracle, fixed_quantize_oracle

from refmodel.numerics.block import BLOCK_PRESETS, BlockFormat, MXArray, mx_quantize
from refmodel.numerics.minifloat import FloatFormat, decode

PRESET_NAMES = list(BLOCK_PRESETS)
EMAX = {"mxfp8_e4m3": 8, "mxfp8_e5m2": 15, "mxfp6_e3m2": 4, "mxfp6_e2m3": 2, "mxfp4": 2, "mxint8": 0}
ELEMENT_MAX = {"mxfp8_e4m3": 448.0, "mxfp8_e5m2": 57344.0, "mxfp6_e3m2": 28.0, "mxfp6_e2m3": 7.5, "mxfp4": 6.0, "mxint8": 127 / 64}


def floor_log2(v: Fraction) -> int:
    e = v.numerator.bit_length() - v.denominator.bit_length()
    return e - 1 if v < Fraction(2) ** e else e


def block_oracle(x: np.ndarray, spec: str, mode: str = "rne") -> tuple[list[int], list[int]]:
    """One 1-D array, blocks of 32 along it: (scale codes, element codes), element by element."""
    fmt = BlockFormat.parse(spec)
    scales, elems = [], []
    for start in range(0, len(x), fmt.block):
        blk = [float(v) for v in x[start:start + fmt.block]]
        if any(math.isnan(v) or math.isinf(v) for v in blk):
            scales.append(0xFF)
            elems += [0] * len(blk)
            continue
        amax = max(abs(Fraction(v)) for v in blk)
        X = -127 if amax == 0 else floor_log2(amax) - EMAX[spec]
        X = min(max(X, -127), 127)
        scales.append(X + 127)
        for v in blk:
            scaled = Fraction(v) / Fraction(2) ** X
            if fmt.is_int:
                elems.append(max(-127, fixed_quantize_oracle(scaled, 8, 6, True, mode, "saturate")))
            else:
                el = fmt.element
                # the element format's sign of zero: keep -0.0 as the input had it
                elems.append(encode_oracle(scaled if v != 0 else v, el, mode))
    return scales, elems


def check_against_oracle(x: np.ndarray, spec: str, mode: str = "rne") -> None:
    q = mx_quantize(x, spec, axis=-1, rounding=mode)
    flat_x = x.reshape(-1, x.shape[-1])
    flat_s = q.scales.reshape(-1, q.scales.shape[-1])
    flat_e = q.elements.reshape(-1, x.shape[-1])
    for row, s, e in zip(flat_x, flat_s, flat_e, strict=True):
        ws, we = block_oracle(row, spec, mode)
        assert s.tolist() == ws, f"{spec} {mode}: scales {s.tolist()} want {ws}"
        got_e = e.astype(np.int64).tolist()
        bad = [i for i, (g, w) in enumerate(zip(got_e, we, strict=True)) if g != w]
        assert not bad, f"{spec} {mode}: element {bad[0]} (x={row[bad[0]]!r}) got {got_e[bad[0]]} want {we[bad[0]]}"


# ---- the scale rule on hand-computed blocks --------------------------------------------------
@pytest.mark.parametrize("spec", PRESET_NAMES)
@pytest.mark.parametrize(
    "amax,log2",
    [(3.0, 1), (4.0, 2), (0.75, -1), (1.0, 0), (0.999, -1), (2.0**-130, -130), (2.0**100 * (1 - 2.0**-24), 99), (2.0**200, 200)],
)
def test_scale_rule(spec, amax, log2):
    x = np.linspace(-amax / 3, amax / 3, 32)
    x[17] = -amax
    q = mx_quantize(x, spec)
    X = min(max(log2 - EMAX[spec], -127), 127)
    assert q.scales.tolist() == [X + 127]
    assert q.scale_values().tolist() == [2.0**X]


def test_hand_computed_mxfp4_block():
    # amax 3 -> floor(log2 3) = 1, X = 1 - 2 = -1: elements are v * 2 rounded to e2m1
    x = np.zeros(32)
    x[:6] = [3.0, 1.0, -0.4, 0.26, 1.25, -2.9]
    q = mx_quantize(x, "mxfp4")
    assert q.scales.tolist() == [126]
    # 6 -> 0b0111; 2 -> 0b0100; -0.8 -> -1.0 = 0b1010; 0.52 -> 0.5 = 0b0001;
    # 2.5 -> tie 2|3 -> 2 (even mantissa) = 0b0100; -5.8 -> -6 = 0b1111
    assert q.elements[:6].tolist() == [0b0111, 0b0100, 0b1010, 0b0001, 0b0100, 0b1111]
    assert q.to_float()[:6].tolist() == [3.0, 1.0, -0.5, 0.25, 1.0, -3.0]


def test_hand_computed_mxint8_block():
    # amax 1.5 -> X = 0: elements are round(v * 64)
    x = np.zeros(32)
    x[:4] = [1.5, -0.5, 1 / 128, 3 / 128]  # 96, -32, tie 0.5 -> 0, tie 1.5 -> 2
    q = mx_quantize(x, "mxint8")
    assert q.scales.tolist() == [127]
    assert q.elements[:4].tolist() == [96, -32, 0, 2]
    assert q.elements.dtype == np.int8


# ---- padding and axes ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", PRESET_NAMES)
def test_padding_along_non_last_axis(spec):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3, 2)) * np.exp2(rng.integers(-6, 6, (40, 3, 2)))
    q = mx_quantize(x, spec, axis=0)
    assert q.axis == 0 and q.shape == (40, 3, 2)
    assert q.scales.shape == (2, 3, 2) and q.elements.shape == (40, 3, 2)
    # each column along axis 0 is quantised exactly as the same 1-D vector would be
    for j in range(3):
        for k in range(2):
            col = mx_quantize(x[:, j, k], spec)
            assert col.scales.tolist() == q.scales[:, j, k].tolist()
            assert col.elements.tolist() == q.elements[:, j, k].tolist()
            ws, we = block_oracle(x[:, j, k], spec)
            assert col.scales.tolist() == ws and col.elements.astype(np.int64).tolist() == we
    y = q.to_float()
    assert y.shape == x.shape
    # the moved axis round-trips: quantising the transposed array along the last axis agrees
    qt = mx_quantize(np.moveaxis(x, 0, -1), spec, axis=-1)
    assert np.array_equal(np.moveaxis(qt.to_float(), -1, 0), y)


def test_short_axis_is_one_padded_block():
    q = mx_quantize(np.array([0.5, -1.0, 0.25]), "mxfp8_e4m3")
    assert q.scales.shape == (1,)
    assert q.to_float().tolist() == [0.5, -1.0, 0.25]


# ---- NaN / inf poisoning, zero blocks, saturation --------------------------------------------
@pytest.mark.parametrize("spec", PRESET_NAMES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_poisons_only_its_block(spec, bad):
    x = np.linspace(-1, 1, 96)
    x[40] = bad
    q = mx_quantize(x, spec)
    assert q.scales.tolist()[1] == 0xFF
    y = q.to_float()
    assert np.all(np.isnan(y[32:64]))
    assert not np.any(np.isnan(y[:32])) and not np.any(np.isnan(y[64:]))
    assert np.all(q.elements[32:64] == 0)


@pytest.mark.parametrize("spec", PRESET_NAMES)
def test_zero_block(spec):
    x = np.zeros((2, 32))
    x[1, 3] = -0.0
    q = mx_quantize(x, spec)
    assert q.scales.ravel().tolist() == [0, 0]  # 2^-127
    y = q.to_float()
    assert np.all(y == 0)
    if not q.fmt.is_int:
        assert np.signbit(y[1, 3])  # the element keeps -0


@pytest.mark.parametrize("spec", PRESET_NAMES)
def test_elements_saturate(spec):
    # amax with mantissa just under 2: v / 2^X is just under 2^(emax+1) > element max
    x = np.zeros(32)
    x[0] = 1.999
    x[1] = -1.999
    q = mx_quantize(x, spec)
    vals = q.element_values()
    assert vals[0] == ELEMENT_MAX[spec] and vals[1] == -ELEMENT_MAX[spec]
    assert not np.any(np.isinf(vals)) and not np.any(np.isnan(vals))


def test_scale_overflow_clamps_and_saturates():
    """Departure from microxcaling (NaN scale): X above 127 is clamped, elements saturate."""
    x = np.zeros(32)
    x[0] = 2.0**200
    q = mx_quantize(x, "mxfp4")
    assert q.scales.tolist() == [254]
    assert q.to_float()[0] == 6.0 * 2.0**127


def test_mxint8_never_uses_minus_128():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 32)) * np.exp2(rng.integers(-4, 4, (64, 1)))
    x[:, 0] = -np.max(np.abs(x), axis=1) * (1 + 1e-12)  # negative amax, mantissa ~ 2 at row ends
    x[0] = np.linspace(-1, 1, 32)
    x[0, 0] = -1.999  # amax 1.999 -> X = 0; -1.999 * 64 rounds to -128 before the clamp
    for mode in ("rne", "rtz", "floor", "ceil", "half_away"):
        q = mx_quantize(x, "mxint8", rounding=mode)
        assert q.elements.min() >= -127, mode
    assert mx_quantize(x, "mxint8").elements[0, 0] == -127


# ---- against the per-block oracle ------------------------------------------------------------
@pytest.mark.parametrize("spec", PRESET_NAMES)
@pytest.mark.parametrize("mode", ["rne", "rtz", "ceil", "floor", "half_away"])
def test_matches_block_oracle(spec, mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 70)) * np.exp2(rng.integers(-20, 20, (6, 1)))
    x[0, :32] = rng.standard_normal(32) * np.exp2(rng.integers(-30, 10, 32))  # wide spread in a block
    x[1, :5] = 0.0
    x[2, 32:64] *= 1e-45  # tiny block: scale clamps at 2^-127
    # huge block: X clamps at 127 and v / 2^X of the tiny elements is below float64's range
    x[4, 32:38] = [2.0**1000, 2.0**-1000, -(2.0**-1074), 2.0**-1074, 3.0, -(2.0**-1000)]
    if spec == "mxfp8_e4m3":
        # exact element ties after scaling: amax 2 -> X = -7; (8 + j + 1/2) * 2^(b-3) is the
        # midpoint between two e4m3 neighbours in binade [2^b, 2^(b+1))
        k = np.arange(31)
        ties = (8 + k % 8 + 0.5) * np.exp2(k // 8 - 3)
        x[3, :32] = np.concatenate([[2.0], ties * 2.0**-7 * np.where(k % 2, 1, -1)])
    check_against_oracle(x, spec, mode)


def test_stochastic_reproducible_and_explicit_bits():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 50))
    a = mx_quantize(x, "mxfp4", rounding="stochastic", seed=9)
    b = mx_quantize(x, "mxfp4", rounding="stochastic", seed=9)
    assert a.identical(b)
    zero = mx_quantize(x, "mxfp4", rounding="stochastic", random_bits=np.zeros(x.shape, dtype=np.int64))
    assert zero.identical(mx_quantize(x, "mxfp4", rounding="rtz"))  # r = 0 never carries
    ones = mx_quantize(x, "mxfp4", rounding="stochastic", random_bits=np.full(x.shape, (1 << 32) - 1))
    assert np.all(np.abs(ones.to_float()) >= np.abs(zero.to_float()))


# ---- specs and errors ------------------------------------------------------------------------
@pytest.mark.parametrize("spec", PRESET_NAMES)
def test_parse_str_round_trip(spec):
    f = BlockFormat.parse(spec)
    assert str(f) == spec and BlockFormat.parse(str(f)) == f
    assert f.block == 32 and f.scale == FloatFormat.parse("e8m0")
    g = BlockFormat.parse(spec + "@16")
    assert g.block == 16 and str(g) == spec + "@16"
    if not f.is_int:
        assert f.element.overflow == "saturate"


def test_mx_block16_quantises_in_blocks_of_16():
    x = np.zeros(32)
    x[0], x[16] = 1.0, 100.0
    q = mx_quantize(x, "mxfp8_e4m3@16")
    assert q.scales.tolist() == [0 - 8 + 127, 6 - 8 + 127]


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="mxfp5"):
        BlockFormat.parse("mxfp5")
    with pytest.raises(ValueError, match="axis 2"):
        mx_quantize(np.zeros((3, 4)), "mxfp4", axis=2)
    with pytest.raises(ValueError, match="scalar"):
        mx_quantize(1.0, "mxfp4")
    with pytest.raises(ValueError, match="'nearest'"):
        mx_quantize(np.zeros(4), "mxfp4", rounding="nearest")
    with pytest.raises(ValueError, match="power-of-two"):
        BlockFormat("e4m3fn", scale="e5m2")


def test_mxarray_decode_is_exact_product():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 64)) * 1e-30
    q = mx_quantize(x, "mxfp6_e3m2")
    assert isinstance(q, MXArray)
    el = decode(q.elements, q.fmt.element)
    sc = np.repeat(decode(q.scales, "e8m0"), 32, axis=1)
    assert np.array_equal(q.to_float(), el * sc)
