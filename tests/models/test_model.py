"""Model contract tests, over every preset: shapes, normalisation, gradients, losses."""

import pytest
import torch

from models.nn.losses import avc_loss, infonce_loss, mil_loss, roll_negatives
from models.nn.model import AVModel
from models.presets import DIGITS, PAPER


@pytest.mark.parametrize("preset", [DIGITS, PAPER], ids=lambda p: p.name)
def test_towers_shapes_and_every_parameter_learns(preset):
    torch.manual_seed(0)
    model = AVModel(preset).train()
    images = torch.rand(2, 3, preset.image_size, preset.image_size)
    waves = torch.randn(2, preset.audio.num_samples) * 0.1
    image_emb, grid, audio_emb = model(images, waves)
    grid_size = preset.grid_size
    assert image_emb.shape == (2, preset.embed_dim) and audio_emb.shape == (2, preset.embed_dim)
    assert grid.shape == (2, preset.embed_dim, grid_size, grid_size)
    assert torch.allclose(image_emb.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(audio_emb.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(grid.norm(dim=1), torch.ones(2, grid_size, grid_size), atol=1e-5)
    negatives = roll_negatives(2)
    loss = (avc_loss(model, image_emb, audio_emb, negatives) + infonce_loss(model, image_emb,
            audio_emb) + mil_loss(model, grid, audio_emb, negatives))
    loss.backward()
    assert torch.isfinite(loss)
    silent = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert silent == []


def test_paper_preset_sizes():
    assert PAPER.grid_size == 14
    model = AVModel(PAPER).eval()
    with torch.no_grad():
        features = model.audio.trunk(model.audio.frontend(torch.zeros(1, 48_000)))
    assert features.shape[1:] == (512, 16, 12)


def test_ave_head_starts_with_small_distance_meaning_match():
    model = AVModel(DIGITS)
    emb = torch.nn.functional.normalize(torch.randn(1, 128), dim=1)
    same = model.ave(emb, emb).softmax(dim=1)[0, 1]
    opposite = model.ave(emb, -emb).softmax(dim=1)[0, 1]
    assert same > 0.9 and opposite < 0.1


def test_negatives_never_pair_an_item_with_itself():
    for batch in (2, 3, 64):
        index = roll_negatives(batch)
        assert not (index == torch.arange(batch)).any()
