"""Turning store rows into the API's item and hit bodies, with their media URLs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from service.queries import Hit
from service.schemas import HitOut, ItemOut, MediaLinks


def media_links(item: dict[str, Any], base: str = "") -> MediaLinks:
    root = f"{base}/v1/items/{quote(item['id'], safe='')}"
    return MediaLinks(image=f"{root}/image", audio=f"{root}/audio",
                      video=f"{root}/video" if item.get("video") else None)


def item_out(item: dict[str, Any], base: str = "") -> ItemOut:
    return ItemOut(id=item["id"], source_id=item["source_id"], labels=item["labels"],
                   time=item["time"], split=item["split"], extra=item["extra"],
                   media=media_links(item, base))


def hit_out(hit: Hit, base: str = "") -> HitOut:
    return HitOut(rank=hit.rank, id=hit.item["id"], score=round(hit.score, 6),
                  labels=hit.item["labels"], time=hit.item["time"],
                  media=media_links(hit.item, base))
