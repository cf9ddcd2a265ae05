"""Training augmentations: shapes, bounds and reproducibility, on real tensors."""

import math

import torch

from models.training.augment import augment_waves, random_equaliser, random_reverb

RATE = 8_000


def _tone(freq: float, length: int = RATE) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * torch.arange(length) / RATE)


def test_equaliser_off_leaves_the_sound_alone():
    waves = torch.randn(3, RATE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(random_equaliser(waves, RATE, 0.0, torch.Generator()), waves)


def test_equaliser_gain_stays_within_its_bound_at_every_frequency():
    freqs = [60.0, 200.0, 500.0, 1000.0, 2000.0, 3500.0]
    tones = torch.stack([_tone(f) for f in freqs])
    gen = torch.Generator().manual_seed(1)
    gains = []
    for _ in range(50):
        # Every row of one call gets its own filter: draw many and look at the extremes.
        out = random_equaliser(tones.repeat(8, 1), RATE, 12.0, gen)
        ratio = out.pow(2).mean(dim=1) / tones.repeat(8, 1).pow(2).mean(dim=1)
        gains.append(10 * torch.log10(ratio))
    gains = torch.cat(gains)
    assert gains.abs().max() <= 12.0 + 1e-3
    assert gains.max() > 6.0 and gains.min() < -6.0  # it does boost and cut, strongly at times


def test_equaliser_shapes_each_clip_differently_and_repeats_with_its_seed():
    waves = torch.randn(4, RATE, generator=torch.Generator().manual_seed(2))
    first = random_equaliser(waves, RATE, 12.0, torch.Generator().manual_seed(3))
    again = random_equaliser(waves, RATE, 12.0, torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == waves.shape
    low = [float(torch.fft.rfft(clip)[:100].abs().pow(2).sum()
                 / torch.fft.rfft(orig)[:100].abs().pow(2).sum())
           for clip, orig in zip(first, waves, strict=True)]
    assert max(low) / min(low) > 1.5  # the filters differ from clip to clip


def test_augment_waves_with_the_equaliser_keeps_shape_and_is_finite():
    waves = torch.zeros(5, RATE)
    waves[:, 3000:5000] = _tone(300.0, 2000)
    out = augment_waves(waves, RATE, torch.Generator().manual_seed(4), equaliser_db=12.0)
    assert out.shape == waves.shape and torch.isfinite(out).all()
    assert out.abs().amax(dim=1).min() > 0  # nothing filtered away


def test_reverb_off_leaves_the_sound_alone():
    waves = torch.randn(3, RATE, generator=torch.Generator().manual_seed(5))
    assert torch.equal(random_reverb(waves, RATE, 0.0, torch.Generator()), waves)


def test_reverb_keeps_the_direct_sound_and_adds_a_decaying_tail_after_it():
    """A click in a random room: the click itself, nothing before it, then a tail that dies
    away (quieter in its second tenth of a second than in its first)."""
    clicks = torch.zeros(64, RATE)
    clicks[:, 2000] = 1.0
    out = random_reverb(clicks, RATE, 1.0, torch.Generator().manual_seed(6))
    assert out.shape == clicks.shape
    assert torch.allclose(out[:, 2000], torch.ones(64))
    assert float(out[:, :2000].abs().max()) < 1e-5  # causal: no echo before the sound
    first = out[:, 2001:2801].pow(2).sum(dim=1)
    second = out[:, 2801:3601].pow(2).sum(dim=1)
    assert bool((first > 0).all()) and bool((second < first).all())
    # direct-to-reverberant ratio between 0 and 12 dB: the whole tail is at most the click
    tail = out[:, 2001:].pow(2).sum(dim=1)
    assert float(tail.max()) <= 1.0 + 1e-4 and float(tail.min()) >= 10 ** -1.2 * 0.5


def test_reverb_reaches_about_its_share_and_repeats_with_its_seed():
    waves = torch.randn(400, 800, generator=torch.Generator().manual_seed(7))
    first = random_reverb(waves, RATE, 0.5, torch.Generator().manual_seed(8))
    again = random_reverb(waves, RATE, 0.5, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    changed = (first - waves).abs().amax(dim=1) > 1e-6
    assert 0.4 < float(changed.float().mean()) < 0.6
