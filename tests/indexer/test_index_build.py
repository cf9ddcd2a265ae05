"""``avsearch index build`` on the tiny corpus: the bundle, its ids, index.json, each kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from index_helpers import build, check_ids_agree

from indexer.bundle import versions_dir
from indexer.search import open_index
from models.bundle import read_model_info
from models.errors import BundleError
from models.item_media import media_keys
from models.manifest import read_manifest


def test_flat_bundle_layout_and_index_json(flat_index, tiny_bundle, tiny_corpus):
    assert flat_index.is_symlink()
    version = flat_index.resolve()
    assert version.parent == versions_dir(flat_index).resolve()
    assert sorted(p.name for p in version.iterdir()) == [
        "audio.faiss", "audio.npy", "audio_features.faiss", "audio_features.npy", "image.faiss",
        "image.npy", "index.json", "items.sqlite", "rowids.npy",
    ]
    info = json.loads((flat_index / "index.json").read_text())
    items = read_manifest(tiny_corpus)
    assert info["model_hash"] == read_model_info(tiny_bundle).content_hash
    assert info["modalities"] == ["image", "audio", "audio_features"]
    assert info["counts"] == {"items": len(items), "image": len(items), "audio": len(items),
                              "audio_features": len(items)}
    assert info["index"]["kind"] == "flat" and info["index"]["factory"] == "IDMap2,Flat"
    assert info["metric"] == "inner_product" and info["device"] == "cpu"
    assert info["failed"] == [] and info["build_seconds"] > 0 and info["built_at"]
    assert info["manifest_hash"] and info["corpus"] == str(tiny_corpus.resolve())
    assert [op["op"] for op in info["history"]] == ["build"]
    assert check_ids_agree(flat_index) == list(range(len(items)))


def test_a_model_without_audio_features_builds_two_indices(bundle_without_features,
                                                           tiny_corpus, tmp_path):
    from models.runtime import ModelRuntime

    out = tmp_path / "index"
    assert build(bundle_without_features, tiny_corpus, out, "--kind", "flat") == 0
    info = json.loads((out / "index.json").read_text())
    assert info["modalities"] == ["image", "audio"] and "audio_features" not in info["counts"]
    assert not (out / "audio_features.faiss").exists()
    check_ids_agree(out)
    with open_index(out) as index:
        assert not index.has_audio_features
        vectors, rowids = index.vectors("audio")
        _, found = index.search("audio", np.asarray(vectors[:3]), 1)
        assert found[:, 0].tolist() == rowids[:3].tolist()
        with pytest.raises(BundleError, match="holds image, audio"):
            index.search("audio_features", np.asarray(vectors[:1]), 1)
    runtime = ModelRuntime(bundle_without_features, device="cpu")
    assert not runtime.has_audio_features
    waves = np.zeros((2, 8000), np.float32)
    assert runtime.embed_sounds(waves).features is None


def test_the_audio_features_index_finds_each_sound_by_its_features(flat_index):
    with open_index(flat_index) as index:
        assert index.has_audio_features
        features, rowids = index.vectors("audio_features")
        embeddings, _ = index.vectors("audio")
        assert features.shape == embeddings.shape
        assert not np.allclose(features, embeddings)
        scores, found = index.search("audio_features", np.asarray(features[:5]), 1)
        # Each sound's own features come first (itself, or an item of the same recording).
        best = np.asarray(features)[np.searchsorted(rowids, found[:, 0])]
        assert np.allclose(np.sum(best * np.asarray(features[:5]), axis=1), 1.0, atol=1e-4)
        assert np.allclose(scores[:, 0], 1.0, atol=1e-4)


def test_item_store_rows_are_the_manifest(flat_index, tiny_corpus):
    items = read_manifest(tiny_corpus)
    with open_index(flat_index) as index:
        rows = index.items(list(range(len(items))))
        for item, row in zip(items, rows, strict=True):
            assert row["id"] == item.id and row["source_id"] == item.id
            assert (row["image"], row["audio"], row["video"]) == (item.image, item.audio,
                                                                  item.video)
            assert row["time"] == item.time and row["split"] == item.split
            assert row["labels"] == list(item.labels) and row["extra"] == item.extra
            assert row["corpus"] == str(tiny_corpus.resolve())
        assert index.item_by_id(items[3].id)["rowid"] == 3
        assert index.item_by_id("no-such-item") is None
        assert index.items([-1, 0])[0] is None


def test_each_item_finds_itself(flat_index):
    with open_index(flat_index) as index:
        for modality, side in (("image", 0), ("audio", 1)):
            vectors, rowids = index.vectors(modality)
            scores, found = index.search(modality, np.asarray(vectors), 5)
            assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
            entries = {e.rowid: e for e in index.entries(rowids.tolist())}
            for rowid, hits in zip(rowids.tolist(), found.tolist(), strict=True):
                own = media_keys(entries[rowid].item)[side]
                assert rowid in hits or media_keys(entries[hits[0]].item)[side] == own


def test_search_restricted_to_a_split(flat_index):
    with open_index(flat_index) as index:
        test_rows = index.rowids("test")
        vectors, _ = index.vectors("image")
        _, found = index.search("audio", np.asarray(vectors[:4]), 10, restrict_to=test_rows)
        assert set(found.ravel().tolist()) <= set(test_rows)
        _, padded = index.search("audio", np.asarray(vectors[:1]), index.count + 3)
        assert (padded[0, -3:] == -1).all()


@pytest.mark.parametrize("kind, factory", [
    ("ivfpq", "IVF"), ("hnsw", "IDMap2,HNSW"), ("auto", "IDMap2,Flat"),
])
def test_other_kinds_build_and_search(kind, factory, tiny_bundle, tiny_corpus, tmp_path):
    out = tmp_path / "index"
    assert build(tiny_bundle, tiny_corpus, out, "--kind", kind, "--batch-size", "50") == 0
    info = json.loads((out / "index.json").read_text())
    assert info["index"]["factory"].startswith(factory)
    if kind == "ivfpq":
        params = info["index"]
        assert params["nlist"] >= 1 and params["pq_m"] * params["pq_nbits"] > 0
        assert info["trained_on"] == info["counts"]["items"]
    rowids = check_ids_agree(out)
    with open_index(out) as index:
        vectors, _ = index.vectors("audio")
        scores, found = index.search("audio", np.asarray(vectors[:8]), 5, nprobe=1, ef_search=8)
        assert np.isin(found[found >= 0], rowids).all()
        assert (found[:, 0] >= 0).all() and np.isfinite(scores[:, 0]).all()
