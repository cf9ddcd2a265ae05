"""Fixtures of the service tests: the pretrained bundle, a real index, a live uvicorn server.

Every test talks HTTP to a uvicorn server on loopback (started in a thread of the test
process), which answers with real ONNX Runtime, FAISS, SQLite and media files.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tests/indexer/conftest.py

import shutil
from pathlib import Path

import pytest
from service_helpers import PRETRAINED, build_index, live_server


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
