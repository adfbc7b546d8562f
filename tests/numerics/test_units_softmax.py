"""refmodel.numerics.units.softmax against a straightforward per-row Python-int implementation,
vectorisation over leading axes with a causal mask, edge cases and the error bound."""

from __future__ import annotations

import numpy as np
import pytest

from refmodel.numerics.units.exp2 import log2e_code
from refmodel.numerics.units.softmax import (
    SoftmaxParams,
    exhaustive_error,
    reference_softmax,
    softmax,
    softmax_error_bound,
)


def slow_softmax(row: list[int], mask: list[bool], p: SoftmaxParams) -> list[int]:
    """Python ints, one element at a time, straight from hw_algorithms.md 4.2."""
    lut = p.exp2.lut().tolist()
    live = [x for x, m in zip(row, mask, strict=True) if not m]
    if not live:
        return [0] * len(row)
    xmax = max(live)
    sh = p.in_f + p.log2e_f - p.lut_bits
    e = []
    for x, m in zip(row, mask, strict=True):
        if m:
            e.append(0)
            continue
        t = (xmax - x) * log2e_code(p.log2e_f)
        tq = (t + (1 << (sh - 1))) >> sh
        q, k = tq >> p.lut_bits, tq % (1 << p.lut_bits)
        e.append(0 if q >= p.lut_w + p.guard else (lut[k] << p.guard) >> q)
    s = sum(e)
    r = (1 << p.k) // s
    out = []
    for v in e:
        y = (v * r + (1 << (p.k - p.out_f - 1))) >> (p.k - p.out_f)
        out.append(min(y, (1 << p.out_w) - 1))
    return out


CONFIGS = [
    SoftmaxParams(),
    SoftmaxParams(n_max=1024, out_w=9),
    SoftmaxParams(in_w=12, in_f=6, n_max=16, lut_bits=10, guard=10, out_w=16, out_f=15),
    SoftmaxParams(n_max=5, guard=0, lut_bits=3, in_f=2),
]


@pytest.mark.parametrize("p", CONFIGS, ids=lambda p: f"n{p.n_max}_L{p.lut_bits}_G{p.guard}_o{p.out_w}")
def test_against_slow(p):
    rng = np.random.default_rng(5)
    lo, hi = -(1 << (p.in_w - 1)), (1 << (p.in_w - 1)) - 1
    for _ in range(60):
        n = int(rng.integers(1, min(p.n_max, 70) + 1))
        x = np.clip(np.round(rng.normal(0, rng.choice([0.3, 3, 30]), n) * 2 ** p.in_f), lo, hi).astype(np.int64)
        m = rng.random(n) < rng.choice([0.0, 0.3, 0.9])
        assert softmax(x, p, masked=m).tolist() == slow_softmax(x.tolist(), m.tolist(), p)


def test_vectorised_causal():
    """(heads, seq, seq) with a causal mask equals row-by-row evaluation."""
    p = SoftmaxParams(n_max=32)
    rng = np.random.default_rng(6)
    x = rng.integers(-3000, 3000, size=(3, 20, 20))
    causal = np.triu(np.ones((20, 20), dtype=bool), k=1)
    y = softmax(x, p, masked=causal)
    for h in range(3):
        for i in range(20):
            assert y[h, i].tolist() == slow_softmax(x[h, i].tolist(), causal[i].tolist(), p)
    assert (y[:, causal] == 0).all()


def test_edge_cases():
    p = SoftmaxParams(n_max=8)
    assert softmax([5], p).tolist() == [255]                      # 1.0 saturates in UQ0.8
    assert softmax([5], SoftmaxParams(n_max=8, out_w=9)).tolist() == [256]
    assert softmax([3] * 8, p).tolist() == [32] * 8                 # uniform, sums to 1
    assert softmax([7, 7, 7], p, masked=[True] * 3).tolist() == [0, 0, 0]
    # a masked element does not take part even when it is the maximum
    assert softmax([30000, 0, 0], p, masked=[True, False, False]).tolist() == [0, 128, 128]
    # one-hot: the dominant element saturates, the rest underflow to 0
    assert softmax([32767, -32768, -32768, -32768], p).tolist() == [255, 0, 0, 0]
    assert softmax([-32768, 32767], p).tolist() == [0, 255]
    with pytest.raises(ValueError, match="row length 9"):
        softmax(np.zeros(9, dtype=np.int64), p)
    with pytest.raises(ValueError, match="s16"):
        softmax([40000], p)


def test_error_bound_holds_and_sweep():
    """The rigorous bound covers the measured sweep, per row length, for several configs."""
    for p in CONFIGS[:3]:
        ue = exhaustive_error(p, rows_per_case=100)
        assert ue.max_abs_err <= softmax_error_bound(p, p.n_max)
        for n in sorted({1, 2, 8, p.n_max}):
            if n > p.n_max:
                continue
            rng = np.random.default_rng(n)
            x = np.clip(np.round(rng.normal(0, 2, (300, n)) * 2 ** p.in_f), -(1 << (p.in_w - 1)),
                        (1 << (p.in_w - 1)) - 1).astype(np.int64)
            err = np.abs(softmax(x, p) - reference_softmax(x, p))
            assert err.max() <= softmax_error_bound(p, n), (p, n)
    # hw_algorithms.md 4.2 reports ~0.75 LSB for L=6, G=4 with a 9-bit (unsaturated) output
    ue = exhaustive_error(SoftmaxParams(n_max=1024, out_w=9))
    assert 0.5 < ue.max_abs_err < 1.0


def test_params_and_lut(tmp_path):
    p = SoftmaxParams()
    assert p.k == 19 + 6 + 16 and p.s_w == 26 and p.r_w == 23
    hdl = p.to_hdl(lut_path=tmp_path / "l.hex")
    assert hdl["EXP2_MEMFILE"].startswith('"/') and hdl["EXP2_MEMFILE"].endswith('l.hex"')
    assert hdl["LOG2E"] == 23637 and hdl["K"] == p.k
    assert p.lut_table().codes.tolist() == p.exp2.lut().tolist() and p.lut_table().width == 16
    with pytest.raises(ValueError, match="k must satisfy"):
        SoftmaxParams(k=63)
