"""Queries as plain functions of the model runtime and an index: decode, embed, search.

Nothing here knows about HTTP; the routes call these in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from indexer.bundle import FEATURES
from indexer.expand import expand_queries
from indexer.search import SearchIndex
from models import media
from models.errors import AvsearchError, UnsupportedMediaError
from models.runtime import ModelRuntime

Kind = Literal["image", "audio", "video"]
Direction = Literal["im2aud", "aud2im", "im2im", "aud2aud"]
Modality = Literal["image", "audio"]
VectorSet = Literal["image", "audio", "audio_features"]

SIDES: dict[str, tuple[Modality, Modality]] = {
    "im2aud": ("image", "audio"),
    "aud2im": ("audio", "image"),
    "im2im": ("image", "image"),
    "aud2aud": ("audio", "audio"),
}
"""Each direction's (query side, searched side)."""

DEFAULT_DIRECTION: dict[str, Direction] = {"image": "im2aud", "audio": "aud2im", "video": "aud2im"}
"""An image looks for sounds, a sound for images; a clip's sound looks for images."""


def vector_sets(runtime: ModelRuntime, direction: Direction) -> tuple[VectorSet, VectorSet]:
    """The vectors a search in ``direction`` compares: (the query's, the index's). Sounds are
    compared with sounds by the audio tower's own features where the model gives them (an index
    holds them then too: it was built with the same model); every other direction, and
    audio -> audio with an older model, by the shared embeddings."""
    if direction == "aud2aud" and runtime.has_audio_features:
        return FEATURES, FEATURES
    return SIDES[direction]


class QueryError(AvsearchError):
    """Parameters that do not fit the upload (a direction starting from a missing side)."""


@dataclass(frozen=True, eq=False)
class Upload:
    """A decoded upload: a frame, a sound, or both (a clip, taken at ``time``)."""

    kind: Kind
    frame: np.ndarray | None = None  # uint8 HxWx3 RGB, as uploaded
    audio: np.ndarray | None = None  # float32 mono window at the model's rate
    time: float | None = None
    duration: float | None = None


@dataclass(frozen=True)
class Hit:
    rank: int
    rowid: int
    score: float
    item: dict
    probability: float | None = None  # of a match, when the bundle is calibrated


def decode(data: bytes, runtime: ModelRuntime, t: float | None = None,
           expect: Kind | None = None) -> Upload:
    """Decode uploaded bytes (kind judged by content); ``expect`` refuses any other kind."""
    found = media.probe(data)
    kind = found.kind
    if expect is not None and kind != expect:
        raise UnsupportedMediaError(
            f"expected {_a(expect)} here, but the uploaded file is {_a(kind)}")
    if kind == "image":
        if t is not None:
            raise QueryError("t (a time in seconds) only applies to a clip or a sound, "
                             "not to an image")
        return Upload("image", frame=media.load_image(data))
    if kind == "audio":
        duration = found.duration if found.duration is not None else media.media_duration(data)
        wave = media.load_audio(data, runtime.sample_rate, runtime.window_s, t,
                                duration=duration)
        return Upload("audio", audio=wave, time=_moment(t, duration), duration=duration)
    clip = media.load_clip(data, runtime.sample_rate, runtime.window_s, t, reject_silent=True,
                           duration=found.duration)
    return Upload("video", frame=clip.frame, audio=clip.audio, time=clip.time,
                  duration=clip.duration)


def _a(kind: str) -> str:
    return {"image": "an image", "audio": "a sound", "video": "a clip (video)"}[kind]


def _moment(t: float | None, duration: float) -> float:
    return duration / 2 if t is None else t


def check_direction(kind: Kind, direction: Direction) -> None:
    """A query side the upload has: an image has no sound to search with, and so on."""
    side = SIDES[direction][0]
    if side == "image" and kind == "audio":
        raise QueryError(f"direction {direction} starts from an image, but the upload is a "
                         "sound; use aud2im or aud2aud, or upload an image or a clip")
    if side == "audio" and kind == "image":
        raise QueryError(f"direction {direction} starts from a sound, but the upload is an "
                         "image; use im2aud or im2im, or upload a sound or a clip")


def embed_image(runtime: ModelRuntime, upload: Upload) -> tuple[np.ndarray, np.ndarray]:
    """The (1, D) embedding of the upload's frame and its (D, h, w) localisation grid (one run
    of the image graph gives both)."""
    assert upload.frame is not None
    image = runtime.embed_images([upload.frame])
    return image.embeddings, image.grids[0]


def embed_sound(runtime: ModelRuntime, upload: Upload, side: VectorSet
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """The (1, D) vector of the upload's sound that ``side`` names, and its (1, D) audio
    features (None where the model gives none): what an expansion needs."""
    assert upload.audio is not None
    sounds = runtime.embed_sounds(upload.audio[None, :])
    vector = sounds.features if side == FEATURES else sounds.embeddings
    assert vector is not None  # vector_sets asks for features only where they exist
    return vector, sounds.features


def expand_query(index: SearchIndex, vector: np.ndarray, features: np.ndarray | None,
                 side: VectorSet, count: int, exclude: int | None = None
                 ) -> tuple[np.ndarray, int]:
    """A (1, D) sound query (``vector``, of the vector set ``side``) averaged with its
    ``count`` nearest sounds of the index (indexer.expand): (the vector, how many it was
    averaged with). An image query (no ``features``) is returned as it is."""
    if features is None:
        return vector, 0
    query, used = expand_queries(index, vector, features, side, count, exclude=exclude)
    return query, used[0]


def stored_vector(index: SearchIndex, rowid: int, side: VectorSet) -> np.ndarray:
    """An indexed item's stored (1, D) embedding."""
    vectors, rowids = index.vectors(side)
    at = int(np.searchsorted(rowids, rowid))
    if at >= len(rowids) or int(rowids[at]) != rowid:
        raise KeyError(rowid)
    return np.asarray(vectors[at : at + 1], dtype=np.float32)


def search(index: SearchIndex, vector: np.ndarray, modality: VectorSet, k: int,
           exclude: int | None = None) -> list[Hit]:
    """The ``k`` best items of ``modality``; ``exclude`` leaves out one row (the query item)."""
    fetch = min(k + (exclude is not None), max(index.count, 1))
    scores, rowids = index.search(modality, vector, fetch)
    pairs = [(float(s), int(r)) for s, r in zip(scores[0], rowids[0], strict=True)
             if r >= 0 and r != exclude][:k]
    items = index.items([r for _, r in pairs])
    return [Hit(rank, rowid, score, item)
            for rank, ((score, rowid), item) in enumerate(zip(pairs, items, strict=True), 1)
            if item is not None]
