"""A model bundle that is missing, malformed or tampered with is refused with a clear message."""

import json
import shutil

import pytest

from models.cli import main
from models.errors import BundleError
from models.runtime import ModelRuntime, choose_providers


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "model")


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="no model.json"):
        ModelRuntime(tmp_path)


def test_tampered_graph_fails_the_hash(bundle_copy):
    with (bundle_copy / "audio.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="content_hash"):
        ModelRuntime(bundle_copy)


def test_malformed_model_json(bundle_copy):
    info = json.loads((bundle_copy / "model.json").read_text())
    del info["embed_dim"]
    (bundle_copy / "model.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match="embed_dim"):
        ModelRuntime(bundle_copy)


def test_features_without_their_size_are_refused(bundle_copy):
    info = json.loads((bundle_copy / "model.json").read_text())
    info["audio"]["features_dim"] = None
    (bundle_copy / "model.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match="features_dim"):
        ModelRuntime(bundle_copy)


def test_missing_graph(bundle_copy):
    (bundle_copy / "image.onnx").unlink()
    with pytest.raises(BundleError, match="missing image.onnx"):
        ModelRuntime(bundle_copy)


def test_cuda_without_a_gpu_is_refused():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine's ONNX Runtime has CUDA: the refusal cannot be observed")
    with pytest.raises(BundleError, match="no CUDA provider"):
        choose_providers("cuda")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path), "--corpus", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("avsearch eval: error:") and "\n" not in err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err
