"""An ensemble bundle: several runs of one preset exported as one bundle, end to end on real
runs, real ONNX Runtime and a real index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.bundle import read_model_info
from models.cli import main
from models.item_media import InputSpec, load_item
from models.manifest import read_manifest
from models.runtime import ModelRuntime


@pytest.fixture(scope="module")
def second_run(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another seed of the tiny run's recipe (conftest.py)."""
    from models.training.config import TrainConfig
    from models.training.loop import train

    out = tmp_path_factory.mktemp("run") / "seed1"
    train(TrainConfig(corpus=str(tiny_corpus), out=str(out), steps=6, batch_size=16,
                      eval_every=3, checkpoint_every=3, warmup_steps=2, lr=2e-3, ema=0.0,
                      seed=1), progress=False)
    return out


@pytest.fixture(scope="module")
def ensemble(tiny_run: Path, second_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "ensemble"
    assert main(["export", str(tiny_run), str(second_run), "--out", str(out)]) == 0
    return out


def test_an_ensemble_joins_its_members_outputs(tiny_run, second_run, ensemble, tiny_corpus,
                                               tmp_path):
    # Each member exported alone with the same options: the same items centre it.
    alone = [tmp_path / "a", tmp_path / "b"]
    for run, out in zip((tiny_run, second_run), alone, strict=True):
        assert main(["export", str(run), "--out", str(out)]) == 0
    info = read_model_info(ensemble)
    assert info.embed_dim == 2 * info.preset["embed_dim"] == info.audio.features_dim
    assert [member["seed"] for member in info.members] == [0, 1]
    assert info.training == info.members[0] and info.metrics == {}
    assert info.parity["image_max_abs"] <= 1e-4 and info.parity["audio_max_abs"] <= 1e-4
    scales = [read_model_info(out).localization.scale for out in alone]
    assert info.localization.scale == pytest.approx(np.mean(scales))

    spec = InputSpec(64, 8000, 1.0)
    decoded = [load_item(tiny_corpus, item, spec) for item in read_manifest(tiny_corpus)[:5]]
    frames = np.stack([frame for frame, _ in decoded])
    waves = np.stack([wave for _, wave in decoded]).astype(np.float32)
    joined = ModelRuntime(ensemble, device="cpu")
    members = [ModelRuntime(out, device="cpu") for out in alone]
    images = joined.embed_images(frames)
    sounds = joined.embed_sounds(waves)
    weight = 1 / np.sqrt(2)
    member_images = [m.embed_images(frames) for m in members]
    member_sounds = [m.embed_sounds(waves) for m in members]
    np.testing.assert_allclose(
        images.embeddings, np.concatenate([e.embeddings for e in member_images], 1) * weight,
        atol=1e-5)
    np.testing.assert_allclose(
        images.grids, np.concatenate([e.grids for e in member_images], -1) * weight, atol=1e-5)
    np.testing.assert_allclose(
        sounds.embeddings, np.concatenate([s.embeddings for s in member_sounds], 1) * weight,
        atol=1e-5)
    np.testing.assert_allclose(
        sounds.features, np.concatenate([s.features for s in member_sounds], 1) * weight,
        atol=1e-5)
    # Unit length, and the cosine of the ensemble is the mean of the members' cosines.
    assert np.allclose(np.linalg.norm(images.embeddings, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(images.grids, axis=-1), 1, atol=1e-5)
    mean_cosine = np.mean([e.embeddings @ s.embeddings.T
                           for e, s in zip(member_images, member_sounds, strict=True)], 0)
    np.testing.assert_allclose(images.embeddings @ sounds.embeddings.T, mean_cosine, atol=1e-5)


def test_an_ensemble_is_evaluated_and_indexed_as_one_model(ensemble, tiny_corpus, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(ensemble), "--corpus", str(tiny_corpus), "--json",
                 str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert set(result["ndcg30"]["model"]) == {"im-im", "im-aud", "aud-im", "aud-aud"}
    assert 0 <= result["localization"]["pointing_accuracy"] <= 1
    index = tmp_path / "index"
    assert main(["index", "build", "--model", str(ensemble), "--corpus", str(tiny_corpus),
                 "--out", str(index), "--device", "cpu", "--quiet"]) == 0
    built = json.loads((index / "index.json").read_text())
    assert built["embed_dim"] == read_model_info(ensemble).embed_dim
    assert np.load(index / "image.npy").shape[1] == built["embed_dim"]


def test_an_ensemble_of_one_run_twice_is_refused(tiny_run, tmp_path, capsys):
    assert main(["export", str(tiny_run), str(tiny_run), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "a run is given twice" in err and "\n" not in err
    assert not (tmp_path / "m").exists()


def test_an_ensemble_of_runs_of_other_presets_is_refused(tiny_run, tiny_corpus, tmp_path,
                                                          capsys):
    other = tmp_path / "narrow"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(other), "--quiet",
                 "--batch-size", "8", "--steps", "2", "--eval-every", "2", "--clusters", "0",
                 "--channels", "8,8,16,16"]) == 0
    capsys.readouterr()
    assert main(["export", str(tiny_run), str(other), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "another preset" in err and "\n" not in err
    assert not (tmp_path / "m").exists()
