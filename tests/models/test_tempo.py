"""Tempo normalisation in the audio graph: each sound's heard part stretched to one duration."""

import numpy as np
import pytest
import torch

from models.nn.frontend import LogSpectrogram
from models.nn.tempo import MAX_STRETCH, active_span, normalise_tempo, typical_duration
from models.presets import DIGITS

RATE, HOP, N_FFT = 8000, DIGITS.audio.hop_length, DIGITS.audio.n_fft


def burst(seconds: float, centre_s: float = 0.5, freq: float = 700.0) -> torch.Tensor:
    """A tone heard for ``seconds`` about ``centre_s`` in 1 s of near silence."""
    t = torch.arange(RATE) / RATE
    on = ((t - centre_s).abs() < seconds / 2).float()
    return (0.5 * on * torch.sin(2 * torch.pi * freq * t) + 1e-4 * torch.randn(RATE))[None]


def heard_frames(spec: torch.Tensor) -> torch.Tensor:
    """Spectrogram frames (of the first channel) whose loudest band is within 10 dB of the top."""
    loudness = spec[0, 0].amax(dim=0)
    return (loudness > loudness.max() - 10).nonzero().flatten().float()


def test_active_span_measures_the_heard_part_and_where_it_is():
    count, centre = active_span(burst(0.2, centre_s=0.4), HOP)
    assert float(count[0]) * HOP / RATE == pytest.approx(0.2, abs=0.02)
    assert float(centre[0]) / RATE == pytest.approx(0.4, abs=0.01)


@pytest.mark.parametrize(("seconds", "target"), [(0.25, 0.4), (0.5, 0.3)])
def test_a_sound_is_stretched_to_the_target_about_where_it_is_heard(seconds, target):
    wave = burst(seconds, centre_s=0.45)
    frontend = LogSpectrogram(DIGITS.audio)
    spec = frontend(wave)
    before, after = heard_frames(spec), heard_frames(normalise_tempo(spec, wave, HOP, N_FFT,
                                                                     RATE, target))
    assert len(before) * HOP / RATE == pytest.approx(seconds, abs=0.03)
    assert len(after) * HOP / RATE == pytest.approx(target, abs=0.03)
    assert float(after.mean()) == pytest.approx(float(before.mean()), abs=1.5)  # same place


def test_the_stretch_is_bounded_and_pitch_is_kept():
    wave = burst(0.1)
    frontend = LogSpectrogram(DIGITS.audio)
    spec = frontend(wave)
    out = normalise_tempo(spec, wave, HOP, N_FFT, RATE, 1.0)  # 10x asked, MAX_STRETCH given
    assert len(heard_frames(out)) == pytest.approx(len(heard_frames(spec)) * MAX_STRETCH, abs=2)
    band = lambda s: int(s[0, 0, :, int(heard_frames(s).mean())].argmax())  # noqa: E731
    assert band(out) == band(spec)  # the tone stays in its band


def test_each_sound_is_stretched_alone_and_the_typical_duration_is_the_median():
    waves = torch.cat([burst(0.15), burst(0.3), burst(0.45)])
    frontend = LogSpectrogram(DIGITS.audio)
    together = normalise_tempo(frontend(waves), waves, HOP, N_FFT, RATE, 0.3)
    for i in range(3):
        alone = normalise_tempo(frontend(waves[i : i + 1]), waves[i : i + 1], HOP, N_FFT, RATE,
                                0.3)
        assert torch.allclose(together[i : i + 1], alone, atol=1e-5)
    assert typical_duration(waves, HOP, RATE) == pytest.approx(0.3, abs=0.02)
    silent = torch.zeros(1, RATE)  # nothing heard: no division by zero, nothing made up
    assert torch.isfinite(normalise_tempo(frontend(silent + 1e-6), silent, HOP, N_FFT, RATE,
                                          0.3)).all()
    assert np.isfinite(typical_duration(silent, HOP, RATE))
