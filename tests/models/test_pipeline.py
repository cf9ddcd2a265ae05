"""End to end on real data: corpus -> train -> checkpoint/resume -> export -> eval, via the CLI."""

import json

import numpy as np
import pytest

from models.bundle import read_model_info
from models.cli import main
from models.export import DEFAULT_SPEEDS
from models.runtime import ModelRuntime


def test_training_writes_checkpoint_metrics_and_summary(tiny_run):
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["steps"] == 6 and run["samples_per_s"] > 0
    assert run["train_speakers"] == ["jackson", "nicolas", "yweweler"]
    lines = (tiny_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6]
    final = run["final"]
    assert set(final["ndcg30"]) == {"im-im", "im-aud", "aud-im", "aud-aud"}
    assert 0.0 <= final["localization"]["pointing_accuracy"] <= 1.0


def test_resume_continues_and_seed_repeats(tiny_corpus, tmp_path):
    # Without the preset's image groups: they start a quarter of --steps in, which the resumed
    # run changes (resuming with groups: test_clusters_start_after_a_quarter_...).
    common = ["train", "--corpus", str(tiny_corpus), "--batch-size", "8", "--quiet",
              "--checkpoint-every", "2", "--eval-every", "2", "--seed", "3", "--clusters", "0"]
    assert main([*common, "--out", str(tmp_path / "a"), "--steps", "4"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--steps", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--steps", "4", "--resume"]) == 0
    first = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    second = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in second] == [2, 4]
    assert np.isclose(first[-1]["loss"], second[-1]["loss"], rtol=1e-4)


def test_ema_and_channels_resume_and_export_the_averaged_weights(tiny_corpus, tmp_path):
    import torch

    common = ["train", "--corpus", str(tiny_corpus), "--batch-size", "8", "--quiet", "--seed", "1",
              "--checkpoint-every", "2", "--eval-every", "2", "--ema", "0.5",
              "--channels", "8,8,16,16", "--clusters", "0"]  # as in the test above
    assert main([*common, "--out", str(tmp_path / "a"), "--steps", "4"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--steps", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--steps", "4", "--resume"]) == 0
    first = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    second = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for name, value in first["model"].items():
        assert torch.allclose(value.float(), second["model"][name].float(), atol=1e-5), name
    # The exported weights are the average, not the last step's.
    key = "audio.fc2.weight"
    assert not torch.allclose(first["model"][key], first["trained_model"][key])
    assert main(["export", str(tmp_path / "a"), "--out", str(tmp_path / "model")]) == 0
    info = read_model_info(tmp_path / "model")
    assert info.preset["channels"] == [8, 8, 16, 16] and info.training["ema"] == 0.5
    assert info.preset["audio_channels"] == []  # the audio tower as wide as the image tower


def test_audio_channels_widen_the_audio_tower_alone(tiny_corpus, tmp_path):
    import torch

    run, model = tmp_path / "r", tmp_path / "model"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(run), "--quiet",
                 "--batch-size", "8", "--steps", "2", "--eval-every", "2", "--clusters", "0",
                 "--channels", "8,8,16,16", "--audio-channels", "8,16,32,48"]) == 0
    weights = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    assert weights["image.fc1.weight"].shape[1] == 16 and weights["audio.fc1.weight"].shape[1] == 48
    assert main(["export", str(run), "--out", str(model)]) == 0  # checks ONNX against torch
    info = read_model_info(model)
    assert info.preset["channels"] == [8, 8, 16, 16]
    assert info.preset["audio_channels"] == [8, 16, 32, 48]
    assert info.training["audio_channels"] == [8, 16, 32, 48]
    waves = np.random.default_rng(5).normal(0, 0.1, (3, 8000)).astype(np.float32)
    sounds = ModelRuntime(model, device="cpu").embed_sounds(waves)
    assert sounds.embeddings.shape[1] == info.embed_dim == sounds.features.shape[1]
    assert np.allclose(np.linalg.norm(sounds.features, axis=1), 1.0, atol=1e-5)


def test_a_run_saved_before_later_options_resumes_as_it_was_trained(tiny_corpus, tmp_path):
    import torch

    common = ["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "r"), "--quiet",
              "--batch-size", "8", "--checkpoint-every", "2", "--eval-every", "2"]
    assert main([*common, "--steps", "2"]) == 0
    path = tmp_path / "r" / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    assert state["config"]["distractors"] == 8 and state["config"]["equaliser"] == 12  # defaults
    for option in ("distractors", "equaliser", "top_db"):  # as written before they existed
        del state["config"][option]
    state["preset"]["audio"]["top_db"] = 70.0  # as if the preset had another front end then
    torch.save(state, path)
    assert main([*common, "--steps", "4", "--resume"]) == 0
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["config"]["distractors"] == 0 and run["config"]["equaliser"] == 0
    assert run["preset"]["audio"]["top_db"] == 70.0  # the run goes on with its own front end


def test_front_end_options_and_view_weight_train_and_reach_the_bundle(tiny_corpus, tmp_path):
    run, model = tmp_path / "r", tmp_path / "model"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(run), "--quiet",
                 "--batch-size", "8", "--steps", "2", "--eval-every", "2", "--lifter", "12",
                 "--top-db", "45", "--pre-emphasis", "0.9", "--pcen", "--view-weight", "0.5",
                 "--frame-norm", "--audio-pooling", "meanmax"]) == 0
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= last["views"] <= 2.0  # 1 - cosine of two views of each sound
    assert main(["export", str(run), "--out", str(model)]) == 0
    info = read_model_info(model)
    assert info.preset["audio"]["lifter"] == 12 and info.preset["audio"]["top_db"] == 45
    assert info.preset["audio"]["pre_emphasis"] == 0.9 and info.preset["audio"]["pcen"] is True
    assert info.preset["audio"]["frame_norm"] is True
    assert info.preset["audio"]["pooling"] == "meanmax"
    assert info.training["view_weight"] == 0.5


def test_neighbour_targets_train_and_are_recorded(tiny_corpus, tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(run), "--quiet",
                 "--batch-size", "8", "--steps", "4", "--eval-every", "2",
                 "--neighbours", "0.5", "--neighbour-temperature", "0.2"]) == 0
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["neighbours"] == 0.5 and config["neighbour_temperature"] == 0.2


def test_mil_alike_skips_negatives_after_a_quarter_and_is_recorded(tiny_corpus, tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(run), "--quiet",
                 "--batch-size", "8", "--steps", "4", "--eval-every", "1",
                 "--mil-alike", "0.5"]) == 0
    assert json.loads((run / "run.json").read_text())["config"]["mil_alike"] == 0.5
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "mil_skipped" not in history[0]  # the first quarter keeps every negative
    assert all(0.0 <= entry["mil_skipped"] <= 1.0 for entry in history[1:])


def test_equaliser_reverb_mixstyle_pitch_warp_and_tempo_train_and_are_recorded(tiny_corpus,
                                                                                  tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(run), "--quiet",
                 "--batch-size", "8", "--steps", "2", "--equaliser", "12",
                 "--reverb", "0.5", "--mixstyle", "1", "--pitch-warp", "0.2",
                 "--tempo", "1.5", "--head-dropout", "0.3", "--freq-mask", "16",
                 "--time-mask", "0"]) == 0
    summary = json.loads((run / "run.json").read_text())
    config = summary["config"]
    assert config["equaliser"] == 12.0 and config["reverb"] == 0.5 and config["mixstyle"] == 1
    assert config["pitch_warp"] == 0.2 and summary["preset"]["audio"]["pitch_warp"] == 0.2
    assert config["tempo"] == 1.5 and summary["preset"]["audio"]["max_tempo"] == 1.5
    assert config["head_dropout"] == 0.3
    assert config["freq_mask"] == 16 and config["time_mask"] == 0
    from models.presets import DIGITS
    from models.training.config import TrainConfig
    from models.training.loop import Trainer

    masks = Trainer(TrainConfig(**config), progress=False).model.audio.spec_augment
    assert (masks.freq_width, masks.time_width) == (16, 0)
    defaults = Trainer(TrainConfig(corpus=config["corpus"], out=str(tmp_path / "d")),
                       progress=False).model.audio.spec_augment
    assert (defaults.freq_width, defaults.time_width) == DIGITS.audio.mask_widths == (8, 9)


def test_clusters_start_after_a_quarter_resume_exactly_and_are_recorded(tiny_corpus, tmp_path):
    import torch

    common = ["train", "--corpus", str(tiny_corpus), "--batch-size", "8", "--quiet", "--seed", "2",
              "--checkpoint-every", "1", "--eval-every", "1", "--clusters", "3",
              "--recluster-every", "2", "--cluster-weight", "0.5"]
    # Grouped at steps 1, 3 and 5 in both runs (a quarter of 4 and of 6 steps is 1); the
    # resumed run's step 4 uses the groups it saved at step 3.
    assert main([*common, "--out", str(tmp_path / "a"), "--steps", "6"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--steps", "4"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--steps", "6", "--resume"]) == 0
    run = json.loads((tmp_path / "a" / "run.json").read_text())["config"]
    assert (run["clusters"], run["cluster_weight"], run["recluster_every"]) == (3, 0.5, 2)
    first = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    second = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert "clusters" not in first[0]  # the first quarter learns from the pairs alone
    assert all(entry["clusters"] > 0 for entry in first[1:])
    assert np.isclose(first[-1]["loss"], second[-1]["loss"], rtol=1e-4)
    saved = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["clusters"]
    assert saved["centres"].shape[0] == 3 and int(saved["assignments"].max()) == 2


def test_more_clusters_than_images_is_refused(tiny_corpus, tmp_path, capsys):
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "r"), "--quiet",
                 "--steps", "2", "--clusters", "100000"]) == 2
    assert "--clusters 100000: the train split has only" in capsys.readouterr().err


def test_digits_clusters_by_default_and_clusters_0_turns_it_off(tiny_corpus, tmp_path):
    common = ["train", "--corpus", str(tiny_corpus), "--quiet", "--batch-size", "8",
              "--steps", "4", "--eval-every", "1"]
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert main([*common, "--out", str(tmp_path / "off"), "--clusters", "0"]) == 0
    default = json.loads((tmp_path / "default" / "run.json").read_text())
    off = json.loads((tmp_path / "off" / "run.json").read_text())
    assert default["config"]["clusters"] == -1 and default["preset"]["clusters"] == 10
    assert off["config"]["clusters"] == 0 and off["preset"]["clusters"] == 0
    grouped = [json.loads(x) for x in (tmp_path / "default" / "metrics.jsonl").read_text()
               .splitlines()]
    plain = [json.loads(x) for x in (tmp_path / "off" / "metrics.jsonl").read_text().splitlines()]
    assert "clusters" not in grouped[0] and all("clusters" in e for e in grouped[1:])
    assert not any("clusters" in e for e in plain)
    assert main(["export", str(tmp_path / "default"), "--out", str(tmp_path / "model")]) == 0
    assert read_model_info(tmp_path / "model").preset["clusters"] == 10


def test_too_few_images_for_the_presets_groups_trains_without_them(tiny_corpus, tmp_path, caplog):
    import shutil

    # A user's own corpus with six training pairs: fewer than the digits preset's ten groups.
    corpus = shutil.copytree(tiny_corpus, tmp_path / "corpus")
    items = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines()]
    train = [i for i in items if i.get("split") == "train" and i.get("kind") == "pair"][:6]
    rest = [i for i in items if i.get("split") != "train"]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(i) + "\n" for i in train + rest))
    with caplog.at_level("WARNING"):
        assert main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "r"), "--quiet",
                     "--batch-size", "4", "--steps", "4"]) == 0
    assert "6 single-object images: too few for the preset's 10 groups" in caplog.text
    assert json.loads((tmp_path / "r" / "run.json").read_text())["preset"]["clusters"] == 0


def test_temperature_is_held_or_learned_and_recorded(tiny_corpus, tmp_path):
    common = ["train", "--corpus", str(tiny_corpus), "--quiet", "--batch-size", "8",
              "--steps", "3", "--eval-every", "1", "--lr", "0.05"]
    assert main([*common, "--out", str(tmp_path / "held"), "--temperature", "0.2"]) == 0
    assert main([*common, "--out", str(tmp_path / "learned")]) == 0
    assert json.loads((tmp_path / "held" / "run.json").read_text())["config"]["temperature"] == 0.2
    held, learned = (
        [json.loads(line)["temperature"]
         for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("held", "learned"))
    assert held == pytest.approx([0.2, 0.2, 0.2])
    assert learned[0] != pytest.approx(learned[-1], rel=1e-3)


@pytest.mark.parametrize("option", [["--neighbours", "0.5"], ["--temperature", "0.1"]])
def test_infonce_options_need_infonce(tiny_corpus, tmp_path, option):
    with pytest.raises(SystemExit, match=f"{option[0]} needs --loss infonce"):
        main(["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "r"),
              "--loss", "avc", *option])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, message", [
    (["--neighbours", "1.5"], "--neighbours"),
    (["--neighbours", "-0.1"], "--neighbours"),
    (["--neighbour-temperature", "0"], "--neighbour-temperature"),
    (["--equaliser", "-3"], "--equaliser"),
    (["--equaliser", "loud"], "--equaliser"),
    (["--mil-alike", "1.5"], "--mil-alike"),
    (["--reverb", "1.5"], "--reverb"),
    (["--reverb", "some"], "--reverb"),
    (["--mixstyle", "2"], "--mixstyle"),
    (["--time-mask", "-2"], "--time-mask"),
    (["--freq-mask", "wide"], "--freq-mask"),
    (["--head-dropout", "1"], "--head-dropout"),
    (["--mil-alike", "-0.1"], "--mil-alike"),
    (["--mil-alike", "x"], "--mil-alike"),
    (["--view-weight", "-1"], "--view-weight"),
    (["--view-weight", "nan"], "--view-weight"),
    (["--view-weight", "heavy"], "--view-weight"),
    (["--channels", "8,16"], "four positive block widths"),
    (["--top-db", "0"], "--top-db"),
    (["--top-db", "inf"], "--top-db"),
    (["--pre-emphasis", "1"], "--pre-emphasis"),
    (["--pre-emphasis", "-0.5"], "--pre-emphasis"),
    (["--clusters", "-1"], "--clusters"),
    (["--pitch-warp", "1.5"], "--pitch-warp"),
    (["--tempo", "0.5"], "--tempo"),
    (["--cluster-weight", "-1"], "--cluster-weight"),
    (["--recluster-every", "0"], "--recluster-every"),
    (["--temperature", "0.001"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
])
def test_train_rejects_a_bad_option(tiny_corpus, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "r"), *argv])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_train_refuses_to_overwrite_a_run(tiny_corpus, tiny_run, capsys):
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(tiny_run)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_export_writes_a_valid_bundle_with_parity(tiny_bundle):
    info = read_model_info(tiny_bundle)
    assert info.parity["image_max_abs"] <= 1e-4 and info.parity["audio_max_abs"] <= 1e-4
    assert info.image.size == 64 and info.image.grid == 4 and info.audio.sample_rate == 8000
    assert info.training["loss"] == "infonce" and info.metrics["ndcg30"]


def test_export_with_speeds_averages_over_played_versions(tiny_run, tiny_bundle, tmp_path):
    import torch

    from models.export import load_checkpoint, play_at

    out, plain = tmp_path / "speeds", tmp_path / "plain"
    uncentred = ["--centre-items", "0"]  # the ensemble alone, compared with torch below
    assert main(["export", str(tiny_run), "--out", str(out), "--speeds", "1.1,0.9,1",
                 *uncentred]) == 0
    assert main(["export", str(tiny_run), "--out", str(plain), "--speeds", "1", *uncentred]) == 0
    info = read_model_info(out)
    assert info.audio.speeds == [1.1, 0.9, 1.0] and info.parity["audio_max_abs"] <= 1e-4
    assert read_model_info(plain).audio.speeds == [1.0]
    assert read_model_info(tiny_bundle).audio.speeds == list(DEFAULT_SPEEDS)
    # Tones in a short burst: played faster or slower they change pitch and length.
    t = np.arange(8000) / 8000
    burst = np.exp(-((t - 0.5) / 0.1) ** 2)
    waves = np.stack([0.5 * burst * np.sin(2 * np.pi * f * t) for f in (300, 900, 1500)])
    waves = waves.astype(np.float32)
    ensemble = ModelRuntime(out, device="cpu").embed_audio(waves)
    single = ModelRuntime(plain, device="cpu").embed_audio(waves)
    assert np.allclose(np.linalg.norm(ensemble, axis=1), 1, atol=1e-5)
    model, _ = load_checkpoint(tiny_run)
    with torch.no_grad():
        x = torch.from_numpy(waves)
        total = sum(model.audio(play_at(x, speed, 8000)) for speed in (0.9, 1.0, 1.1))
    expected = torch.nn.functional.normalize(total, dim=1).numpy()
    # The graph computes the ensemble: far closer to it than to the sound at one speed.
    assert np.abs(ensemble - expected).max() * 10 < np.abs(ensemble - single).max()


def test_the_audio_graph_also_gives_the_towers_own_features(tiny_run, tiny_bundle):
    import torch

    from models.export import features_projection, load_checkpoint, play_at

    info = read_model_info(tiny_bundle)
    model, _ = load_checkpoint(tiny_run)
    assert info.audio.outputs == ["embedding", "features"]
    assert info.audio.features_dim == info.embed_dim
    waves = np.random.default_rng(3).normal(0, 0.1, (4, 8000)).astype(np.float32)
    runtime = ModelRuntime(tiny_bundle, device="cpu")
    sounds = runtime.embed_sounds(waves)
    assert runtime.has_audio_features and sounds.features is not None
    assert sounds.features.shape == (4, info.audio.features_dim)
    assert np.allclose(np.linalg.norm(sounds.features, axis=1), 1, atol=1e-5)
    assert np.array_equal(sounds.embeddings, runtime.embed_audio(waves))
    with torch.no_grad():
        x = torch.from_numpy(waves)
        pooled = [model.audio.features(model.audio.frontend.spectrogram(
            play_at(x, speed, 8000), exact_log=True)) for speed in info.audio.speeds]
    mean = sum(pooled) / len(pooled)
    projection = features_projection(mean.shape[1], info.embed_dim)
    if projection is not None:
        mean = mean @ projection
    expected = torch.nn.functional.normalize(mean, dim=1).numpy()
    assert np.abs(sounds.features - expected).max() <= 1e-4
    # Not the embedding under another name: the trunk before the head.
    assert sounds.features.shape[1] != sounds.embeddings.shape[1] or \
        not np.allclose(sounds.features, sounds.embeddings, atol=1e-2)


@pytest.mark.parametrize(("width", "size"), [(512, 128), (64, 128)])
def test_features_of_another_width_are_projected_keeping_their_angles(width, size):
    import torch

    from models.export import features_projection

    projection = features_projection(width, size)
    assert projection.shape == (width, size)
    assert torch.equal(projection, features_projection(width, size))  # fixed: every export
    gram = projection.T @ projection if width > size else projection @ projection.T
    assert torch.allclose(gram, torch.eye(min(width, size)), atol=1e-5)
    assert features_projection(128, 128) is None


def test_export_centres_each_modality_on_its_training_mean(tiny_run, tiny_bundle, tiny_corpus,
                                                          tmp_path):
    from models.export_cli import training_sample
    from models.item_media import InputSpec, load_item
    from models.manifest import read_manifest

    plain = tmp_path / "plain"
    assert main(["export", str(tiny_run), "--out", str(plain), "--centre-items", "0"]) == 0
    assert read_model_info(plain).centring is None
    centring = read_model_info(tiny_bundle).centring  # centred by default
    sample = training_sample(read_manifest(tiny_corpus), 1000)
    assert centring is not None and centring.split == "train"
    assert centring.images == centring.sounds == len(sample) > 0
    assert all(item.split == "train" and "box" not in item.extra for item in sample)
    spec = InputSpec(64, 8000, 1.0)
    pairs = [load_item(tiny_corpus, item, spec) for item in sample]
    frames = np.stack([frame for frame, _ in pairs])
    waves = np.stack([wave for _, wave in pairs]).astype(np.float32)
    for bundle, centred in ((plain, False), (tiny_bundle, True)):
        runtime = ModelRuntime(bundle, device="cpu")
        image, audio = runtime.embed_images(frames).embeddings, runtime.embed_audio(waves)
        assert np.allclose(np.linalg.norm(image, axis=1), 1, atol=1e-5)
        means = [float(np.linalg.norm(e.mean(0))) for e in (image, audio)]
        # Barely trained towers put every item in one narrow cone; centred, the cone is gone.
        assert all(m < 0.3 for m in means) if centred else all(m > 0.6 for m in means)
    # The grid is the trained one: centring changes the embeddings, not the localisation grid.
    grids = [ModelRuntime(b, device="cpu").embed_images(frames[:4]).grids
             for b in (plain, tiny_bundle)]
    assert np.allclose(*grids, atol=1e-6)


def test_export_over_a_bundle_keeps_its_other_files(tiny_run, tmp_path):
    out = tmp_path / "model"
    assert main(["export", str(tiny_run), "--out", str(out), "--speeds", "1"]) == 0
    (out / "README.md").write_text("how this model was made")
    (out / "notes").mkdir()
    (out / "notes" / "a.txt").write_text("kept")
    assert main(["export", str(tiny_run), "--out", str(out)]) == 0
    assert read_model_info(out).audio.speeds == list(DEFAULT_SPEEDS)  # the new export
    assert (out / "README.md").read_text() == "how this model was made"
    assert (out / "notes" / "a.txt").read_text() == "kept"


def test_export_rejects_negative_centre_items(tiny_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["export", str(tiny_run), "--out", str(tmp_path / "m"), "--centre-items", "-1"])
    assert "--centre-items" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_play_at_changes_pitch_and_keeps_the_length():
    import torch

    from models.export import play_at

    rate = 8000
    tone = torch.sin(2 * torch.pi * 400 * torch.arange(rate) / rate)[None]
    assert torch.equal(play_at(tone, 1.0, rate), tone)
    for speed in (0.8, 1.25):
        played = play_at(tone, speed, rate)
        assert played.shape == tone.shape
        peak = float(torch.fft.rfft(played[0]).abs().argmax())  # 1 Hz per bin over 1 s
        assert peak == pytest.approx(400 * speed, abs=2)


@pytest.mark.parametrize("value", ["0.3,1", "1,1", "fast", "1,nan"])
def test_export_rejects_bad_speeds(tiny_run, tmp_path, capsys, value):
    with pytest.raises(SystemExit):
        main(["export", str(tiny_run), "--out", str(tmp_path / "m"), "--speeds", value])
    assert "--speeds" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_an_embedding_does_not_depend_on_its_batch_or_threads(tiny_bundle):
    # The local and the Ray index builds batch items differently, on machines with different
    # core counts, and must agree bit for bit, speed ensemble (the default) included.
    rng = np.random.default_rng(1)
    waves = rng.normal(0, 0.1, (9, 8000)).astype(np.float32)
    frames = rng.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    whole = ModelRuntime(tiny_bundle, device="cpu", batch_size=64, intra_op_threads=1)
    audio, images = whole.embed_sounds(waves), whole.embed_images(frames).embeddings
    for threads in (2, 3):
        for size in (1, 2, 3, 4, 5, 64):  # row counts that split differently between threads
            runtime = ModelRuntime(tiny_bundle, device="cpu", batch_size=size,
                                   intra_op_threads=threads)
            sounds = runtime.embed_sounds(waves)
            assert np.array_equal(sounds.embeddings, audio.embeddings), (threads, size)
            assert np.array_equal(sounds.features, audio.features), (threads, size)
            assert np.array_equal(runtime.embed_images(frames).embeddings, images), (threads, size)


def test_runtime_embeds_any_batch_size(tiny_bundle, tiny_corpus):
    runtime = ModelRuntime(tiny_bundle, device="cpu")
    assert runtime.provider == "CPUExecutionProvider" and not runtime.on_gpu
    frames = [np.zeros((28, 28, 3), np.uint8), np.full((56, 40, 3), 200, np.uint8)]
    for count in (1, 2):
        out = runtime.embed_images(frames[:count])
        assert out.embeddings.shape == (count, 128) and out.grids.shape == (count, 4, 4, 128)
        assert np.allclose(np.linalg.norm(out.embeddings, axis=1), 1, atol=1e-5)
    waves = np.random.default_rng(0).normal(0, 0.1, (3, 8000)).astype(np.float32)
    emb = runtime.embed_audio(waves)
    assert emb.shape == (3, 128)
    heat = runtime.heat_maps(runtime.embed_images(frames[:1]).grids, emb[:1])
    assert heat.shape == (1, 4, 4) and ((heat >= 0) & (heat <= 1)).all()


def test_eval_prints_the_table_and_writes_json(tiny_bundle, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", str(tiny_bundle), "--corpus", str(tiny_corpus),
                 "--json", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "random" in printed and "cca" in printed and "pointing" in printed
    result = json.loads(out.read_text())
    # "expanded": sound queries averaged with their nearest sounds, as searches do by default.
    assert set(result["ndcg30"]) == {"random", "cca", "model", "expanded"}
    assert result["ndcg30"]["expanded"]["im-aud"] == result["ndcg30"]["model"]["im-aud"]
    # Sounds are ranked by the audio tower's own features; the embedding's figure is kept.
    assert 0 <= result["aud_aud_by_embedding"] <= 1
    assert "aud-aud ranks sounds by the audio tower's own features" in printed
    for row in result["ndcg30"].values():
        assert set(row) == {"im-im", "im-aud", "aud-im", "aud-aud"}
    assert {"pointing_accuracy", "chance", "ciou50", "auc"} <= set(result["localization"])
    assert result["localization"]["chance"] == pytest.approx(0.25)


def test_eval_without_train_split_leaves_cca_out(tiny_bundle, real_data, tmp_path, capsys):
    corpus = tmp_path / "unseen"
    assert main(["corpus", "digits", "--source", str(real_data), "--out", str(corpus),
                 "--split", "test", "--max-images", "100", "--max-takes", "1",
                 "--no-progress"]) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_bundle), "--corpus", str(corpus), "--json",
                 str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert "cca" not in result["ndcg30"] and any("CCA" in n for n in result["notes"])


def test_export_tempo_stretches_sounds_to_the_training_median_or_a_set_duration(
        tiny_run, tiny_bundle, tiny_corpus, tmp_path, capsys):
    import torch

    from models.export_cli import training_sample
    from models.item_media import InputSpec, load_item
    from models.manifest import read_manifest
    from models.nn.tempo import typical_duration

    assert read_model_info(tiny_bundle).audio.tempo_s is None  # off by default
    auto, fixed = tmp_path / "auto", tmp_path / "fixed"
    assert main(["export", str(tiny_run), "--out", str(auto), "--tempo", "auto"]) == 0
    assert main(["export", str(tiny_run), "--out", str(fixed), "--tempo", "0.3"]) == 0
    spec = InputSpec(64, 8000, 1.0)
    waves = np.stack([load_item(tiny_corpus, item, spec)[1]
                      for item in training_sample(read_manifest(tiny_corpus), 1000)])
    info = read_model_info(auto)
    assert info.audio.tempo_s == pytest.approx(typical_duration(torch.from_numpy(waves), 80,
                                                                8000))
    assert info.parity["audio_max_abs"] <= 1e-4
    assert read_model_info(fixed).audio.tempo_s == 0.3
    sounds = waves[:4].astype(np.float32)
    stretched = ModelRuntime(fixed, device="cpu").embed_audio(sounds)
    plain = ModelRuntime(tiny_bundle, device="cpu").embed_audio(sounds)
    assert not np.allclose(stretched, plain, atol=1e-3)  # the graph does stretch
    capsys.readouterr()
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "m"), "--tempo", "auto",
                 "--centre-items", "0"]) != 0
    assert "--tempo auto" in capsys.readouterr().err and not (tmp_path / "m").exists()


@pytest.mark.parametrize("value", ["fast", "0.01", "-1", "nan", "11"])
def test_export_rejects_bad_tempo(tiny_run, tmp_path, capsys, value):
    with pytest.raises(SystemExit):
        main(["export", str(tiny_run), "--out", str(tmp_path / "m"), "--tempo", value])
    assert "--tempo" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
