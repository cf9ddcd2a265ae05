"""Distractor sounds (negatives of every image) and the losses that take them."""

from __future__ import annotations

import torch

from models.nn.losses import infonce_loss, mil_loss, roll_negatives
from models.nn.model import AVModel
from models.presets import get_preset
from models.training.distractors import distractor_waves


def test_distractors_are_bursts_between_silences_and_repeat_with_the_seed():
    waves = distractor_waves(32, 8000, 8000, torch.Generator().manual_seed(3))
    again = distractor_waves(32, 8000, 8000, torch.Generator().manual_seed(3))
    assert waves.shape == (32, 8000) and waves.dtype == torch.float32
    assert torch.equal(waves, again)
    active = (waves != 0).float().mean(dim=1)
    assert bool(((active >= 0.09) & (active <= 0.91)).all())  # 10-90% of the window sounds
    rms = waves.pow(2).sum(dim=1).div((waves != 0).sum(dim=1)).sqrt()
    assert bool(((rms > 0.003) & (rms < 0.5)).all())
    assert bool(torch.isfinite(waves).all())


def test_a_distractor_like_a_positive_raises_the_losses():
    torch.manual_seed(0)
    model = AVModel(get_preset("digits")).eval()
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        image_emb, grid, audio_emb = model(images, torch.randn(4, 8000) * 0.1)
        plain = infonce_loss(model, image_emb, audio_emb)
        confusing = infonce_loss(model, image_emb, audio_emb, extra_audio=audio_emb.clone())
        unrelated = infonce_loss(model, image_emb, audio_emb, extra_audio=-image_emb)
        # MIL: sounds that match a location of their frame exactly, or none of them.
        grid = torch.nn.functional.normalize(torch.randn(4, 128, 4, 4), dim=1)
        sounds = grid[:, :, 0, 0].clone()
        negatives = roll_negatives(4)
        mil_unrelated = mil_loss(model, grid, sounds, negatives, extra_audio=-sounds)
        mil_confusing = mil_loss(model, grid, sounds, negatives, extra_audio=sounds.clone())
    assert confusing > unrelated >= plain
    assert mil_confusing > mil_unrelated
