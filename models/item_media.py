"""Decoding a manifest item into the model's inputs (no torch): a resized frame and a waveform."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import media
from models.manifest import Item, resolve


@dataclass(frozen=True)
class InputSpec:
    """What the towers take: the frame size in pixels and the audio window."""

    image_size: int
    sample_rate: int
    window_s: float


def media_keys(item: Item) -> tuple[str, str]:
    """Keys naming an item's frame and its sound: two items with the same key share the media."""
    if item.video:
        moment = f"{item.video}@{item.time if item.time is not None else 'mid'}"
        return moment, moment
    return str(item.image), str(item.audio)


def load_frame(corpus_dir: str | Path, item: Item, spec: InputSpec) -> np.ndarray:
    if item.video:
        return load_item(corpus_dir, item, spec)[0]
    image = media.load_image(resolve(corpus_dir, str(item.image)))
    return media.resize_image(image, (spec.image_size, spec.image_size))


def load_item(corpus_dir: str | Path, item: Item, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """The frame (uint8, size x size x 3) and the audio window (float32) of one item."""
    if item.video:
        clip = media.load_clip(
            resolve(corpus_dir, item.video), spec.sample_rate, spec.window_s, item.time
        )
        frame, wave = clip.frame, clip.audio
    else:
        frame = media.load_image(resolve(corpus_dir, str(item.image)))
        wave = media.load_audio(
            resolve(corpus_dir, str(item.audio)), spec.sample_rate, spec.window_s, item.time
        )
    return media.resize_image(frame, (spec.image_size, spec.image_size)), wave
