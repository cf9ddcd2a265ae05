"""Decode images, audio and video into the arrays the towers take.

This is the only place that touches media files; it must not import torch, because the indexer
and the service use it too. Every problem a user can cause (a missing, empty, corrupt or
unsupported file, a video without sound, a time outside the clip, silence) is raised as
`MediaError` with a message that says what to do; raw PyAV/Pillow exceptions never escape.

Conventions callers rely on:
- Images come back as uint8 HxWx3 RGB. Transparency is composited onto black (each colour is
  multiplied by its alpha), so the hidden colour of transparent pixels never leaks in. 16-bit
  grey is scaled to 8 bits (value / 257). EXIF orientation is applied.
- Audio comes back as float32 mono in [-1, 1] at the requested sample rate, exactly
  `round(window * sample_rate)` samples, centred on a time `t`; parts of the window before the
  start or after the end of the recording are zeros.
- Times are seconds from the start of the file (the container's start time, or the first
  decoded audio sample if that is earlier), for audio and video alike, so a frame and its audio
  window stay in sync. Video frames are turned upright when the file says they are rotated.
- A `Source` is a path, or the bytes of an uploaded file.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import av
import av.error
import av.stream
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.errors import MediaError, UnsupportedMediaError

Source = str | os.PathLike[str] | bytes

MAX_IMAGE_PIXELS = 50_000_000
"""Images larger than this are refused before decoding (a decompression bomb guard)."""

SILENCE_PEAK = 1e-4
"""An audio window whose peak amplitude is below this is silent."""

VIDEO_DECODE_THREADS = 1
"""Threads FFmpeg decodes one video with. One: the callers (the service's workers, the indexer's
decoders) already decode several files at once, and a decoder's own threads cost more to start
than they save on a short read (a 1 s clip: 4.3 ms against 6.8 ms with FFmpeg's default)."""

SEEK_AFTER = 10.0
"""Seconds: a window or frame later than this is reached by seeking, not by decoding from 0."""

_SEEK_PREROLL = 1.0  # seconds decoded before the wanted audio, so decoders settle after a seek
_TIME_EPS = 1e-6
_AUDIO_HINT = "use WAV, FLAC, OGG, MP3, or a video with sound (MP4, WebM, MKV, MOV)"
_IMAGE_HINT = "use a PNG or JPEG image"
# FFmpeg demuxers that read still images (besides the "*_pipe" ones) or text as video.
_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})
_NOT_AV_FORMATS = frozenset({"tty", "bin", "xbin", "idf", "adf"})
# FFmpeg decoder errors; PermissionError and friends are OSError.
_AV_ERRORS = (av.error.FFmpegError, OSError, EOFError)
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True, eq=False)
class Clip:
    """A frame of a video and the audio around it.

    `time` is the moment both were taken at (the requested `t`, or the middle of the clip);
    `duration` is the length of the whole video in seconds.
    """

    frame: np.ndarray  # uint8 HxWx3 RGB
    audio: np.ndarray  # float32 mono, round(window * sample_rate) samples
    time: float
    duration: float


# ---------------------------------------------------------------------------- sources


def _describe(source: Source) -> str:
    if isinstance(source, bytes | bytearray):
        return f"the uploaded file ({len(source)} bytes)"
    return f"'{os.fspath(source)}'"


def _prepare(source: Source) -> tuple[str | bytes, str]:
    """Check that the source exists and is not empty; return what to open and its description."""
    if isinstance(source, bytes | bytearray):
        if not source:
            raise MediaError("the uploaded file is empty (0 bytes); upload a non-empty file")
        return bytes(source), _describe(source)
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"expected a path or bytes, got {type(source).__name__}")
    path = os.fspath(source)
    desc = _describe(source)
    if not os.path.exists(path):
        raise MediaError(f"{desc}: no such file; check the path")
    if not os.path.isfile(path):
        raise MediaError(f"{desc} is not a file (a folder?); give the path of a media file")
    if os.path.getsize(path) == 0:
        raise MediaError(f"{desc} is empty (0 bytes); the file was not written completely")
    return path, desc


def _reason(error: BaseException) -> str:
    """The useful part of a decoder's message (FFmpeg errors repeat the file name)."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


# ---------------------------------------------------------------------------- images


def load_image(source: Source) -> np.ndarray:
    """Decode an image (PNG, JPEG, or anything else Pillow reads) to uint8 HxWx3 RGB.

    Grey, palette and 16-bit images become RGB; alpha is composited onto black. Images over
    `MAX_IMAGE_PIXELS` are refused from their header, before any pixel is decoded.
    """
    target, desc = _prepare(source)
    try:
        with Image.open(io.BytesIO(target) if isinstance(target, bytes) else target) as img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _too_large(desc, width, height)
            img.load()  # decoding is lazy: truncated data only shows up here
            return _to_rgb(ImageOps.exif_transpose(img))
    except UnidentifiedImageError as e:
        raise UnsupportedMediaError(f"unsupported image: {desc} is not an image Pillow can read; "
                                    f"{_IMAGE_HINT}") from e
    except Image.DecompressionBombError as e:
        raise MediaError(f"{desc} is too large to decode ({e}); "
                         f"resize it below {MAX_IMAGE_PIXELS // 1_000_000} megapixels") from e
    except _PIL_ERRORS as e:
        raise MediaError(f"{desc} is a corrupt or truncated image ({_reason(e)}); "
                         f"re-export it or {_IMAGE_HINT}") from e


def _too_large(desc: str, width: int, height: int) -> MediaError:
    return MediaError(
        f"{desc} is too large: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
        f"more than {MAX_IMAGE_PIXELS // 1_000_000}; resize it before uploading"
    )


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's own I -> L conversion clips at 255 instead of scaling; "I" is assumed 16-bit.
        grey = np.clip(np.rint(np.asarray(img, dtype=np.float64) / 257.0), 0, 255)
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        grey = np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255)
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    has_alpha = any(band.upper() == "A" for band in img.getbands()) or "transparency" in img.info
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint32)
        rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255  # onto black, rounded
        return rgb.astype(np.uint8)
    return np.array(img.convert("RGB"), dtype=np.uint8)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 HxWx3 to `size` = (height, width) with Pillow's bilinear filter.

    Pillow widens the filter when shrinking, so downscaling is antialiased. An image that
    already has that size is returned as is (not copied).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    height, width = (int(v) for v in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive (height, width), got {size}")
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.uint8).copy()


# ---------------------------------------------------------------------------- containers


@contextmanager
def _open_av(target: str | bytes, desc: str) -> Iterator[av.container.InputContainer]:
    """Open a container; decoder errors inside the block become MediaError too."""
    try:
        container = av.open(io.BytesIO(target) if isinstance(target, bytes) else target, "r")
    except _AV_ERRORS + (ValueError,) as e:
        raise UnsupportedMediaError(f"unsupported media: {desc} cannot be read as audio or video "
                                    f"({_reason(e)}); {_AUDIO_HINT}") from e
    with container:
        name = container.format.name
        if name.endswith("_pipe") or name in _IMAGE_FORMATS:
            raise UnsupportedMediaError(
                f"unsupported media: {desc} is an image, not audio or video; {_AUDIO_HINT}")
        if name in _NOT_AV_FORMATS:
            raise UnsupportedMediaError(
                f"unsupported media: {desc} is not audio or video "
                f"(it looks like {container.format.long_name}); {_AUDIO_HINT}")
        try:
            yield container
        except _AV_ERRORS as e:
            raise MediaError(f"{desc} is corrupt or truncated ({_reason(e)}); "
                             f"re-encode it or {_AUDIO_HINT}") from e


def _video_streams(container: av.container.InputContainer) -> list[av.VideoStream]:
    """Video streams that are moving pictures, not cover art attached to an audio file."""
    attached = av.stream.Disposition.attached_pic
    return [s for s in container.streams.video if not s.disposition & attached]


def _video_stream(container: av.container.InputContainer, desc: str) -> av.VideoStream:
    streams = _video_streams(container)
    if not streams:
        raise MediaError(f"{desc} has no video track (it is audio only); "
                         "give a video file, or an image and an audio file")
    return streams[0]


def _audio_stream(container: av.container.InputContainer, desc: str) -> av.AudioStream:
    if not container.streams.audio:
        what = "a video without sound" if _video_streams(container) else "not audio"
        raise MediaError(f"{desc} has no audio track ({what}); {_AUDIO_HINT}")
    return container.streams.audio[0]


def _origin(container: av.container.InputContainer) -> float:
    """The container's start time in seconds: times given by callers count from here."""
    start = container.start_time
    return start / av.time_base if start is not None else 0.0


def _metadata_duration(container: av.container.InputContainer) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    durations = [float(s.duration * s.time_base) for s in container.streams
                 if s.duration and s.time_base is not None and s.type in ("audio", "video")]
    return max(durations) if durations else None


def _demuxed_duration(container: av.container.InputContainer) -> float | None:
    """Duration from packet timestamps, for files whose header lacks it (browser recordings)."""
    streams = [*_video_streams(container), *container.streams.audio]
    end = None
    for packet in container.demux(streams):
        if packet.pts is None or packet.time_base is None:
            continue
        stop = float((packet.pts + (packet.duration or 0)) * packet.time_base)
        end = stop if end is None else max(end, stop)
    return None if end is None else max(end - _origin(container), 0.0)


def _duration(target: str | bytes, desc: str, need_video: bool = False) -> float:
    """Duration in seconds; with `need_video`, also check for both a video and an audio track."""
    with _open_av(target, desc) as container:
        if need_video:
            _video_stream(container, desc)
            _audio_stream(container, desc)
        elif not _video_streams(container) and not container.streams.audio:
            raise UnsupportedMediaError(f"unsupported media: {desc} has neither audio nor video; "
                                        f"{_AUDIO_HINT}")
        return _container_duration(container, desc)


def _container_duration(container: av.container.InputContainer, desc: str) -> float:
    duration = _metadata_duration(container)
    if duration is None:
        duration = _demuxed_duration(container)
    if duration is None or duration <= 0:
        raise MediaError(f"{desc} is empty: it has no timestamped audio or video; "
                         f"re-record it, or {_AUDIO_HINT}")
    return duration


def media_duration(source: Source) -> float:
    """Length in seconds of a video or audio file."""
    return _duration(*_prepare(source))


def sniff_kind(source: Source) -> Literal["image", "audio", "video"]:
    """What kind of media this is, judged by content, not by file name."""
    target, desc = _prepare(source)
    try:
        with Image.open(io.BytesIO(target) if isinstance(target, bytes) else target) as img:
            if img.format != "MPEG":  # Pillow identifies MPEG video but cannot decode it
                return "image"
    except Image.DecompressionBombError:
        return "image"  # an image all the same; load_image says it is too large
    except (UnidentifiedImageError, *_PIL_ERRORS):
        pass
    with _open_av(target, desc) as container:
        if _video_streams(container):
            return "video"
        if container.streams.audio:
            return "audio"
    raise UnsupportedMediaError(f"unsupported media: {desc} has neither audio nor video; "
                                f"{_AUDIO_HINT}, or {_IMAGE_HINT}")


@dataclass(frozen=True)
class Probe:
    """What a file holds, found by opening it once: its kind and, for audio or video, its
    duration in seconds (pass it on to `load_audio` / `load_clip` to save a second look)."""

    kind: Literal["image", "audio", "video"]
    duration: float | None


def probe(source: Source) -> Probe:
    """The kind of media (judged by content) and its duration, from one look at the file."""
    target, desc = _prepare(source)
    header = _wav_header(target)
    if header is not None and header[0] > 0:
        return Probe("audio", header[0] / header[1])
    try:
        with Image.open(io.BytesIO(target) if isinstance(target, bytes) else target) as img:
            if img.format != "MPEG":
                return Probe("image", None)
    except Image.DecompressionBombError:
        return Probe("image", None)
    except (UnidentifiedImageError, *_PIL_ERRORS):
        pass
    with _open_av(target, desc) as container:
        if _video_streams(container):
            kind: Literal["audio", "video"] = "video"
        elif container.streams.audio:
            kind = "audio"
        else:
            raise UnsupportedMediaError(f"unsupported media: {desc} has neither audio nor "
                                        f"video; {_AUDIO_HINT}, or {_IMAGE_HINT}")
        return Probe(kind, _container_duration(container, desc))


def _check_time(t: float | None, duration: float, desc: str) -> float:
    if t is None:
        return duration / 2
    if not math.isfinite(t) or t < -_TIME_EPS or t > duration + _TIME_EPS:
        raise MediaError(f"time {t} s is outside {desc}, which lasts {duration:.3f} s; "
                         f"choose a time between 0 and {duration:.3f}")
    return min(max(float(t), 0.0), duration)


# ---------------------------------------------------------------------------- audio


def _window_start(t: float, count: int, sample_rate: int) -> int:
    """Index of the first sample of a `count`-sample window centred on `t` seconds."""
    return math.floor(t * sample_rate - count / 2 + 0.5)


@dataclass(frozen=True, eq=False)
class _Decoded:
    samples: np.ndarray  # the requested range, zeros where the track has no audio
    decoded: int  # samples the decoder produced in all (0: the track is empty)
    origin: float  # the time, in stream seconds, that sample index 0 stands for


def _decode_audio(container: av.container.InputContainer, stream: av.AudioStream,
                  sample_rate: int, first: int, count: int) -> _Decoded:
    """Samples [first, first + count) of the track, resampled to float32 mono.

    Sample i is at time i / sample_rate from the origin: the container's start time, or the
    first decoded sample if that is earlier (demuxers can report a start that ignores the
    codec delay the decoder removes). Decoding stops once the range is covered, and starts
    from a seek when the range begins late in the file.
    """
    frames = container.decode(stream)
    head = next(frames, None)
    origin = _origin(container)
    if head is None:
        return _Decoded(np.zeros(count, dtype=np.float32), 0, origin)
    if head.time is not None:
        origin = min(origin, head.time)
    if first / sample_rate > SEEK_AFTER and stream.time_base is not None:
        target = first / sample_rate - _SEEK_PREROLL + origin
        container.seek(int(target / stream.time_base), stream=stream)
        frames = container.decode(stream)
        head = next(frames, None)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    out = np.zeros(count, dtype=np.float32)
    end = first + count
    position = 0  # index of the next resampled sample
    if head is not None and head.time is not None:
        position = round((head.time - origin) * sample_rate)
    decoded = 0

    def place(resampled_frames: list[av.AudioFrame]) -> None:
        nonlocal position, decoded
        for resampled in resampled_frames:
            chunk = resampled.to_ndarray().reshape(-1)
            lo, hi = max(position, first), min(position + len(chunk), end)
            if lo < hi:
                out[lo - first:hi - first] = chunk[lo - position:hi - position]
            position += len(chunk)
            decoded += len(chunk)

    try:
        for frame in itertools.chain([head] if head is not None else [], frames):
            place(resampler.resample(frame))
            if position >= end:
                break
        else:
            place(resampler.resample(None))  # flush what the resampler holds back
    except ValueError as e:  # the resampler refuses a stream that changes format midway
        raise MediaError(f"audio track changes format midway ({e}); re-encode it") from e
    np.clip(out, -1.0, 1.0, out=out)
    return _Decoded(out, decoded, origin)


def _audio_window(target: str | bytes, desc: str, sample_rate: int, window: float,
                  t: float, reject_silent: bool) -> _Decoded:
    count = round(window * sample_rate)
    with _open_av(target, desc) as container:
        stream = _audio_stream(container, desc)
        result = _decode_audio(container, stream, sample_rate,
                               _window_start(t, count, sample_rate), count)
    if result.decoded == 0:
        raise MediaError(f"{desc} has an empty audio track (no samples); {_AUDIO_HINT}")
    if reject_silent:
        _check_silence(result.samples, desc, t)
    return result


def _check_audio_args(sample_rate: int, window: float) -> None:
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
    if not window > 0 or round(window * sample_rate) < 1:
        raise ValueError(f"window must be positive and hold at least one sample, got {window}")


def _wav_header(target: str | bytes) -> tuple[int, int] | None:
    """(frames, rate) of a mono 16-bit PCM WAV file; None for any other file."""
    try:
        with _open_wave(target) as reader:
            if reader is None or not _plain_pcm(reader):
                return None
            return reader.getnframes(), reader.getframerate()
    except Exception:  # the stdlib reader fails in untyped ways on damaged
        return None  # files (RuntimeError, struct.error, ...); PyAV then judges the file


def _pcm_wav(target: str | bytes) -> tuple[np.ndarray, int] | None:
    """The samples (float32, as FFmpeg converts 16-bit PCM: value / 32768) and the rate of a
    mono 16-bit PCM WAV file; None for any other file, which then goes through PyAV."""
    try:
        with _open_wave(target) as reader:
            if reader is None or not _plain_pcm(reader):
                return None
            frames = reader.readframes(reader.getnframes())
            rate = reader.getframerate()
    except Exception:  # the stdlib reader fails in untyped ways on damaged
        return None  # files (RuntimeError, struct.error, ...); PyAV then judges the file
    pcm = np.frombuffer(frames[: len(frames) // 2 * 2], dtype="<i2")
    if not len(pcm):
        return None  # PyAV says what is wrong with an empty track
    return pcm.astype(np.float32) / 32768.0, rate


@contextmanager
def _open_wave(target: str | bytes) -> Iterator[wave.Wave_read | None]:
    if isinstance(target, bytes):
        if target[:4] != b"RIFF" or target[8:12] != b"WAVE":
            yield None
            return
        handle: io.BufferedIOBase | io.BytesIO = io.BytesIO(target)
    else:
        with open(target, "rb") as probe:
            head = probe.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            yield None
            return
        handle = open(target, "rb")  # closed below
    try:
        with wave.open(handle, "rb") as reader:
            yield reader
    finally:
        handle.close()


def _plain_pcm(reader: wave.Wave_read) -> bool:
    return (reader.getnchannels() == 1 and reader.getsampwidth() == 2
            and reader.getcomptype() == "NONE" and reader.getframerate() > 0)


def _window_of(samples: np.ndarray, sample_rate: int, window: float, t: float) -> np.ndarray:
    """The window centred on `t` of samples that start at time 0, zero-padded at the ends."""
    count = round(window * sample_rate)
    first = _window_start(t, count, sample_rate)
    out = np.zeros(count, dtype=np.float32)
    lo, hi = max(first, 0), min(first + count, len(samples))
    if lo < hi:
        out[lo - first : hi - first] = samples[lo:hi]
    return out


def _check_silence(samples: np.ndarray, desc: str, t: float) -> None:
    if float(np.max(np.abs(samples), initial=0.0)) < SILENCE_PEAK:
        raise MediaError(f"{desc} is silent around {t:.2f} s (peak below {SILENCE_PEAK}); "
                         "record closer to the source or choose another time")


def load_audio(source: Source, sample_rate: int, window: float = 1.0, t: float | None = None,
               reject_silent: bool = True, duration: float | None = None) -> np.ndarray:
    """The `window` seconds of audio centred on `t` (default: the middle), float32 mono.

    Reads WAV, FLAC, OGG (Vorbis/Opus), MP3 and the first audio track of a video. Returns
    exactly round(window * sample_rate) samples in [-1, 1]; where the window reaches past the
    start or end of the recording it is zero-padded on that side (so a short recording ends up
    centred). Raises MediaError for a `t` outside [0, duration], and, with `reject_silent`,
    for a window whose peak is below `SILENCE_PEAK`. `duration`: the file's, when `probe`
    already found it.
    """
    _check_audio_args(sample_rate, window)
    target, desc = _prepare(source)
    pcm = _pcm_wav(target)
    if pcm is not None and pcm[1] == sample_rate:
        # Mono 16-bit WAV at the model's rate: PyAV would only convert the samples (the tests
        # check that both paths give the same window), at several times the cost.
        samples = pcm[0]
        time = _check_time(t, len(samples) / sample_rate if duration is None else duration, desc)
        out = _window_of(samples, int(sample_rate), window, time)
        if reject_silent:
            _check_silence(out, desc, time)
        return out
    if duration is None:
        duration = _duration(target, desc)
    time = _check_time(t, duration, desc)
    return _audio_window(target, desc, int(sample_rate), window, time, reject_silent).samples


# ---------------------------------------------------------------------------- video


def _frame_at(container: av.container.InputContainer, stream: av.VideoStream, t: float,
              origin: float) -> av.VideoFrame | None:
    """The last frame whose time is <= t, or the first frame if all come later."""
    chosen = None
    for frame in container.decode(stream):
        when = frame.time - origin if frame.time is not None else None
        if when is not None and when > t + _TIME_EPS:
            return chosen if chosen is not None else frame
        chosen = frame
    return chosen


def _video_frame(target: str | bytes, desc: str, t: float, origin: float) -> np.ndarray:
    """The frame shown at `t` seconds after `origin` (the audio's, to stay in sync)."""
    with _open_av(target, desc) as container:
        stream = _video_stream(container, desc)
        stream.codec_context.thread_count = VIDEO_DECODE_THREADS
        frame = None
        if t > SEEK_AFTER and stream.time_base is not None:
            # Seeking lands on the keyframe at or before t; decode forward from there.
            container.seek(int((t + origin) / stream.time_base), stream=stream)
            frame = _frame_at(container, stream, t, origin)
            if frame is not None and frame.time is not None and frame.time - origin > t:
                frame = None  # the seek overshot: fall back to decoding from the start
            if frame is None:
                container.seek(0)
        if frame is None:
            frame = _frame_at(container, stream, t, origin)
        if frame is None:
            raise MediaError(f"{desc} has a video track without frames; re-encode it")
        rgb = frame.to_ndarray(format="rgb24")
        quarter_turns = round((frame.rotation or 0) / 90) % 4  # phones store portrait sideways
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def load_clip(source: Source, sample_rate: int, window: float = 1.0, t: float | None = None,
              reject_silent: bool = False, duration: float | None = None) -> Clip:
    """The frame shown at `t` (default: the middle) and the audio window centred on it.

    The frame is the last one whose timestamp is <= t, as a player shows it; the audio is as
    `load_audio` returns it. Silence is only rejected when asked (a query should be; a quiet
    moment of a training or indexed video is still a clip). A file without a video or an
    audio track raises MediaError saying which is missing.
    """
    _check_audio_args(sample_rate, window)
    target, desc = _prepare(source)
    if duration is None:
        duration = _duration(target, desc, need_video=True)
    time = _check_time(t, duration, desc)
    audio = _audio_window(target, desc, int(sample_rate), window, time, reject_silent)
    frame = _video_frame(target, desc, time, audio.origin)
    return Clip(frame=frame, audio=audio.samples, time=time, duration=duration)
