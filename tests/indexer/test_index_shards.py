"""Bundles whose indices are kept as N shards (``--shards N``), and memory-mapped reading."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from index_helpers import build, check_ids_agree, one_line_error

from indexer import kinds
from indexer.bundle import index_files
from indexer.search import open_index
from indexer.shards import ShardedIndex, build_shards, split_rows
from models.cli import main


@pytest.fixture(scope="module")
def sharded_flat(tiny_bundle: Path, tiny_corpus: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sharded") / "index"
    assert build(tiny_bundle, tiny_corpus, out, "--kind", "flat", "--shards", "4") == 0
    return out


def all_queries(index_dir: Path) -> dict[str, np.ndarray]:
    with open_index(index_dir) as index:
        return {m: np.array(index.vectors(m)[0]) for m in ("image", "audio", "audio_features")}


def test_a_sharded_bundle_holds_its_index_in_shards(sharded_flat, flat_index):
    root = sharded_flat.resolve()
    info = json.loads((root / "index.json").read_text())
    assert info["shards"] == 4 and info["engine"] == "local"
    for modality in ("image", "audio"):
        assert not (root / f"{modality}.faiss").exists()
        sizes = [kinds.read_index(root / name).ntotal for name in index_files(modality, 4)]
        assert sum(sizes) == info["counts"][modality] and max(sizes) - min(sizes) <= 1
    # The same items, row ids and embeddings as the unsharded build.
    for name in ("rowids.npy", "image.npy", "audio.npy"):
        assert np.array_equal(np.load(root / name), np.load(flat_index.resolve() / name))


def assert_same_answers(expected, got) -> None:
    """The same scores and ids at every rank: exactly tied items (the same media in two items)
    come by ascending row id from either reader (``indexer.search.TIE_MARGIN``)."""
    assert np.array_equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1])


@pytest.mark.parametrize("k", [1, 3, 10, 500])
def test_sharded_flat_answers_as_the_unsharded_one(sharded_flat, flat_index, k):
    """Every stored embedding as a query, 8 at a time, unrestricted and restricted to a split."""
    queries = all_queries(flat_index)
    with open_index(flat_index) as whole, open_index(sharded_flat) as parts:
        assert parts.count == whole.count
        test_rows = whole.rowids("test")
        for modality in ("image", "audio"):
            for query in (q[i:i + 8] for q in queries.values() for i in range(0, len(q), 8)):
                assert_same_answers(whole.search(modality, query, k),
                                    parts.search(modality, query, k))
                restricted = parts.search(modality, query, k, restrict_to=test_rows)
                assert set(restricted[1].ravel()) - {-1} <= set(test_rows)
                assert_same_answers(whole.search(modality, query, k, restrict_to=test_rows),
                                    restricted)


def test_ivfpq_shards_share_one_trained_quantiser():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 32))
    x = (centres[rng.integers(0, 40, 6000)] + 0.3 * rng.normal(size=(6000, 32)))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(6000, dtype=np.int64) * 3
    params = kinds.choose_params("ivfpq", len(x), 32)
    whole = kinds.build_index(params, x, ids)
    parts, device = build_shards(params, x, ids, 3)
    assert device == "cpu"
    assert [p.ntotal for p in parts] == [2000, 2000, 2000]
    def centroids(index: faiss.Index) -> np.ndarray:
        quantizer = faiss.extract_index_ivf(index).quantizer
        return quantizer.reconstruct_n(0, quantizer.ntotal)

    first = centroids(parts[0])
    assert all(np.array_equal(first, centroids(p)) for p in parts[1:])
    assert np.array_equal(first, centroids(whole))  # trained on the same seeded sample
    merged = ShardedIndex(parts)
    got = kinds.search(merged, params, x[:200], 10)
    expected = kinds.search(whole, params, x[:200], 10)
    assert np.allclose(got[0], expected[0], atol=1e-6)
    assert (got[1] == expected[1]).mean() > 0.99  # equal but for exact ties


def test_split_rows_and_bad_shard_counts(tiny_bundle, tiny_corpus, tmp_path, capsys):
    assert [(s.start, s.stop) for s in split_rows(10, 3)] == [(0, 3), (3, 7), (7, 10)]
    assert build(tiny_bundle, tiny_corpus, tmp_path / "a", "--shards", "0") == 2
    assert "--shards must be 1 or more" in one_line_error(capsys.readouterr().err)
    assert build(tiny_bundle, tiny_corpus, tmp_path / "b", "--shards", "100000") == 2
    assert "is more than the" in one_line_error(capsys.readouterr().err)


def test_add_and_remove_refuse_a_sharded_bundle(sharded_flat, tiny_corpus, capsys):
    before = sharded_flat.resolve()
    assert main(["index", "remove", "--index", str(sharded_flat), "pair-00001", "--quiet"]) == 2
    assert "4 shards" in one_line_error(capsys.readouterr().err)
    assert main(["index", "add", "--index", str(sharded_flat), "--corpus", str(tiny_corpus),
                 "--device", "cpu", "--quiet"]) == 2
    assert "4 shards" in one_line_error(capsys.readouterr().err)
    assert sharded_flat.resolve() == before


def test_eval_through_a_sharded_bundle_equals_the_unsharded(sharded_flat, flat_index,
                                                            tiny_bundle, tiny_corpus, tmp_path):
    tables = []
    for name, index in (("whole", flat_index), ("sharded", sharded_flat)):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--model", str(tiny_bundle), "--corpus", str(tiny_corpus),
                     "--index", str(index), "--device", "cpu", "--quiet", "--json",
                     str(out)]) == 0
        tables.append(json.loads(out.read_text())["ndcg30"])
    for row in ("random", "cca"):
        assert tables[1][row] == tables[0][row]
    # The model row too: tied items are ordered by row id in either reader.
    assert tables[1]["model"] == tables[0]["model"]


def test_readers_memory_map_flat_and_hnsw_files(flat_index, tiny_bundle, tiny_corpus,
                                                tmp_path):
    """The service's reader maps the index files read-only, so replicas share the pages."""
    hnsw = tmp_path / "hnsw"
    assert build(tiny_bundle, tiny_corpus, hnsw, "--kind", "hnsw") == 0
    for bundle in (flat_index, hnsw):
        path = str(bundle.resolve() / "image.faiss")
        with open_index(bundle):
            maps = Path("/proc/self/maps").read_text()
            assert path in maps, f"{path} is not memory-mapped"
            modes = {line.split()[1] for line in maps.splitlines() if path in line}
            assert modes and all("w" not in mode for mode in modes), modes
    check_ids_agree(hnsw)
