"""``avsearch index add`` and ``remove``: a new version without a full rebuild, ids consistent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from index_helpers import append_items, build, check_ids_agree, copy_corpus, one_line_error

from indexer.search import open_index
from models.cli import main
from models.corpus.clips import write_clip
from models.manifest import read_manifest


def info(index_dir: Path) -> dict:
    return json.loads((index_dir / "index.json").read_text())


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_add_then_remove(kind, tiny_bundle, tiny_corpus, tmp_path, capsys):
    small = copy_corpus(tiny_corpus, tmp_path / "small", keep=60)
    full = copy_corpus(tiny_corpus, tmp_path / "full", keep=90)
    out = tmp_path / "index"
    assert build(tiny_bundle, small, out, "--kind", kind) == 0
    built = out.resolve()
    before = np.load(out / "image.npy")
    capsys.readouterr()

    # --model left out: the one index.json names
    assert main(["index", "add", "--index", str(out), "--corpus", str(full), "--quiet"]) == 0
    assert "added 30 items" in capsys.readouterr().out
    added = info(out)
    assert added["counts"]["items"] == 90 and added["next_rowid"] == 90
    assert added["index"] == info(built)["index"]  # same kind and parameters
    assert [op["op"] for op in added["history"]] == ["build", "add"]
    assert check_ids_agree(out) == list(range(90))
    assert np.array_equal(np.load(out / "image.npy")[:60], before)  # the old rows reused
    with open_index(out) as index:
        ids = [row["id"] for row in index.items(index.rowids())]
    assert ids == [item.id for item in read_manifest(full)]

    assert main(["index", "add", "--index", str(out), "--corpus", str(full), "--quiet"]) == 0
    assert "nothing to add" in capsys.readouterr().out

    gone = [ids[0], ids[75]]
    assert main(["index", "remove", "--index", str(out), *gone, "--quiet"]) == 0
    assert "removed 2 items" in capsys.readouterr().out
    assert info(out)["counts"]["items"] == 88
    remaining = check_ids_agree(out)
    assert 0 not in remaining and 75 not in remaining and len(remaining) == 88
    with open_index(out) as index:
        assert index.item_by_id(gone[0]) is None
        vectors, _ = index.vectors("audio")
        _, found = index.search("audio", np.asarray(vectors), 5)
        assert not np.isin(found, [0, 75]).any()
    assert built.is_dir() is False  # build -> add -> remove: only the last two are kept


def test_remove_unknown_ids_changes_nothing(flat_index, capsys):
    before = flat_index.resolve()
    assert main(["index", "remove", "--index", str(flat_index), "pair-00000", "nope"]) == 2
    message = one_line_error(capsys.readouterr().err)
    assert "'nope'" in message and "nothing was removed" in message
    assert flat_index.resolve() == before


def test_removing_a_video_removes_its_segments(tiny_bundle, tmp_path):
    corpus = tmp_path / "videos"
    _make_videos(corpus)
    out = tmp_path / "index"
    assert build(tiny_bundle, corpus, out, "--segments") == 0
    assert main(["index", "remove", "--index", str(out), "long", "--quiet"]) == 0
    with open_index(out) as index:
        assert [row["id"] for row in index.items(index.rowids())] == ["short"]


def _make_videos(corpus: Path) -> None:
    (corpus / "clips").mkdir(parents=True)
    rate = 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate)).astype(np.float32)
    frame = np.full((32, 32, 3), 90, np.uint8)
    write_clip(corpus / "clips" / "long.mp4", frame, tone, rate, duration=3.0)
    write_clip(corpus / "clips" / "short.mp4", frame, tone[:rate], rate, duration=1.0)
    append_items(corpus, {"id": "long", "video": "clips/long.mp4"},
                 {"id": "short", "video": "clips/short.mp4"})
