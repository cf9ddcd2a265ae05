"""Ensemble distillation (--teachers): real runs as teachers, real data, the real loss."""

import json

import pytest
import torch

from models.cli import main
from models.evaluation.dataset import load_retrieval_set, split_items
from models.item_media import InputSpec
from models.manifest import read_manifest
from models.nn.model import AVModel
from models.presets import get_preset
from models.training.teachers import distill_loss, embed_pairs, load_teachers, teacher_targets


def _batch(corpus, preset):
    spec = InputSpec(preset.image_size, preset.audio.sample_rate, preset.audio.window_s)
    items = split_items(read_manifest(corpus), "train")
    data = load_retrieval_set(corpus, items, spec, progress=False)
    count = min(len(data.images), len(data.waves), 12)
    return torch.from_numpy(data.images[:count]), torch.from_numpy(data.waves[:count])


def test_targets_are_distributions_and_the_teacher_itself_scores_lowest(tiny_run, tiny_corpus):
    preset = get_preset("digits")
    teacher, = load_teachers((str(tiny_run),), preset, torch.device("cpu"))
    images, waves = _batch(tiny_corpus, teacher.preset)
    bank = embed_pairs([teacher], images, waves, batch=5)
    assert bank.images.shape == bank.audio.shape == (1, len(images), teacher.preset.embed_dim)
    batch = torch.tensor([7, 1, 4, 0, 9, 2])
    targets = teacher_targets(bank, batch)
    for probabilities in (targets.image_to_audio, targets.audio_to_image, targets.audio_to_audio):
        assert probabilities.shape == (len(batch), len(batch))
        assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(batch)), atol=1e-5)
    assert float(targets.audio_to_audio.diagonal().abs().max()) < 1e-6
    frames = images[batch].permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        image_emb, _ = teacher.image(frames)
        audio_emb = teacher.audio(waves[batch])
        assert torch.allclose(image_emb, bank.images[0, batch], atol=1e-5)
        scale = teacher.inverse_temperature()
        own = distill_loss(scale, image_emb, audio_emb, targets)
        # Cross-entropy is smallest where the student ranks as the teacher does.
        shuffled = distill_loss(scale, image_emb, audio_emb.roll(1, dims=0), targets)
        untrained = AVModel(teacher.preset).eval()
        other = distill_loss(scale, untrained.image(frames)[0], untrained.audio(waves[batch]),
                             targets)
    assert float(own) < float(shuffled) and float(own) < float(other)


def test_two_teachers_average_their_probabilities(tiny_run, tiny_corpus):
    preset = get_preset("digits")
    one = load_teachers((str(tiny_run),), preset, torch.device("cpu"))
    two = load_teachers((str(tiny_run), str(tiny_run)), preset, torch.device("cpu"))
    images, waves = _batch(tiny_corpus, one[0].preset)
    batch = torch.arange(len(images))
    single = teacher_targets(embed_pairs(one, images, waves), batch)
    double = teacher_targets(embed_pairs(two, images, waves), batch)
    assert torch.allclose(single.audio_to_image, double.audio_to_image, atol=1e-6)
    untrained = AVModel(one[0].preset).eval()
    mixed = teacher_targets(embed_pairs([one[0], untrained], images, waves), batch)
    alone = teacher_targets(embed_pairs([untrained], images, waves), batch)
    assert torch.allclose(mixed.audio_to_audio,
                          0.5 * (single.audio_to_audio + alone.audio_to_audio), atol=1e-6)


def test_a_taught_run_trains_records_its_teachers_and_exports(tiny_run, tiny_corpus, tmp_path):
    run = tmp_path / "taught"
    assert main(["train", "--corpus", str(tiny_corpus), "--out", str(run), "--quiet",
                 "--batch-size", "8", "--steps", "2", "--eval-every", "1",
                 "--teachers", f"{tiny_run},{tiny_run}", "--distill-weight", "0.5"]) == 0
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["teachers"] == [str(tiny_run), str(tiny_run)]
    assert config["distill_weight"] == 0.5
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(entry["distill"] > 0 for entry in history)
    assert main(["export", str(run), "--out", str(tmp_path / "model")]) == 0
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["training"]["teachers"] == [str(tiny_run), str(tiny_run)]


def test_a_missing_or_mismatched_teacher_is_refused(tiny_corpus, tmp_path, capsys):
    common = ["train", "--corpus", str(tiny_corpus), "--quiet", "--steps", "1"]
    assert main([*common, "--out", str(tmp_path / "a"),
                 "--teachers", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoint.pt in" in capsys.readouterr().err
    paper = get_preset("paper")
    folder = tmp_path / "paper-run"
    folder.mkdir()
    torch.save({"preset": paper.to_json(), "model": AVModel(paper).state_dict()},
               folder / "checkpoint.pt")
    assert main([*common, "--out", str(tmp_path / "b"), "--teachers", str(folder)]) == 2
    message = capsys.readouterr().err
    assert "224 px" in message and "this run reads" in message
    assert not (tmp_path / "b" / "checkpoint.pt").exists()


@pytest.mark.parametrize("value", ["", ","])
def test_an_empty_teacher_list_is_a_usage_error(tiny_corpus, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "r"),
              "--teachers", value])
    assert stop.value.code == 2
    assert "run folders" in capsys.readouterr().err
