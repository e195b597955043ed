"""`elmo export-onnx`: the ONNX graph run by onnxruntime against elmo-lm's own path.

Skipped when the `onnx` extra (onnx, onnxruntime) is not installed.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'elmo-lm[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'elmo-lm[onnx]'")

from conftest import PROJECT_ROOT  # noqa: E402
from elmo_lm import ElmoBiLM, ModelConfig, batch_to_ids, load_model  # noqa: E402
from elmo_lm.bundled import bundled_model_path  # noqa: E402
from elmo_lm.onnx_export import export_onnx  # noqa: E402

WORDS = "the bank of a river is muddy after rain , and boats are moored there for the night .".split()


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _batch(batch: int, length: int, seed: int) -> list[list[str]]:
    """`batch` sentences, the first of `length` tokens, the others shorter (padding inside the batch)."""
    rng = np.random.default_rng(seed)
    lengths = [length] + [int(rng.integers(1, length + 1)) for _ in range(batch - 1)]
    return [[WORDS[int(k)] for k in rng.integers(0, len(WORDS), n)] for n in lengths]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    model = load_model(bundled_model_path())
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "elmo.onnx")
    return model, _session(path)


@pytest.fixture(scope="module")
def clipped(tmp_path_factory):
    """A tiny random model with small clips, so that both clips bite."""
    torch.manual_seed(0)
    config = ModelConfig(char_embed_dim=4, filters=((1, 8), (2, 8), (3, 16)), n_highway=1, lstm_dim=32,
                         projection_dim=16, n_layers=2, cell_clip=0.05, proj_clip=0.02)
    model = ElmoBiLM(config).eval()
    with torch.no_grad():
        for weight in model.lstm.parameters():
            weight.uniform_(-1.0, 1.0)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "clipped.onnx")
    return model, _session(path)


def _compare(model, session, sentences) -> None:
    ids = batch_to_ids(sentences)  # (B, T, 50)
    with torch.inference_mode():
        expected = model(ids, return_state=False)
    reference = expected.layers.numpy()  # (L+1, B, T, 2P)
    layers, mask = session.run(None, {"char_ids": ids.numpy()})
    assert layers.shape == reference.shape
    np.testing.assert_array_equal(mask, expected.mask.numpy())
    # Both paths sum in float32, in different orders, through up to 300 recurrent steps: allow 1e-5 of the largest
    # output (the bundled v2 reaches 4.8; on the 17 x 300 batch the two paths differ by up to 1.6e-5).
    scale = max(1.0, float(np.abs(reference).max()))
    np.testing.assert_allclose(layers, reference, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("batch", [1, 17])
@pytest.mark.parametrize("length", [1, 7, 300])
def test_onnxruntime_matches_the_pytorch_path(bundled, batch, length):
    _compare(*bundled, _batch(batch, length, seed=length * 100 + batch))


@pytest.mark.parametrize("batch,length", [(1, 7), (17, 300)])
def test_clips_are_in_the_graph(clipped, batch, length):
    model, session = clipped
    sentences = _batch(batch, length, seed=1)
    _compare(model, session, sentences)
    unclipped = ElmoBiLM(model.config.replace(cell_clip=None, proj_clip=None)).eval()
    unclipped.load_state_dict(model.state_dict())
    with torch.inference_mode():
        differs = unclipped(batch_to_ids(sentences), return_state=False).layers
    layers, _ = session.run(None, {"char_ids": batch_to_ids(sentences).numpy()})
    assert np.abs(layers - differs.numpy()).max() > 1e-2  # the clips change the result, and the graph has them


def test_the_time_loop_is_a_scan_not_unrolled(bundled, tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(bundled[0], path)
    graph = onnx.load(str(path)).graph
    kinds = [node.op_type for node in graph.node]
    assert kinds.count("Scan") == bundled[0].config.n_layers
    assert kinds.count("MatMul") < 20  # a per-step unrolling would repeat the cell's matmuls
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "tokens", 50]


def test_cli_exports_the_bundled_model(tmp_path):
    out = tmp_path / "bundled.onnx"
    result = subprocess.run([sys.executable, "-m", "elmo_lm", "export-onnx", "bundled", str(out)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stderr and out.stat().st_size > 10_000_000

def test_cli_refuses_to_overwrite(tmp_path, capsys):
    from elmo_lm.cli import main

    (tmp_path / "there.onnx").write_bytes(b"keep me")
    assert main(["export-onnx", "bundled", str(tmp_path / "there.onnx")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "there.onnx").read_bytes() == b"keep me"
