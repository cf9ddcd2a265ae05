"""The two embedding towers of AVE-Net (and AVOL-Net's per-location vision grid).

Each tower is four VGG-style blocks (conv3x3-BN-ReLU twice); the first conv has stride 2 and the
first three blocks end in a 2x2 max-pool, so a 224x224 frame gives a 14x14 map and 1 s of 48 kHz
audio a 16x12 map. The map is max-pooled over all locations, then fc-ReLU-fc and L2-normalised.
The vision tower applies the same two fc layers as 1x1 convolutions at every location: that grid
is what AVOL-Net compares with the audio embedding to localise the sound.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from models.nn.frontend import LogSpectrogram, lifter_matrix
from models.nn.tempo import stretch_time
from models.presets import Preset

IMAGE_MEAN = 0.5
IMAGE_STD = 0.25


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def vgg_trunk(in_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = in_channels
    for index, cout in enumerate(channels):
        layers += _conv_bn_relu(cin, cout, stride=2 if index == 0 else 1)
        layers += _conv_bn_relu(cout, cout)
        if index < len(channels) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = cout
    return nn.Sequential(*layers)


class ImageTower(nn.Module):
    """RGB in [0, 1], (batch, 3, H, W) -> (embedding (batch, D), grid (batch, D, h, w)).

    Both outputs are L2-normalised along D (the grid per location).
    """

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.trunk = vgg_trunk(3, preset.channels)
        self.fc1 = nn.Conv2d(preset.channels[-1], preset.hidden_dim, 1)
        self.fc2 = nn.Conv2d(preset.hidden_dim, preset.embed_dim, 1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(features)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk((image - IMAGE_MEAN) / IMAGE_STD)
        pooled = torch.amax(features, dim=(2, 3), keepdim=True)
        embedding = F.normalize(self.project(pooled).flatten(1), dim=1)
        grid = F.normalize(self.project(features), dim=1)
        return embedding, grid


class SpecAugment(nn.Module):
    """Training-only time and frequency masks on the log-spectrogram (a no-op in eval mode)."""

    def __init__(self, freq_width: int, time_width: int, masks: int = 2) -> None:
        super().__init__()
        self.freq_width, self.time_width, self.masks = freq_width, time_width, masks

    def set_widths(self, freq_width: int = -1, time_width: int = -1) -> None:
        """Set the widest masks (bins, frames); a negative width keeps the current one."""
        if freq_width >= 0:
            self.freq_width = freq_width
        if time_width >= 0:
            self.time_width = time_width

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return spec
        floor = spec.amin(dim=(2, 3), keepdim=True)
        batch, _, bins, frames = spec.shape
        keep = torch.ones_like(spec, dtype=torch.bool)
        for axis, size, width in ((2, bins, self.freq_width), (3, frames, self.time_width)):
            positions = torch.arange(size, device=spec.device)
            for _ in range(self.masks):
                length = torch.randint(0, min(width, size) + 1, (batch, 1), device=spec.device)
                start = (torch.rand(batch, 1, device=spec.device) * (size - length)).long()
                mask = (positions >= start) & (positions < start + length)
                shape = (batch, 1, size, 1) if axis == 2 else (batch, 1, 1, size)
                keep &= ~mask.view(shape)
        return torch.where(keep, spec, floor)


def stretch_frequency(spec: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(B, 1, bins, frames) -> the frequency axis (rows) stretched about the lowest bin by
    ``factor`` (B,); rows stretched in from beyond the top are zero."""
    batch = spec.shape[0]
    theta = torch.zeros(batch, 2, 3, device=spec.device)
    theta[:, 0, 0] = 1.0  # time axis unchanged
    theta[:, 1, 1] = 1.0 / factor
    theta[:, 1, 2] = 1.0 / factor - 1.0
    grid = F.affine_grid(theta, list(spec.shape), align_corners=True)
    return F.grid_sample(spec, grid, padding_mode="zeros", align_corners=True)


def _random_factors(batch: int, max_warp: float, device: torch.device) -> torch.Tensor:
    return 1.0 + (torch.rand(batch, device=device) * 2 - 1) * max_warp


class FrequencyWarp(nn.Module):
    """Training-only vocal-tract-length perturbation: stretch the frequency axis by a random
    factor in [1 - max_warp, 1 + max_warp] per clip (a no-op in eval mode)."""

    def __init__(self, max_warp: float) -> None:
        super().__init__()
        self.max_warp = max_warp

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_warp <= 0:
            return spec
        factor = _random_factors(spec.shape[0], self.max_warp, spec.device)
        floor = spec.amin(dim=(2, 3), keepdim=True)
        return stretch_frequency(spec - floor, factor) + floor


class TimeStretch(nn.Module):
    """Training-only tempo perturbation: stretch the time axis by a log-uniform random factor in
    [1 / max_tempo, max_tempo] per clip, the pitch and the formants kept. Speed perturbation
    moves tempo and pitch together; speakers' tempos differ on their own, by 1.7x between the
    four voices of the digits data (docs/benchmarks.md, "Tempo"). A no-op in eval mode."""

    def __init__(self, max_tempo: float) -> None:
        super().__init__()
        self.max_tempo = max_tempo

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_tempo <= 1.0:
            return spec
        span = math.log(self.max_tempo)
        factor = torch.exp((torch.rand(spec.shape[0], device=spec.device) * 2 - 1) * span)
        return stretch_time(spec, factor, torch.zeros_like(factor))


class PitchWarp(nn.Module):
    """Training-only: another pitch over the same vocal tract. Each frame's spectrum is split
    into its envelope (the first ``keep`` cepstral coefficients: the formants) and the ripple
    left over (the pitch harmonics); only the ripple is stretched along frequency, by a random
    factor in [1 - max_warp, 1 + max_warp] per clip. Speed perturbation and
    :class:`FrequencyWarp` move pitch and formants together; voices differ in each on its own.
    A no-op in eval mode."""

    def __init__(self, bins: int, max_warp: float, keep: int = 20) -> None:
        super().__init__()
        self.max_warp = max_warp
        self.register_buffer("envelope", lifter_matrix(bins, min(keep, bins)), persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_warp <= 0:
            return spec
        envelope = torch.matmul(self.envelope, spec)
        factor = _random_factors(spec.shape[0], self.max_warp, spec.device)
        return envelope + stretch_frequency(spec - envelope, factor)


class MixStyle(nn.Module):
    """Training-only: in a share ``p`` of the batches, each clip's per-channel feature mean and
    spread are replaced by a random mix of its own and another clip's (MixStyle, Zhou et al.,
    ICLR 2021). Early feature statistics carry the voice and the recording rather than the word,
    so mixing them makes up voices the batch does not hold. A no-op in eval mode."""

    def __init__(self, p: float = 0.0, alpha: float = 0.1) -> None:
        super().__init__()
        self.p, self.alpha = p, alpha

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0 or float(torch.rand(())) >= self.p:
            return features
        batch = features.shape[0]
        mean = features.mean(dim=(2, 3), keepdim=True).detach()
        std = (features.var(dim=(2, 3), keepdim=True) + 1e-6).sqrt().detach()
        mix = torch.distributions.Beta(self.alpha, self.alpha).sample((batch, 1, 1, 1))
        mix = mix.to(features.device)
        other = torch.randperm(batch, device=features.device)
        mixed_mean = mix * mean + (1 - mix) * mean[other]
        mixed_std = mix * std + (1 - mix) * std[other]
        return (features - mean) / std * mixed_std + mixed_mean


class AudioTower(nn.Module):
    """Mono waveform (batch, samples) at the preset rate -> L2-normalised embedding (batch, D)."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        audio = preset.audio
        self.frontend = LogSpectrogram(audio)
        self.pitch_warp = PitchWarp(audio.num_bins, audio.pitch_warp)
        self.freq_warp = FrequencyWarp(audio.max_warp)
        self.time_stretch = TimeStretch(audio.max_tempo)
        self.spec_augment = SpecAugment(*audio.mask_widths)
        inputs = 2 if audio.frame_norm else 1
        self.input_norm = nn.BatchNorm2d(inputs)
        self.trunk = vgg_trunk(inputs, preset.audio_widths)
        # MixStyle (off unless training sets its share) after each of the first two blocks.
        pools = [i for i, layer in enumerate(self.trunk) if isinstance(layer, nn.MaxPool2d)]
        self.mix_after = frozenset(pools[:2])
        self.mixstyle = MixStyle()
        self.head_dropout = 0.0  # training only: dropout on the pooled trunk (set by training)
        self.pooling = audio.pooling
        pooled_dim = preset.audio_widths[-1] * (2 if audio.pooling == "meanmax" else 1)
        self.fc1 = nn.Linear(pooled_dim, preset.hidden_dim)
        self.fc2 = nn.Linear(preset.hidden_dim, preset.embed_dim)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, bins, frames) -> (B, C) or, with ``meanmax``, (B, 2C)."""
        peak = torch.amax(features, dim=(2, 3))
        if self.pooling == "meanmax":
            return torch.cat([peak, features.mean(dim=(2, 3))], dim=1)
        return peak

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.embed(self.augment(self.frontend(wave)))

    def augment(self, spec: torch.Tensor) -> torch.Tensor:
        """The training-only changes of the spectrogram (each a no-op in eval mode)."""
        spec = self.time_stretch(self.pitch_warp(spec))
        return self.spec_augment(self.freq_warp(spec))

    def embed(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, C, bins, frames) spectrogram -> L2-normalised embedding (B, D)."""
        return self.head(self.features(spec))

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, C, bins, frames) spectrogram -> the trunk's pooled map (B, C') before the head."""
        features = self.input_norm(spec)
        for index, layer in enumerate(self.trunk):
            features = layer(features)
            if index in self.mix_after:
                features = self.mixstyle(features)
        return self.pool(features)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """The pooled map -> the L2-normalised embedding shared with the image tower."""
        if self.training and self.head_dropout > 0:
            pooled = F.dropout(pooled, self.head_dropout, training=True)
        return F.normalize(self.fc2(F.relu(self.fc1(pooled))), dim=1)
