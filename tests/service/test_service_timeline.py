"""A clip scored window by window (timeline=true): the score peaks when the sound belongs to
what is on screen."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from service_helpers import of_kind


def _scores(timeline: list[dict]) -> dict[float, float]:
    return {round(moment["time"], 2): moment["score"] for moment in timeline}


def test_localize_timeline_peaks_when_the_digit_on_screen_is_said(
        server: httpx.Client, changing_clip: Path) -> None:
    answer = server.post("/v1/localize", data={"timeline": "true", "hop": "0.5"},
                         files={"file": (changing_clip.name, changing_clip.read_bytes())})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    scores = _scores(body["timeline"])
    assert sorted(scores) == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert scores[1.5] > max(scores[0.5], scores[2.5])
    assert scores[3.5] > max(scores[0.5], scores[2.5])
    # Localised in the best window; the scores come rounded to 5 decimals, so two windows
    # that both say the digit on screen can tie in the answer.
    best = body["time"]
    assert best in (1.5, 3.5) and scores[best] == max(scores.values())
    # A window's score is its on-screen probability, as /v1/localize reports it for one window.
    assert body["on_screen_probability"] == pytest.approx(scores[best], abs=1e-4)


def test_search_from_the_best_window(server: httpx.Client, changing_clip: Path) -> None:
    answer = server.post("/v1/search", data={"timeline": "true", "direction": "aud2im", "k": 5},
                         files={"file": (changing_clip.name, changing_clip.read_bytes())})
    assert answer.status_code == 200, answer.text
    query = answer.json()["query"]
    assert query["time"] in (1.5, 3.5) and len(query["timeline"]) == 7
    labels = [hit["labels"] for hit in answer.json()["results"]]
    assert labels.count(["3"]) >= 3  # the window that says "three" finds threes


def test_timeline_needs_a_clip_and_a_sane_hop(server: httpx.Client, service_corpus: Path,
                                              changing_clip: Path) -> None:
    image = service_corpus / of_kind(service_corpus, "pair")[0]["image"]
    answer = server.post("/v1/search", data={"timeline": "true"},
                         files={"file": (image.name, image.read_bytes())})
    assert answer.status_code == 422 and "clip" in answer.json()["error"]["message"]
    sound = service_corpus / of_kind(service_corpus, "pair")[0]["audio"]
    as_clip = server.post("/v1/localize", data={"timeline": "true"},
                          files={"file": (sound.name, sound.read_bytes())})
    assert as_clip.status_code == 422 and "the upload is a sound" in as_clip.text
    tiny_hop = server.post("/v1/localize", data={"timeline": "true", "hop": "0.001"},
                           files={"file": (changing_clip.name, changing_clip.read_bytes())})
    assert tiny_hop.status_code == 422 and "at most" in tiny_hop.json()["error"]["message"]
    assert server.post("/v1/localize", data={"timeline": "true", "hop": "0"},
                       files={"file": ("c.mp4", changing_clip.read_bytes())}).status_code == 422
