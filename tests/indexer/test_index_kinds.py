"""The index kinds on synthetic vectors through real FAISS: parameters, build, search, remove."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from indexer import kinds
from models.errors import BundleError

DIM = 32


def clustered(count: int, dim: int = DIM, clusters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(clusters, size=count)] + 0.3 * rng.normal(size=(count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(x: np.ndarray, queries: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ x.T), axis=1, kind="stable")[:, :k]]


def test_auto_picks_by_size():
    assert kinds.choose_kind(1_000) == "flat"
    assert kinds.choose_kind(kinds.FLAT_MAX) == "flat"
    assert kinds.choose_kind(kinds.FLAT_MAX + 1) == "hnsw"
    assert kinds.choose_kind(kinds.HNSW_MAX + 1) == "ivfpq"
    assert kinds.choose_params("auto", 500, 128).kind == "flat"


def test_parameters_come_from_the_data_and_flags_win():
    big = kinds.choose_params("ivfpq", 1_000_000, 128)
    assert big.nlist == 4000 and big.pq_m == 32 and big.pq_nbits == 8
    assert big.train_size == 200_000 and 1 <= big.nprobe <= big.nlist
    assert big.factory == "IVF4000,PQ32x8np"
    small = kinds.choose_params("ivfpq", 300, 128)
    assert small.nlist == 300 // kinds.MIN_POINTS_PER_CENTROID  # every list trains on 39+
    assert 2**small.pq_nbits <= small.train_size
    mid = kinds.choose_params("ivfpq", 40_000, 128)
    assert mid.nlist == round(4 * math.sqrt(40_000))
    given = kinds.choose_params("ivfpq", 1_000_000, 128,
                                kinds.Overrides(nlist=1024, nprobe=7, pq_m=16))
    assert (given.nlist, given.nprobe, given.pq_m) == (1024, 7, 16)
    hnsw = kinds.choose_params("hnsw", 500_000, 128, kinds.Overrides(ef_search=99))
    assert hnsw.hnsw_m == 32 and hnsw.ef_search == 99 and hnsw.factory == "IDMap2,HNSW32"


@pytest.mark.parametrize("overrides, message", [
    (kinds.Overrides(pq_m=7), "must divide"),
    (kinds.Overrides(nlist=0), "--nlist must be 1 or more"),
    (kinds.Overrides(nlist=5000), "more than the"),
])
def test_bad_parameters_are_refused(overrides, message):
    with pytest.raises(BundleError, match=message):
        kinds.choose_params("ivfpq", 1000, 128, overrides)


def test_unit_rows_are_kept_bit_for_bit():
    x = clustered(50)
    assert np.array_equal(kinds.normalised(x), x)
    scaled = kinds.normalised(np.vstack([3 * x[:2], np.zeros((1, DIM), np.float32)]))
    assert np.allclose(np.linalg.norm(scaled[:2], axis=1), 1) and not scaled[2].any()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_build_search_remove_round_trip(kind, tmp_path: Path):
    data = clustered(2050)
    x, queries = data[:2000], data[2000:]  # queries held apart, from the same distribution
    ids = np.arange(2000, dtype=np.int64) * 3 + 5  # sparse ids, as after removals
    params = kinds.choose_params(kind, len(x), DIM)
    index = kinds.build_index(params, x, ids)
    assert np.array_equal(kinds.index_ids(index), ids)

    scores, found = kinds.search(index, params, queries, 10)
    recall = np.mean([len(set(f) & set(e)) / 10
                      for f, e in zip(found, exact_top(x, queries, ids, 10), strict=True)])
    assert recall >= {"flat": 1.0, "hnsw": 0.9, "ivfpq": 0.4}[kind]  # PQ: 4 dims a byte
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first

    allowed = ids[::7]
    _, restricted = kinds.search(index, params, queries, 5, restrict_to=allowed)
    assert np.isin(restricted[restricted >= 0], allowed).all()

    path = tmp_path / "index.faiss"
    kinds.write_index(index, path)
    loaded = kinds.read_index(path)
    assert np.array_equal(kinds.search(loaded, params, queries, 10)[1], found)
    if kinds.can_remove(params):
        assert kinds.remove_ids(loaded, ids[:10]) == 10
        assert not np.isin(ids[:10], kinds.index_ids(loaded)).any()
        assert not np.isin(kinds.search(loaded, params, x[:10], 5)[1], ids[:10]).any()


def test_search_parameters_are_per_call_and_leave_the_index_alone():
    x = clustered(1500)
    ids = np.arange(len(x), dtype=np.int64)
    for kind in ("ivfpq", "hnsw"):
        params = kinds.choose_params(kind, len(x), DIM)
        index = kinds.build_index(params, x, ids)
        before = _defaults(index)
        one = kinds.search(index, params, x[:20], 10, nprobe=1, ef_search=10)[1]
        wide = kinds.search(index, params, x[:20], 10, nprobe=params.nlist, ef_search=400)[1]
        assert _defaults(index) == before
        exact = exact_top(x, x[:20], ids, 10)
        hits = [np.mean([len(set(a) & set(e)) for a, e in zip(r, exact, strict=True)])
                for r in (one, wide)]
        assert hits[1] >= hits[0]


def _defaults(index) -> tuple:
    if isinstance(index, kinds.faiss.IndexIDMap):
        return (kinds.faiss.downcast_index(index.index).hnsw.efSearch,)
    return (index.nprobe,)


def test_k_beyond_the_collection_pads_with_minus_one():
    x = clustered(5)
    params = kinds.choose_params("flat", 5, DIM)
    index = kinds.build_index(params, x, np.arange(5))
    scores, found = kinds.search(index, params, x[:1], 8)
    assert list(found[0, 5:]) == [-1, -1, -1] and np.isneginf(scores[0, 5:]).all()
    with pytest.raises(BundleError, match="query vectors of size"):
        kinds.search(index, params, np.ones((1, DIM + 1), np.float32), 1)


def test_cuda_without_a_faiss_gpu_is_refused():
    if kinds.faiss_has_gpu():
        pytest.skip("this machine has a FAISS GPU")
    assert kinds.use_gpu("auto") is False and kinds.use_gpu("cpu") is False
    with pytest.raises(BundleError, match="FAISS sees no GPU"):
        kinds.use_gpu("cuda")


def test_refine_rescores_ivfpq_candidates_exactly():
    data = clustered(2100)
    x, queries = data[:2000], data[2000:]
    ids = np.arange(2000, dtype=np.int64) * 2
    params = kinds.choose_params("ivfpq", len(x), DIM)
    assert params.rerank == kinds.RERANK
    index = kinds.build_index(params, x, ids)
    exact = exact_top(x, queries, ids, 10)

    def recall(found: np.ndarray) -> float:
        return np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])

    coded = kinds.search(index, params, queries, 10)[1]
    candidates = kinds.search(index, params, queries, 10 * params.rerank)[1]
    scores, refined = kinds.refine(queries, candidates, 10, x, ids)
    assert recall(refined) > recall(coded) + 0.1
    positions = refined // 2
    assert np.allclose(scores, np.einsum("qkd,qd->qk", x[positions], queries), atol=1e-6)
    padded = np.full((1, 12), -1, dtype=np.int64)
    padded[0, :2] = [ids[5], 999_999]  # 999_999: not a stored id
    scores, found = kinds.refine(queries[:1], padded, 3, x, ids)
    assert found.tolist() == [[ids[5], -1, -1]] and np.isneginf(scores[0, 1:]).all()
