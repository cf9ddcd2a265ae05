"""The log-spectrogram front end: the shape the design fixes, and agreement with torch.stft."""

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.export import _export, parity
from models.nn.frontend import (
    LogSpectrogram,
    lifter_matrix,
    mel_matrix,
    pre_emphasis_gain,
    smoother_matrix,
)
from models.presets import DIGITS, PAPER, AudioSpec


@pytest.mark.parametrize(("preset", "shape"), [(PAPER, (257, 198)), (DIGITS, (64, 97))])
def test_one_second_gives_the_designed_shape(preset, shape):
    wave = torch.randn(2, preset.audio.sample_rate) * 0.1
    spec = LogSpectrogram(preset.audio)(wave)
    assert spec.shape == (2, 1, *shape)
    assert (preset.audio.num_bins, preset.audio.num_frames) == shape


def test_dft_convolution_matches_torch_stft():
    audio = AudioSpec(sample_rate=48_000, window_s=1.0, n_fft=512, win_length=480,
                      hop_length=240, n_mels=None, top_db=200.0)
    wave = torch.randn(1, 48_000, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    ours = LogSpectrogram(audio)(wave)[0, 0]
    window = torch.zeros(512)
    window[16:496] = torch.hann_window(480)
    stft = torch.stft(wave, 512, 240, window=window, center=False, return_complex=True)[0]
    reference = 10 * torch.log10(stft.abs() ** 2 + 1e-10)
    reference = reference - reference.max()
    # Within the 80 dB below the peak that the presets keep: deeper, a float32 power is too
    # small for its decibels to agree to 1e-3 (an unseeded wave failed there once in a while).
    kept = reference > -80.0
    assert bool(kept.float().mean() > 0.99)
    assert torch.allclose(ours[kept], reference[kept], atol=1e-3)


def test_gain_does_not_change_the_features():
    wave = torch.randn(1, 8000) * 0.05
    frontend = LogSpectrogram(DIGITS.audio)
    assert torch.allclose(frontend(wave), frontend(wave * 7.0), atol=1e-3)


def test_a_tone_peaks_in_its_band():
    t = np.arange(8000) / 8000
    wave = torch.tensor(np.sin(2 * np.pi * 1000 * t), dtype=torch.float32)[None]
    spec = LogSpectrogram(replace(DIGITS.audio, cmn=False))(wave)[0, 0].mean(dim=1)
    mel = mel_matrix(64, 256, 8000)
    centre_bin = int(torch.argmax(mel[:, 32]))  # FFT bin 32 is 1 kHz at n_fft 256, 8 kHz
    assert abs(int(torch.argmax(spec)) - centre_bin) <= 1


def test_band_mean_normalisation_removes_a_steady_colour():
    """CMN: a stationary sound has no content left once each band's mean over time is removed."""
    t = np.arange(8000) / 8000
    wave = torch.tensor(np.sin(2 * np.pi * 700 * t), dtype=torch.float32)[None]
    spec = LogSpectrogram(DIGITS.audio)(wave)[0, 0]
    assert DIGITS.audio.cmn
    assert torch.allclose(spec.mean(dim=1), torch.zeros(spec.shape[0]), atol=1e-3)
    assert spec.abs().max() < 1.0


def test_the_lifter_keeps_the_envelope_and_removes_the_harmonic_ripple():
    """Liftering is a rank-``keep`` orthogonal projection across frequency: a slow envelope
    passes unchanged, the fast ripple that pitch harmonics draw across the bands does not."""
    smooth = lifter_matrix(64, 20)
    assert torch.allclose(smooth, smooth.T, atol=1e-6)
    assert torch.allclose(smooth @ smooth, smooth, atol=1e-5)
    assert round(float(torch.trace(smooth))) == 20
    bands = torch.arange(64, dtype=torch.float32)
    envelope = torch.cos(np.pi / 64 * (bands + 0.5) * 3)  # cepstral coefficient 3
    ripple = torch.cos(np.pi / 64 * (bands + 0.5) * 40)  # coefficient 40: pitch-like detail
    assert torch.allclose(smooth @ envelope, envelope, atol=1e-5)
    assert float((smooth @ ripple).abs().max()) < 1e-5


def test_a_liftered_front_end_exports_with_parity():
    """The lifter is one more MatMul in the ONNX graph; ONNX Runtime agrees with torch."""
    frontend = LogSpectrogram(replace(DIGITS.audio, lifter=20)).eval()
    waves = (np.random.default_rng(0).standard_normal((2, 8000)) * 0.1).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frontend.onnx"
        _export(frontend, torch.from_numpy(waves), path, "audio", ["spectrogram"])
        assert parity(frontend, path, waves, "audio") < 1e-3  # decibels


def test_pre_emphasis_gain_is_the_power_response_of_the_high_pass():
    """Each DFT bin's gain is what y[n] = x[n] - a x[n-1] does to a tone at that bin."""
    gain = pre_emphasis_gain(256, 0.97)
    n = np.arange(4096)
    for k in (4, 32, 96, 127):
        tone = np.cos(2 * np.pi * k / 256 * n)
        filtered = tone[1:] - 0.97 * tone[:-1]
        measured = np.mean(filtered**2) / np.mean(tone[1:] ** 2)
        assert float(gain[k]) == pytest.approx(measured, rel=0.01)
    assert float(gain[0]) == pytest.approx(0.03**2, rel=1e-3)  # the hum goes, not the word


def test_pre_emphasis_lifts_high_bands_above_the_floor():
    """Two tones 40 dB apart: the quiet high one is cut at a 30 dB floor unless pre-emphasis
    lifts it (by about 17 dB at 3 kHz against 300 Hz)."""
    t = np.arange(8000) / 8000
    wave = np.sin(2 * np.pi * 300 * t) + 0.01 * np.sin(2 * np.pi * 3000 * t)
    wave = torch.tensor(wave, dtype=torch.float32)[None]
    high = int(torch.argmax(mel_matrix(64, 256, 8000)[:, 96]))  # FFT bin 96 is 3 kHz
    plain = LogSpectrogram(replace(DIGITS.audio, cmn=False))(wave)[0, 0].mean(dim=1)
    lifted = LogSpectrogram(replace(DIGITS.audio, cmn=False, pre_emphasis=0.97))(wave)
    lifted = lifted[0, 0].mean(dim=1)
    assert float(plain[high]) == pytest.approx(-30.0, abs=0.5)  # at the floor: cut
    assert float(lifted[high]) > -30.0 + 5.0


@pytest.mark.parametrize("preset", [DIGITS, PAPER], ids=["mel", "linear"])
def test_a_pre_emphasised_front_end_exports_with_parity(preset):
    """Folded into the mel matrix, or one gain vector without mels: ONNX agrees with torch."""
    frontend = LogSpectrogram(replace(preset.audio, pre_emphasis=0.97)).eval()
    samples = preset.audio.num_samples
    waves = (np.random.default_rng(0).standard_normal((2, samples)) * 0.1).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frontend.onnx"
        _export(frontend, torch.from_numpy(waves), path, "audio", ["spectrogram"])
        assert parity(frontend, path, waves, "audio") < 1e-3  # decibels


def test_the_smoother_matrix_runs_the_first_order_recursion():
    x = torch.randn(3, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    running = [x[:, 0]]
    for t in range(1, 20):
        running.append(0.9 * running[-1] + 0.1 * x[:, t])
    expected = torch.stack(running, dim=1)
    assert torch.allclose(x.float() @ smoother_matrix(20, 0.1), expected.float(), atol=1e-5)


def _tone_in_noise(noise_level: float) -> torch.Tensor:
    """A 1 kHz tone from 0.5 s to 0.8 s over steady white noise, 1 s at 8 kHz."""
    gen = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    tone = np.sin(2 * np.pi * 1000 * t) * ((t >= 0.5) & (t < 0.8))
    wave = tone + noise_level * gen.standard_normal(8000)
    return torch.tensor(wave, dtype=torch.float32)[None]


def test_pcen_flattens_steady_noise_and_lifts_an_onset():
    """Over steady noise, PCEN gives the same level whether the noise is 6 dB louder or not
    (the log front end moves by 6 dB), and the tone's onset stands out of it. (Both keep 80 dB
    below the peak here, so that the noise is above the floor.)"""
    frontend = LogSpectrogram(replace(DIGITS.audio, pcen=True, top_db=80.0))
    log_front = LogSpectrogram(replace(DIGITS.audio, cmn=False, top_db=80.0))
    loud, quiet = _tone_in_noise(0.1), _tone_in_noise(0.05)
    noise_frames = slice(5, 40)  # before the tone
    band = int(torch.argmax(mel_matrix(64, 256, 8000)[:, 32]))  # FFT bin 32 is 1 kHz
    pcen_loud, pcen_quiet = frontend(loud)[0, 0], frontend(quiet)[0, 0]
    log_loud, log_quiet = log_front(loud)[0, 0], log_front(quiet)[0, 0]
    assert float(log_loud[:, noise_frames].mean() - log_quiet[:, noise_frames].mean()) > 5.0
    steady_loud = float(pcen_loud[:, noise_frames].mean())
    steady_quiet = float(pcen_quiet[:, noise_frames].mean())
    assert steady_loud == pytest.approx(steady_quiet, abs=0.05)
    onset = int(0.5 * 8000 / 80)  # the tone's first frame
    assert float(pcen_loud[band, onset : onset + 3].max()) > 5 * steady_loud
    # Later in the tone the band has adapted: its level falls back toward the noise's.
    assert float(pcen_loud[band, onset + 25]) < float(pcen_loud[band, onset : onset + 3].max())


def test_pcen_ignores_gain():
    wave = _tone_in_noise(0.05)
    frontend = LogSpectrogram(replace(DIGITS.audio, pcen=True))
    assert torch.allclose(frontend(wave), frontend(wave * 30.0), atol=1e-4)


@pytest.mark.parametrize("preset", [DIGITS, PAPER], ids=["mel", "linear"])
def test_a_pcen_front_end_exports_with_parity(preset):
    frontend = LogSpectrogram(replace(preset.audio, pcen=True)).eval()
    samples = preset.audio.num_samples
    waves = (np.random.default_rng(0).standard_normal((2, samples)) * 0.1).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frontend.onnx"
        _export(frontend, torch.from_numpy(waves), path, "audio", ["spectrogram"])
        assert parity(frontend, path, waves, "audio") < 1e-4



def test_frame_norm_shows_a_quiet_frame_shaped_like_a_loud_one():
    """The second channel is each frame less its mean over the bands: the same coloured noise
    10 dB quieter differs by ~10 dB in the first channel and hardly at all in the second."""
    rng = np.random.default_rng(0)
    colour = np.convolve(rng.standard_normal(8000), [1.0, 0.5], mode="same")  # tilted down
    wave = np.concatenate([colour[:4000], colour[4000:] * 10 ** (-10 / 20)]).astype(np.float32)
    plain = LogSpectrogram(DIGITS.audio)(torch.from_numpy(wave)[None])[0, 0]
    spec = LogSpectrogram(replace(DIGITS.audio, frame_norm=True))(torch.from_numpy(wave)[None])[0]
    assert spec.shape == (2, *plain.shape)
    assert torch.allclose(spec[0], plain)
    assert torch.allclose(spec[1].mean(dim=0), torch.zeros(spec.shape[2]), atol=1e-4)
    loud, quiet = slice(5, 40), slice(55, 90)  # frames well inside each half
    level = spec[0][:, loud].mean() - spec[0][:, quiet].mean()
    shape = (spec[1][:, loud].mean(dim=1) - spec[1][:, quiet].mean(dim=1)).abs().mean()
    assert 8.0 < float(level) < 12.0
    assert float(shape) < 1.0
