"""Batch augmentations on tensors, drawn from one generator so a seeded run repeats exactly.

Images: a random zoom (down to the size of a digit in a 2x2 scene), shift and rotation;
brightness, contrast and saturation jitter; an optional horizontal flip. Audio: speed
perturbation (pitch and tempo together, a cheap stand-in for other voices), a time shift, an
optional random equaliser, optional room reverberation, gain jitter and light noise.
SpecAugment masks are applied inside the audio tower.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def augment_images(
    images: torch.Tensor, zoom_out: torch.Tensor, gen: torch.Generator, hflip: bool
) -> torch.Tensor:
    """float (B, 3, H, W) in [0, 1] -> augmented. ``zoom_out`` (B,) bool: allow strong zoom-out."""
    batch = len(images)
    scale = torch.where(zoom_out, _uniform(batch, 0.45, 1.1, gen), _uniform(batch, 0.85, 1.1, gen))
    angle = _uniform(batch, -12, 12, gen) * math.pi / 180
    room = (1.0 / scale - 1.0).clamp(min=0.0) + 0.1
    tx, ty = _uniform(batch, -1, 1, gen) * room, _uniform(batch, -1, 1, gen) * room
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    if hflip:
        flip = torch.rand(batch, generator=gen) < 0.5
        theta[flip, 0, :2] *= -1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)
    grey = out.mean(dim=1, keepdim=True)
    saturation = _uniform(batch, 0.6, 1.4, gen).view(-1, 1, 1, 1)
    out = grey + (out - grey) * saturation
    contrast = _uniform(batch, 0.7, 1.3, gen).view(-1, 1, 1, 1)
    brightness = _uniform(batch, -0.1, 0.1, gen).view(-1, 1, 1, 1)
    return (out * contrast + brightness).clamp(0.0, 1.0)


SPEED_RANGE = (0.75, 1.3)


def augment_waves(
    waves: torch.Tensor, sample_rate: int, gen: torch.Generator,
    speed_range: tuple[float, float] = SPEED_RANGE, equaliser_db: float = 0.0,
    reverb_share: float = 0.0,
) -> torch.Tensor:
    """float (B, T) -> augmented, same shape. ``equaliser_db``: see :func:`random_equaliser`;
    ``reverb_share``: see :func:`random_reverb`."""
    batch, length = waves.shape
    out = torch.empty_like(waves)
    speeds = _uniform(batch, *speed_range, gen)
    shifts = (_uniform(batch, -0.15, 0.15, gen) * sample_rate).long()
    for i in range(batch):
        resampled = F.interpolate(
            waves[i].view(1, 1, -1), scale_factor=1.0 / float(speeds[i]), mode="linear",
            align_corners=False, recompute_scale_factor=False,
        ).view(-1)
        out[i] = _centre(resampled, length).roll(int(shifts[i]))
    out = random_equaliser(out, sample_rate, equaliser_db, gen)
    out = random_reverb(out, sample_rate, reverb_share, gen)
    gain = 10 ** (_uniform(batch, -6, 6, gen) / 20).view(-1, 1)
    noisy = (torch.rand(batch, 1, generator=gen) < 0.5).float()
    snr = 10 ** (_uniform(batch, 20, 40, gen) / 20).view(-1, 1)
    rms = out.pow(2).mean(dim=1, keepdim=True).sqrt()
    noise = torch.randn(out.shape, generator=gen) * rms / snr * noisy
    return (out + noise) * gain


def random_equaliser(
    waves: torch.Tensor, sample_rate: int, max_db: float, gen: torch.Generator
) -> torch.Tensor:
    """float (B, T) -> each clip through its own random smooth filter, at most ``max_db`` of
    boost or cut: three cosines over log-frequency (50 Hz to Nyquist), which make tilts,
    shelves and broad bumps. Another microphone, room or voice colours a recording like this."""
    batch, length = waves.shape
    if max_db <= 0:
        return waves
    freqs = torch.fft.rfftfreq(length, 1.0 / sample_rate)
    position = torch.log(freqs.clamp(min=50.0) / 50.0) / math.log(sample_rate / 2 / 50.0)
    harmonics = torch.cos(math.pi * torch.arange(1, 4)[:, None] * position[None, :])  # (3, F)
    amplitude = _uniform(batch * 3, -1.0, 1.0, gen).view(batch, 3)
    curve = amplitude @ harmonics  # (B, F), within [-3, 3]
    gain_db = curve / 3.0 * max_db
    spectrum = torch.fft.rfft(waves, dim=1) * (10.0 ** (gain_db / 20.0))
    return torch.fft.irfft(spectrum, n=length, dim=1)


REVERB_TIME_S = (0.1, 0.6)  # RT60: a dry booth to a bare office
REVERB_RATIO_DB = (0.0, 12.0)  # direct sound over the reverberant tail


def random_reverb(
    waves: torch.Tensor, sample_rate: int, share: float, gen: torch.Generator
) -> torch.Tensor:
    """float (B, T) -> this share of the clips heard in a random room: each convolved with a
    synthetic impulse response (the direct sound, then exponentially decaying noise with a
    random RT60, at a random direct-to-reverberant ratio), the tail cut at the clip's end.
    Another room smears a word over time in a way no equaliser does."""
    batch, length = waves.shape
    if share <= 0:
        return waves
    taps = round(REVERB_TIME_S[1] * sample_rate)
    apply = torch.rand(batch, generator=gen) < share
    rt60 = _uniform(batch, *REVERB_TIME_S, gen).view(-1, 1)
    ratio_db = _uniform(batch, *REVERB_RATIO_DB, gen).view(-1, 1)
    t = torch.arange(1, taps, dtype=torch.float32)[None, :] / sample_rate
    tail = torch.randn(batch, taps - 1, generator=gen) * torch.exp(-6.91 * t / rt60)
    tail = tail / tail.norm(dim=1, keepdim=True) * 10 ** (-ratio_db / 20)
    response = torch.cat([torch.ones(batch, 1), tail], dim=1)
    size = length + taps
    heard = torch.fft.irfft(torch.fft.rfft(waves, n=size) * torch.fft.rfft(response, n=size),
                            n=size)[:, :length]
    return torch.where(apply[:, None], heard, waves)


def _centre(wave: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad a waveform to ``length`` about its centre."""
    if len(wave) >= length:
        start = (len(wave) - length) // 2
        return wave[start : start + length]
    pad = length - len(wave)
    return F.pad(wave, (pad // 2, pad - pad // 2))
