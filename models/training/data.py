"""The training pairs, decoded once into memory.

Each manifest item of the training split gives one positive pair: its frame and the audio
window around it. Labels are never read here; only which image came with which sound.
Items that carry a localisation ``box`` (scenes with several objects) train the AVOL head only:
their single sound does not describe the whole frame, so they stay out of the embedding loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.errors import CorpusError
from models.item_media import InputSpec, load_item, media_keys
from models.manifest import Item


@dataclass(frozen=True)
class PairSet:
    images: torch.Tensor  # uint8 (N, S, S, 3)
    waves: torch.Tensor  # float32 (N, samples)
    single: torch.Tensor  # bool (N,): one object in the frame (not a multi-object scene)

    def __len__(self) -> int:
        return len(self.images)


def load_pairs(
    corpus_dir: str | Path, items: list[Item], spec: InputSpec, progress: bool = True
) -> PairSet:
    if not items:
        raise CorpusError(f"no training items in {corpus_dir}")
    frames: dict[str, np.ndarray] = {}
    waves: dict[str, np.ndarray] = {}
    image_rows, wave_rows = [], []
    for item in tqdm(items, desc="decoding pairs", unit="item", disable=not progress):
        image_key, audio_key = media_keys(item)
        if image_key not in frames or audio_key not in waves:
            frame, wave = load_item(corpus_dir, item, spec)
            frames.setdefault(image_key, frame)
            waves.setdefault(audio_key, wave)
        image_rows.append(frames[image_key])
        wave_rows.append(waves[audio_key])
    return PairSet(
        images=torch.from_numpy(np.stack(image_rows)),
        waves=torch.from_numpy(np.stack(wave_rows).astype(np.float32)),
        single=torch.tensor(["box" not in item.extra for item in items]),
    )
