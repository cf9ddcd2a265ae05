"""FAISS on a GPU: an index built there is saved as a CPU index and loads anywhere; a reader
searches an index, or a sharded bundle's shards spread over the GPUs, as on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
from index_helpers import build, check_ids_agree

from indexer import kinds
from indexer.gpu_shards import GpuShardedIndex
from indexer.search import open_index
from indexer.shards import ShardedIndex, build_shards
from models.cli import main

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not kinds.faiss_has_gpu(), reason="needs a GPU with faiss-gpu"),
]


@pytest.fixture(scope="module")
def sharded_flat(tiny_bundle: Path, tiny_corpus: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sharded-gpu") / "index"
    assert build(tiny_bundle, tiny_corpus, out, "--kind", "flat", "--shards", "4") == 0
    return out


def test_ivfpq_trained_on_the_gpu_is_a_cpu_index(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(len(x), dtype=np.int64) * 2
    params = kinds.choose_params("ivfpq", len(x), 128)
    index, device = kinds.build_index_on(params, x, ids, kinds.GpuContext())
    assert device == "cuda" and not hasattr(index, "getDevice")
    path = tmp_path / "image.faiss"
    kinds.write_index(index, path)
    loaded = kinds.read_index(path)
    assert np.array_equal(kinds.index_ids(loaded), ids)
    cpu = kinds.build_index(params, x, ids)
    _, on_gpu = kinds.search(loaded, params, x[:50], 10, nprobe=params.nlist)
    _, on_cpu = kinds.search(cpu, params, x[:50], 10, nprobe=params.nlist)
    assert (on_gpu[:, 0] == ids[:50]).mean() > 0.9 and (on_cpu[:, 0] == ids[:50]).mean() > 0.9


def test_build_with_the_gpu_loads_on_the_cpu(tiny_bundle, tiny_corpus, tmp_path):
    out = tmp_path / "index"
    assert main(["index", "build", "--model", str(tiny_bundle), "--corpus", str(tiny_corpus),
                 "--out", str(out), "--kind", "ivfpq", "--device", "auto", "--quiet"]) == 0
    assert json.loads((out / "index.json").read_text())["device"] in ("cuda", "cpu")
    rowids = check_ids_agree(out)  # read back by the CPU reader
    with open_index(out, device="cpu") as index:
        assert not index.on_gpu
        vectors, _ = index.vectors("image")
        _, found = index.search("image", np.asarray(vectors[:5]), 5)
        assert np.isin(found[found >= 0], rowids).all()


def test_gpu_search_matches_the_cpu(flat_index):
    with open_index(flat_index, device="cuda") as gpu, open_index(flat_index) as cpu:
        assert gpu.on_gpu
        vectors, _ = cpu.vectors("audio")
        queries = np.asarray(vectors[:16])
        gpu_scores, gpu_ids = gpu.search("audio", queries, 5)
        cpu_scores, cpu_ids = cpu.search("audio", queries, 5)
        assert np.allclose(gpu_scores, cpu_scores, atol=1e-4)
        assert np.isin(gpu_ids, cpu.rowids()).all()
        restricted = gpu.search("audio", queries, 3, restrict_to=cpu.rowids("test"))[1]
        assert np.isin(restricted[restricted >= 0], cpu.rowids("test")).all()


def clustered(count: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    x = centres[rng.integers(0, 50, count)] + 0.3 * rng.normal(size=(count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_shards_on_the_gpus_answer_as_the_cpu_shards(kind):
    """Shard n on GPU n mod G: the merged answers are the CPU shards' (flat: the same items and
    scores; IVF-PQ: GPU and CPU PQ distances differ in rounding only)."""
    x = clustered(12_000, 64, 5)
    ids = np.arange(len(x), dtype=np.int64) * 7 + 3
    params = kinds.choose_params(kind, len(x), 64)
    parts, _ = build_shards(params, x, ids, 3)
    cpu, gpu = ShardedIndex(parts), GpuShardedIndex(parts, faiss.get_num_gpus())
    assert gpu.gpus == min(3, faiss.get_num_gpus()) and gpu.ntotal == len(x)
    queries = x[::97]
    want = kinds.search(cpu, params, queries, 10, nprobe=8)
    got = kinds.search(gpu, params, queries, 10, nprobe=8)
    assert np.allclose(got[0], want[0], atol=1e-3)
    assert (got[1] == want[1]).mean() > 0.97  # equal but for near-ties
    assert np.isin(got[1], ids).all()
    gpu.close()


def test_a_sharded_bundle_is_searched_on_the_gpu(sharded_flat, flat_index):
    with open_index(sharded_flat, device="cuda") as gpu, open_index(flat_index) as cpu:
        assert gpu.on_gpu and gpu.gpus == min(4, faiss.get_num_gpus())
        for modality in ("image", "audio"):
            queries = np.asarray(cpu.vectors(modality)[0][:32])
            gpu_scores, gpu_ids = gpu.search(modality, queries, 5)
            cpu_scores, cpu_ids = cpu.search(modality, queries, 5)
            assert np.allclose(gpu_scores, cpu_scores, atol=1e-4)
            assert (gpu_ids == cpu_ids).mean() > 0.95  # equal but for tied duplicates
            restricted = gpu.search(modality, queries, 3, restrict_to=cpu.rowids("test"))[1]
            assert np.isin(restricted[restricted >= 0], cpu.rowids("test")).all()
