"""Calibrated match probabilities over HTTP: every hit's probability, the min_probability cut,
and "no match" for a query that nothing indexed corresponds to (a digit missing from the index,
noise between silences), with the pretrained bundle's own calibration and default threshold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import PRETRAINED, build_index, live_server, manifest, wav_bytes

from models.bundle import read_model_info

ABSENT = "7"


def _threshold() -> float:
    calibration = read_model_info(PRETRAINED).match_calibration
    assert calibration is not None, "the pretrained bundle must ship calibrated"
    return calibration.threshold


def _search(client: httpx.Client, path: Path, **fields) -> dict:
    with path.open("rb") as handle:
        answer = client.post("/v1/search", files={"file": (path.name, handle)},
                             data={k: str(v) for k, v in fields.items()})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def without_digit(service_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """A server whose index holds no image and no sound of the digit ABSENT (scenes that show
    it in a cell and clips of it are left out too)."""
    corpus = tmp_path_factory.mktemp("no-seven") / "digits"
    shutil.copytree(service_corpus, corpus)
    kept = [row for row in manifest(service_corpus)
            if ABSENT not in row["labels"] and ABSENT not in row.get("cells", [])]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in kept))
    index = tmp_path_factory.mktemp("no-seven-index") / "index"
    build_index(corpus, index)
    with live_server(model_dir=PRETRAINED, index_dir=index) as client:
        yield client


def _recordings(corpus: Path, digit: str) -> list[Path]:
    return sorted({corpus / row["audio"] for row in manifest(corpus)
                   if row.get("kind") == "pair" and row["labels"] == [digit]})


def test_every_hit_carries_its_probability(server: httpx.Client, service_corpus: Path) -> None:
    sound = _recordings(service_corpus, "3")[0]
    answer = _search(server, sound, k=10, min_probability=0)
    assert answer["min_probability"] == 0 and answer["no_match"] is False
    probabilities = [hit["match_probability"] for hit in answer["results"]]
    assert len(probabilities) == 10 and all(0.0 <= p <= 1.0 for p in probabilities)
    assert probabilities == sorted(probabilities, reverse=True)  # monotone in the score
    # The best hits of a spoken 3 are 3s, and the model says so.
    top = answer["results"][0]
    assert top["labels"] == ["3"] and top["match_probability"] >= _threshold()


def test_the_default_cut_is_the_models_threshold(server: httpx.Client,
                                                service_corpus: Path) -> None:
    answer = _search(server, _recordings(service_corpus, "5")[0], k=20)
    assert answer["min_probability"] == pytest.approx(_threshold())
    assert all(hit["match_probability"] >= _threshold() for hit in answer["results"])
    everything = _search(server, _recordings(service_corpus, "5")[0], k=20, min_probability=0)
    assert len(everything["results"]) == 20 >= len(answer["results"])
    assert everything["results"][: len(answer["results"])] == answer["results"]


def test_a_digit_missing_from_the_index_is_no_match(without_digit: httpx.Client,
                                                   service_corpus: Path) -> None:
    sounds = _recordings(service_corpus, ABSENT)
    answers = [_search(without_digit, sound) for sound in sounds]
    assert all(a["no_match"] and a["results"] == [] for a in answers), [
        [h["match_probability"] for h in a["results"]] for a in answers]
    # The same sounds, asked for everything, get their nearest (wrong) digits, all unlikely.
    nearest = _search(without_digit, sounds[0], min_probability=0)
    assert nearest["results"] and ABSENT not in {h["labels"][0] for h in nearest["results"]}
    assert max(h["match_probability"] for h in nearest["results"]) < _threshold()


def test_a_present_digit_still_matches(without_digit: httpx.Client,
                                       service_corpus: Path) -> None:
    answer = _search(without_digit, _recordings(service_corpus, "2")[0])
    assert not answer["no_match"] and answer["results"][0]["labels"] == ["2"]


def test_noise_between_silences_is_no_match(server: httpx.Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wave = np.zeros(8000, dtype=np.float32)
    wave[3000:5000] = rng.normal(0.0, 0.3, 2000)
    path = tmp_path / "noise.wav"
    path.write_bytes(wav_bytes(wave, 8000))
    answer = _search(server, path)
    assert answer["no_match"] is True and answer["results"] == []


def test_by_id_takes_min_probability(server: httpx.Client, service_corpus: Path) -> None:
    pair = next(row for row in manifest(service_corpus) if row.get("kind") == "pair")
    answer = server.post(f"/v1/search/by-id/{pair['id']}",
                         params={"direction": "aud2im", "k": 5, "min_probability": 1.0})
    assert answer.status_code == 200
    body = answer.json()
    assert body["min_probability"] == 1.0 and body["no_match"] is True and body["results"] == []
    bad = server.post(f"/v1/search/by-id/{pair['id']}", params={"min_probability": 1.5})
    assert bad.status_code == 422 and "error" in bad.json()


def test_an_uncalibrated_bundle_gives_no_probability(service_index: Path, service_corpus: Path,
                                                     tmp_path: Path) -> None:
    bundle = tmp_path / "uncalibrated"
    shutil.copytree(PRETRAINED, bundle)
    info = json.loads((bundle / "model.json").read_text())
    info.pop("match_calibration", None)
    (bundle / "model.json").write_text(json.dumps(info))
    sound = _recordings(service_corpus, "3")[0]
    with live_server(model_dir=bundle, index_dir=service_index) as client:
        answer = _search(client, sound, k=4)
        assert answer["min_probability"] is None and not answer["no_match"]
        assert [h["match_probability"] for h in answer["results"]] == [None] * 4
        with sound.open("rb") as handle:
            refused = client.post("/v1/search", files={"file": ("s.wav", handle)},
                                  data={"min_probability": "0.5"})
        assert refused.status_code == 422
        assert "calibrat" in refused.json()["error"]["message"]
