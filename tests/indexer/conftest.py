"""Fixtures of the indexer tests: index bundles built by the real command on the tiny corpus.

Everything is real: the tiny model bundle (ONNX Runtime), FAISS, SQLite and the media files.
"""

from __future__ import annotations

import os
from pathlib import Path

# Before any OpenMP runtime loads (FAISS's, and torch's for the tiny model's training): threads
# that wait passively instead of spinning. FAISS and torch each bring an OpenMP runtime, and on
# a machine whose cores are busy, spinning threads of the two slow each other down many times
# (FAISS's k-means on tiny data: 0.1 s passive, 5 s spinning). A user's own setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
from index_helpers import build


@pytest.fixture(scope="session")
def flat_index(tiny_bundle: Path, tiny_corpus: Path, tmp_path_factory) -> Path:
    """A flat index bundle of the whole tiny corpus (read-only for the tests that share it)."""
    out = tmp_path_factory.mktemp("flat") / "index"
    assert build(tiny_bundle, tiny_corpus, out, "--kind", "flat") == 0
    return out
