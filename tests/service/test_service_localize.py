"""Localisation over HTTP: the heat map of a 2x2 scene peaks in the sounding cell."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from service_helpers import of_kind


def _scene_files(corpus: Path, scene: dict) -> dict:
    image, audio = corpus / scene["image"], corpus / scene["audio"]
    return {"image": (image.name, image.read_bytes()), "audio": (audio.name, audio.read_bytes())}


def _cell(scene: dict, peak: dict, width: int, height: int) -> int:
    rows, cols = scene["grid"]
    return int(peak["y"] // (height / rows)) * cols + int(peak["x"] // (width / cols))


def test_scene_peak_is_in_the_sounding_cell(server: httpx.Client, service_corpus: Path) -> None:
    scenes = [s for s in of_kind(service_corpus, "scene") if not s.get("absent")]
    assert len(scenes) >= 6
    hits = 0
    for scene in scenes:
        answer = server.post("/v1/localize", files=_scene_files(service_corpus, scene))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        grid = np.asarray(body["grid"])
        assert grid.ndim == 2 and ((grid >= 0) & (grid <= 1)).all()
        peak = body["peak"]
        assert grid[peak["row"], peak["col"]] == grid.max()
        assert peak["score"] == grid.max()
        hits += _cell(scene, peak, body["width"], body["height"]) == scene["cell"]
        overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
        assert overlay.format == "PNG"
        assert overlay.size[0] / overlay.size[1] == body["width"] / body["height"]
    assert hits / len(scenes) >= 0.75, f"peak in the sounding cell for {hits}/{len(scenes)}"


def test_png_when_asked_with_accept(server: httpx.Client, service_corpus: Path) -> None:
    scene = of_kind(service_corpus, "scene")[0]
    answer = server.post("/v1/localize", files=_scene_files(service_corpus, scene),
                         headers={"Accept": "image/png"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(answer.content)).format == "PNG"
    assert float(answer.headers["x-peak-score"]) > 0
    json_answer = server.post("/v1/localize", files=_scene_files(service_corpus, scene),
                              headers={"Accept": "application/json, image/png;q=0.5"})
    assert json_answer.headers["content-type"] == "application/json"


def test_clip_localisation(server: httpx.Client, service_corpus: Path) -> None:
    clip = of_kind(service_corpus, "clip")[0]
    path = service_corpus / clip["video"]
    answer = server.post("/v1/localize", files={"file": (path.name, path.read_bytes())},
                         data={"t": 0.5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kind"] == "video" and body["time"] == 0.5
    assert len(body["grid"]) > 1 and body["width"] > 0


def test_localize_needs_a_clip_or_an_image_and_a_sound(server: httpx.Client,
                                                       service_corpus: Path) -> None:
    scene = of_kind(service_corpus, "scene")[0]
    files = _scene_files(service_corpus, scene)
    only_image = server.post("/v1/localize", files={"image": files["image"]})
    assert only_image.status_code == 422
    assert only_image.json()["error"]["code"] == "invalid_parameters"
    swapped = server.post("/v1/localize", files={"image": files["audio"],
                                                 "audio": files["image"]})
    assert swapped.status_code == 415
    assert "expected an image" in swapped.json()["error"]["message"]
    image_as_clip = server.post("/v1/localize", files={"file": files["image"]})
    assert image_as_clip.status_code == 415


def test_off_screen_sounds_score_lower_and_draw_no_heat(server: httpx.Client,
                                                        service_corpus: Path) -> None:
    """Scenes whose spoken digit is none of the four shown (absent): a lower on-screen
    probability than the scenes whose digit is shown, and a blank overlay when below 0.5."""
    scenes = of_kind(service_corpus, "scene")
    scores: dict[bool, list[float]] = {True: [], False: []}
    for scene in scenes:
        body = server.post("/v1/localize", files=_scene_files(service_corpus, scene)).json()
        assert body["on_screen"] == (body["on_screen_probability"] >= 0.5)
        scores[bool(scene.get("absent"))].append(body["on_screen_probability"])
        if not body["on_screen"]:
            overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["overlay_png"]))))
            frame = Image.open(service_corpus / scene["image"]).convert("RGB")
            plain = np.asarray(frame.resize(overlay.shape[1::-1], Image.Resampling.BILINEAR))
            assert np.array_equal(overlay, plain)  # the frame alone
    assert scores[True] and scores[False]
    assert np.mean(scores[False]) > np.mean(scores[True])
