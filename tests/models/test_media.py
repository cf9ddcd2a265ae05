"""models.media on real files: an FSDD recording and an MNIST digit, encoded with PyAV/Pillow."""

from __future__ import annotations

import gzip
import os
import struct
import wave
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from models.errors import MediaError
from models.media import (
    Clip,
    load_audio,
    load_clip,
    load_image,
    media_duration,
    resize_image,
    sniff_kind,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
DATA = Path(os.environ.get("AVSEARCH_DATA")
            or (SHARED if (SHARED / "mnist").is_dir() else REPO / "data" / "sample"))
WAV = DATA / "fsdd" / "recordings" / "3_jackson_0.wav"
MNIST = next((DATA / "mnist").glob("*-images-idx3-ubyte.gz"), DATA / "mnist" / "missing")
RATE = 8000  # the FSDD recording's native rate
FPS = 25
SIDE = 64


# ---------------------------------------------------------------------------- real data


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def first_digit() -> np.ndarray:
    with gzip.open(MNIST) as f:
        data = f.read(16 + 28 * 28)
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(28, 28)


def centred_window(samples: np.ndarray, t: float, count: int, rate: int) -> np.ndarray:
    """The reference for load_audio: `count` samples centred on t, zero-padded."""
    first = int(np.floor(t * rate - count / 2 + 0.5))
    out = np.zeros(count, dtype=np.float32)
    lo, hi = max(first, 0), min(first + count, len(samples))
    out[lo - first:hi - first] = samples[lo:hi]
    return out


# ---------------------------------------------------------------------------- writers


def write_audio(path: Path, samples: np.ndarray, codec: str, fmt: str | None = None,
                rate: int = RATE) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        _encode_audio(out, stream, samples)
    return path


def _encode_audio(out, stream, samples: np.ndarray) -> None:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)[None, :]
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = RATE
    frame.pts = 0
    frame.time_base = Fraction(1, RATE)
    for packet in stream.encode(frame):
        out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def write_video(path: Path, frames: list[np.ndarray], audio: np.ndarray | None,
                vcodec: str = "libx264", acodec: str = "aac", fmt: str | None = None,
                options: dict[str, str] | None = None) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream(vcodec, rate=FPS, options=options or {})
        video.width, video.height = frames[0].shape[1], frames[0].shape[0]
        video.pix_fmt = "yuv420p"
        if audio is not None:
            sound = out.add_stream(acodec, rate=16000 if acodec == "libopus" else RATE,
                                   layout="mono")
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if audio is not None:
            _encode_audio(out, sound, audio)
    return path


class _Unseekable:
    """A write-only sink: muxers cannot go back to fill in the duration, as in a browser."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk) -> int:
        self.data += bytes(chunk)
        return len(chunk)


def write_streamed_webm(samples: np.ndarray) -> bytes:
    """Opus in WebM without a duration in its header, like a MediaRecorder recording."""
    sink = _Unseekable()
    with av.open(sink, "w", format="webm") as out:
        _encode_audio(out, out.add_stream("libopus", rate=16000, layout="mono"), samples)
    return bytes(sink.data)


def write_mp3_with_cover(path: Path, samples: np.ndarray, cover: np.ndarray) -> Path:
    """An MP3 whose cover art is a (still picture) video stream."""
    with av.open(str(path), "w") as out:
        sound = out.add_stream("libmp3lame", rate=RATE, layout="mono")
        art = out.add_stream("png")
        art.width, art.height, art.pix_fmt = cover.shape[1], cover.shape[0], "rgb24"
        art.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(cover, format="rgb24")
        picture.pts = 0
        for packet in [*art.encode(picture), *art.encode(None)]:
            out.mux(packet)
        _encode_audio(out, sound, samples)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size: enough for Pillow to read the header, nothing more."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4)  # four rows of the picture
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return read_wav(WAV)


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    """The MNIST digit as a 64x64 RGB frame."""
    grey = np.asarray(Image.fromarray(first_digit()).resize((SIDE, SIDE), Image.BILINEAR))
    return np.repeat(grey[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def media(tmp_path_factory, speech, digit) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    files: dict[str, Path] = {"wav": WAV}
    files["flac"] = write_audio(root / "speech.flac", speech, "flac")
    opus = "libopus" if "libopus" in av.codecs_available else "libvorbis"
    files["ogg"] = write_audio(root / "speech.ogg", speech, opus, rate=16000)
    files["mp3"] = write_audio(root / "speech.mp3", speech, "libmp3lame")
    files["m4a"] = write_audio(root / "speech.m4a", speech, "aac", fmt="mp4")
    files["silent"] = write_audio(root / "silent.wav", np.zeros(RATE), "pcm_s16le")
    files["empty_wav"] = root / "empty.wav"  # a valid header and no samples
    with wave.open(str(files["empty_wav"]), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)

    one_second = [digit] * FPS
    files["mp4"] = write_video(root / "clip.mp4", one_second, speech)
    files["webm"] = write_video(root / "clip.webm", one_second, speech, "libvpx-vp9", "libopus",
                                options={"deadline": "realtime", "cpu-used": "8"})
    files["mkv"] = write_video(root / "clip.mkv", one_second, speech, "mpeg4", "flac")
    files["mov"] = write_video(root / "clip.mov", one_second, speech, "libx264", "pcm_s16le")
    files["mute_mp4"] = write_video(root / "mute.mp4", one_second, None)

    # Half a second of black and silence, then half a second of white and speech.
    black, white = np.zeros_like(digit), np.full_like(digit, 255)
    halves = [black] * (FPS // 2) + [white] * (FPS - FPS // 2)
    files["halves"] = write_video(root / "halves.mp4", halves,
                                  np.concatenate([np.zeros(RATE // 2), speech]))

    # 12 s (past models.media.SEEK_AFTER): second k is grey level 20k, and a tone of amplitude
    # 0.05(k+1), with a keyframe every second so that seeking has somewhere to land.
    seconds = 12
    grey_frames = [np.full_like(digit, 20 * (i // FPS)) for i in range(seconds * FPS)]
    tone = np.sin(2 * np.pi * 440 * np.arange(seconds * RATE) / RATE)
    tone *= 0.05 * (np.arange(seconds * RATE) // RATE + 1)
    files["long"] = write_video(root / "long.mp4", grey_frames, tone,
                                options={"g": str(FPS), "bf": "0"})

    files["streamed_webm"] = write_streamed_webm(speech)
    files["cover_mp3"] = write_mp3_with_cover(root / "cover.mp3", speech, digit)

    files["png_rgb"] = root / "rgb.png"
    Image.fromarray(digit).save(files["png_rgb"])
    files["png_grey"] = root / "grey.png"
    Image.fromarray(first_digit()).save(files["png_grey"])
    files["jpeg"] = root / "digit.jpg"
    Image.fromarray(digit).save(files["jpeg"], quality=95)
    text = root / "notes.txt"
    text.write_text("not media at all\n" * 20)
    files["text"] = text
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    files["empty"] = empty
    return files


# ---------------------------------------------------------------------------- images


def test_load_image_png_and_jpeg_match_the_digit(media, digit):
    rgb = load_image(media["png_rgb"])
    assert rgb.dtype == np.uint8 and rgb.shape == (SIDE, SIDE, 3)
    np.testing.assert_array_equal(rgb, digit)
    grey = load_image(media["png_grey"])
    assert grey.shape == (28, 28, 3)
    np.testing.assert_array_equal(grey[..., 0], first_digit())
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    jpeg = load_image(media["jpeg"])
    assert jpeg.shape == (SIDE, SIDE, 3)
    assert np.abs(jpeg.astype(int) - digit).mean() < 3


def test_load_image_composites_alpha_onto_black(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = [[0, 128, 255], [255, 255, 0]]
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    rgb = load_image(path)
    assert rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(rgb[0, 0], (0, 0, 0))
    np.testing.assert_array_equal(rgb[0, 2], (200, 100, 50))
    np.testing.assert_array_equal(rgb[0, 1], (100, 50, 25))
    # Grey + alpha and a palette with a transparent entry behave the same way.
    Image.fromarray(rgba[..., [0, 3]]).convert("LA").save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png")[1, 2].tolist() == [0, 0, 0]
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0])
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)
    assert load_image(tmp_path / "p.png").tolist() == [[[0, 0, 0], [0, 255, 0]]]


def test_load_image_scales_16_bit_grey(tmp_path):
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "deep.png")[0, :, 0].tolist() == [0, 128, 255]


def test_load_image_applies_exif_orientation(tmp_path):
    wide = np.zeros((10, 20, 3), dtype=np.uint8)
    wide[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: show it turned 90 degrees clockwise
    Image.fromarray(wide).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "phone.jpg")
    assert upright.shape == (20, 10, 3)
    assert upright[:10].mean() > 200 and upright[10:].mean() < 50  # white is now on top


def test_load_image_bytes_same_as_path(media):
    for key in ("png_rgb", "png_grey", "jpeg"):
        path = media[key]
        np.testing.assert_array_equal(load_image(path.read_bytes()), load_image(path))
        np.testing.assert_array_equal(load_image(str(path)), load_image(path))


def test_load_image_rejects_bad_input(media, tmp_path):
    with pytest.raises(MediaError, match="no such file") as error:
        load_image(tmp_path / "missing.png")
    assert "missing.png" in str(error.value)
    with pytest.raises(MediaError, match="empty"):
        load_image(media["empty"])
    with pytest.raises(MediaError, match="empty"):
        load_image(b"")
    with pytest.raises(MediaError, match="unsupported image"):
        load_image(media["text"])
    with pytest.raises(MediaError, match="unsupported image"):
        load_image(media["wav"])
    truncated = media["png_rgb"].read_bytes()
    with pytest.raises(MediaError, match="corrupt or truncated"):
        load_image(truncated[: len(truncated) // 2])
    jpeg = media["jpeg"].read_bytes()
    with pytest.raises(MediaError, match="corrupt or truncated"):
        load_image(jpeg[: len(jpeg) // 2])
    with pytest.raises(MediaError, match="too large") as error:
        load_image(png_header_only(8000, 8000))  # 64 megapixels, never decoded
    assert "64 megapixels" in str(error.value)
    with pytest.raises(MediaError, match="too large"):
        load_image(png_header_only(20000, 20000))  # Pillow's own bomb guard fires at open


def test_resize_image(digit):
    assert resize_image(digit, (SIDE, SIDE)) is digit
    small = resize_image(digit, (28, 14))
    assert small.dtype == np.uint8 and small.shape == (28, 14, 3)
    flat = np.full((10, 20, 3), 77, dtype=np.uint8)
    assert (resize_image(flat, (224, 224)) == 77).all()
    assert (resize_image(flat, (3, 5)) == 77).all()
    with pytest.raises(ValueError):
        resize_image(digit[..., 0], (10, 10))


# ---------------------------------------------------------------------------- audio


def test_load_audio_wav_matches_raw_samples(speech):
    duration = len(speech) / RATE
    for window, t in [(1.0, None), (0.2, None), (0.25, 0.1), (0.3, 0.0), (0.5, duration)]:
        count = round(window * RATE)
        got = load_audio(WAV, RATE, window=window, t=t)
        want = centred_window(speech, duration / 2 if t is None else t, count, RATE)
        assert got.dtype == np.float32 and got.shape == (count,)
        np.testing.assert_allclose(got, want, atol=1e-4)
    # A window longer than the recording centres it between zeros.
    padded = load_audio(WAV, RATE, window=1.0)
    lead = round((RATE - len(speech)) / 2)
    assert not padded[:lead].any() and not padded[lead + len(speech):].any()
    # At t=0 the first half of the window is before the recording: zeros.
    start = load_audio(WAV, RATE, window=0.5, t=0.0)
    assert not start[:2000].any()
    np.testing.assert_allclose(start[2000:], speech[:2000], atol=1e-4)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_load_audio_resamples_to_exact_length(rate, speech):
    got = load_audio(WAV, rate, window=1.0)
    assert got.dtype == np.float32 and got.shape == (rate,)
    assert -1.0 <= got.min() and got.max() <= 1.0
    assert abs(np.abs(got).max() - np.abs(speech).max()) < 0.05
    assert load_audio(WAV, rate, window=0.37, t=0.2).shape == (round(0.37 * rate),)


def _best_lag(got: np.ndarray, want: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The shift of `got` against `want` with the highest normalised correlation."""
    best = (0, -1.0)
    for lag in range(-max_lag, max_lag + 1):
        a = np.roll(got, -lag)
        corr = float(a @ want / (np.linalg.norm(a) * np.linalg.norm(want) + 1e-12))
        best = max(best, (lag, corr), key=lambda x: x[1])
    return best


@pytest.mark.parametrize("key", ["flac", "ogg", "mp3", "m4a", "mp4", "webm", "mkv", "mov"])
def test_load_audio_formats_decode_in_sync(key, media):
    rate = 16000
    want = load_audio(WAV, rate, window=1.0, t=0.3)
    got = load_audio(media[key], rate, window=1.0, t=0.3)
    assert got.dtype == np.float32 and got.shape == (rate,)
    lag, corr = _best_lag(got, want, 80)
    assert corr > 0.9, (key, lag, corr)
    assert abs(lag) <= 4, (key, lag, corr)  # within 0.25 ms: codec delays are compensated
    np.testing.assert_allclose(load_audio(media[key].read_bytes(), rate, t=0.3), got, atol=1e-6)


def test_media_duration(media, speech):
    assert media_duration(WAV) == pytest.approx(len(speech) / RATE, abs=1e-3)
    for key in ("flac", "ogg", "mp3", "m4a"):
        assert media_duration(media[key]) == pytest.approx(len(speech) / RATE, abs=0.06), key
    for key in ("mp4", "webm", "mkv", "mov", "mute_mp4"):
        assert media_duration(media[key]) == pytest.approx(1.0, abs=0.1), key
    assert media_duration(media["mp4"].read_bytes()) == media_duration(media["mp4"])
    with pytest.raises(MediaError, match="unsupported media"):
        media_duration(media["png_rgb"])


def test_probe_finds_kind_and_duration_in_one_look(media):
    from models.media import probe

    for key in ("wav", "flac", "mp3", "streamed_webm", "cover_mp3"):
        found = probe(media[key])
        assert found.kind == "audio", key
        assert found.duration == pytest.approx(media_duration(media[key]), abs=1e-6), key
    for key in ("mp4", "webm", "mkv", "mov", "mute_mp4"):
        found = probe(media[key])
        assert found.kind == "video" and found.duration == media_duration(media[key]), key
    for key in ("png_rgb", "png_grey", "jpeg"):
        assert probe(media[key]).kind == "image" and probe(media[key]).duration is None
    with pytest.raises(MediaError, match="unsupported media"):
        probe(media["text"])
    with pytest.raises(MediaError, match="empty"):
        probe(media["empty"])
    found = probe(media["mp4"])  # a known duration skips the second look, same answer
    given = load_clip(media["mp4"], RATE, t=0.4, duration=found.duration)
    plain = load_clip(media["mp4"], RATE, t=0.4)
    assert np.array_equal(given.audio, plain.audio) and np.array_equal(given.frame, plain.frame)
    assert np.array_equal(load_audio(WAV, RATE, t=0.2, duration=probe(WAV).duration),
                          load_audio(WAV, RATE, t=0.2))


def test_audio_without_duration_in_header(media, speech):
    recording = media["streamed_webm"]  # bytes, as a browser would upload it
    assert media_duration(recording) == pytest.approx(len(speech) / RATE, abs=0.03)
    assert sniff_kind(recording) == "audio"
    got = load_audio(recording, 16000, window=1.0, t=0.3)
    lag, corr = _best_lag(got, load_audio(WAV, 16000, window=1.0, t=0.3), 80)
    assert corr > 0.9 and abs(lag) <= 4, (lag, corr)
    # Without a time, the centre comes from a duration estimated from packets (20 ms each).
    got = load_audio(recording, 16000, window=1.0)
    lag, corr = _best_lag(got, load_audio(WAV, 16000, window=1.0), 400)
    assert corr > 0.9 and abs(lag) <= 0.015 * 16000, (lag, corr)


def test_audio_with_cover_art(media):
    assert sniff_kind(media["cover_mp3"]) == "audio"
    assert load_audio(media["cover_mp3"], 16000).shape == (16000,)
    with pytest.raises(MediaError, match="no video track"):
        load_clip(media["cover_mp3"], 16000)


def test_load_audio_rejects_bad_input(media, tmp_path):
    with pytest.raises(MediaError, match="no such file") as error:
        load_audio(tmp_path / "gone.wav", 16000)
    assert "gone.wav" in str(error.value)
    with pytest.raises(MediaError, match="empty"):
        load_audio(media["empty"], 16000)
    with pytest.raises(MediaError, match="empty"):
        load_audio(media["empty_wav"], 16000)
    with pytest.raises(MediaError, match="unsupported media"):
        load_audio(media["text"], 16000)
    with pytest.raises(MediaError, match="unsupported media"):
        load_audio(os.urandom(4096), 16000)
    with pytest.raises(MediaError, match="no audio track"):
        load_audio(media["mute_mp4"], 16000)
    with pytest.raises(MediaError, match="is silent"):
        load_audio(media["silent"], 16000)
    assert not load_audio(media["silent"], 16000, reject_silent=False).any()
    with pytest.raises(MediaError, match="outside"):
        load_audio(WAV, 16000, t=5.0)
    with pytest.raises(MediaError, match="outside"):
        load_audio(WAV, 16000, t=-0.1)
    mp4 = media["mp4"].read_bytes()
    with pytest.raises(MediaError, match="cannot be read|corrupt"):
        load_audio(mp4[: len(mp4) // 2], 16000)


# ---------------------------------------------------------------------------- video


@pytest.mark.parametrize("key", ["mp4", "webm", "mkv", "mov"])
def test_load_clip_formats(key, media, digit):
    clip = load_clip(media[key], 16000, window=1.0)
    assert isinstance(clip, Clip)
    assert clip.frame.dtype == np.uint8 and clip.frame.shape == (SIDE, SIDE, 3)
    assert np.abs(clip.frame.astype(int) - digit).mean() < 8, key
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (16000,)
    assert clip.duration == pytest.approx(1.0, abs=0.1)
    assert clip.time == pytest.approx(clip.duration / 2)
    same = load_clip(media[key].read_bytes(), 16000, window=1.0)
    np.testing.assert_array_equal(same.frame, clip.frame)
    np.testing.assert_array_equal(same.audio, clip.audio)


def test_load_clip_time_selects_frame_and_audio(media):
    early = load_clip(media["halves"], 16000, window=0.5, t=0.25)
    late = load_clip(media["halves"], 16000, window=0.5, t=0.75)
    assert early.frame.mean() < 10 and late.frame.mean() > 245
    assert early.time == 0.25 and late.time == 0.75
    assert np.abs(early.audio).max() < 0.01 < 0.1 < np.abs(late.audio).max()
    # The frame shown at t is the last one that started at or before t: frame 12 (the first
    # white one) starts at 0.48 s.
    assert load_clip(media["halves"], 16000, t=0.479).frame.mean() < 10
    assert load_clip(media["halves"], 16000, t=0.48).frame.mean() > 245
    with pytest.raises(MediaError, match="is silent"):
        load_clip(media["halves"], 16000, window=0.3, t=0.2, reject_silent=True)


def test_load_clip_seeks_in_long_videos(media):
    for t in (11.5, 10.2, 3.5):
        clip = load_clip(media["long"], 8000, window=0.5, t=t)
        second = int(t)
        assert abs(clip.frame.mean() - 20 * second) < 4, (t, clip.frame.mean())
        assert np.abs(clip.audio).max() == pytest.approx(0.05 * (second + 1), abs=0.02), t
    assert load_audio(media["long"], 8000, window=0.5, t=11.5).max() == pytest.approx(0.6, abs=0.02)


def test_load_clip_rejects_missing_tracks_and_bad_times(media):
    with pytest.raises(MediaError, match="no audio track"):
        load_clip(media["mute_mp4"], 16000)
    with pytest.raises(MediaError, match="no video track"):
        load_clip(media["m4a"], 16000)
    with pytest.raises(MediaError, match="no video track"):
        load_clip(WAV, 16000)
    with pytest.raises(MediaError, match="outside"):
        load_clip(media["mp4"], 16000, t=1.5)
    with pytest.raises(MediaError, match="unsupported media"):
        load_clip(media["png_rgb"], 16000)
    with pytest.raises(MediaError, match="empty"):
        load_clip(b"", 16000)


# ---------------------------------------------------------------------------- sniffing


def test_sniff_kind(media):
    expected = {"png_rgb": "image", "png_grey": "image", "jpeg": "image",
                "wav": "audio", "flac": "audio", "ogg": "audio", "mp3": "audio",
                "m4a": "audio", "mp4": "video", "webm": "video", "mkv": "video",
                "mov": "video", "mute_mp4": "video"}
    for key, kind in expected.items():
        assert sniff_kind(media[key]) == kind, key
        assert sniff_kind(media[key].read_bytes()) == kind, key
    renamed = media["mp4"].parent / "actually_video.png"
    renamed.write_bytes(media["mp4"].read_bytes())
    assert sniff_kind(renamed) == "video"
    with pytest.raises(MediaError, match="unsupported media"):
        sniff_kind(media["text"])
    with pytest.raises(MediaError, match="empty"):
        sniff_kind(media["empty"])
    with pytest.raises(MediaError, match="no such file"):
        sniff_kind(media["text"].parent / "nothing.mp4")


def test_plain_wav_path_equals_pyav(tmp_path):
    """Mono 16-bit WAV at the model's rate skips PyAV; the window must be the same, sample for
    sample, at every time, including the default middle and the padded ends."""
    from models import media as m

    recordings = sorted((DATA / "fsdd" / "recordings").glob("*.wav"))[::25]
    assert recordings
    for path in recordings:
        duration = m._duration(str(path), "x")
        assert m._pcm_wav(str(path))[1] == RATE
        assert probe_duration(path) == pytest.approx(duration, abs=2e-6)
        for t in (None, 0.0, 0.05, duration / 3, duration):
            fast = load_audio(path, RATE, window=1.0, t=t, reject_silent=False)
            time = duration / 2 if t is None else t
            slow = m._audio_window(str(path), "x", RATE, 1.0, time, False).samples
            assert np.array_equal(fast, slow), (path.name, t)
    # Other rates, stereo and 8-bit files still go through PyAV.
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(np.zeros(2 * RATE, dtype="<i2").tobytes())
    assert m._pcm_wav(str(stereo)) is None and m._wav_header(str(stereo)) is None
    assert m._pcm_wav(str(recordings[0]))[1] != 16000  # resampled by PyAV at 16 kHz
    assert len(load_audio(recordings[0], 16000, window=1.0)) == 16000


def probe_duration(path: Path) -> float:
    from models.media import probe

    return probe(path).duration


def test_damaged_wav_header_is_a_media_error():
    """A RIFF/WAVE file whose chunks lie about their sizes: the stdlib reader raises untyped
    errors; the answer is still MediaError (found by fuzzing the service)."""
    from models.media import probe

    damaged = (b"RIFF" + (1000).to_bytes(4, "little") + b"WAVE" + b"LIST"
               + (2**31).to_bytes(4, "little") + b"\x00" * 64)
    with pytest.raises(MediaError):
        probe(damaged)
    with pytest.raises(MediaError):
        load_audio(damaged, RATE)
