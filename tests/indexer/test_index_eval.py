"""``avsearch eval --index``: the evaluation table with the model's rankings from the index."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from index_helpers import build

from indexer import kinds
from indexer.bundle import read_info
from indexer.evaluate import index_table, query_sides
from indexer.search import open_index
from models.cli import main
from models.evaluation.dataset import is_retrieval_item, load_retrieval_set, split_items
from models.evaluation.scores import retrieval_table
from models.item_media import InputSpec, media_keys
from models.manifest import read_manifest


def run_eval(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / f"{name}.json"
    assert main(["eval", *args, "--device", "cpu", "--quiet", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def key_vector(key: str, label: str, side: int, dim: int = 128) -> np.ndarray:
    """A fixed embedding per medium: its label's centre plus its own offset (well separated)."""
    centre = np.random.default_rng(zlib.crc32(label.encode())).normal(size=dim)
    own = np.random.default_rng([side, zlib.crc32(key.encode())]).normal(size=dim)
    vector = centre + 2.5 * own
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def labels_by_key(held_out, side: int) -> dict[str, frozenset[str]]:
    """Each distinct medium's labels: its first item's, as load_retrieval_set takes them."""
    found: dict[str, frozenset[str]] = {}
    for item in held_out:
        if is_retrieval_item(item):
            found.setdefault(media_keys(item)[side], frozenset(item.labels))
    return found


@pytest.fixture(scope="module")
def separated(flat_index: Path, tmp_path_factory) -> Path:
    """The flat bundle of the tiny corpus with well-separated embeddings in place of the tiny
    model's (whose embeddings all lie within 1e-4 of each other, so that any two exact searches
    that round differently order their near-ties differently)."""
    root = tmp_path_factory.mktemp("separated") / "bundle"
    shutil.copytree(flat_index.resolve(), root)
    with open_index(root) as index:
        entries = index.entries(index.rowids())
        params = index.params
    rowids = np.array([e.rowid for e in entries], dtype=np.int64)
    for side, modality in enumerate(("image", "audio")):
        vectors = np.stack([key_vector(media_keys(e.item)[side], e.item.labels[0], side)
                            for e in entries])
        kinds.write_index(kinds.build_index(params, vectors, rowids), root / f"{modality}.faiss")
        np.save(root / f"{modality}.npy", vectors)
    return root


def test_flat_index_table_equals_brute_force(separated, tiny_corpus):
    held_out = split_items(read_manifest(tiny_corpus), "test")
    labels = [labels_by_key(held_out, side) for side in (0, 1)]
    sides = query_sides(held_out, list(labels[0].values()), list(labels[1].values()))
    vectors = {name: np.stack([key_vector(key, sorted(labels[side][key])[0], side)
                               for key in sides[name].keys])
               for side, name in enumerate(("im", "aud"))}
    expected = retrieval_table(vectors["im"], vectors["aud"], list(labels[0].values()),
                               list(labels[1].values()))
    with open_index(separated) as index:
        got, recall = index_table(index, "test", sides, vectors)
    assert recall is None
    assert set(got) == set(expected)
    for direction, value in expected.items():
        assert got[direction] == pytest.approx(value, abs=1e-6), direction
    assert 0.4 < min(expected.values()) and max(expected.values()) < 0.95  # not trivial


def test_eval_index_through_the_command(flat_index, tiny_bundle, tiny_corpus, tmp_path,
                                        capsys):
    common = ["--model", str(tiny_bundle), "--corpus", str(tiny_corpus)]
    brute = run_eval(tmp_path, "brute", *common)
    indexed = run_eval(tmp_path, "indexed", *common, "--index", str(flat_index))
    printed = capsys.readouterr().out
    assert "model row: rankings from the flat index" in printed
    assert indexed["counts"] == brute["counts"]
    for row in ("random", "cca"):
        for direction, value in brute["ndcg30"][row].items():
            assert indexed["ndcg30"][row][direction] == pytest.approx(value, abs=1e-6)
    for name, value in brute["localization"].items():
        assert indexed["localization"][name] == pytest.approx(value, abs=1e-6)
    # The model row: equal up to the near-ties of the tiny model (see `separated`).
    for direction, value in brute["ndcg30"]["model"].items():
        assert indexed["ndcg30"]["model"][direction] == pytest.approx(value, abs=0.03)
    # Sound queries expanded through the split's sounds, found in the index's audio features.
    assert "expanded row: each sound queries with its 10 nearest" in printed
    for direction, value in brute["ndcg30"]["expanded"].items():
        assert indexed["ndcg30"]["expanded"][direction] == pytest.approx(value, abs=0.03)
    assert "recall10" not in indexed


def test_approximate_kinds_report_recall(tiny_bundle, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "index"
    assert build(tiny_bundle, tiny_corpus, out, "--kind", "hnsw") == 0
    result = run_eval(tmp_path, "hnsw", "--model", str(tiny_bundle), "--corpus",
                      str(tiny_corpus), "--index", str(out))
    assert set(result["recall10"]) == {"im-im", "im-aud", "aud-im", "aud-aud"}
    assert all(0.0 <= value <= 1.0 for value in result["recall10"].values())
    assert "recall@10 of the hnsw index" in capsys.readouterr().out
    assert result["index"]["kind"] == "hnsw" == read_info(out.resolve()).index.kind


def test_the_queries_are_the_decoded_media_scenes_left_out(tiny_corpus):
    """Query keys line up with the media the brute-force table decodes: neither the 2x2 scenes
    nor the off-screen ones (whose sound is of nothing in the frame) are retrieval queries."""
    held_out = split_items(read_manifest(tiny_corpus), "test")
    assert any(item.extra.get("absent") for item in held_out)
    data = load_retrieval_set(tiny_corpus, held_out, InputSpec(64, 8000, 1.0), progress=False)
    sides = query_sides(held_out, data.image_labels, data.audio_labels)
    assert len(sides["im"].keys) == len(data.images)
    assert len(sides["aud"].keys) == len(data.waves)
