"""Embedding manifest items through the model bundle: batched, in shards on disk, resumable.

``plan_entries`` turns manifest items into the entries to index (a long video becomes one entry
per window with ``segments``) and gives each its row id. ``embed_entries`` decodes and embeds
them ``batch_size`` at a time and writes ``shard-NNNNN.npz`` files (row ids, image and audio
embeddings, and the items that failed with their reasons) into a staging folder as it goes. Run
again after an interruption with the same staging folder, it skips the entries already embedded
and retries the ones that failed (their files may have been fixed meanwhile). Only one batch of
decoded media is held at a time; the embeddings (N x D float32 per modality) are held in full.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.bundle import FEATURES, FailedItem, modalities_of
from indexer.store import Entry
from models.errors import BundleError, CorpusError, MediaError
from models.item_media import InputSpec, load_item
from models.manifest import MANIFEST_NAME, Item, resolve
from models.media import media_duration
from models.runtime import ModelRuntime

STAGING_JSON = "staging.json"
_SHARD = re.compile(r"^shard-(\d{5,})\.npz$")


@dataclass(frozen=True)
class EmbedConfig:
    batch_size: int = 64
    shard_size: int = 4096  # entries per shard file: the granularity of a resume
    workers: int = 1  # threads decoding media (PyAV and Pillow release the GIL)
    progress: bool = True


@dataclass(frozen=True)
class Embedded:
    """What embedding produced: row ids (sorted), one (N, D) float32 array per modality."""

    rowids: np.ndarray
    vectors: dict[str, np.ndarray]
    failed: list[FailedItem]
    resumed: int  # entries found already embedded in the staging folder
    embedded: int  # entries embedded by this run


# ---------------------------------------------------------------------------- planning


def segment_id(item_id: str, seconds: float) -> str:
    """``clip-7@1.5``: a segment's id names its item and its window centre."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{item_id}@{text}"


def segment_times(duration: float, window_s: float) -> list[float]:
    """Window centres (hop = window) covering a video; the last window is kept when at least half
    of it lies inside the video."""
    count = max(1, math.floor(duration / window_s + 0.5))
    return [round(window_s * (k + 0.5), 6) for k in range(count)]


def plan_entries(
    corpus_dir: Path,
    items: Sequence[Item],
    window_s: float,
    segments: bool,
    first_rowid: int = 0,
    progress: bool = False,
) -> tuple[list[Entry], list[FailedItem]]:
    """The entries to embed, with consecutive row ids, and the items that failed planning.

    With ``segments``, a video longer than one window becomes one entry per window (its length
    is read from the file, so a missing or corrupt video fails here already).
    """
    entries: list[Entry] = []
    failed: list[FailedItem] = []
    rowid = first_rowid
    videos = sum(1 for item in items if item.video) if segments else 0
    bar = tqdm(total=videos, desc="measuring videos", unit="video", dynamic_ncols=True,
               disable=not progress or not videos)
    for item in items:
        moments: list[Item] = [item]
        if segments and item.video:
            bar.update()
            try:
                duration = media_duration(resolve(corpus_dir, item.video))
            except (MediaError, CorpusError) as exc:
                failed.append(FailedItem(id=item.id, reason=str(exc)))
                continue
            times = segment_times(duration, window_s)
            if len(times) > 1:
                moments = [replace(item, id=segment_id(item.id, t), time=t) for t in times]
        for moment in moments:
            entries.append(Entry(rowid=rowid, item=moment, source_id=item.id))
            rowid += 1
    bar.close()
    seen: set[str] = set()
    for entry in entries:
        if entry.item.id in seen:
            raise CorpusError(f"item id {entry.item.id!r} is used twice (a segment id collides "
                              "with an item id); rename the item")
        seen.add(entry.item.id)
    return entries, failed


def manifest_hash(corpus_dir: Path) -> str:
    digest = hashlib.sha256((Path(corpus_dir) / MANIFEST_NAME).read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------- staging


def staging_dir(out: Path, *key: str) -> Path:
    """The staging folder of a job: beside ``out``, named from ``out`` and what the job embeds
    (the model hash, the manifest hash, ...): the same job finds its shards again."""
    where = os.fspath(out.parent.resolve() / out.name)  # not through the link: it moves
    digest = hashlib.sha256("\0".join([where, *key]).encode()).hexdigest()
    return out.parent / f".{out.name}.staging-{digest[:12]}"


def open_staging(folder: Path, description: dict) -> None:
    """Create the staging folder, or keep it if it was made for the same job; else start over."""
    marker = folder / STAGING_JSON
    if folder.is_dir():
        try:
            if json.loads(marker.read_text()) == description:
                return
        except (OSError, ValueError):
            pass
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    marker.write_text(json.dumps(description, indent=2))


def _shards(folder: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _SHARD.match(p.name))]
    return [path for _, path in sorted(found)]


def next_shard_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _SHARD.match(p.name))]
    return max(numbers, default=-1) + 1


def write_shard(folder: Path, number: int, rowids, vectors: dict[str, np.ndarray],
                failed: list[tuple[int, str]]):
    """Write ``shard-NNNNN.npz`` through a temporary name: a shard on disk is always complete."""
    path = folder / f"shard-{number:05d}.npz"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"  # a retried writer elsewhere: its own
    with tmp.open("wb") as handle:
        np.savez(
            handle,
            rowids=np.asarray(rowids, dtype=np.int64),
            failed_rowids=np.asarray([r for r, _ in failed], dtype=np.int64),
            failed_reasons=np.asarray([why for _, why in failed], dtype=np.str_),
            **{f"vectors_{name}": v for name, v in vectors.items()},
        )
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Staged:
    """Everything the shards of a staging folder hold, row ids sorted."""

    rowids: np.ndarray  # int64 (N,)
    vectors: dict[str, np.ndarray]  # float32 (N, D) per modality
    failed: dict[int, str]  # row id -> reason, for the failures not embedded since


def read_staged(folder: Path, dim: int, modalities: Sequence[str]) -> Staged:
    """The shards' row ids, failures and the vectors of ``modalities`` (BundleError when a
    shard lacks one: a staging folder of another model)."""
    rowids: list[np.ndarray] = []
    vectors: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    failed: dict[int, str] = {}
    for path in _shards(folder):
        with np.load(path, allow_pickle=False) as shard:
            missing = [m for m in modalities if f"vectors_{m}" not in shard.files]
            if missing:
                raise BundleError(f"{path} holds no {', '.join(missing)} vectors: the staging "
                                  f"folder {folder} is not this build's; delete it")
            rowids.append(shard["rowids"])
            for m in modalities:
                vectors[m].append(shard[f"vectors_{m}"].reshape(-1, dim))
            failed.update(zip(shard["failed_rowids"].tolist(),
                              shard["failed_reasons"].tolist(), strict=True))
    if not rowids:
        empty = np.zeros((0, dim), dtype=np.float32)
        return Staged(np.zeros(0, np.int64), {m: empty for m in modalities}, failed)
    # A row is embedded once (resuming skips it), so the first occurrence is the only one.
    every = np.concatenate(rowids)
    unique, first = np.unique(every, return_index=True)
    for rowid in unique.tolist():
        failed.pop(rowid, None)  # failed once, embedded on a later attempt
    return Staged(unique.astype(np.int64),
                  {m: np.concatenate(parts)[first] for m, parts in vectors.items()}, failed)


def embed_batch(runtime: ModelRuntime, frames: np.ndarray, waves: np.ndarray
                ) -> dict[str, np.ndarray]:
    """Decoded frames and sounds -> each modality's vectors (the audio features too, when the
    model gives them)."""
    sounds = runtime.embed_sounds(waves)
    vectors = {"image": runtime.embed_images(frames).embeddings, "audio": sounds.embeddings}
    if sounds.features is not None:
        vectors[FEATURES] = sounds.features
    return vectors


def runtime_modalities(runtime: ModelRuntime) -> tuple[str, ...]:
    return modalities_of(runtime.has_audio_features)


# ---------------------------------------------------------------------------- embedding


def _batches(entries: Sequence[Entry], size: int) -> Iterator[Sequence[Entry]]:
    for start in range(0, len(entries), size):
        yield entries[start : start + size]


def _decode(corpus_dir: Path, spec: InputSpec, entry: Entry):
    try:
        return load_item(corpus_dir, entry.item, spec)
    except (MediaError, CorpusError) as exc:
        return str(exc)


def embed_entries(
    runtime: ModelRuntime,
    corpus_dir: Path,
    entries: Sequence[Entry],
    staging: Path,
    config: EmbedConfig,
    on_shard: Callable[[Path], None] | None = None,
) -> Embedded:
    """Embed ``entries`` into shards under ``staging`` (resuming), then gather every shard.

    ``on_shard`` is called with each shard's path once it is safely on disk (the tests interrupt
    a build there).
    """
    dim, modalities = runtime.info.embed_dim, runtime_modalities(runtime)
    spec = InputSpec(runtime.image_size, runtime.sample_rate, runtime.window_s)
    done = read_staged(staging, dim, modalities).rowids
    planned = np.asarray([entry.rowid for entry in entries], dtype=np.int64)
    todo = [entry for entry, seen in zip(entries, np.isin(planned, done), strict=True)
            if not seen]
    resumed = len(entries) - len(todo)
    shard_no = next_shard_number(staging)
    buffer = _ShardBuffer(dim, modalities)
    bar = tqdm(total=len(entries), initial=resumed, desc="embedding", unit="item",
               disable=not config.progress, dynamic_ncols=True)
    pool = ThreadPoolExecutor(config.workers) if config.workers > 1 else None
    decode = functools.partial(_decode, corpus_dir, spec)
    try:
        for batch in _batches(todo, config.batch_size):
            results: Iterable = pool.map(decode, batch) if pool else map(decode, batch)
            good: list[tuple[int, np.ndarray, np.ndarray]] = []
            for entry, result in zip(batch, results, strict=True):
                if isinstance(result, str):
                    buffer.failed.append((entry.rowid, result))
                else:
                    good.append((entry.rowid, *result))
            if good:
                frames = np.stack([frame for _, frame, _ in good])
                waves = np.stack([wave for _, _, wave in good]).astype(np.float32)
                buffer.add([r for r, _, _ in good], embed_batch(runtime, frames, waves))
            bar.update(len(batch))
            if buffer.size >= config.shard_size:
                path = buffer.flush(staging, shard_no)
                shard_no += 1
                if on_shard:
                    on_shard(path)
        if buffer.size:
            path = buffer.flush(staging, shard_no)
            if on_shard:
                on_shard(path)
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return gather(staging, entries, dim, modalities, resumed)


class _ShardBuffer:
    """The embeddings and failures since the last shard was written."""

    def __init__(self, dim: int, modalities: Sequence[str]) -> None:
        self.dim, self.modalities = dim, tuple(modalities)
        self.reset()

    def reset(self) -> None:
        self.rowids: list[int] = []
        self.vectors: dict[str, list[np.ndarray]] = {m: [] for m in self.modalities}
        self.failed: list[tuple[int, str]] = []

    @property
    def size(self) -> int:
        return len(self.rowids) + len(self.failed)

    def add(self, rowids: list[int], vectors: dict[str, np.ndarray]) -> None:
        self.rowids += rowids
        for m in self.modalities:
            self.vectors[m].append(np.asarray(vectors[m], dtype=np.float32))

    def flush(self, folder: Path, number: int) -> Path:
        empty = np.zeros((0, self.dim), dtype=np.float32)
        vectors = {m: np.concatenate(parts) if parts else empty
                   for m, parts in self.vectors.items()}
        path = write_shard(folder, number, self.rowids, vectors, self.failed)
        self.reset()
        return path


def gather(staging: Path, entries: Sequence[Entry], dim: int, modalities: Sequence[str],
           resumed: int) -> Embedded:
    """What the staging folder holds for ``entries`` (the local and the Ray build end here)."""
    staged = read_staged(staging, dim, modalities)
    planned = {entry.rowid: entry for entry in entries}
    keep = np.isin(staged.rowids, np.fromiter(planned, dtype=np.int64, count=len(planned)))
    failures = [
        FailedItem(id=planned[r].item.id, reason=why)
        for r, why in sorted(staged.failed.items()) if r in planned
    ]
    rowids = staged.rowids[keep]
    return Embedded(
        rowids=rowids,
        vectors={name: np.ascontiguousarray(v[keep], dtype=np.float32)
                 for name, v in staged.vectors.items()},
        failed=failures, resumed=resumed, embedded=len(rowids) - resumed,
    )
