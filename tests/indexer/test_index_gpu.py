"""FAISS on a GPU: an index built there is saved as a CPU index and loads anywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
from index_helpers import check_ids_agree

from indexer import kinds
from indexer.search import open_index
from models.cli import main

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not kinds.faiss_has_gpu(), reason="needs a GPU with faiss-gpu"),
]


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
