"""The corpus manifest: ``manifest.jsonl``, one item a line (DESIGN.md, "Corpus").

An item names its media relative to the corpus folder: either a ``video`` (with an optional
``time`` in seconds) or an ``image`` and an ``audio`` file. ``labels`` and ``split`` are optional;
any other keys (speaker, kind, box, ...) are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import CorpusError

MANIFEST_NAME = "manifest.jsonl"
_CORE_KEYS = ("id", "image", "audio", "video", "time", "labels", "split")


@dataclass(frozen=True)
class Item:
    """One corpus item: a moment of a video, or an image paired with a sound."""

    id: str
    image: str | None = None
    audio: str | None = None
    video: str | None = None
    time: float | None = None
    labels: tuple[str, ...] = ()
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id}
        for key in ("image", "audio", "video", "time", "split"):
            value = getattr(self, key)
            if value is not None:
                row[key] = value
        row["labels"] = list(self.labels)
        row.update(self.extra)
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any], where: str = "") -> Item:
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
            raise CorpusError(f"{where}: every item needs a non-empty string 'id'")
        has_pair = bool(row.get("image")) and bool(row.get("audio"))
        if not row.get("video") and not has_pair:
            raise CorpusError(
                f"{where}: item {row['id']!r} needs 'video' or both 'image' and 'audio'"
            )
        labels = row.get("labels", [])
        if isinstance(labels, str):
            labels = [labels]
        time = row.get("time")
        if time is not None and not isinstance(time, int | float):
            raise CorpusError(f"{where}: item {row['id']!r} has a non-numeric 'time'")
        extra = {k: v for k, v in row.items() if k not in _CORE_KEYS}
        return cls(
            id=row["id"],
            image=row.get("image"),
            audio=row.get("audio"),
            video=row.get("video"),
            time=None if time is None else float(time),
            labels=tuple(str(label) for label in labels),
            split=row.get("split"),
            extra=extra,
        )


def read_manifest(corpus_dir: str | Path) -> list[Item]:
    """Read and validate ``corpus_dir/manifest.jsonl``; ids must be unique."""
    path = Path(corpus_dir) / MANIFEST_NAME
    if not path.is_file():
        raise CorpusError(f"no {MANIFEST_NAME} in {corpus_dir}: is this a corpus folder?")
    return list(_parse(path))


def _parse(path: Path) -> Iterator[Item]:
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{where}: not valid JSON ({exc.msg})") from None
            item = Item.from_json(row, where)
            if item.id in seen:
                raise CorpusError(f"{where}: duplicate id {item.id!r}")
            seen.add(item.id)
            yield item


def write_manifest(corpus_dir: str | Path, items: Iterable[Item]) -> Path:
    """Write the manifest atomically (temporary name, then rename)."""
    path = Path(corpus_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def resolve(corpus_dir: str | Path, relative: str) -> Path:
    """The absolute path of a media file, refusing paths that leave the corpus folder."""
    root = Path(corpus_dir).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise CorpusError(f"media path {relative!r} leaves the corpus folder")
    return path
