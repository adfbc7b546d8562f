"""refmodel.numerics.units.mac against an independent pure-Python-int reference of the same
contract (explicit loop over beats, Python ``divmod`` rounding written out per mode)."""

from __future__ import annotations

import doctest
import time

import numpy as np
import pytest

import refmodel.numerics.units.mac as mac
from refmodel.numerics.units.mac import MacParams, dot_acc_int, dot_int, matmul_acc_int, matmul_int, requantize_int

# ---- independent reference -------------------------------------------------------------------


def ref_acc(a: list[int], w: list[int], bias: int, p: MacParams) -> int:
    lo, hi = -(1 << (p.acc_w - 1)), (1 << (p.acc_w - 1)) - 1
    acc = bias * (1 << p.bias_lsh)
    for j in range(0, len(a), p.lanes):
        acc += sum(x * y for x, y in zip(a[j : j + p.lanes], w[j : j + p.lanes], strict=True))
        if p.acc_overflow.value == "wrap":
            acc = (acc - lo) % (1 << p.acc_w) + lo
        else:
            acc = min(max(acc, lo), hi)
    return acc


def ref_requant(acc: int, p: MacParams) -> int:
    if p.shift == 0:
        r = acc
    else:
        q, rem = divmod(acc, 1 << p.shift)  # floor division: rem in [0, 2**shift)
        half = 1 << (p.shift - 1)
        mode = p.rounding.value
        if mode == "rne":
            r = q + (rem > half or (rem == half and q % 2 == 1))
        elif mode == "half_up":
            r = q + (rem >= half)
        else:
            assert mode == "floor"
            r = q
    return min(max(r, -(1 << (p.out_w - 1))), (1 << (p.out_w - 1)) - 1)


def rand_codes(rng, width: int, shape) -> np.ndarray:
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    x = rng.integers(lo, hi + 1, shape)
    ext = rng.random(shape) < 0.25
    return np.where(ext, np.clip(rng.choice(np.array([lo, hi, 0, 1, -1]), shape), lo, hi), x)


def rand_params(rng) -> MacParams:
    a_w, w_w = int(rng.integers(2, 17)), int(rng.integers(2, 17))
    lanes = int(rng.choice([1, 1, 2, 3, 4, 8]))
    need = a_w + w_w + max(0, (lanes - 1).bit_length())
    acc_w = int(rng.integers(need, min(62, need + 12) + 1))
    b_w = int(rng.integers(1, acc_w + 1))
    return MacParams(a_w=a_w, w_w=w_w, lanes=lanes, acc_w=acc_w, out_w=int(rng.integers(2, 33)),
                     shift=int(rng.integers(0, acc_w)), rounding=str(rng.choice(["rne", "half_up", "floor"])),
                     acc_overflow=str(rng.choice(["wrap", "saturate"])), b_w=b_w,
                     bias_lsh=int(rng.integers(0, acc_w - b_w + 1)))


# ---- tests ---------------------------------------------------------------------------------


def test_random_params_against_reference():
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(120):
        p = rand_params(rng)
        k = int(rng.integers(1, 40))
        a, w = rand_codes(rng, p.a_w, (6, k)), rand_codes(rng, p.w_w, (6, k))
        bias = rand_codes(rng, p.b_w, (6,))
        acc = dot_acc_int(a, w, p, bias)
        out = dot_int(a, w, p, bias)
        for r in range(6):
            e = ref_acc(a[r].tolist(), w[r].tolist(), int(bias[r]), p)
            assert int(acc[r]) == e, (p, a[r], w[r], bias[r])
            assert int(out[r]) == ref_requant(e, p), (p, e)
            checked += 1
    assert checked == 720


@pytest.mark.parametrize("mode", ["rne", "half_up", "floor"])
def test_requant_ties_every_mode(mode):
    """The rounding table of rounding.py at +-0.5, +-1.5, +-2.5 (SHIFT=1), and near ties."""
    p = MacParams(a_w=8, w_w=8, acc_w=24, out_w=16, shift=1, rounding=mode)
    acc = np.array([-5, -3, -1, 1, 3, 5])  # -2.5 .. 2.5
    want = {"rne": [-2, -2, 0, 0, 2, 2], "half_up": [-2, -1, 0, 1, 2, 3], "floor": [-3, -2, -1, 0, 1, 2]}[mode]
    assert requantize_int(acc, p).tolist() == want
    p4 = MacParams(a_w=8, w_w=8, acc_w=24, out_w=16, shift=4, rounding=mode)
    near = np.array([7, 8, 9, 23, 24, 25, -7, -8, -9, -24, -25, -23])
    assert requantize_int(near, p4).tolist() == [ref_requant(int(x), p4) for x in near]


def test_output_saturation_and_min_codes():
    p = MacParams(a_w=8, w_w=8, acc_w=20, out_w=4, shift=2, rounding="half_up")
    acc = np.array([(7 << 2) + 1, (7 << 2) + 2, -(8 << 2), -(8 << 2) - 3, -(1 << 19), (1 << 19) - 1])
    assert requantize_int(acc, p).tolist() == [7, 7, -8, -8, -8, 7]
    # most negative x most negative for the full length, wrap vs saturate
    k = 70
    a = np.full(k, -128)
    for ov in ("wrap", "saturate"):
        q = MacParams(a_w=8, w_w=8, acc_w=20, out_w=8, acc_overflow=ov)
        got = int(dot_acc_int(a, a, q))
        assert got == ref_acc(a.tolist(), a.tolist(), 0, q)
    assert int(dot_acc_int(a, a, MacParams(a_w=8, w_w=8, acc_w=20, acc_overflow="saturate"))) == (1 << 19) - 1


def test_saturate_depends_on_order_and_lanes_wrap_does_not():
    """Wrap of the exact sum equals per-add wrap; saturation is per beat and order dependent."""
    a = np.array([127, 127, 127, -127, -127, -127])
    w = np.array([127, 127, 127, 127, 127, 127])  # 3 * 16129 = 48387 > 32767
    for lanes in (1, 2, 3):
        pw = MacParams(a_w=8, w_w=8, lanes=lanes, acc_w=16 + max(0, (lanes - 1).bit_length()), out_w=8)
        assert int(dot_acc_int(a, w, pw)) == 0
    p1 = MacParams(a_w=8, w_w=8, acc_w=16, acc_overflow="saturate", out_w=8)
    p3 = MacParams(a_w=8, w_w=8, lanes=2, acc_w=17, acc_overflow="saturate", out_w=8)
    s1, s3 = int(dot_acc_int(a, w, p1)), int(dot_acc_int(a, w, p3))
    assert s1 == ref_acc(a.tolist(), w.tolist(), 0, p1) == 32767 - 48387
    assert s3 == ref_acc(a.tolist(), w.tolist(), 0, p3) == 0  # 17 bits hold 48387: no clamp
    assert int(dot_acc_int(a[::-1], w, p1)) == -32768 + 48387


def test_bias_alignment_and_k1_and_zero():
    p = MacParams(a_w=4, w_w=4, acc_w=16, out_w=16, b_w=8, bias_lsh=3)
    assert dot_acc_int([[3], [0]], [[-2], [0]], p, bias=[-128, 0]).tolist() == [-128 * 8 - 6, 0]
    assert dot_int([0, 0, 0], [5, -5, 7], p).tolist() == 0


@pytest.mark.parametrize("ov", ["wrap", "saturate"])
def test_matmul_matches_dot_row_by_row(ov):
    rng = np.random.default_rng(2)
    p = MacParams(a_w=8, w_w=6, lanes=3, acc_w=19, out_w=8, shift=5, acc_overflow=ov, b_w=10, bias_lsh=2)
    a, w = rand_codes(rng, 8, (2, 9, 50)), rand_codes(rng, 6, (50, 7))
    bias = rand_codes(rng, 10, (7,))
    got = matmul_int(a, w, p, bias)
    want = dot_int(a[..., :, None, :], np.swapaxes(w, 0, 1)[None, None], p, bias[None, None, :])
    assert got.shape == (2, 9, 7) and np.array_equal(got, want)
    assert np.array_equal(matmul_acc_int(a, w, p, bias), dot_acc_int(a[..., :, None, :], w.T, p, bias))


def test_matmul_wide_codes_use_exact_limbs():
    """30-bit codes: products of 60 bits, sums beyond float64 and int64; checked with Python ints
    under wrap mod 2**62 and under saturation with rows that do and do not clip."""
    rng = np.random.default_rng(3)
    k = 300
    a = rand_codes(rng, 30, (5, k))
    w = rand_codes(rng, 30, (k, 4))
    pw = MacParams(a_w=30, w_w=30, acc_w=62, out_w=40, shift=30)
    pw_acc = matmul_acc_int(a, w, pw)
    for i in range(5):
        for j in range(4):
            assert int(pw_acc[i, j]) == ref_acc(a[i].tolist(), w[:, j].tolist(), 0, pw)
    ps = MacParams(a_w=30, w_w=30, acc_w=62, out_w=40, shift=30, acc_overflow="saturate", lanes=1)
    a_small = a.copy()
    a_small[0] = rng.integers(-3, 4, k)  # this row cannot saturate: fast path
    got_s = matmul_acc_int(a_small, w, ps)
    for i in range(5):
        for j in range(4):
            assert int(got_s[i, j]) == ref_acc(a_small[i].tolist(), w[:, j].tolist(), 0, ps)


def test_matmul_layer_sized_is_fast():
    """(128x768) @ (768x3072) int8: float64 BLAS path, bit-exact on a sample of outputs."""
    rng = np.random.default_rng(4)
    a = rng.integers(-128, 128, (128, 768))
    w = rng.integers(-128, 128, (768, 3072))
    p = MacParams(a_w=8, w_w=8, acc_w=32, out_w=8, shift=12)
    t0 = time.perf_counter()
    y = matmul_int(a, w, p)
    dt = time.perf_counter() - t0
    assert dt < 10.0, f"matmul_int took {dt:.2f} s"
    rows, cols = rng.integers(0, 128, 20), rng.integers(0, 3072, 20)
    for i, j in zip(rows, cols, strict=True):
        assert int(y[i, j]) == ref_requant(ref_acc(a[i].tolist(), w[:, j].tolist(), 0, p), p)


def test_to_hdl_and_formats():
    p = MacParams(a_w=8, w_w=8, lanes=4, acc_w=20, acc_overflow="saturate", out_w=8, shift=6,
                  rounding="half_up", b_w=12, bias_lsh=4)
    assert p.to_hdl() == {"A_W": 8, "W_W": 8, "ACC_W": 20, "OUT_W": 8, "SHIFT": 6, "ROUND_MODE": 1,
                          "ACC_SAT": 1, "LANES": 4, "B_W": 12, "BIAS_LSH": 4}
    assert str(p.acc_format(7, 5)) == "s20.12" and str(p.out_format(7, 5)) == "s8.6"
    assert MacParams(acc_w=40).b_w == 40


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"acc_w": 15}, "acc_w=15"),
        ({"acc_w": 63}, "acc_w=63"),
        ({"rounding": "half_away"}, "half_away"),
        ({"rounding": "nearest"}, "nearest"),
        ({"acc_overflow": "error"}, "wrap or saturate"),
        ({"shift": 32}, "shift"),
        ({"b_w": 30, "bias_lsh": 3}, "b_w"),
        ({"lanes": 0}, "lanes"),
    ],
)
def test_bad_params(kw, match):
    with pytest.raises(ValueError, match=match):
        MacParams(**kw)


def test_bad_codes_name_the_value():
    p = MacParams(a_w=4, w_w=4, acc_w=12)
    with pytest.raises(ValueError, match=r"code 8 at index \(1,\)"):
        dot_int([1, 8], [1, 1], p)
    with pytest.raises(ValueError, match="integer codes"):
        dot_int([1.0], [1], p)
    with pytest.raises(ValueError, match="at least one product"):
        dot_int(np.zeros((2, 0), int), np.zeros((2, 0), int), p)
    with pytest.raises(ValueError, match="shapes"):
        matmul_int(np.zeros((2, 3), int), np.zeros((4, 2), int), p)


def test_doctests():
    res = doctest.testmod(mac)
    assert res.attempted >= 1 and res.failed == 0
