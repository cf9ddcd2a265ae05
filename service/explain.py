"""Explained hits: for a cross-modal search, where in the image the sound comes from.

im2aud: the query image's localisation grid against each hit's sound (the stored audio
embeddings; no extra model call). aud2im: each hit's frame, decoded from its corpus and run
through the image tower in one batch, against the query sound. Same-modality hits have no
explanation (there is no sound and image pair to relate).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer.search import SearchIndex
from models import media
from models.errors import AvsearchError
from models.manifest import resolve
from models.runtime import ModelRuntime
from service.overlay import Localization, with_peak
from service.queries import Hit, stored_vector


def item_frame(item: dict[str, Any], runtime: ModelRuntime) -> np.ndarray:
    """An indexed item's frame at its own size (a video item's frame at its time)."""
    if item.get("image"):
        return media.load_image(resolve(item["corpus"], item["image"]))
    clip = media.load_clip(resolve(item["corpus"], item["video"]), runtime.sample_rate,
                           runtime.window_s, item["time"])
    return clip.frame


def explain_im2aud(runtime: ModelRuntime, index: SearchIndex, query_grid: np.ndarray,
                   width: int, height: int, hits: list[Hit]) -> list[Localization | None]:
    """Where in the query image (grid ``(h, w, D)``) each hit's sound comes from."""
    if not hits:
        return []
    sounds = np.concatenate([stored_vector(index, hit.rowid, "audio") for hit in hits])
    grids = np.broadcast_to(query_grid, (len(hits), *query_grid.shape))
    heat = runtime.heat_maps(grids, sounds)
    return [with_peak(grid, width, height) for grid in heat]


def explain_aud2im(runtime: ModelRuntime, query_sound: np.ndarray,
                   hits: list[Hit]) -> list[Localization | None]:
    """Where in each hit's image the query sound (a ``(1, D)`` embedding) comes from. A hit
    whose media cannot be read (moved, deleted) gets no explanation; the others still do."""
    frames: list[np.ndarray] = []
    readable: list[int] = []
    for position, hit in enumerate(hits):
        try:
            frames.append(item_frame(hit.item, runtime))
            readable.append(position)
        except (AvsearchError, KeyError, TypeError):
            continue
    found: list[Localization | None] = [None] * len(hits)
    if not frames:
        return found
    grids = runtime.embed_images(frames).grids  # one batched call
    heat = runtime.heat_maps(grids, np.repeat(query_sound, len(frames), axis=0))
    for position, frame, grid in zip(readable, frames, heat, strict=True):
        found[position] = with_peak(grid, frame.shape[1], frame.shape[0])
    return found
