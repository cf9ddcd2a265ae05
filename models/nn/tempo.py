"""Tempo normalisation: each sound's spectrogram stretched in time so that the part of it that
is heard lasts a set duration, the pitch kept.

Speakers say the same word at different tempos: over all ten words the heard part of a spoken
digit lasts a median 0.27-0.45 s by speaker in the digits data (1.7x apart), and one word's
medians lie further apart still (0.15-0.62 s over the words and speakers), beyond the tempo
that training's speed perturbation covers. Stretching every sound to the training sounds'
typical duration before the tower takes away most of that difference (docs/benchmarks.md,
"Tempo"). Everything here is fixed arithmetic on the batch, so it exports to ONNX (``GridSample``
for the stretch) and each sound is computed alone.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

ACTIVE_DB = 30.0  # a frame is heard when its energy is within this many dB of the clip's loudest
MAX_STRETCH = 1.7  # the most a sound is drawn out or compressed (x or 1/x)


def active_span(wave: torch.Tensor, hop: int, active_db: float = ACTIVE_DB
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, samples) -> (heard frames, their mean position in samples), each (B,): frames of
    ``hop`` samples whose energy is within ``active_db`` of the clip's loudest frame."""
    frames = wave[:, : wave.shape[1] // hop * hop].reshape(wave.shape[0], -1, hop)
    energy_db = 10.0 * torch.log10(frames.pow(2).mean(dim=2) + 1e-10)
    active = (energy_db > energy_db.amax(dim=1, keepdim=True) - active_db).float()
    count = active.sum(dim=1)
    starts = torch.arange(active.shape[1], dtype=wave.dtype, device=wave.device) * hop
    centre = (active * starts).sum(dim=1) / count.clamp(min=1.0) + hop / 2
    return count, centre


def normalise_tempo(spec: torch.Tensor, wave: torch.Tensor, hop: int, n_fft: int,
                    sample_rate: int, target_s: float) -> torch.Tensor:
    """(B, C, bins, frames) spectrogram of ``wave`` (B, samples) -> its time axis stretched
    about the centre of the heard part so that the heard part lasts ``target_s`` seconds.
    Frames drawn from beyond either end repeat the end frame (silence, in a centred clip)."""
    frames = spec.shape[3]
    count, centre_sample = active_span(wave, hop)
    factor = (target_s / (count.clamp(min=1.0) * hop / sample_rate)).clamp(
        1.0 / MAX_STRETCH, MAX_STRETCH)
    # Spectrogram frame t covers samples [t * hop, t * hop + n_fft): its centre is n_fft / 2 on.
    centre = (centre_sample - n_fft / 2) / hop / (frames - 1) * 2.0 - 1.0  # in [-1, 1]
    return stretch_time(spec, factor, centre)


def stretch_time(spec: torch.Tensor, factor: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """(B, C, bins, frames) -> the time axis stretched by ``factor`` (B,) about ``centre`` (B,),
    a position in [-1, 1] over the frames: a factor above 1 draws the sound out; frames drawn
    from beyond either end repeat the end frame. The grid is plain arithmetic, so it exports."""
    batch, _, bins, frames = spec.shape
    out_x = torch.linspace(-1.0, 1.0, frames, dtype=spec.dtype, device=spec.device)
    source_x = centre[:, None] + (out_x[None, :] - centre[:, None]) / factor[:, None]  # (B, T)
    out_y = torch.linspace(-1.0, 1.0, bins, dtype=spec.dtype, device=spec.device)
    grid = torch.stack([source_x[:, None, :].expand(batch, bins, frames),
                        out_y[None, :, None].expand(batch, bins, frames)], dim=3)
    return F.grid_sample(spec, grid, mode="bilinear", padding_mode="border", align_corners=True)


def typical_duration(waves: torch.Tensor, hop: int, sample_rate: int) -> float:
    """The median heard duration (s) of ``waves`` (N, samples): the target of
    :func:`normalise_tempo` when measured on the training sounds."""
    count, _ = active_span(waves, hop)
    return float(count.median()) * hop / sample_rate
