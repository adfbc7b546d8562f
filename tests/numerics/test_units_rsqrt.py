"""refmodel.numerics.units.rsqrt: isqrt against math.isqrt, rsqrt against the defining
inequality y^2 V <= 4^k < (y+1)^2 V in Python ints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refmodel.numerics.units.rsqrt import IsqrtParams, RsqrtParams, exhaustive_error, isqrt, rsqrt


def test_isqrt_exhaustive_small():
    n = np.arange(1 << 20, dtype=np.int64)
    want = np.array([math.isqrt(i) for i in range(1 << 20)], dtype=np.int64)
    assert np.array_equal(isqrt(n), want)


def test_isqrt_large_edges_and_random():
    vals = [(1 << 63) - 1, 1 << 62, (1 << 62) - 1, (1 << 62) + 1]
    for m in (3037000499, 3037000498, 1 << 31, (1 << 31) - 1, 2147483647, 10 ** 9 + 7):
        vals += [m * m - 1, m * m, m * m + 1]
    for i in range(20, 63):
        vals += [(1 << i) - 1, 1 << i, (1 << i) + 1]
    rng = np.random.default_rng(3)
    r = rng.integers(0, np.iinfo(np.int64).max, size=20000, dtype=np.int64) >> rng.integers(0, 63, 20000)
    vals = np.array([v for v in vals if v < (1 << 63)] + r.tolist(), dtype=np.int64)
    got = isqrt(vals)
    assert [math.isqrt(int(v)) for v in vals] == got.tolist()


def test_isqrt_shape_and_errors():
    assert isqrt(np.array([[4, 8], [9, 15]])).tolist() == [[2, 2], [3, 3]]
    with pytest.raises(ValueError, match="negative"):
        isqrt([-1])


@pytest.mark.parametrize("v_w,k", [(12, 8), (16, 16), (10, 31), (20, 3)])
def test_rsqrt_exhaustive_definition(v_w, k):
    p = RsqrtParams(v_w=v_w, k=k)
    v = np.arange(1 << v_w, dtype=np.int64)
    y = rsqrt(v, p)
    assert y[0] == (1 << (k + 1)) - 1
    four_k = 1 << (2 * k)
    for vv, yy in zip(v[1:].tolist(), y[1:].tolist(), strict=True):
        assert yy * yy * vv <= four_k < (yy + 1) * (yy + 1) * vv, (vv, yy)


def test_rsqrt_random_wide():
    p = RsqrtParams(v_w=62, k=31)
    rng = np.random.default_rng(4)
    v = np.maximum(rng.integers(0, 1 << 62, size=5000, dtype=np.int64) >> rng.integers(0, 62, 5000), 1)
    y = rsqrt(v, p)
    for vv, yy in zip(v.tolist(), y.tolist(), strict=True):
        assert yy * yy * vv <= 1 << 62 < (yy + 1) * (yy + 1) * vv


def test_params():
    p = RsqrtParams(v_w=48, k=31)
    assert p.to_hdl() == {"V_W": 48, "K": 31}
    assert p.out_w == 32 and p.latency == 3 * 31 + 3 and p.interval == 2 * 31 + 2
    assert IsqrtParams(in_w=63).out_w == 32 and IsqrtParams(in_w=1).out_w == 1
    with pytest.raises(ValueError, match="k must be in 1..31"):
        RsqrtParams(k=32)
    with pytest.raises(ValueError, match="unsigned 4-bit"):
        rsqrt([16], RsqrtParams(v_w=4, k=4))


def test_exhaustive_error():
    ue = exhaustive_error(RsqrtParams(v_w=12, k=10))
    assert ue.exhaustive and ue.n == 4095 and 0 <= ue.max_abs_err < 1
    # recompute independently: max over V of 2^k/sqrt(V) - y
    v = np.arange(1, 4096)
    y = rsqrt(v, RsqrtParams(v_w=12, k=10))
    assert ue.max_abs_err == pytest.approx(float(np.max(1024.0 / np.sqrt(v) - y)), abs=1e-9)
    big = exhaustive_error(RsqrtParams(v_w=48, k=31), n_random=1 << 12)
    assert not big.exhaustive and 0 <= big.max_abs_err < 1
