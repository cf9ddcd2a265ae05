"""Reading the two source data sets in their original formats.

- MNIST: IDX files, gzip-compressed (``mnist/*-images-idx3-ubyte.gz`` with the matching
  ``*-labels-idx1-ubyte.gz``). Images: magic 2051, count, rows, cols (big-endian int32), then
  uint8 pixels. Labels: magic 2049, count, then uint8 labels.
- FSDD: mono WAV recordings anywhere under ``fsdd/``, named ``{digit}_{speaker}_{take}.wav``.
"""

from __future__ import annotations

import gzip
import re
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import CorpusError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_IMAGES_SUFFIX = "-images-idx3-ubyte.gz"
_LABELS_SUFFIX = "-labels-idx1-ubyte.gz"
_RECORDING_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z0-9-]+)_(?P<take>\d+)\.wav$")


@dataclass(frozen=True)
class MnistImages:
    """Images (N, rows, cols) uint8 and their labels (N,) uint8, in file order."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Recording:
    """One FSDD recording: where it is, which digit, who spoke it, which take."""

    path: Path
    digit: int
    speaker: str
    take: int

    @property
    def name(self) -> str:
        return self.path.name


def _read_gzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError) as exc:
        raise CorpusError(f"{path}: cannot read the gzip file ({exc})") from None


def read_idx_images(path: str | Path) -> np.ndarray:
    """The images of an IDX3 file as an (N, rows, cols) uint8 array."""
    path = Path(path)
    data = _read_gzip(path)
    if len(data) < 16:
        raise CorpusError(f"{path}: malformed IDX header (file is {len(data)} bytes)")
    magic, count, rows, cols = struct.unpack(">iiii", data[:16])
    if magic != IMAGES_MAGIC:
        raise CorpusError(
            f"{path}: malformed IDX header: magic {magic}, expected {IMAGES_MAGIC} for images"
        )
    if count < 0 or rows <= 0 or cols <= 0:
        raise CorpusError(f"{path}: malformed IDX header: count {count}, size {rows}x{cols}")
    expected = count * rows * cols
    if len(data) - 16 != expected:
        raise CorpusError(
            f"{path}: the header announces {count} images of {rows}x{cols} ({expected} bytes) "
            f"but the file holds {len(data) - 16} bytes of pixels"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """The labels of an IDX1 file as an (N,) uint8 array."""
    path = Path(path)
    data = _read_gzip(path)
    if len(data) < 8:
        raise CorpusError(f"{path}: malformed IDX header (file is {len(data)} bytes)")
    magic, count = struct.unpack(">ii", data[:8])
    if magic != LABELS_MAGIC:
        raise CorpusError(
            f"{path}: malformed IDX header: magic {magic}, expected {LABELS_MAGIC} for labels"
        )
    if count < 0 or len(data) - 8 != count:
        raise CorpusError(
            f"{path}: the header announces {count} labels but the file holds {len(data) - 8}"
        )
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if labels.size and labels.max() > 9:
        raise CorpusError(f"{path}: label {int(labels.max())} is not a digit 0-9")
    return labels


def load_mnist(source: str | Path, max_images: int | None = None) -> MnistImages:
    """All image/label file pairs in ``source/mnist`` (sorted by name, concatenated).

    ``max_images`` keeps the first N images. Image indices are positions in that sequence.
    """
    folder = Path(source) / "mnist"
    if not folder.is_dir():
        raise CorpusError(f"no mnist/ folder in {source}: expected mnist/*{_IMAGES_SUFFIX}")
    image_files = sorted(folder.glob(f"*{_IMAGES_SUFFIX}"))
    if not image_files:
        raise CorpusError(f"no MNIST image file (*{_IMAGES_SUFFIX}) in {folder}")
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    total = 0
    for image_file in image_files:
        label_file = image_file.with_name(image_file.name[: -len(_IMAGES_SUFFIX)] + _LABELS_SUFFIX)
        if not label_file.is_file():
            raise CorpusError(f"{image_file}: no matching labels file {label_file.name}")
        file_images = read_idx_images(image_file)
        file_labels = read_idx_labels(label_file)
        if file_images.shape[0] != file_labels.shape[0]:
            raise CorpusError(
                f"{label_file.name} has {file_labels.shape[0]} labels but {image_file.name} has "
                f"{file_images.shape[0]} images: the files do not belong together"
            )
        if images and file_images.shape[1:] != images[0].shape[1:]:
            raise CorpusError(f"{image_file}: image size differs from {image_files[0].name}")
        images.append(file_images)
        labels.append(file_labels)
        total += file_images.shape[0]
        if max_images is not None and total >= max_images:
            break
    all_images = np.concatenate(images)[:max_images]
    all_labels = np.concatenate(labels)[:max_images]
    if all_images.shape[0] == 0:
        raise CorpusError(f"the MNIST files in {folder} hold no images")
    return MnistImages(images=all_images, labels=all_labels)


def parse_recording_name(path: Path) -> Recording | None:
    """The digit, speaker and take from an FSDD file name, or None if it is not one."""
    match = _RECORDING_NAME.match(path.name)
    if match is None:
        return None
    return Recording(
        path=path,
        digit=int(match["digit"]),
        speaker=match["speaker"],
        take=int(match["take"]),
    )


def find_recordings(source: str | Path) -> list[Recording]:
    """Every ``{digit}_{speaker}_{take}.wav`` under ``source/fsdd``, sorted by digit, speaker, take.

    File names must be unique (they are kept when copied into a corpus).
    """
    folder = Path(source) / "fsdd"
    if not folder.is_dir():
        raise CorpusError(f"no fsdd/ folder in {source}: expected fsdd/**/DIGIT_SPEAKER_TAKE.wav")
    found: dict[str, Recording] = {}
    for path in sorted(folder.rglob("*.wav")):
        recording = parse_recording_name(path)
        if recording is None or not path.is_file():
            continue
        if recording.name in found:
            raise CorpusError(
                f"two recordings named {recording.name}: {found[recording.name].path} and {path}"
            )
        found[recording.name] = recording
    if not found:
        raise CorpusError(f"no recordings (DIGIT_SPEAKER_TAKE.wav) found under {folder}")
    return sorted(found.values(), key=lambda r: (r.digit, r.speaker, r.take))


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM WAV file as a mono float32 waveform in [-1, 1] and its sample rate."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as handle:
            channels = handle.getnchannels()
            width = handle.getsampwidth()
            rate = handle.getframerate()
            raw = handle.readframes(handle.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise CorpusError(f"{path}: not a readable PCM WAV file ({exc})") from None
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise CorpusError(f"{path}: unsupported WAV sample width of {width} bytes")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    if samples.size == 0:
        raise CorpusError(f"{path}: the recording is empty")
    return samples, rate
