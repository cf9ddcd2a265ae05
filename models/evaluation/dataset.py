"""The held-out media an evaluation runs on, decoded once (torch-free).

Retrieval runs over distinct media: an image or a recording that several items share is one
database entry, so a duplicate can never be its own best match. Items with a ``box`` (the
localisation scenes) are kept apart for the pointing game.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models import media
from models.item_media import InputSpec, load_item, media_keys
from models.manifest import Item, resolve


@dataclass(frozen=True)
class RetrievalSet:
    images: np.ndarray  # uint8 (N, S, S, 3)
    image_labels: list[frozenset[str]]
    waves: np.ndarray  # float32 (M, samples)
    audio_labels: list[frozenset[str]]


@dataclass(frozen=True)
class SceneSet:
    images: np.ndarray  # uint8 (K, S, S, 3)
    waves: np.ndarray  # float32 (K, samples)
    boxes: np.ndarray  # float (K, 4): x0, y0, x1, y1 as fractions of the frame


def is_retrieval_item(item: Item) -> bool:
    """A pair (or clip) of the retrieval table: not a scene of several digits (``box``), nor
    one whose sound is of nothing in the frame (``absent``)."""
    return "box" not in item.extra and not item.extra.get("absent")


def split_items(items: Sequence[Item], split: str | None) -> list[Item]:
    return [item for item in items if split is None or item.split == split]


def load_retrieval_set(
    corpus_dir: str | Path, items: Sequence[Item], spec: InputSpec, progress: bool = True
) -> RetrievalSet:
    images: dict[str, tuple[np.ndarray, frozenset[str]]] = {}
    waves: dict[str, tuple[np.ndarray, frozenset[str]]] = {}
    for item in tqdm(items, desc="decoding", unit="item", disable=not progress, leave=False):
        if not is_retrieval_item(item):
            continue  # scenes: several digits, or none of them spoken
        image_key, audio_key = media_keys(item)
        if image_key in images and audio_key in waves:
            continue
        frame, wave = load_item(corpus_dir, item, spec)
        labels = frozenset(item.labels)
        images.setdefault(image_key, (frame, labels))
        waves.setdefault(audio_key, (wave, labels))
    return RetrievalSet(
        images=_stack([frame for frame, _ in images.values()], np.uint8),
        image_labels=[labels for _, labels in images.values()],
        waves=_stack([wave for wave, _ in waves.values()], np.float32),
        audio_labels=[labels for _, labels in waves.values()],
    )


def load_scene_set(
    corpus_dir: str | Path, items: Sequence[Item], spec: InputSpec, progress: bool = True
) -> SceneSet:
    frames, waves, boxes = [], [], []
    scenes = [item for item in items if "box" in item.extra]
    for item in tqdm(scenes, desc="decoding scenes", disable=not progress, leave=False):
        frame, wave = load_item(corpus_dir, item, spec)
        height, width = _original_size(corpus_dir, item)
        x0, y0, x1, y1 = item.extra["box"]
        frames.append(frame)
        waves.append(wave)
        boxes.append((x0 / width, y0 / height, x1 / width, y1 / height))
    return SceneSet(
        images=_stack(frames, np.uint8),
        waves=_stack(waves, np.float32),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
    )


def load_offscreen_set(
    corpus_dir: str | Path, items: Sequence[Item], spec: InputSpec, progress: bool = True
) -> SceneSet:
    """The scenes whose sound is of nothing in the frame (``absent``); no boxes."""
    frames, waves = [], []
    absent = [item for item in items if item.extra.get("absent")]
    for item in tqdm(absent, desc="decoding off-screen scenes", disable=not progress,
                     leave=False):
        frame, wave = load_item(corpus_dir, item, spec)
        frames.append(frame)
        waves.append(wave)
    return SceneSet(images=_stack(frames, np.uint8), waves=_stack(waves, np.float32),
                    boxes=np.zeros((0, 4), dtype=np.float64))


def _original_size(corpus_dir: str | Path, item: Item) -> tuple[int, int]:
    if "size" in item.extra:
        width, height = item.extra["size"]
        return int(height), int(width)
    if item.image:
        image = media.load_image(resolve(corpus_dir, item.image))
    else:
        image = media.load_clip(resolve(corpus_dir, str(item.video)), 8000, 1.0, item.time).frame
    return image.shape[0], image.shape[1]


def _stack(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.stack(arrays).astype(dtype, copy=False) if arrays else np.zeros((0,), dtype=dtype)
