"""A clip scored window by window: when in it the sound belongs to what is on screen.

For each window (the model's length, every ``hop`` seconds), the frame shown at the window's
centre and the sound around it go through AVOL-Net: the on-screen probability (the best cell,
calibrated) says how much the sound comes from something in the frame then, and the map where.
All windows are embedded in one batch per tower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models import media
from models.runtime import ModelRuntime
from service.overlay import Localization, with_peak
from service.queries import QueryError

MAX_WINDOWS = 240
"""The most windows one request may score (a long clip needs a larger hop)."""


@dataclass(frozen=True, eq=False)
class Moment:
    time: float  # the window's centre, seconds
    found: Localization

    @property
    def score(self) -> float:
        """The on-screen probability of this window."""
        return self.found.on_screen


def window_times(duration: float, window: float, hop: float) -> list[float]:
    """Window centres from the first full window to the last; one, mid-clip, if it is shorter."""
    if not hop > 0:
        raise QueryError(f"hop must be positive, not {hop}")
    if duration <= window:
        return [duration / 2]
    count = math.floor((duration - window) / hop + 1e-9) + 1
    if count > MAX_WINDOWS:
        least = (duration - window) / (MAX_WINDOWS - 1)
        raise QueryError(f"a {duration:.1f} s clip at a hop of {hop} s is {count} windows; "
                         f"at most {MAX_WINDOWS}: use a hop of {least:.2f} s or more")
    return [round(window / 2 + i * hop, 6) for i in range(count)]


def clip_timeline(runtime: ModelRuntime, data: bytes, hop: float) -> list[Moment]:
    """The timeline of an uploaded clip; QueryError (422) for an image or a sound."""
    found = media.probe(data)
    if found.kind != "video" or found.duration is None:
        what = "an image" if found.kind == "image" else "a sound"
        raise QueryError(f"timeline=true scores a clip window by window; the upload is {what}")
    return timeline(runtime, data, found.duration, hop)


def timeline(runtime: ModelRuntime, data: bytes, duration: float, hop: float) -> list[Moment]:
    times = window_times(duration, runtime.window_s, hop)
    clips = [media.load_clip(data, runtime.sample_rate, runtime.window_s, t, duration=duration)
             for t in times]
    images = runtime.embed_images([clip.frame for clip in clips])
    sounds = runtime.embed_audio(np.stack([clip.audio for clip in clips]))
    heat = runtime.heat_maps(images.grids, sounds)
    on_screen = runtime.on_screen_probability(runtime.best_cell_logits(images.grids, sounds))
    return [Moment(t, with_peak(grid, clip.frame.shape[1], clip.frame.shape[0], float(p)))
            for t, clip, grid, p in zip(times, clips, heat, on_screen, strict=True)]


def best(moments: list[Moment]) -> Moment:
    return max(moments, key=lambda moment: moment.score)
