"""A per-tensor power-of-two weight scale keeps rtl/layer_top.v bit-exact with the hw plan: the
scale is a change of each stage's requant shift (SHIFT / BIAS_LSH parameters the RTL already
takes per stage), not a new datapath."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from refmodel.layer.config import LayerConfig
from refmodel.layer.weights import LayerWeights


def _need_icarus() -> None:
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Icarus Verilog is required under CI (apt-get install -y iverilog)")
        pytest.skip("Icarus Verilog not installed (apt-get install -y iverilog)")


def test_layer_top_bit_exact_with_pow2_weight_scales(tmp_path, monkeypatch):
    _need_icarus()
    import refmodel.golden.generate as gen
    from refmodel.golden.manifest import load_tensor, read_manifest
    from refmodel.rtl_layer import simulate_layer

    cfg = LayerConfig(arch="gpt2", d_model=48, n_heads=3, d_ff=96, seq_len=12)
    base = gen.random_weights

    def weights_needing_scales(config, seed=0, **kw):
        w = dict(base(config, seed=seed, **kw))
        w["wq"] = w["wq"] * 3.0  # max ~1.6: 2^1
        w["w_down"] = w["w_down"] * 9.0  # max ~2.5: 2^2
        return LayerWeights(w)

    monkeypatch.setattr(gen, "random_weights", weights_needing_scales)
    out = gen.generate_set(cfg, "hw", 11, tmp_path / "set")
    units = read_manifest(out)["units"]
    exps = {n: units[n]["weight_scale"]["exponent"] for n in ("q", "k", "v", "proj", "up", "down")}
    assert exps["q"] == 1 and exps["down"] == 2 and exps["k"] == 0
    assert units["down"]["mac"]["SHIFT"] == 10 + (7 - 2) - 8  # act s16.10 x w_down s8.7 * 2^2 -> down s16.8
    sim = simulate_layer(out, tmp_path / "work", lanes=3)
    bad = [n for n, codes in sim.codes.items() if not np.array_equal(load_tensor(out, n)["codes"], codes)]
    assert bad == [], f"stages differing from the model: {bad}"
