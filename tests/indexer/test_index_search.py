"""``SearchIndex``, as the service uses it: a resolved version, thread-safe searches."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from indexer.search import open_index
from models.errors import BundleError


def test_concurrent_searches_agree(flat_index):
    with open_index(flat_index) as index:
        vectors, _ = index.vectors("image")
        queries = np.asarray(vectors[:32])
        expected = index.search("audio", queries, 7)[1]
        test_rows = index.rowids("test")

        def one(i: int):
            restrict = test_rows if i % 2 else None
            found = index.search("audio", queries, 7, restrict_to=restrict)[1]
            return i, found, index.items(found[0])

        with ThreadPoolExecutor(4) as pool:
            for i, found, items in pool.map(one, range(24)):
                if i % 2:
                    assert np.isin(found[found >= 0], test_rows).all()
                else:
                    assert np.array_equal(found, expected)
                assert [row["rowid"] for row in items] == found[0].tolist()


def test_a_reader_keeps_its_version(flat_index):
    with open_index(flat_index) as index:
        assert index.root == flat_index.resolve()
        assert index.info.index.kind == "flat" and index.count == index.store.count()
        with pytest.raises(BundleError, match="unknown modality"):
            index.search("video", np.zeros((1, 128), np.float32), 1)
        with pytest.raises(BundleError, match="k must be 1 or more"):
            index.search("image", np.zeros((1, 128), np.float32), 0)
        index.check_model(index.info.model_hash)
        with pytest.raises(BundleError, match="was built with model"):
            index.check_model("0" * 16, "/some/model")


def test_the_indexer_never_imports_torch():
    code = ("import sys, indexer.cli, indexer.build, indexer.search, indexer.evaluate; "
            "from models.cli import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
