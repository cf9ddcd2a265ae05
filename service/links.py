"""Turning store rows into the API's item and hit bodies, with their media URLs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from service.overlay import Localization
from service.queries import Hit
from service.schemas import ExplanationOut, HitOut, ItemOut, MediaLinks, MomentOut, Peak
from service.timeline import Moment


def media_links(item: dict[str, Any], base: str = "") -> MediaLinks:
    root = f"{base}/v1/items/{quote(item['id'], safe='')}"
    return MediaLinks(image=f"{root}/image", audio=f"{root}/audio",
                      video=f"{root}/video" if item.get("video") else None)


def item_out(item: dict[str, Any], base: str = "") -> ItemOut:
    return ItemOut(id=item["id"], source_id=item["source_id"], labels=item["labels"],
                   time=item["time"], split=item["split"], extra=item["extra"],
                   media=media_links(item, base))


def hit_out(hit: Hit, base: str = "", explanation: ExplanationOut | None = None) -> HitOut:
    probability = round(hit.probability, 5) if hit.probability is not None else None
    return HitOut(rank=hit.rank, id=hit.item["id"], score=round(hit.score, 6),
                  match_probability=probability,
                  labels=hit.item["labels"], time=hit.item["time"],
                  media=media_links(hit.item, base), explanation=explanation)


def peak_out(found: Localization) -> Peak:
    row, col = found.peak_cell
    return Peak(row=row, col=col, x=round(found.peak_xy[0], 2), y=round(found.peak_xy[1], 2),
                score=round(float(found.grid[row, col]), 5))


def grid_out(found: Localization) -> list[list[float]]:
    return [[round(float(v), 5) for v in line] for line in found.grid]


def moments_out(moments: list[Moment]) -> list[MomentOut]:
    return [MomentOut(time=m.time, score=round(m.score, 5), peak=peak_out(m.found))
            for m in moments]


def explanation_out(found: Localization, image: str, overlay: str | None = None
                    ) -> ExplanationOut:
    return ExplanationOut(image=image, width=found.width, height=found.height,
                          grid=grid_out(found), peak=peak_out(found), overlay=overlay)


def overlay_url(image_item: str, sound_item: str, base: str = "") -> str:
    """The overlay of one indexed item's sound on another's image."""
    return (f"{base}/v1/items/{quote(image_item, safe='')}/overlay"
            f"?sound_of={quote(sound_item, safe='')}")
