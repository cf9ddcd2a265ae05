"""``--segments``: a video longer than the model's window becomes one item per window."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from index_helpers import append_items, build

from indexer.embed import segment_id, segment_times
from indexer.search import open_index
from models.corpus.clips import write_clip


@pytest.fixture
def video_corpus(tmp_path: Path) -> Path:
    """A 3 s video (a still frame and a rising tone) and a 1 s one, as real mp4 files."""
    corpus = tmp_path / "videos"
    (corpus / "clips").mkdir(parents=True)
    rate = 8000
    t = np.arange(3 * rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32)
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[16:48, 16:48] = (250, 120, 10)
    write_clip(corpus / "clips" / "long.mp4", frame, tone, rate, duration=3.0)
    write_clip(corpus / "clips" / "short.mp4", frame[::-1], tone[:rate], rate, duration=1.0)
    append_items(
        corpus,
        {"id": "long", "video": "clips/long.mp4", "labels": ["tone"], "split": "test"},
        {"id": "short", "video": "clips/short.mp4", "time": 0.5, "labels": ["tone"]},
    )
    return corpus


def test_segment_times_and_ids():
    assert segment_times(3.02, 1.0) == [0.5, 1.5, 2.5]
    assert segment_times(3.6, 1.0) == [0.5, 1.5, 2.5, 3.5]  # the last window half inside
    assert segment_times(0.8, 1.0) == [0.5]
    assert segment_id("clip", 1.5) == "clip@1.5" and segment_id("clip", 2.0) == "clip@2"


def test_segments_split_a_long_video(video_corpus, tiny_bundle, tmp_path):
    out = tmp_path / "index"
    assert build(tiny_bundle, video_corpus, out, "--segments") == 0
    info = json.loads((out / "index.json").read_text())
    assert info["segments"] is True and info["counts"]["items"] == 4
    with open_index(out) as index:
        rows = index.items(index.rowids())
    assert [(r["id"], r["time"], r["source_id"]) for r in rows] == [
        ("long@0.5", 0.5, "long"), ("long@1.5", 1.5, "long"), ("long@2.5", 2.5, "long"),
        ("short", 0.5, "short"),
    ]
    assert {r["split"] for r in rows[:3]} == {"test"} and rows[0]["labels"] == ["tone"]
    with open_index(out) as index:
        audio, _ = index.vectors("audio")
    assert not np.allclose(audio[0], audio[2])  # different windows of the tone


def test_without_segments_a_video_is_one_item(video_corpus, tiny_bundle, tmp_path):
    out = tmp_path / "index"
    assert build(tiny_bundle, video_corpus, out) == 0
    with open_index(out) as index:
        rows = index.items(index.rowids())
    assert [(r["id"], r["time"]) for r in rows] == [("long", None), ("short", 0.5)]
