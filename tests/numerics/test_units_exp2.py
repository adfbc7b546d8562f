"""refmodel.numerics.units.exp2: the LUT against 50-digit decimal arithmetic, exp_neg against a
per-element Python-int implementation, error measures against their definitions."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, localcontext

import numpy as np
import pytest

from refmodel.numerics.units.exp2 import (
    Exp2Params,
    exhaustive_error,
    exp2_lut,
    exp_neg,
    log2e_code,
    prefloor_rel_error,
)


def test_log2e_code():
    assert log2e_code(14) == 23637  # hw_algorithms.md 4.2
    for f in range(1, 30):
        assert log2e_code(f) == math.floor(math.log2(math.e) * 2 ** f + 0.5)


@pytest.mark.parametrize("lut_bits,width", [(0, 16), (2, 16), (6, 16), (8, 12), (10, 20)])
def test_lut_decimal(lut_bits, width):
    with localcontext() as ctx:
        ctx.prec = 50
        want = []
        for k in range(1 << lut_bits):
            v = Decimal(2) ** (Decimal(-k) / Decimal(1 << lut_bits) + (width - 1))
            want.append(int(v.quantize(Decimal(1), rounding=ROUND_HALF_UP)))
    assert exp2_lut(lut_bits, width).tolist() == want


def ref_exp_neg(d: int, p: Exp2Params, lut: list[int]) -> int:
    t = d * log2e_code(p.log2e_f)
    sh = p.in_f + p.log2e_f - p.lut_bits
    tq = (t + (1 << (sh - 1))) >> sh
    q, k = tq >> p.lut_bits, tq & ((1 << p.lut_bits) - 1)
    if q >= p.lut_w + p.guard:
        return 0
    return (lut[k] << p.guard) >> q


@pytest.mark.parametrize("params", [Exp2Params(), Exp2Params(in_w=12, in_f=6, lut_bits=10, guard=10),
                                    Exp2Params(guard=0, lut_bits=5)])
def test_exp_neg_exhaustive(params):
    d = np.arange(1 << params.in_w, dtype=np.int64)
    lut = params.lut().tolist()
    got = exp_neg(d, params).tolist()
    assert got == [ref_exp_neg(i, params, lut) for i in range(1 << params.in_w)]
    assert got[0] == params.one


def test_exp_neg_errors():
    with pytest.raises(ValueError, match="d must be in"):
        exp_neg([-1], Exp2Params())
    with pytest.raises(ValueError, match="must exceed lut_bits"):
        Exp2Params(in_f=0, log2e_f=4, lut_bits=6)


def test_error_measures():
    p = Exp2Params()
    ue = exhaustive_error(p)
    d = np.arange(1 << 16)
    exact = 2.0 ** 19 * np.exp(-d / 256.0)
    err = np.abs(exp_neg(d, p) - exact)
    assert ue.exhaustive and ue.n == 65536
    assert ue.max_abs_err == pytest.approx(float(err.max()))
    assert ue.where == int(np.argmax(err))
    rho = prefloor_rel_error(p)
    # the floor can only lower e: e <= e~ and e~ within rho of exact
    big = exact >= 2 ** 10
    assert np.all(err[big] <= rho * exact[big] + 1.0)
    # t rounded to 1/64 moves the exponent by up to 2^-7: rho is about 2^(1/128) - 1
    assert 0.004 < rho < 0.0065


def test_lut_table():
    """The unit returns its table (codes + format); the memh writer lives in refmodel.golden."""
    p = Exp2Params(lut_bits=6, lut_w=16)
    t = p.table()
    assert t.codes.tolist() == p.lut().tolist() and len(t) == 64
    assert str(t.fmt) == "u16.15" and t.width == 16 and t.codes[0] == 1 << 15


def test_unit_doctests():
    """The docstring examples of every unit model run (style: doctests in CI)."""
    import doctest

    from refmodel.numerics.units import exp2, reciprocal, requant, rsqrt, softmax

    for mod in (exp2, reciprocal, requant, rsqrt, softmax):
        res = doctest.testmod(mod)
        assert res.attempted > 0 and res.failed == 0, mod.__name__
