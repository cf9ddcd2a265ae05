"""The SQLite item store of an index bundle: one row per indexed item, row id == FAISS id.

Columns: ``rowid`` (the FAISS id), ``id`` (the item's id; a video segment's is
``<source id>@<seconds>``), ``source_id`` (the manifest item it came from), ``image``, ``audio``,
``video`` (paths relative to the item's corpus), ``time`` (seconds), ``labels`` (JSON list),
``split``, ``extra`` (JSON object: every other manifest field), ``corpus`` (a reference to the
``corpora`` table, which holds the corpus folders' absolute paths).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import BundleError
from models.manifest import Item

SCHEMA = """
CREATE TABLE corpora (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE items (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    source_id TEXT NOT NULL,
    image TEXT,
    audio TEXT,
    video TEXT,
    time REAL,
    labels TEXT NOT NULL,
    split TEXT,
    extra TEXT NOT NULL,
    corpus INTEGER NOT NULL REFERENCES corpora(id)
);
CREATE INDEX items_source ON items(source_id);
CREATE INDEX items_split ON items(split);
"""
_COLUMNS = "rowid, id, source_id, image, audio, video, time, labels, split, extra, corpus"
_CHUNK = 900  # below SQLite's default limit of bound parameters per statement


@dataclass(frozen=True)
class Entry:
    """An item as indexed: its FAISS id, the item (a segment: own id and time), its origin."""

    rowid: int
    item: Item
    source_id: str


def create_store(path: Path) -> None:
    """A new, empty store at ``path`` (which must not exist)."""
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
    db.close()


class ItemStore:
    """The item table, read-only unless opened with ``writable``; safe to share across threads."""

    def __init__(self, path: Path, writable: bool = False) -> None:
        if not path.is_file():
            raise BundleError(f"index bundle is missing {path.name} ({path})")
        uri = f"file:{path}?mode={'rw' if writable else 'ro'}"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._db.execute("SELECT count(*) FROM items").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BundleError(f"{path} is not a readable item store: {exc}") from None
        self._lock = threading.Lock()
        self.path = path

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ItemStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM items")[0][0])

    def rowids(self, split: str | None = None) -> list[int]:
        if split is None:
            rows = self._query("SELECT rowid FROM items ORDER BY rowid")
        else:
            rows = self._query("SELECT rowid FROM items WHERE split = ? ORDER BY rowid", (split,))
        return [row[0] for row in rows]

    def source_ids(self) -> set[str]:
        return {row[0] for row in self._query("SELECT DISTINCT source_id FROM items")}

    def rowids_of(self, ids: Iterable[str]) -> dict[str, list[int]]:
        """Row ids per asked id, matching an item's id or its source id (all its segments)."""
        found: dict[str, list[int]] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            sql = (f"SELECT rowid, id, source_id FROM items WHERE id IN ({marks}) "
                   f"OR source_id IN ({marks}) ORDER BY rowid")
            for rowid, item_id, source_id in self._query(sql, chunk + chunk):
                for key in {item_id, source_id} & set(chunk):
                    found.setdefault(key, []).append(rowid)
        return found

    def rows(self, rowids: Sequence[int]) -> list[dict[str, Any] | None]:
        """The items of ``rowids`` as dicts, in that order (None for an unknown row id)."""
        corpora = dict(self._query("SELECT id, path FROM corpora"))
        by_rowid: dict[int, dict[str, Any]] = {}
        wanted = [int(r) for r in rowids]
        for chunk in _chunks(sorted(set(wanted))):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {_COLUMNS} FROM items WHERE rowid IN ({marks})"
            for row in self._query(sql, chunk):
                by_rowid[row[0]] = _as_dict(row, corpora)
        return [by_rowid.get(r) for r in wanted]

    def row_by_id(self, item_id: str) -> dict[str, Any] | None:
        found = self._query("SELECT rowid FROM items WHERE id = ?", (item_id,))
        return self.rows([found[0][0]])[0] if found else None

    def entries(self, rowids: Sequence[int]) -> list[Entry]:
        return [to_entry(row) for row in self.rows(rowids) if row is not None]

    # ------------------------------------------------------------------ writing

    def insert(self, entries: Sequence[Entry], corpus: str | Path) -> None:
        corpus_path = os.fspath(Path(corpus).resolve())
        with self._lock, self._db:
            self._db.execute("INSERT OR IGNORE INTO corpora (path) VALUES (?)", (corpus_path,))
            (corpus_id,) = self._db.execute(
                "SELECT id FROM corpora WHERE path = ?", (corpus_path,)
            ).fetchone()
            self._db.executemany(
                f"INSERT INTO items ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_as_row(entry, corpus_id) for entry in entries],
            )

    def delete(self, rowids: Sequence[int]) -> None:
        with self._lock, self._db:
            for chunk in _chunks([int(r) for r in rowids]):
                marks = ",".join("?" * len(chunk))
                self._db.execute(f"DELETE FROM items WHERE rowid IN ({marks})", chunk)


def _chunks(values: list, size: int = _CHUNK) -> Iterable[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _as_row(entry: Entry, corpus_id: int) -> tuple:
    item = entry.item
    return (
        entry.rowid, item.id, entry.source_id, item.image, item.audio, item.video, item.time,
        json.dumps(list(item.labels)), item.split, json.dumps(item.extra, ensure_ascii=False),
        corpus_id,
    )


def _as_dict(row: tuple, corpora: dict[int, str]) -> dict[str, Any]:
    rowid, item_id, source_id, image, audio, video, time, labels, split, extra, corpus = row
    return {
        "rowid": rowid, "id": item_id, "source_id": source_id, "image": image, "audio": audio,
        "video": video, "time": time, "labels": json.loads(labels), "split": split,
        "extra": json.loads(extra), "corpus": corpora.get(corpus),
    }


def to_entry(row: dict[str, Any]) -> Entry:
    """A store row back to the manifest item it indexes (as indexed: a segment's id and time)."""
    item = Item(
        id=row["id"], image=row["image"], audio=row["audio"], video=row["video"],
        time=row["time"], labels=tuple(row["labels"]), split=row["split"], extra=row["extra"],
    )
    return Entry(rowid=row["rowid"], item=item, source_id=row["source_id"])
