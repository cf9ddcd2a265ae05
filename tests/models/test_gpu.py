"""The CUDA paths: ONNX Runtime's CUDA provider and training on a GPU (skipped without one)."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models.cli import main
from models.runtime import ModelRuntime

pytestmark = pytest.mark.gpu
needs_ort_cuda = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs an NVIDIA GPU with onnxruntime-gpu (this machine has no CUDA provider)",
)
needs_torch_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs an NVIDIA GPU with a CUDA build of torch"
)


@needs_ort_cuda
def test_cuda_provider_matches_cpu(tiny_bundle):
    gpu, cpu = ModelRuntime(tiny_bundle, device="cuda"), ModelRuntime(tiny_bundle, device="cpu")
    assert gpu.on_gpu and gpu.provider == "CUDAExecutionProvider"
    frames = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    waves = np.random.default_rng(1).normal(0, 0.1, (5, 8000)).astype(np.float32)
    assert np.allclose(gpu.embed_images(frames).embeddings, cpu.embed_images(frames).embeddings,
                       atol=1e-3)
    assert np.allclose(gpu.embed_audio(waves), cpu.embed_audio(waves), atol=1e-3)


@needs_torch_cuda
def test_training_on_cuda(tiny_corpus, tmp_path):
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "run"),
                 "--device", "cuda", "--steps", "2", "--batch-size", "8", "--quiet"]) == 0
