"""Explained hits (explain=true): where in the image of each cross-modal pair the sound is."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from service_helpers import manifest, of_kind, upload


def _cell_of(peak: dict, width: int, height: int, grid: tuple[int, int]) -> int:
    rows, cols = grid
    return int(peak["y"] // (height / rows)) * cols + int(peak["x"] // (width / cols))


def test_im2aud_peaks_fall_in_the_cell_of_each_hit_digit(server: httpx.Client,
                                                         service_corpus: Path) -> None:
    """A 2x2 scene as the query: each sound found is localised in the query, in the cell that
    shows the digit the sound says."""
    checked = right = 0
    for scene in of_kind(service_corpus, "scene")[:6]:
        answer = server.post("/v1/search", files=upload(service_corpus / scene["image"]),
                             data={"direction": "im2aud", "k": 10, "explain": "true"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["timing"]["explain_ms"] is not None
        for hit in body["results"]:
            explanation = hit["explanation"]
            assert explanation["image"] == "query" and explanation["overlay"] is None
            grid = np.asarray(explanation["grid"])
            assert grid[explanation["peak"]["row"], explanation["peak"]["col"]] == grid.max()
            digit = hit["labels"][0]
            if digit in scene["cells"]:
                checked += 1
                cell = _cell_of(explanation["peak"], explanation["width"],
                                explanation["height"], scene["grid"])
                right += cell == scene["cells"].index(digit)
    assert checked >= 10 and right / checked >= 0.75, f"{right}/{checked} peaks in the cell"


def test_aud2im_explains_each_hit_image(server: httpx.Client, service_corpus: Path) -> None:
    scene = of_kind(service_corpus, "scene")[0]
    answer = server.post("/v1/search", files=upload(service_corpus / scene["audio"]),
                         data={"k": 8, "explain": "true"})
    body = answer.json()
    assert body["query"]["direction"] == "aud2im"
    rows = {row["id"]: row for row in manifest(service_corpus)}
    for hit in body["results"]:
        explanation = hit["explanation"]
        assert explanation is not None and explanation["image"] == "hit"
        item = rows[hit["id"]]
        if item.get("image"):
            with Image.open(service_corpus / item["image"]) as image:
                assert (explanation["width"], explanation["height"]) == image.size


def test_by_id_explanations_link_an_overlay(server: httpx.Client, service_corpus: Path) -> None:
    scene = of_kind(service_corpus, "scene")[0]
    body = server.post(f"/v1/search/by-id/{scene['id']}",
                       params={"direction": "im2aud", "k": 3, "explain": "true"}).json()
    for hit in body["results"]:
        overlay = server.get(hit["explanation"]["overlay"])
        assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(overlay.content)).format == "PNG"
        assert float(overlay.headers["x-peak-x"]) == hit["explanation"]["peak"]["x"]
    sound = server.post(f"/v1/search/by-id/{scene['id']}",
                        params={"direction": "aud2im", "k": 3, "explain": "true"}).json()
    assert all(h["explanation"]["overlay"].endswith(f"sound_of={scene['id']}")
               for h in sound["results"])
    missing = server.get(f"/v1/items/{scene['id']}/overlay", params={"sound_of": "nope"})
    assert missing.status_code == 404


def test_no_explanation_unless_asked_or_cross_modal(server: httpx.Client,
                                                    service_corpus: Path) -> None:
    pair = of_kind(service_corpus, "pair")[0]
    plain = server.post("/v1/search", files=upload(service_corpus / pair["image"])).json()
    assert all(hit["explanation"] is None for hit in plain["results"])
    assert plain["timing"]["explain_ms"] is None
    same = server.post("/v1/search", files=upload(service_corpus / pair["image"]),
                       data={"direction": "im2im", "explain": "true"}).json()
    assert all(hit["explanation"] is None for hit in same["results"])
