"""A user's own layer end to end: weights from a .safetensors file and activations from an .npz
file, a golden set under the user's plan, ``golden verify`` rebuilding it from those files, and the
RTL layer (rtl/layer_top.v on Icarus) run on it bit-exactly when the plan is one the RTL
implements; a plan it does not implement (int8 weights with per-channel fp32 scales) is refused
by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_layer_top import run_layer

from refmodel.cli import main
from refmodel.golden import read_manifest
from refmodel.layer.config import LayerConfig
from refmodel.layer.weights import random_inputs, random_weights
from refmodel.rtl_layer import UnsupportedSet, layer_params

safetensors_numpy = pytest.importorskip("safetensors.numpy")

CFG = LayerConfig.from_name("tiny")

INT8_PER_CHANNEL = {
    "base": "fixed16",
    "name": "int8-per-channel",
    "weights": {w: {"format": "s8.0", "scale": "channel", "scale_kind": "float", "scale_rule": "maxabs"}
                for w in ("wq", "wk", "wv", "wo", "w_up", "w_down")},
}


def _user_layer(d: Path, seq: int) -> tuple[Path, Path]:
    w = {k: (0.8 * v).astype(np.float32) for k, v in random_weights(CFG, seed=21).items()}
    safetensors_numpy.save_file(w, str(d / "block0.safetensors"))
    np.savez(d / "acts.npz", x=random_inputs(CFG, seed=22, seq_len=seq).astype(np.float32))
    return d / "block0.safetensors", d / "acts.npz"


def _golden(capsys, *args: str) -> tuple[int, str]:
    code = main(["golden", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_int8_per_channel_set_from_files(capsys, tmp_path):
    wf, xf = _user_layer(tmp_path, seq=10)
    plan = tmp_path / "int8.json"
    plan.write_text(json.dumps(INT8_PER_CHANNEL))
    code, text = _golden(capsys, "--plan", str(plan), "--weights", str(wf), "--input", str(xf), "--out",
                         str(tmp_path / "int8"))
    assert code == 0, text
    m = read_manifest(tmp_path / "int8")
    e = m["tensors"]["wq.scale"]
    assert e["shape"] == [CFG.d_model] and e["format"] == "fp32" and e["granularity"] == "channel"
    assert m["tensors"]["wq"]["format"] == "s8.0" and m["source"]["input"]["file"] == "acts.npz"
    code, text = _golden(capsys, "verify", str(tmp_path / "int8"))
    assert code == 0 and "identical to a fresh regeneration" in text, text
    with pytest.raises(UnsupportedSet, match="layer_top cannot run this golden set"):
        layer_params(tmp_path / "int8", 1)


def test_hw_set_from_files_runs_on_the_rtl(capsys, tmp_path):
    wf, xf = _user_layer(tmp_path, seq=8)
    code, text = _golden(capsys, "--plan", "hw", "--weights", str(wf), "--input", str(xf), "--out",
                         str(tmp_path / "hw_user"))
    assert code == 0, text
    code, text = _golden(capsys, "verify", str(tmp_path / "hw_user"))
    assert code == 0, text
    s = run_layer(tmp_path / "hw_user", lanes=2)
    assert s["codes_checked"] > 0
