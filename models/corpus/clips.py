"""Writing a short mp4 clip: one still frame held for the whole clip, and a mono sound track.

Used by the digits corpus builder and reusable by tests that need a real video file. The video is
H.264 (libx264, yuv420p; MPEG-4 Part 2 where libx264 is missing), the audio AAC mono.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

DEFAULT_AUDIO_RATE = 16000
_AAC_FRAME = 1024


def _video_codec() -> str:
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # libx264 not compiled into this FFmpeg
        return "mpeg4"
    return "libx264"


def resample_linear(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample a mono waveform by linear interpolation (deterministic, no filter state)."""
    audio = np.asarray(audio, dtype=np.float32)
    if rate_in == rate_out or audio.size == 0:
        return audio.copy()
    n_out = int(round(audio.size * rate_out / rate_in))
    positions = np.arange(n_out, dtype=np.float64) * (rate_in / rate_out)
    return np.interp(positions, np.arange(audio.size), audio).astype(np.float32)


def fit_centred(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad (or crop) a waveform to ``length`` samples, keeping it centred."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size >= length:
        start = (audio.size - length) // 2
        return audio[start : start + length].copy()
    out = np.zeros(length, dtype=np.float32)
    start = (length - audio.size) // 2
    out[start : start + audio.size] = audio
    return out


def write_clip(
    path: str | Path,
    frame_rgb: np.ndarray,
    audio: np.ndarray,
    sample_rate: int,
    duration: float,
    fps: int = 25,
    audio_rate: int = DEFAULT_AUDIO_RATE,
) -> None:
    """Write ``path`` (mp4): ``frame_rgb`` shown for ``duration`` seconds at ``fps``, and ``audio``.

    ``frame_rgb`` is an (H, W, 3) uint8 array (an (H, W) grey array is accepted) with even H and
    W. ``audio`` is a mono waveform in [-1, 1] at ``sample_rate``; it is resampled to
    ``audio_rate`` and zero-padded (or cropped) centred to ``duration``.
    """
    frame = np.asarray(frame_rgb)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame_rgb must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    height, width = frame.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"frame size must be even for yuv420p, got {width}x{height}")
    if duration <= 0 or fps <= 0 or sample_rate <= 0 or audio_rate <= 0:
        raise ValueError("duration, fps and sample rates must be positive")
    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"audio must be a mono 1-D waveform, got shape {wave.shape}")
    wave = fit_centred(resample_linear(wave, sample_rate, audio_rate), round(duration * audio_rate))
    wave = np.clip(wave, -1.0, 1.0)
    n_frames = max(1, round(duration * fps))

    with av.open(str(path), mode="w", format="mp4") as container:
        codec = _video_codec()
        video = container.add_stream(codec, rate=fps)
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        video.time_base = Fraction(1, fps)
        if codec == "libx264":
            video.options = {"preset": "veryfast", "crf": "18"}
        else:
            video.bit_rate = 400_000
        sound = container.add_stream("aac", rate=audio_rate, layout="mono")
        sound.time_base = Fraction(1, audio_rate)

        still = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        still = still.reformat(format="yuv420p")
        for index in range(n_frames):
            still.pts = index
            still.time_base = Fraction(1, fps)
            container.mux(video.encode(still))
        container.mux(video.encode(None))

        for start in range(0, wave.size, _AAC_FRAME):
            chunk = wave[start : start + _AAC_FRAME]
            piece = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            piece.sample_rate = audio_rate
            piece.pts = start
            piece.time_base = Fraction(1, audio_rate)
            container.mux(sound.encode(piece))
        container.mux(sound.encode(None))
