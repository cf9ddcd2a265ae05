"""Fixtures of the service tests: the pretrained bundle, a real index, a live uvicorn server.

Every test talks HTTP to a uvicorn server on loopback (started in a thread of the test
process), which answers with real ONNX Runtime, FAISS, SQLite and media files.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tests/indexer/conftest.py

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import PRETRAINED, build_index, live_server, of_kind

from models.corpus.clips import write_clip
from models.media import load_audio


@pytest.fixture(scope="session")
def service_corpus(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small AV-digits test corpus: pairs, 2x2 scenes and mp4 clips."""
    from models.corpus.digits import DigitsCorpusConfig, build_digits_corpus

    out = tmp_path_factory.mktemp("service-corpus") / "digits"
    build_digits_corpus(DigitsCorpusConfig(
        source=real_data, out=out, split="test", max_images=80, max_takes=2, scenes=12,
        clips=3, progress=False,
    ))
    return out


@pytest.fixture(scope="session")
def service_index(service_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat index of the service corpus, built with the pretrained bundle (read-only)."""
    out = tmp_path_factory.mktemp("service-index") / "index"
    build_index(service_corpus, out)
    return out


@pytest.fixture(scope="session")
def server(service_index: Path):
    """A live server shared by the read-only tests (no admin API)."""
    with live_server(model_dir=PRETRAINED, index_dir=service_index) as client:
        yield client


@pytest.fixture()
def own_index(service_index: Path, tmp_path: Path) -> Path:
    """A private copy of the index bundle (its link and versions), for a test that rebuilds
    or damages it."""
    copy = tmp_path / "bundle"
    shutil.copytree(service_index.parent, copy, symlinks=True)
    return copy / service_index.name


@pytest.fixture(scope="session")
def changing_clip(service_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s: a handwritten 3 on screen throughout; the sound says 7, 3, 7, 3, one a second."""
    pairs = of_kind(service_corpus, "pair")
    three = next(p for p in pairs if p["labels"] == ["3"])
    sounds = {digit: next(p["audio"] for p in pairs if p["labels"] == [digit])
              for digit in ("3", "7")}
    seconds = [load_audio(service_corpus / sounds[d], 8000, window=1.0, reject_silent=False)
               for d in ("7", "3", "7", "3")]
    digit = np.asarray(Image.open(service_corpus / three["image"]).convert("RGB"))
    frame = np.asarray(Image.fromarray(digit).resize((112, 112)))
    path = tmp_path_factory.mktemp("timeline") / "three-with-7-3-7-3.mp4"
    write_clip(path, frame, np.concatenate(seconds), 8000, duration=4.0)
    return path
