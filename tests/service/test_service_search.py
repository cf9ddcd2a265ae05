"""Search over HTTP: every direction, from uploads of each kind and from indexed items."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from service_helpers import PRETRAINED, live_server, of_kind, upload

from service.queries import stored_vector

DIRECTIONS = ("im2aud", "aud2im", "im2im", "aud2aud")


def _pair(corpus: Path) -> dict:
    return of_kind(corpus, "pair")[0]


def _check_results(body: dict, k: int) -> None:
    results = body["results"]
    assert len(results) == k
    assert [r["rank"] for r in results] == list(range(1, k + 1))
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0001 <= s <= 1.0001 for s in scores)
    for result in results:
        assert result["id"] and result["media"]["image"].endswith("/image")
    timing = body["timing"]
    assert timing["total_ms"] >= timing["embed_ms"] >= 0


@pytest.mark.parametrize(("kind", "direction"), [
    ("image", "im2aud"), ("image", "im2im"), ("audio", "aud2im"), ("audio", "aud2aud")])
def test_search_upload_in_each_direction(server: httpx.Client, service_corpus: Path, kind: str,
                                         direction: str) -> None:
    pair = _pair(service_corpus)
    path = service_corpus / pair[kind]
    answer = server.post("/v1/search", files=upload(path), data={"direction": direction, "k": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"]["kind"] == kind and body["query"]["direction"] == direction
    _check_results(body, 5)


def test_same_media_finds_itself_first(server: httpx.Client, service_corpus: Path) -> None:
    pair = _pair(service_corpus)
    for kind, direction in (("image", "im2im"), ("audio", "aud2aud")):
        answer = server.post("/v1/search", files=upload(service_corpus / pair[kind]),
                             data={"direction": direction, "k": 3}).json()
        assert answer["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
        best = server.get(f"/v1/items/{answer['results'][0]['id']}").json()
        assert best["labels"] == pair["labels"]


def test_sounds_are_compared_with_sounds_by_the_audio_features(server: httpx.Client,
                                                               service_corpus: Path,
                                                               service_index: Path) -> None:
    """aud2aud scores are cosines of the audio tower's own features, not of the embeddings
    shared with images (which rank im2aud and aud2im)."""
    import numpy as np

    from indexer.search import open_index
    from models.media import load_audio
    from models.runtime import ModelRuntime

    pair = of_kind(service_corpus, "pair")[3]
    body = server.post("/v1/search", files=upload(service_corpus / pair["audio"]),
                       data={"direction": "aud2aud", "k": 5}).json()
    assert body["query"]["expanded"] == 0  # not unless asked for
    runtime = ModelRuntime(PRETRAINED, device="cpu")
    wave = load_audio(service_corpus / pair["audio"], runtime.sample_rate, runtime.window_s)
    query = runtime.embed_sounds(wave[None, :])
    with open_index(service_index) as index:
        rows = [index.item_by_id(r["id"])["rowid"] for r in body["results"]]
        features = np.concatenate([stored_vector(index, r, "audio_features") for r in rows])
        embeddings = np.concatenate([stored_vector(index, r, "audio") for r in rows])
    scores = np.array([r["score"] for r in body["results"]])
    assert np.allclose(scores, (features @ query.features[0]), atol=1e-4)
    assert not np.allclose(scores, (embeddings @ query.embeddings[0]), atol=1e-2)


def test_with_a_model_without_audio_features_sounds_meet_by_the_embedding(
        bundle_without_features: Path, service_corpus: Path, tmp_path: Path) -> None:
    import numpy as np

    from models.cli import main
    from models.media import load_audio
    from models.runtime import ModelRuntime

    index = tmp_path / "index"
    assert main(["index", "build", "--model", str(bundle_without_features), "--corpus",
                 str(service_corpus), "--out", str(index), "--kind", "flat", "--quiet"]) == 0
    pair = of_kind(service_corpus, "pair")[3]
    runtime = ModelRuntime(bundle_without_features, device="cpu")
    wave = load_audio(service_corpus / pair["audio"], runtime.sample_rate, runtime.window_s)
    query = runtime.embed_audio(wave[None, :])[0]
    with live_server(model_dir=bundle_without_features, index_dir=index) as client:
        body = client.post("/v1/search", files=upload(service_corpus / pair["audio"]),
                           data={"direction": "aud2aud", "k": 5}).json()
        by_id = client.post(f"/v1/search/by-id/{pair['id']}",
                            params={"direction": "aud2aud", "k": 5})
    assert by_id.status_code == 200, by_id.text
    from indexer.search import open_index

    with open_index(index) as opened:
        rows = [opened.item_by_id(r["id"])["rowid"] for r in body["results"]]
        embeddings = np.concatenate([stored_vector(opened, r, "audio") for r in rows])
    scores = np.array([r["score"] for r in body["results"]])
    assert len(scores) == 5 and np.allclose(scores, embeddings @ query, atol=1e-4)


@pytest.mark.parametrize(("direction", "space"), [("aud2im", "audio"),
                                                ("aud2aud", "audio_features")])
def test_a_sound_query_is_expanded_through_the_nearest_sounds_of_the_index(
        server: httpx.Client, service_corpus: Path, service_index: Path, direction: str,
        space: str) -> None:
    """With expand=10 a sound searches as the average of itself and its 10 nearest indexed
    sounds by the audio features, one item for each recording and never its own, each in the
    space it searches. Images are not expanded; without expand nothing is."""
    import numpy as np

    from indexer.search import open_index

    pair = of_kind(service_corpus, "pair")[5]
    by_id = server.post(f"/v1/search/by-id/{pair['id']}",
                        params={"direction": direction, "k": 5, "expand": 10}).json()
    assert by_id["query"]["expanded"] == 10
    with open_index(service_index) as index:
        row = index.item_by_id(pair["id"])["rowid"]
        features, rowids = (np.asarray(a) for a in index.vectors("audio_features"))
        vectors = np.asarray(index.vectors(space)[0])
        similarity = features @ features[np.searchsorted(rowids, row)]
        similarity[(rowids == row) | (similarity >= 0.9999)] = -np.inf
        near: list[int] = []  # best first, a recording held by several items taken once
        for at in np.argsort(-similarity, kind="stable"):
            if len(near) == 10:
                break
            if not near or np.max(features[near] @ features[at]) < 0.9999:
                near.append(int(at))
        assert len({round(float(similarity[at]), 6) for at in near}) == 10
        own = vectors[np.searchsorted(rowids, row)]
        query = own + vectors[near].mean(axis=0)
        query /= np.linalg.norm(query)
        target = np.asarray(index.vectors("image" if direction == "aud2im" else space)[0])
        ids = [index.item_by_id(r["id"])["rowid"] for r in by_id["results"]]
        expected = target[np.searchsorted(rowids, ids)] @ query
    assert np.allclose([r["score"] for r in by_id["results"]], expected, atol=1e-4)
    alone = server.post(f"/v1/search/by-id/{pair['id']}",
                        params={"direction": direction, "k": 5}).json()
    assert alone["query"]["expanded"] == 0
    assert [r["score"] for r in alone["results"]] != [r["score"] for r in by_id["results"]]
    image = server.post(f"/v1/search/by-id/{pair['id']}",
                        params={"direction": "im2aud", "expand": 10}).json()
    assert image["query"]["expanded"] == 0
    bad = server.post(f"/v1/search/by-id/{pair['id']}", params={"direction": direction,
                                                                 "expand": 51})
    assert bad.status_code == 422 and "expand" in bad.text
    # The uploaded recording is the indexed one: not its own evidence either, so the upload
    # expands as the item does.
    uploaded = server.post("/v1/search", files=upload(service_corpus / pair["audio"]),
                           data={"direction": direction, "k": 5, "expand": 10}).json()
    assert uploaded["query"]["expanded"] == 10
    if direction == "aud2im":
        assert [r["id"] for r in uploaded["results"]] == [r["id"] for r in by_id["results"]]
        assert np.allclose([r["score"] for r in uploaded["results"]],
                           [r["score"] for r in by_id["results"]], atol=1e-4)


def test_the_service_can_expand_every_sound_query(service_index: Path,
                                                  service_corpus: Path) -> None:
    pair = of_kind(service_corpus, "pair")[5]
    with live_server(model_dir=PRETRAINED, index_dir=service_index, expand=10) as client:
        default = client.post("/v1/search", files=upload(service_corpus / pair["audio"])).json()
        alone = client.post("/v1/search", files=upload(service_corpus / pair["audio"]),
                            data={"expand": 0}).json()
    assert default["query"]["expanded"] == 10 and alone["query"]["expanded"] == 0


def test_default_direction_follows_the_upload(server: httpx.Client, service_corpus: Path) -> None:
    pair = _pair(service_corpus)
    image = server.post("/v1/search", files=upload(service_corpus / pair["image"])).json()
    sound = server.post("/v1/search", files=upload(service_corpus / pair["audio"])).json()
    assert image["query"]["direction"] == "im2aud" and image["k"] == 10
    assert sound["query"]["direction"] == "aud2im"
    assert sound["query"]["duration"] > 0


def test_cross_modal_answers_mostly_share_the_digit(server: httpx.Client,
                                                   service_corpus: Path) -> None:
    """The pretrained model on real recordings: most top-5 sounds say the digit shown."""
    pairs = of_kind(service_corpus, "pair")[:10]
    agree = total = 0
    for pair in pairs:
        body = server.post("/v1/search", files=upload(service_corpus / pair["image"]),
                           data={"k": 5}).json()
        agree += sum(r["labels"] == pair["labels"] for r in body["results"])
        total += len(body["results"])
    assert agree / total > 0.5, f"{agree}/{total} answers share the digit"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_clip_upload(server: httpx.Client, service_corpus: Path, direction: str) -> None:
    clip = of_kind(service_corpus, "clip")[0]
    path = service_corpus / clip["video"]
    assert path.suffix == ".mp4"
    answer = server.post("/v1/search", files=upload(path),
                         data={"direction": direction, "k": 4, "t": 0.5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"]["kind"] == "video" and body["query"]["time"] == 0.5
    _check_results(body, 4)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_search_by_id(server: httpx.Client, service_corpus: Path, direction: str) -> None:
    pair = _pair(service_corpus)
    answer = server.post(f"/v1/search/by-id/{pair['id']}", params={"direction": direction,
                                                                    "k": 6})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"] == {"kind": "item", "direction": direction, "id": pair["id"],
                             "time": None, "duration": None, "timeline": None, "expanded": 0}
    _check_results(body, 6)
    ids = [r["id"] for r in body["results"]]
    if direction in ("im2im", "aud2aud"):
        assert pair["id"] not in ids  # the item itself is not an answer


def test_by_id_matches_the_upload_of_its_media(server: httpx.Client,
                                               service_corpus: Path) -> None:
    pair = _pair(service_corpus)
    by_id = server.post(f"/v1/search/by-id/{pair['id']}", params={"k": 5}).json()
    by_upload = server.post("/v1/search", files=upload(service_corpus / pair["image"]),
                            data={"k": 5}).json()
    assert [r["id"] for r in by_id["results"]] == [r["id"] for r in by_upload["results"]]
    for a, b in zip(by_id["results"], by_upload["results"], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_result_media_can_be_fetched(server: httpx.Client, service_corpus: Path) -> None:
    pair = _pair(service_corpus)
    body = server.post("/v1/search", files=upload(service_corpus / pair["image"]),
                       data={"k": 2}).json()
    for result in body["results"]:
        image = server.get(result["media"]["image"])
        sound = server.get(result["media"]["audio"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert sound.status_code == 200 and sound.headers["content-type"].startswith("audio/")
        assert image.content[:8] == b"\x89PNG\r\n\x1a\n" and sound.content[:4] == b"RIFF"
