"""Bad items are skipped and listed; too many failures (or none embedded) fail the build."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from index_helpers import append_items, build, copy_corpus, one_line_error

from indexer.search import open_index
from models.manifest import read_manifest


def write_silent_wav(path: Path, seconds: float = 1.0, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(np.zeros(int(seconds * rate), dtype=np.int16).tobytes())


@pytest.fixture
def broken_corpus(tiny_corpus: Path, tmp_path: Path) -> Path:
    """The first 30 items of the tiny corpus, plus a missing file, a corrupt one and silence."""
    corpus = copy_corpus(tiny_corpus, tmp_path / "broken", keep=30)
    good = read_manifest(corpus)[0]
    (corpus / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    write_silent_wav(corpus / "audio" / "silent.wav")
    append_items(
        corpus,
        {"id": "bad-missing", "image": "images/not-there.png", "audio": good.audio},
        {"id": "bad-corrupt", "image": "images/corrupt.png", "audio": good.audio},
        {"id": "bad-silent", "image": good.image, "audio": "audio/silent.wav"},
        {"id": "bad-video", "video": "clips/not-there.mp4"},
    )
    return corpus


def test_bad_items_are_skipped_and_listed(broken_corpus, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "index"
    assert build(tiny_bundle, broken_corpus, out) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "index.json").read_text())
    failed = {f["id"]: f["reason"] for f in info["failed"]}
    assert set(failed) == {"bad-missing", "bad-corrupt", "bad-silent", "bad-video"}
    assert "no such file" in failed["bad-missing"] and "no such file" in failed["bad-video"]
    assert "corrupt.png" in failed["bad-corrupt"]
    assert "silent" in failed["bad-silent"]
    assert info["counts"]["items"] == 30
    assert "4 items failed and were skipped" in printed
    for item_id in failed:
        assert f"  {item_id}: " in printed
    with open_index(out) as index:
        assert index.item_by_id("bad-silent") is None and index.count == 30


def test_too_many_failures_fail_and_keep_the_previous_bundle(broken_corpus, tiny_bundle,
                                                             tmp_path, capsys):
    out = tmp_path / "index"
    assert build(tiny_bundle, broken_corpus, out) == 0
    before = out.resolve()
    capsys.readouterr()
    assert build(tiny_bundle, broken_corpus, out, "--max-failed-share", "0.05") == 2
    message = one_line_error(capsys.readouterr().err)
    assert "4 of 34 items failed" in message and "--max-failed-share 0.05" in message
    assert out.resolve() == before
    with open_index(out) as index:
        assert index.count == 30


def test_nothing_embedded_fails(tiny_bundle, tmp_path, capsys):
    corpus = tmp_path / "empty"
    corpus.mkdir()
    append_items(corpus, {"id": "a", "image": "a.png", "audio": "a.wav"})
    assert build(tiny_bundle, corpus, tmp_path / "index") == 2
    assert "nothing could be embedded" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "index").exists()
