"""Localisation answers: the heat map's peak in image coordinates, and a PNG overlay."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from models.runtime import ModelRuntime

OVERLAY_MAX_SIDE = 512
OVERLAY_MIN_SIDE = 256
"""The overlay PNG is the uploaded frame scaled so that its longer side is between these."""

# A perceptually ordered colour ramp (dark blue -> purple -> orange -> yellow), interpolated.
_RAMP = np.array([[13, 8, 135], [126, 3, 168], [204, 71, 120], [248, 149, 64], [240, 249, 33]],
                 dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Localization:
    grid: np.ndarray  # float32 (h, w): the probability that each cell holds the sound
    peak_cell: tuple[int, int]  # (row, column) of the best cell
    peak_xy: tuple[float, float]  # the centre of that cell in the uploaded frame's pixels
    width: int
    height: int
    on_screen: float  # the probability that the sound's source is in the frame at all


def localize(runtime: ModelRuntime, frame: np.ndarray, audio: np.ndarray) -> Localization:
    """AVOL-Net's heat map of where in ``frame`` the sound of ``audio`` comes from."""
    image = runtime.embed_images([frame])
    sound = runtime.embed_audio(audio[None, :])
    grid = runtime.heat_maps(image.grids, sound)[0].astype(np.float32)
    on_screen = runtime.on_screen_probability(runtime.best_cell_logits(image.grids, sound))[0]
    height, width = frame.shape[:2]
    return with_peak(grid, width, height, float(on_screen))


def with_peak(grid: np.ndarray, width: int, height: int,
              on_screen: float | None = None) -> Localization:
    """A heat map and its best cell, placed in a frame of ``width`` x ``height`` pixels;
    ``on_screen`` defaults to the best cell's probability."""
    grid = np.asarray(grid, dtype=np.float32)
    rows, cols = grid.shape
    row, col = np.unravel_index(int(np.argmax(grid)), grid.shape)
    # The model sees the frame resized to a square, so a cell covers 1/cols of the width.
    x = (col + 0.5) * width / cols
    y = (row + 0.5) * height / rows
    on_screen = float(grid.max()) if on_screen is None else on_screen
    return Localization(grid, (int(row), int(col)), (float(x), float(y)), width, height,
                        on_screen)


def colorize(heat: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB through the colour ramp."""
    position = np.clip(heat, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).round().astype(np.uint8)


def overlay_png(frame: np.ndarray, grid: np.ndarray, opacity: float = 0.55) -> bytes:
    """The frame with the heat map blended over it (bilinear upsampling), as PNG bytes."""
    image = Image.fromarray(frame)
    longest = max(image.size)
    scale = min(max(longest, OVERLAY_MIN_SIDE), OVERLAY_MAX_SIDE) / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    heat = Image.fromarray(grid.astype(np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR)
    colours = colorize(np.asarray(heat))
    # Cells that hold little of the sound stay mostly visible; the source is painted over.
    alpha = (opacity * np.clip(np.asarray(heat), 0, 1))[..., None]
    blended = np.asarray(image, dtype=np.float32) * (1 - alpha) + colours * alpha
    buffer = io.BytesIO()
    Image.fromarray(blended.round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
