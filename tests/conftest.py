"""Shared fixtures: the real data beside the repository, and a tiny trained model bundle.

The tiny bundle is trained for a few steps on a tiny AV-digits corpus, exported and checked by
the real exporter: every test that needs a model uses real ONNX graphs, not a stand-in.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The MNIST/FSDD folder: $AVSEARCH_DATA, else ../shared/data beside the repository, else
    the sample kept in the repository (data/sample)."""
    if os.environ.get("AVSEARCH_DATA"):
        return Path(os.environ["AVSEARCH_DATA"])
    shared = REPO.parent / "shared" / "data"
    return shared if (shared / "mnist").is_dir() else REPO / "data" / "sample"


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = data_dir()
    if not (path / "mnist").is_dir() or not (path / "fsdd").is_dir():
        pytest.fail(f"the real data is missing at {path}: set AVSEARCH_DATA to a folder with "
                    "mnist/ and fsdd/ (as ../shared/data)")
    return path


@pytest.fixture(scope="session")
def tiny_corpus(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.corpus.digits import DigitsCorpusConfig, build_digits_corpus

    out = tmp_path_factory.mktemp("corpus") / "digits"
    build_digits_corpus(DigitsCorpusConfig(
        source=real_data, out=out, test_speakers=("george",), max_images=120, max_takes=2,
        scenes=6, clips=2, progress=False,
    ))
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.training.config import TrainConfig
    from models.training.loop import train

    out = tmp_path_factory.mktemp("run") / "run"
    # Six steps at the full learning rate, the last step's weights: a moving average over so
    # short a run would export weights too close to the random start for the tests that need
    # a model that has learnt a little (near-ties otherwise; the average is tested on its own).
    train(TrainConfig(corpus=str(tiny_corpus), out=str(out), steps=6, batch_size=16,
                      eval_every=3, checkpoint_every=3, warmup_steps=2, lr=2e-3, ema=0.0),
          progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.cli import main

    out = tmp_path_factory.mktemp("bundle") / "model"
    assert main(["export", str(tiny_run), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def bundle_without_features(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported as bundles were before the audio graph gave the audio tower's own
    features: one audio output, so indices of two modalities and audio -> audio by the
    embedding."""
    import numpy as np

    from models.export import export_bundle

    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("bundle") / "without-features"
    export_bundle(tiny_run, out, rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8),
                  rng.normal(0, 0.1, (4, 8000)).astype(np.float32), features=False)
    return out
