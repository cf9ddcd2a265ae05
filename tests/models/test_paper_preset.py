"""The ``paper`` preset end to end on CPU with batch 2: a training step, export, parity."""

import pytest

from models.bundle import read_model_info
from models.cli import main
from models.runtime import ModelRuntime


@pytest.mark.slow
def test_paper_preset_trains_exports_and_matches(tiny_corpus, tmp_path):
    run, bundle = tmp_path / "run", tmp_path / "model"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(run), "--preset", "paper",
                 "--steps", "1", "--batch-size", "2", "--quiet"]) == 0
    assert main(["export", str(run), "--out", str(bundle), "--parity-items", "2"]) == 0
    info = read_model_info(bundle)
    assert info.image.size == 224 and info.image.grid == 14
    assert info.audio.sample_rate == 48_000 and info.audio.samples == 48_000
    assert info.embed_dim == 128
    assert max(info.parity["image_max_abs"], info.parity["audio_max_abs"]) <= 1e-4
    runtime = ModelRuntime(bundle, device="cpu")
    import numpy as np

    out = runtime.embed_images(np.zeros((1, 300, 200, 3), np.uint8))
    assert out.embeddings.shape == (1, 128) and out.grids.shape == (1, 14, 14, 128)
    assert runtime.embed_audio(np.zeros((2, 48_000), np.float32) + 0.01).shape == (2, 128)
