"""Items over HTTP: metadata, media, and media paths that may not leave the corpus."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
from service_helpers import PRETRAINED, live_server, of_kind


def test_item_metadata(server: httpx.Client, service_corpus: Path) -> None:
    scene = of_kind(service_corpus, "scene")[0]
    body = server.get(f"/v1/items/{scene['id']}").json()
    assert body["id"] == scene["id"] and body["labels"] == scene["labels"]
    assert body["extra"]["cell"] == scene["cell"] and body["split"] == "test"
    assert body["media"] == {"image": f"/v1/items/{scene['id']}/image",
                             "audio": f"/v1/items/{scene['id']}/audio", "video": None}


def test_item_media_are_the_corpus_files(server: httpx.Client, service_corpus: Path) -> None:
    pair = of_kind(service_corpus, "pair")[0]
    image = server.get(f"/v1/items/{pair['id']}/image")
    sound = server.get(f"/v1/items/{pair['id']}/audio")
    assert image.content == (service_corpus / pair["image"]).read_bytes()
    assert sound.content == (service_corpus / pair["audio"]).read_bytes()
    assert server.get(f"/v1/items/{pair['id']}/video").status_code == 404


def test_video_item_media(server: httpx.Client, service_corpus: Path) -> None:
    clip = of_kind(service_corpus, "clip")[0]
    segment = server.get(f"/v1/items/{clip['id']}")
    assert segment.status_code == 200, segment.text
    media = segment.json()["media"]
    frame = server.get(media["image"])
    sound = server.get(media["audio"])
    video = server.get(media["video"])
    assert frame.headers["content-type"] == "image/png" and frame.content[:4] == b"\x89PNG"
    assert sound.headers["content-type"] == "audio/wav" and sound.content[:4] == b"RIFF"
    assert video.content == (service_corpus / clip["video"]).read_bytes()


def test_unknown_item(server: httpx.Client) -> None:
    for path in ("/v1/items/no-such-item", "/v1/items/no-such-item/image",
                 "/v1/items/..%2F..%2Fetc%2Fpasswd/audio"):
        answer = server.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "unknown_item"
    by_id = server.post("/v1/search/by-id/no-such-item")
    assert by_id.status_code == 404 and by_id.json()["error"]["code"] == "unknown_item"


def test_media_path_cannot_leave_the_corpus(own_index: Path, service_corpus: Path,
                                            tmp_path: Path) -> None:
    """A store row pointing outside its corpus (a tampered bundle) is refused, not served."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    pair = of_kind(service_corpus, "pair")[0]
    relative = "../" * (len(service_corpus.parts) + 2) + str(secret).lstrip("/")
    with sqlite3.connect(own_index / "items.sqlite") as db:
        db.execute("UPDATE items SET image = ?, audio = ? WHERE id = ?",
                   (relative, str(secret), pair["id"]))
    db.close()
    with live_server(model_dir=PRETRAINED, index_dir=own_index) as client:
        for media in ("image", "audio"):
            answer = client.get(f"/v1/items/{pair['id']}/{media}")
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "media_unavailable"
            assert "leaves the corpus" in answer.json()["error"]["message"]
            assert "not for the web" not in answer.text


def test_missing_media_file(own_index: Path, service_corpus: Path) -> None:
    pair = of_kind(service_corpus, "pair")[1]
    with sqlite3.connect(own_index / "items.sqlite") as db:
        db.execute("UPDATE items SET image = 'images/gone.png' WHERE id = ?", (pair["id"],))
    db.close()
    with live_server(model_dir=PRETRAINED, index_dir=own_index) as client:
        answer = client.get(f"/v1/items/{pair['id']}/image")
        assert answer.status_code == 404
        assert "missing" in answer.json()["error"]["message"]
