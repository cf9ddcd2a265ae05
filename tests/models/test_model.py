"""Model contract tests, over every preset: shapes, normalisation, gradients, losses."""

import pytest
import torch

from models.nn.losses import (
    alike_negatives,
    avc_loss,
    infonce_loss,
    mil_loss,
    neighbour_targets,
    roll_negatives,
)
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


def _two_kinds_of_image() -> torch.Tensor:
    """Four unit embeddings: items 0 and 2 alike, items 1 and 3 alike, the kinds orthogonal."""
    a, b = torch.eye(8)[0], torch.eye(8)[1]
    return torch.stack([a, b, a + 0.1 * torch.eye(8)[2], b]).div_(1.005).renorm(2, 0, 1)


def test_neighbour_targets_share_mass_with_alike_images_only():
    images = torch.nn.functional.normalize(_two_kinds_of_image(), dim=1)
    assert torch.equal(neighbour_targets(images, 0.0, 0.1), torch.eye(4))
    targets = neighbour_targets(images, 0.5, 0.1)
    assert torch.allclose(targets.sum(dim=1), torch.ones(4))
    # Item 0's target: itself and its look-alike (item 2); nothing for the other kind.
    assert targets[0, 0] > 0.5 and targets[0, 2] > 0.2
    assert targets[0, 1] < 1e-3 and targets[0, 3] < 1e-3
    assert not targets.requires_grad


def _alike_sounds_after_a_step(targets: torch.Tensor | None) -> float:
    """Cosine of sounds 0 and 2 (of alike images, equal at the start) after one gradient step
    on the sounds, each step in its own random direction first so they can drift apart."""
    model = AVModel(DIGITS)
    images = torch.nn.functional.normalize(_two_kinds_of_image(), dim=1)
    start = torch.eye(8)[[0, 1, 0, 1]] + 0.05 * torch.randn(4, 8, generator=torch.Generator()
                                                            .manual_seed(0))
    sounds = start.clone().requires_grad_(True)
    loss = infonce_loss(model, images, torch.nn.functional.normalize(sounds, dim=1),
                        targets=targets)
    loss.backward()
    moved = torch.nn.functional.normalize((sounds - 2.0 * sounds.grad).detach(), dim=1)
    return float(moved[0] @ moved[2])


def test_neighbour_targets_stop_pushing_apart_the_sounds_of_alike_images():
    """Plain InfoNCE treats the sound of an alike image as a negative and drives the two
    sounds apart; with neighbour targets they stay together."""
    images = torch.nn.functional.normalize(_two_kinds_of_image(), dim=1)
    plain = _alike_sounds_after_a_step(None)
    soft = _alike_sounds_after_a_step(neighbour_targets(images, 1.0, 0.1))
    assert soft > plain + 0.01


def test_infonce_with_targets_and_sounds_of_no_image():
    model = AVModel(DIGITS)
    images = torch.nn.functional.normalize(_two_kinds_of_image(), dim=1)
    sounds = torch.nn.functional.normalize(torch.eye(8)[[0, 1, 0, 1]], dim=1)
    targets = neighbour_targets(images, 0.5, 0.1)
    alone = infonce_loss(model, images, sounds, targets=targets)
    extra = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    with_extra = infonce_loss(model, images, sounds, extra, targets)
    assert torch.isfinite(with_extra) and with_extra > alone  # more negatives, never targets


def _frames(cells: list[list[int]]) -> torch.Tensor:
    """(B, 8, 2, 2) grids of one-hot features: frame b shows objects ``cells[b]`` in its cells."""
    return torch.eye(8)[torch.tensor(cells)].view(len(cells), 2, 2, 8).permute(0, 3, 1, 2)


def test_alike_negatives_flag_a_sound_whose_source_the_other_frame_shows():
    # Frame 0 shows objects 0-3 and sounds like 0; frame 1 shows 4 and 5, sounds like 4;
    # frame 2 shows 0, 6 and 7, sounds like 6. Rolled by one: frame 0 hears 4, frame 1
    # hears 6, frame 2 hears 0 -- which it shows.
    grid = _frames([[0, 1, 2, 3], [4, 4, 5, 5], [0, 6, 6, 7]])
    sounds = torch.nn.functional.normalize(torch.eye(8)[[0, 4, 6]] + 0.2 * torch.eye(8)[7], dim=1)
    negatives = torch.tensor([1, 2, 0])
    assert alike_negatives(grid, sounds, negatives, 0.7).tolist() == [False, False, True]
    # The sound's source is read off its own frame (the cell it matches best), not the sound.
    assert alike_negatives(grid, sounds, negatives, 0.99).tolist() == [False, False, True]
    assert not alike_negatives(grid, sounds, negatives, 1.0).any()  # no cosine exceeds 1


def test_mil_loss_leaves_out_skipped_negatives():
    model = AVModel(DIGITS)
    grid = _frames([[0, 1, 2, 3], [4, 4, 5, 5], [0, 6, 6, 7]])
    sounds = torch.eye(8)[[0, 4, 6]]
    negatives = torch.tensor([1, 2, 0])
    none = torch.zeros(3, dtype=torch.bool)
    assert torch.equal(mil_loss(model, grid, sounds, negatives),
                       mil_loss(model, grid, sounds, negatives, skip=none))
    skipped = mil_loss(model, grid, sounds, negatives, skip=torch.tensor([False, False, True]))
    logits = torch.cat([model.avol(grid, sounds), model.avol(grid[:2], sounds[[1, 2]])])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(skipped, expected)
    # The false negative (frame 2 does show object 0) is what made the plain loss larger.
    assert skipped < mil_loss(model, grid, sounds, negatives)


def test_mixstyle_mixes_each_clips_feature_statistics_with_another_only_in_training():
    """Every channel's mean and spread end up between the clip's own and some other clip's;
    the pattern within each channel (the word) is kept; eval mode and p = 0 change nothing."""
    from models.nn.towers import MixStyle

    torch.manual_seed(1)
    features = torch.randn(6, 4, 5, 7) * torch.arange(1, 7).view(6, 1, 1, 1) + torch.arange(
        6.0).view(6, 1, 1, 1)
    mix = MixStyle(p=1.0).train()
    out = mix(features)
    mean, out_mean = features.mean(dim=(2, 3)), out.mean(dim=(2, 3))
    assert float(out_mean.min()) >= float(mean.min()) - 1e-4
    assert float(out_mean.max()) <= float(mean.max()) + 1e-4
    assert not torch.allclose(out, features)
    normalise = lambda x: (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True)  # noqa: E731
    assert torch.allclose(normalise(out), normalise(features), atol=1e-3)
    assert torch.equal(mix.eval()(features), features)
    assert torch.equal(MixStyle(p=0.0).train()(features), features)


def test_audio_tower_with_mixstyle_trains_and_embeds_the_same_in_eval():
    torch.manual_seed(2)
    model = AVModel(DIGITS)
    waves = torch.randn(4, DIGITS.audio.num_samples) * 0.1
    model.eval()
    before = model.audio(waves)
    model.audio.mixstyle.p = 1.0
    assert torch.equal(model.audio(waves), before)  # eval: no mixing
    model.train()
    model.audio(waves).sum().backward()
    assert model.audio.trunk[0].weight.grad is not None


def _dominant_period(rows: torch.Tensor) -> float:
    """The period, in bins, of the strongest ripple of a (bins,) profile."""
    spectrum = torch.fft.rfft(rows - rows.mean()).abs()
    spectrum[0] = 0
    return len(rows) / int(torch.argmax(spectrum))


def test_pitch_warp_moves_the_harmonics_and_keeps_the_envelope():
    """A frame of harmonics (a ripple of period 4 bins, finer than the 20 cepstral coefficients
    of the envelope keep) over a formant bump: the warp changes
    the ripple's period by its factor and leaves the envelope where it was; FrequencyWarp, by
    contrast, moves the envelope too. Eval mode and R = 0 change nothing."""
    from models.nn.towers import FrequencyWarp, PitchWarp

    bins = torch.arange(64.0)
    envelope = 20 * torch.exp(-((bins - 20) / 8) ** 2)
    frame = envelope + 3 * torch.cos(2 * torch.pi * bins / 4)
    spec = frame.view(1, 1, 64, 1).repeat(3, 1, 1, 5)
    warp = PitchWarp(64, 0.3).train()
    torch.manual_seed(5)
    factors = 1.0 + (torch.rand(3) * 2 - 1) * 0.3
    torch.manual_seed(5)
    out = warp(spec)
    smooth = warp.envelope
    for clip in range(3):
        column = out[clip, 0, :, 2]
        kept = smooth @ column
        assert torch.allclose(kept[:40], (smooth @ frame)[:40], atol=0.6)
        period = _dominant_period((column - kept)[:40])
        assert period == pytest.approx(4 * float(factors[clip]), rel=0.12)
    moved = FrequencyWarp(0.3).train()(spec)
    assert not torch.allclose(smooth @ moved[0, 0, :, 2], smooth @ frame, atol=0.6)
    assert torch.equal(warp.eval()(spec), spec)
    assert torch.equal(PitchWarp(64, 0.0).train()(spec), spec)


def test_time_stretch_draws_a_word_out_about_the_centre_and_keeps_its_bands():
    from models.nn.tempo import stretch_time
    from models.nn.towers import TimeStretch

    spec = torch.zeros(1, 1, 4, 101)
    spec[0, 0, 2, 40:61] = 1.0  # a 21-frame "word" in band 2, centred
    longer = stretch_time(spec, torch.tensor([1.5]), torch.zeros(1))[0, 0]
    assert torch.equal(longer[[0, 1, 3]], torch.zeros(3, 101))  # the other bands stay silent
    active = (longer[2] > 0.5).nonzero().flatten()
    assert 29 <= len(active) <= 33 and abs(float(active.float().mean()) - 50.0) <= 1.0
    stretch = TimeStretch(1.6)
    assert torch.equal(stretch.eval()(spec), spec)  # training only
    out = stretch.train()(spec.repeat(8, 1, 1, 1))
    lengths = (out[:, 0, 2] > 0.5).sum(dim=1)
    assert int(lengths.min()) >= 12 and int(lengths.max()) <= 35


def test_spec_augment_masks_no_wider_than_its_widths_and_only_in_training():
    """Each masked band and span is at most its width; up to two of each; 0 turns one off;
    ``set_widths`` with a negative width keeps the current one."""
    from models.nn.towers import SpecAugment

    torch.manual_seed(3)
    spec = torch.rand(64, 1, 64, 97) + 1.0
    spec[:, :, 0, 0] = 0.0  # each clip's floor, the value a mask writes
    masks = SpecAugment(8, 9)
    assert torch.equal(masks.eval()(spec), spec)
    masks.set_widths(16, -1)
    assert (masks.freq_width, masks.time_width) == (16, 9)
    masks.set_widths(-1, 0)
    out = masks.train()(spec)
    floored = (out < 0.5)[:, :, 1:, 1:]  # masked, the floor's own corner left out
    whole_bands = floored.all(dim=3).squeeze(1)  # (clips, bins): a band masked over all frames
    assert torch.equal(floored, whole_bands[:, None, :, None].expand_as(floored))  # no spans
    widest = int(whole_bands.sum(dim=1).max())
    assert 2 * 8 < widest <= 2 * 16  # two masks, each up to the new width
    masks.set_widths(0, 20)
    out = masks(spec)
    floored = (out < 0.5)[:, :, 1:, 1:]
    whole_spans = floored.all(dim=2).squeeze(1)  # (clips, frames)
    assert torch.equal(floored, whole_spans[:, None, None, :].expand_as(floored))  # no bands
    widest = int(whole_spans.sum(dim=1).max())
    assert 2 * 9 < widest <= 2 * 20


def test_head_dropout_acts_only_in_training_and_costs_no_randomness_when_off():
    model = AVModel(DIGITS)
    pooled = torch.rand(4, model.audio.fc1.in_features)
    model.audio.train()
    state = torch.get_rng_state()
    plain = model.audio.head(pooled)
    assert torch.equal(torch.get_rng_state(), state)  # off: the seed's stream is untouched
    model.audio.head_dropout = 0.5
    dropped = model.audio.head(pooled)
    assert not torch.allclose(dropped, plain)
    model.audio.eval()
    assert torch.equal(model.audio.head(pooled), plain)  # eval: as without it


def test_warm_ema_is_the_mean_until_its_decay_then_the_moving_average():
    import torch

    from models.training.loop import warm_ema

    update = warm_ema(0.75)  # the mean of the first four steps, then a decay of 0.75
    averaged = [torch.zeros(2)]
    steps = [torch.full((2,), float(value)) for value in (1, 2, 3, 4, 5)]
    averaged[0].copy_(steps[0])  # AveragedModel copies the first step's weights
    for count, current in enumerate(steps[1:], start=1):
        update(averaged, [current], torch.tensor(count))
        if count < 3:
            assert torch.allclose(averaged[0], torch.stack(steps[: count + 1]).mean(0))
    # After the mean of 1..4 (2.5), step 5 enters with weight 0.25: 0.75 * 2.5 + 0.25 * 5.
    assert torch.allclose(averaged[0], torch.full((2,), 3.125))
    counts = [torch.tensor([3])]
    update(counts, [torch.tensor([9])], torch.tensor(5))
    assert counts[0].item() == 9  # an integer buffer takes the latest value
