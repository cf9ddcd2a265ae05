"""Bad input gets a clear JSON error with the right status, and the server keeps serving."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from service_helpers import PRETRAINED, live_server, of_kind, upload, wav_bytes


def _error(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()["error"]
    assert body["code"] == code and body["message"]
    return body["message"]


def _png(size: int = 256) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()


def test_empty_upload(server: httpx.Client) -> None:
    message = _error(server.post("/v1/search", files={"file": ("x.png", b"")}), 400, "bad_media")
    assert "empty" in message


def test_corrupt_media(server: httpx.Client, service_corpus: Path) -> None:
    png = _png()
    message = _error(server.post("/v1/search", files={"file": ("cut.png", png[: len(png) // 2])}),
                     400, "bad_media")
    assert "corrupt or truncated" in message
    clip = (service_corpus / of_kind(service_corpus, "clip")[0]["video"]).read_bytes()
    damaged = clip[:64] + bytes(len(clip) - 64)  # the header survives, the rest is zeros
    answer = server.post("/v1/search", files={"file": ("damaged.mp4", damaged)})
    assert answer.status_code in (400, 415), answer.text
    assert answer.json()["error"]["code"] in ("bad_media", "unsupported_media")


@pytest.mark.parametrize("content", [b"hello, this is text\n" * 20, b"%PDF-1.4\n%\xe2\xe3\n" * 30,
                                     bytes(range(256)) * 8])
def test_unsupported_media(server: httpx.Client, content: bytes) -> None:
    _error(server.post("/v1/search", files={"file": ("x.bin", content)}), 415,
           "unsupported_media")


def test_silent_audio(server: httpx.Client) -> None:
    silent = wav_bytes(np.zeros(8000, dtype=np.float32), 8000)
    message = _error(server.post("/v1/search", files={"file": ("quiet.wav", silent)}), 400,
                     "bad_media")
    assert "silent" in message


@pytest.mark.parametrize(("data", "field"), [
    ({"k": "0"}, "k"), ({"k": "101"}, "k"), ({"k": "many"}, "k"), ({"t": "-1"}, "t"),
    ({"direction": "sideways"}, "direction")])
def test_bad_parameters(server: httpx.Client, service_corpus: Path, data: dict,
                        field: str) -> None:
    pair = of_kind(service_corpus, "pair")[0]
    message = _error(server.post("/v1/search", files=upload(service_corpus / pair["audio"]),
                                 data=data), 422, "invalid_parameters")
    assert message.startswith(field)


def test_parameters_that_do_not_fit_the_upload(server: httpx.Client,
                                               service_corpus: Path) -> None:
    pair = of_kind(service_corpus, "pair")[0]
    image, sound = service_corpus / pair["image"], service_corpus / pair["audio"]
    assert "upload is a sound" in _error(
        server.post("/v1/search", files=upload(sound), data={"direction": "im2aud"}),
        422, "invalid_parameters")
    assert "upload is an image" in _error(
        server.post("/v1/search", files=upload(image), data={"direction": "aud2aud"}),
        422, "invalid_parameters")
    _error(server.post("/v1/search", files=upload(image), data={"t": "0.5"}), 422,
           "invalid_parameters")
    assert "outside" in _error(server.post("/v1/search", files=upload(sound), data={"t": "99"}),
                               400, "bad_media")
    _error(server.post("/v1/search"), 422, "invalid_parameters")  # no file at all
    _error(server.post("/v1/search/by-id/x", params={"k": 0}), 422, "invalid_parameters")


def test_unknown_endpoint_and_method(server: httpx.Client) -> None:
    _error(server.get("/v1/nothing-here"), 404, "not_found")
    _error(server.get("/v1/search"), 405, "method_not_allowed")


@pytest.fixture(scope="module")
def small_limit_server(service_index: Path) -> Iterator[httpx.Client]:
    with live_server(model_dir=PRETRAINED, index_dir=service_index,
                     max_upload_mb=0.05) as client:
        yield client


def test_oversized_upload_with_length(small_limit_server: httpx.Client) -> None:
    big = _png(400)
    assert len(big) > 0.05 * 1024 * 1024
    message = _error(small_limit_server.post("/v1/search", files={"file": ("big.png", big)}),
                     413, "too_large")
    assert "0.05 MB" in message


def test_oversized_streamed_upload(small_limit_server: httpx.Client) -> None:
    """A chunked upload without Content-Length is cut off once it passes the limit."""
    boundary = "avsearchboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n").encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(200):
            yield bytes(16384)
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = small_limit_server.post(
        "/v1/search", content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    _error(answer, 413, "too_large")


def test_still_serving_after_bad_input(server: httpx.Client, service_corpus: Path) -> None:
    for junk in (b"", b"\x00" * 1000, _png()[:500], b"RIFF\xff\xff\xff\xffWAVEfmt "):
        assert server.post("/v1/search", files={"file": ("junk", junk)}).status_code < 500
    pair = of_kind(service_corpus, "pair")[0]
    good = server.post("/v1/search", files=upload(service_corpus / pair["image"]))
    assert good.status_code == 200
    assert server.get("/metrics").text.count('status="500"') == 0


def test_a_burst_beyond_the_queue_is_refused_with_503(service_index: Path,
                                                      service_corpus: Path) -> None:
    """More queries than workers plus the queue: the rest get 503 busy at once, none fails."""
    from concurrent.futures import ThreadPoolExecutor

    clip = service_corpus / of_kind(service_corpus, "clip")[0]["video"]
    with live_server(model_dir=PRETRAINED, index_dir=service_index, workers=1,
                     max_queue=1) as client:
        def one(_: int) -> httpx.Response:
            with httpx.Client(base_url=client.base_url, timeout=60) as own:
                return own.post("/v1/search", files=upload(clip))

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(one, range(24)))
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {200, 503}, statuses
        assert 200 in statuses
        busy = [a for a in answers if a.status_code == 503]
        assert busy, "12 clients at once never filled one worker and a queue of one"
        assert busy[0].json()["error"]["code"] == "busy"
        assert busy[0].headers["retry-after"] == "1"
        assert client.post("/v1/search", files=upload(clip)).status_code == 200
