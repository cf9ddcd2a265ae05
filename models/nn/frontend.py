"""The log-spectrogram front end, part of the exported audio graph.

The short-time DFT is a fixed 1-D convolution (cosine and sine rows, Hann-windowed), which
exports to a single ONNX ``Conv`` and matches torch to float precision. The optional mel matrix
is a buffer. Each clip is referenced to its own peak and floored ``top_db`` below it, which
makes the features independent of recording gain. Pre-emphasis, a first-order high-pass on the
waveform, is applied as its power gain at each DFT bin, so it is folded into the mel matrix
(or into one gain vector without mels) and costs nothing at run time.

With ``pcen`` the log is replaced by per-channel energy normalisation (Wang et al., "Trainable
frontend for robust and far-field keyword spotting", 2017): each band's energy, floored
``top_db`` below the clip's peak, is divided by a power of its own exponentially smoothed past,
then root-compressed. The smoother is a first-order recursion over frames, written as one
fixed lower-triangular matrix so that the graph stays a plain ``MatMul``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.presets import AudioSpec


def dft_kernel(n_fft: int, win_length: int) -> torch.Tensor:
    """(2 * bins, 1, n_fft): windowed cosine rows then sine rows."""
    window = torch.zeros(n_fft, dtype=torch.float64)
    start = (n_fft - win_length) // 2
    window[start : start + win_length] = torch.hann_window(
        win_length, periodic=True, dtype=torch.float64
    )
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    phase = 2 * math.pi * bins * torch.arange(n_fft, dtype=torch.float64)[None, :] / n_fft
    kernel = torch.cat([torch.cos(phase) * window, -torch.sin(phase) * window])
    return kernel[:, None, :].float()


def lifter_matrix(bins: int, keep: int) -> torch.Tensor:
    """(bins, bins) smoothing across frequency: orthonormal DCT-II, keep the first ``keep``
    cepstral coefficients, invert. Removes the fine harmonic ripple (the pitch) of each frame."""
    n = torch.arange(bins, dtype=torch.float64)
    dct = torch.cos(math.pi / bins * (n[None, :] + 0.5) * n[:, None]) * math.sqrt(2.0 / bins)
    dct[0] /= math.sqrt(2.0)
    kept = dct[:keep]
    return (kept.T @ kept).float()


def pre_emphasis_gain(n_fft: int, coefficient: float) -> torch.Tensor:
    """(bins,) power gain of y[n] = x[n] - a x[n-1] at each DFT bin: |1 - a e^{-jw}|^2."""
    omega = torch.linspace(0, math.pi, n_fft // 2 + 1, dtype=torch.float64)
    return (1.0 - 2.0 * coefficient * torch.cos(omega) + coefficient**2).float()


PCEN_SMOOTHING = 0.025  # s: the smoother's weight on the new frame (a time constant of 0.4 s)
PCEN_ALPHA = 0.98  # the power of the smoothed energy that each frame is divided by
PCEN_DELTA = 2.0
PCEN_ROOT = 0.5


def smoother_matrix(frames: int, weight: float) -> torch.Tensor:
    """(frames, frames) A such that ``x @ A`` runs m[t] = (1 - w) m[t-1] + w x[t] over the last
    axis, started at m[0] = x[0]."""
    t = torch.arange(frames, dtype=torch.float64)
    lag = t[None, :] - t[:, None]  # column t, row j: t - j
    decay = (1.0 - weight) ** lag.clamp(min=0)
    matrix = torch.where(lag >= 0, weight * decay, torch.zeros(()))
    matrix[0] = decay[0]  # the starting value carries x[0] with full weight
    return matrix.float()


def mel_matrix(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """(n_mels, bins) triangular filters on the HTK mel scale, unit peak."""

    def to_mel(hz: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    def to_hz(mel: torch.Tensor) -> torch.Tensor:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = to_hz(torch.linspace(0, float(to_mel(torch.tensor(sample_rate / 2.0))), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class LogSpectrogram(nn.Module):
    """(batch, samples) waveform -> (batch, 1, bins, frames) log power in dB below the peak
    (or, with ``pcen``, per-channel energy normalised power; ``cmn`` is then not applied).
    With ``frame_norm``, (batch, 2, bins, frames): the second channel is each frame less its
    mean over the bins."""

    def __init__(self, spec: AudioSpec) -> None:
        super().__init__()
        self.hop_length = spec.hop_length
        self.num_dft_bins = spec.n_fft // 2 + 1
        self.top_db = spec.top_db
        self.cmn = spec.cmn
        self.frame_norm = spec.frame_norm
        self.register_buffer("kernel", dft_kernel(spec.n_fft, spec.win_length), persistent=False)
        mel = mel_matrix(spec.n_mels, spec.n_fft, spec.sample_rate) if spec.n_mels else None
        tilt = pre_emphasis_gain(spec.n_fft, spec.pre_emphasis) if spec.pre_emphasis else None
        if mel is not None and tilt is not None:
            mel, tilt = mel * tilt[None, :], None
        self.register_buffer("mel", mel, persistent=False)
        self.register_buffer("tilt", None if tilt is None else tilt[:, None], persistent=False)
        smooth = lifter_matrix(spec.num_bins, spec.lifter) if spec.lifter else None
        self.register_buffer("smooth", smooth, persistent=False)
        recursion = smoother_matrix(spec.num_frames, PCEN_SMOOTHING) if spec.pcen else None
        self.register_buffer("recursion", recursion, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.spectrogram(wave, exact_log=False)

    def spectrogram(self, wave: torch.Tensor, exact_log: bool) -> torch.Tensor:
        """``exact_log``: take the log in float64 (the exported graphs do). ONNX Runtime's float32
        Log splits a large tensor between its threads, and an element that falls in a thread's
        scalar tail rather than its vector body comes out an ulp apart: the same sound would
        embed differently in batches of different sizes. Its float64 Log has no such split."""
        spectrum = nn.functional.conv1d(wave[:, None, :], self.kernel, stride=self.hop_length)
        real, imag = spectrum[:, : self.num_dft_bins], spectrum[:, self.num_dft_bins :]
        power = real * real + imag * imag
        if self.tilt is not None:
            power = power * self.tilt
        if self.mel is not None:
            power = torch.matmul(self.mel, power)
        if self.recursion is not None:
            features = self.pcen(power)
        else:
            floored = power + 1e-10
            db = 10.0 * (torch.log10(floored.double()).float() if exact_log
                         else torch.log10(floored))
            peak = torch.amax(db, dim=(1, 2), keepdim=True)
            features = torch.clamp(db - peak, min=-self.top_db)
        if self.smooth is not None:
            features = torch.matmul(self.smooth, features)
        if self.cmn and self.recursion is None:  # PCEN has normalised each band itself
            features = features - features.mean(dim=2, keepdim=True)
        if self.frame_norm:
            shape = features - features.mean(dim=1, keepdim=True)
            return torch.stack([features, shape], dim=1)
        return features[:, None]

    def pcen(self, power: torch.Tensor) -> torch.Tensor:
        """(batch, bins, frames) power -> PCEN features: gain-free (each clip is referenced to its
        peak), floored ``top_db`` below it like the log path, then divided by its smoothed past."""
        peak = torch.amax(power, dim=(1, 2), keepdim=True)
        energy = torch.clamp(power / (peak + 1e-20), min=10.0 ** (-self.top_db / 10.0))
        smoothed = torch.matmul(energy, self.recursion)
        gain = energy / smoothed**PCEN_ALPHA
        return (gain + PCEN_DELTA) ** PCEN_ROOT - PCEN_DELTA**PCEN_ROOT
