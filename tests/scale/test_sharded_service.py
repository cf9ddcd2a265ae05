"""A bundle kept as 4 index shards, served by the unchanged service, answers every query as the
unsharded flat bundle does: two live servers (real uvicorn, HTTP, ONNX Runtime, FAISS), one on
each bundle, asked the same questions."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from service_helpers import PRETRAINED, build_index, live_server, manifest, upload

DIRECTIONS = ("im2aud", "im2im", "aud2im", "aud2aud")


@pytest.fixture(scope="module")
def corpus(real_data: Path, tmp_path_factory) -> Path:
    from models.corpus.digits import DigitsCorpusConfig, build_digits_corpus

    out = tmp_path_factory.mktemp("scale-corpus") / "digits"
    build_digits_corpus(DigitsCorpusConfig(
        source=real_data, out=out, split="test", max_images=80, max_takes=2, scenes=12,
        clips=3, progress=False,
    ))
    return out


@pytest.fixture(scope="module")
def servers(corpus: Path, tmp_path_factory):
    root = tmp_path_factory.mktemp("scale-index")
    build_index(corpus, root / "whole")
    build_index(corpus, root / "sharded", "--shards", "4")
    info = json.loads((root / "sharded" / "index.json").read_text())
    assert info["shards"] == 4 and info["index"]["kind"] == "flat"
    with live_server(model_dir=PRETRAINED, index_dir=root / "whole") as whole, \
            live_server(model_dir=PRETRAINED, index_dir=root / "sharded") as sharded:
        yield whole, sharded


def hits(answer: httpx.Response) -> list[tuple[str, float]]:
    assert answer.status_code == 200, answer.text
    return [(r["id"], r["score"]) for r in answer.json()["results"]]


def assert_same(whole: list, sharded: list) -> None:
    """The same (id, score) list, in the same order: items with exactly equal scores (the same
    media in two items) come by ascending row id in both (``indexer.search.TIE_MARGIN``)."""
    assert sharded == whole


def test_every_query_by_id_is_answered_as_by_the_unsharded_bundle(servers, corpus):
    whole, sharded = servers
    items = manifest(corpus)
    ready = sharded.get("/readyz")
    assert ready.status_code == 200
    status = ready.json()["index"]
    assert (whole.get("/readyz").json()["index"]["shards"], status["shards"]) == (1, 4)
    assert status["on_gpu"] == (status["gpus"] > 0)  # no GPU: the CPU shards, gpus 0
    asked = 0
    for item in items:
        for direction in DIRECTIONS:
            path = f"/v1/search/by-id/{item['id']}"
            params = {"direction": direction, "k": 10}
            expected = hits(whole.post(path, params=params))
            got = hits(sharded.post(path, params=params))
            assert_same(expected, got)
            asked += 1
    assert asked == 4 * len(items) >= 300


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_uploads_are_answered_as_by_the_unsharded_bundle(servers, corpus, direction):
    whole, sharded = servers
    side = "image" if direction.startswith("im") else "audio"
    pairs = [row for row in manifest(corpus) if row.get("kind") == "pair"][:8]
    for pair in pairs:
        files = upload(corpus / pair[side])
        data = {"direction": direction, "k": 12}
        assert_same(hits(whole.post("/v1/search", files=files, data=data)),
                    hits(sharded.post("/v1/search", files=files, data=data)))
