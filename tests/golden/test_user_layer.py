"""Golden sets of the user's own layer: weights from .safetensors / .npz, input from .npz / .npy,
arrays through the Python API, a bundled real model's layer; each set verifies by rebuilding from
what its manifest records (sha256), and says clearly what is missing when it cannot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from refmodel.cli import main
from refmodel.errors import CheckFailed, UserError
from refmodel.golden import generate_set, load_tensor, read_manifest, verify_set
from refmodel.layer.config import LayerConfig
from refmodel.layer.quantized import run_quantized
from refmodel.layer.weights import LayerWeights, random_inputs, random_weights

safetensors_numpy = pytest.importorskip("safetensors.numpy")

CFG = LayerConfig.from_name("tiny")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _user_files(d: Path, seq: int = 12) -> tuple[Path, Path, dict[str, np.ndarray], np.ndarray]:
    """A trained-looking layer saved as a user would: fp32 safetensors weights, an npz input."""
    d.mkdir(parents=True, exist_ok=True)
    w = {k: (0.5 * v).astype(np.float32) for k, v in random_weights(CFG, seed=42).items()}
    x = random_inputs(CFG, seed=7, seq_len=seq).astype(np.float32)
    safetensors_numpy.save_file(w, str(d / "layer0.safetensors"))
    np.savez(d / "acts.npz", x=x)
    return d / "layer0.safetensors", d / "acts.npz", w, x


@pytest.mark.parametrize("plan", ["hw", "fp8"])
def test_own_weights_and_input_files(capsys, tmp_path, monkeypatch, plan):
    monkeypatch.chdir(tmp_path)
    _, _, w, x = _user_files(tmp_path / "inputs")
    code, out, err = run(capsys, "golden", "--config", "tiny", "--plan", plan, "--weights", "inputs/layer0.safetensors",
                         "--input", "inputs/acts.npz", "--out", "sets/mine")
    assert code == 0, err
    assert "weights layer0.safetensors, input acts.npz" in out
    s = tmp_path / "sets" / "mine"
    m = read_manifest(s)
    assert m["source"]["weights"]["file"] == "layer0.safetensors" and m["config"]["seq_len"] == 12
    assert m["source"]["weights"]["sha256"] == __import__("hashlib").sha256(
        (tmp_path / "inputs" / "layer0.safetensors").read_bytes()).hexdigest()
    # the set holds the plan's codes of exactly these weights and this input
    run_ = run_quantized(LayerConfig.from_dict(m["config"]), LayerWeights({k: v.astype(np.float64) for k, v in w.items()}),
                         x.astype(np.float64), plan)
    assert np.array_equal(load_tensor(s, "x")["codes"], run_.tensors["x"].codes)
    assert np.array_equal(load_tensor(s, "wq")["codes"], run_.weights["wq"].codes)
    # verify rebuilds from the files at their recorded (relative) paths
    code, out, err = run(capsys, "golden", "verify", "sets/mine")
    assert code == 0 and "identical to a fresh regeneration" in out, err
    # ... or from files next to the set, wherever it moved
    moved = tmp_path / "elsewhere" / "mine"
    shutil.copytree(s, moved)
    shutil.copy(tmp_path / "inputs" / "layer0.safetensors", moved / "layer0.safetensors")
    shutil.move(tmp_path / "inputs" / "acts.npz", moved / "acts.npz")
    (tmp_path / "inputs" / "layer0.safetensors").unlink()
    assert verify_set(moved)["regenerated"]


def test_missing_and_wrong_source_files(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wf, xf, _, _ = _user_files(tmp_path / "in")
    assert run(capsys, "golden", "--weights", str(wf), "--input", str(xf), "--out", "s")[0] == 0
    shutil.move(tmp_path / "in", tmp_path / "hidden")
    code, out, err = run(capsys, "golden", "verify", "s")
    assert code == 2 and "was built from the weights file 'layer0.safetensors'" in err and "--files-only" in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "golden", "verify", "s", "--files-only")
    assert code == 0 and "not regenerated" in out
    code, out, _ = run(capsys, "golden", "verify", "s", "--weights", "hidden/layer0.safetensors",
                       "--input", "hidden/acts.npz")
    assert code == 0 and "identical" in out
    other, _, _, _ = _user_files(tmp_path / "other")
    safetensors_numpy.save_file({k: v * 2 for k, v in safetensors_numpy.load_file(str(other)).items()}, str(other))
    code, _, err = run(capsys, "golden", "verify", "s", "--weights", str(other), "--input", "hidden/acts.npz")
    assert code == 1 and "is not the one golden set s was built from" in err


def test_bad_weight_and_input_files_name_the_problem(capsys, tmp_path):
    wf, xf, w, x = _user_files(tmp_path)
    bad = dict(w)
    bad["w_qkv"] = bad.pop("wq")
    safetensors_numpy.save_file(bad, str(tmp_path / "bad.safetensors"))
    code, out, err = run(capsys, "golden", "--weights", str(tmp_path / "bad.safetensors"), "--out", str(tmp_path / "o"))
    assert code == 2 and "missing wq" in err and "unexpected w_qkv" in err and "bad.safetensors" in err
    np.savez(tmp_path / "T.npz", **{k: (v.T if k == "wq" else v) for k, v in w.items()})
    np.save(tmp_path / "short.npy", x[:, :10])
    code, _, err = run(capsys, "golden", "--weights", str(tmp_path / "short.npy"), "--out", str(tmp_path / "o"))
    assert code == 2 and "unsupported type '.npy'" in err
    code, _, err = run(capsys, "golden", "--input", str(tmp_path / "short.npy"), "--out", str(tmp_path / "o"))
    assert code == 2 and "shape [12, 10], expected [seq, 64]" in err
    code, _, err = run(capsys, "golden", "--weights", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "o"))
    assert code == 2 and "weights file not found" in err
    assert not (tmp_path / "o").exists()


def test_python_api_arrays_are_kept_in_the_set(tmp_path):
    w = {k: v * 0.7 for k, v in random_weights(CFG, seed=3).items()}
    x = random_inputs(CFG, seed=4, seq_len=9)
    d = generate_set(CFG, "hw", tmp_path / "api", weights=w, inputs=x)
    m = json.loads((d / "manifest.json").read_text())
    assert m["source"]["weights"]["kind"] == "embedded" and "source.npz" in m["files"]
    assert verify_set(d)["regenerated"]
    again = generate_set(CFG, "hw", tmp_path / "api2", weights=w, inputs=x)
    assert (d / "source.npz").read_bytes() == (again / "source.npz").read_bytes()  # no timestamps
    (d / "source.npz").write_bytes(b"PK" + (d / "source.npz").read_bytes()[2:-1])
    with pytest.raises(CheckFailed, match="source.npz does not match its sha256"):
        verify_set(d)


def test_legacy_positional_call_and_random_source(tmp_path):
    d = generate_set("tiny", "fp8", 5, tmp_path / "legacy")
    m = read_manifest(d)
    assert m["seed"] == 5 and m["source"] == {"weights": {"kind": "random", "seed": 5},
                                              "input": {"kind": "random", "seed": 6}}
    with pytest.raises(UserError, match="--text needs --model"):
        generate_set("tiny", "fp8", tmp_path / "t", text="hello")
    with pytest.raises(UserError, match="not built from a weights file .* --weights does not apply"):
        verify_set(d, weights=tmp_path / "any.safetensors")


@pytest.mark.models
def test_bundled_model_layer_from_text(capsys, tmp_path):
    code, out, err = run(capsys, "golden", "--model", "minilm", "--layer", "2", "--text", "Fixed point is fun.",
                         "--plan", "fp8", "--out", str(tmp_path / "minilm2"))
    assert code == 0, err
    m = read_manifest(tmp_path / "minilm2")
    assert m["source"]["weights"]["name"] == "all-MiniLM-L6-v2" and m["source"]["weights"]["layer"] == 2
    assert m["source"]["input"]["tokens"] == m["config"]["seq_len"] > 3
    # the input is the real model's hidden state before layer 2: embeddings through layers 0 and 1
    from refmodel.layer import realweights

    mdl = realweights.load_minilm(layers=[0, 1])
    x = realweights.run_layers(mdl.config, mdl.layers, mdl.embed("Fixed point is fun."))
    assert np.array_equal(load_tensor(tmp_path / "minilm2", "x.value" if "x.value" in m["tensors"] else "x")[
        "reference"], x)
    code, out, err = run(capsys, "golden", "verify", str(tmp_path / "minilm2"))
    assert code == 0 and "identical" in out, err
    code, _, err = run(capsys, "golden", "--model", "minilm", "--config", "tiny", "--out", str(tmp_path / "x"))
    assert code == 2 and "exclude each other" in err
