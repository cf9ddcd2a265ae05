"""Synthetic sounds that belong to no image: the negatives that teach the towers "none of these".

Trained only on sounds that come with something on screen, the audio tower maps any sound
(a hiss, a hum) near some image, so a search for it always finds confident hits and a scene
always lights up. Each batch adds a few such sounds, never a positive of anything: bursts of
white, pink or brown noise, steady tones and chirps, between silences, at random levels. They
enter the losses only as negatives (InfoNCE columns, AVC and MIL negative pairs), so no label
is read. What they cover is that family of signals, not every unrelated sound.
"""

from __future__ import annotations

import math

import torch


def _uniform(low: float, high: float, gen: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand(1, generator=gen))


def _coloured_noise(length: int, colour: int, gen: torch.Generator) -> torch.Tensor:
    """White (0), pink (1, by a cheap first-order filter) or brown (2) noise, unit RMS."""
    white = torch.randn(length, generator=gen)
    if colour == 1:
        kernel = torch.tensor([0.5 ** i for i in range(16)])
        white = torch.nn.functional.conv1d(white.view(1, 1, -1), kernel.flip(0).view(1, 1, -1),
                                           padding=15).view(-1)[:length]
    elif colour == 2:
        white = torch.cumsum(white, 0)
        white = white - torch.linspace(float(white[0]), float(white[-1]), length)
    return white / white.pow(2).mean().sqrt().clamp(min=1e-8)


def _tone(length: int, sample_rate: int, gen: torch.Generator) -> torch.Tensor:
    """A steady tone or a linear chirp between 80 Hz and 0.45 of the sample rate."""
    top = 0.45 * sample_rate
    start, end = _uniform(80.0, top, gen), _uniform(80.0, top, gen)
    if float(torch.rand(1, generator=gen)) < 0.5:
        end = start
    t = torch.arange(length) / sample_rate
    phase = 2 * math.pi * (start * t + 0.5 * (end - start) / max(t[-1].item(), 1e-6) * t * t)
    return torch.sin(phase) * math.sqrt(2.0)


def distractor_waves(count: int, samples: int, sample_rate: int,
                     gen: torch.Generator) -> torch.Tensor:
    """(count, samples) float32: one burst each, 10-90% of the window long, silence around it."""
    out = torch.zeros(count, samples)
    fade = max(1, sample_rate // 200)
    for row in range(count):
        length = max(2 * fade + 1, int(_uniform(0.1, 0.9, gen) * samples))
        start = int(_uniform(0.0, 1.0, gen) * (samples - length))
        kind = int(torch.randint(4, (1,), generator=gen))
        burst = _tone(length, sample_rate, gen) if kind == 3 else _coloured_noise(length, kind,
                                                                                     gen)
        envelope = torch.ones(length)
        ramp = torch.linspace(0.0, 1.0, fade)
        envelope[:fade], envelope[-fade:] = ramp, ramp.flip(0)
        level = 10 ** _uniform(-2.0, -0.5, gen)  # RMS from 0.01 to 0.32
        out[row, start : start + length] = burst * envelope * level
    return out
