"""Building an index bundle, and changing one without a full rebuild (add, remove).

Every operation writes a complete new version of the bundle and switches INDEX_DIR to it
atomically (``indexer.bundle.publish``); the version being served is never modified. Add and
remove work from the embeddings stored in the bundle, so media is decoded only for new items.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np

from indexer import bundle
from indexer.bundle import ROWIDS, FailedItem, IndexInfo
from indexer.embed import (
    EmbedConfig,
    Embedded,
    embed_entries,
    manifest_hash,
    open_staging,
    plan_entries,
    staging_dir,
)
from indexer.kinds import (
    GpuContext,
    IndexParams,
    Overrides,
    add_vectors,
    build_index,
    can_remove,
    choose_params,
    normalised,
    read_index,
    remove_ids,
    use_gpu,
    write_index,
)
from indexer.ray_config import ENGINES, RayConfig
from indexer.shards import build_parts, split_rows
from indexer.store import Entry, ItemStore, create_store
from models.errors import BundleError, CorpusError
from models.manifest import read_manifest
from models.runtime import ModelRuntime

REGROW_FACTOR = 4
"""An IVF-PQ index grown by ``add`` beyond this many times its training set should be rebuilt."""


@dataclass(frozen=True)
class BuildConfig:
    """``avsearch index build``."""

    model: Path
    corpus: Path
    out: Path
    kind: str = "auto"
    device: str = "auto"
    segments: bool = False
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    max_failed_share: float = 0.5
    overwrite: bool = False
    overrides: Overrides = field(default_factory=Overrides)
    keep_versions: int = 2
    argv: tuple[str, ...] = ()
    engine: str = "local"  # local, or ray: decode and embed on a Ray cluster (ray_build.py)
    ray: RayConfig = field(default_factory=RayConfig)
    shards: int = 1  # >1: keep each modality's index as this many shards (shards.py)


@dataclass(frozen=True)
class AddConfig:
    """``avsearch index add``: the corpus's items that the bundle does not hold yet."""

    index: Path
    corpus: Path
    model: Path | None = None  # default: the model recorded in index.json
    device: str = "auto"
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    max_failed_share: float = 0.5
    keep_versions: int = 2
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoveConfig:
    """``avsearch index remove``: items by id (a video's id removes all its segments)."""

    index: Path
    ids: tuple[str, ...]
    keep_versions: int = 2
    progress: bool = True
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """What an operation did, for the command's printed summary."""

    op: str
    index_dir: Path
    version: Path | None  # None: nothing changed, no new version
    info: IndexInfo
    changed: int
    failed: list[FailedItem] = field(default_factory=list)
    resumed: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self, max_failures: int = 20) -> str:
        info = self.info
        if self.version is None:
            return (f"nothing to {self.op}: {self.index_dir} holds every item already "
                    f"({info.counts['items']} items); nothing changed")
        counts = ", ".join(f"{m} {info.counts.get(m, 0)}" for m in info.modalities)
        kind = f"{info.index.kind} ({info.index.factory})"
        if info.shards > 1:
            kind += f" in {info.shards} shards"
        took = f"in {info.build_seconds:.1f} s"
        if self.op == "build":
            lines = [f"built an index of {self.changed} items {took}: {kind}, {counts}"]
        else:
            verb = "added" if self.op == "add" else "removed"
            lines = [f"{verb} {self.changed} items {took}; the index holds "
                     f"{info.counts['items']} items: {kind}, {counts}"]
        if self.resumed:
            lines.append(f"resumed: {self.resumed} items were already embedded by an "
                         "interrupted run")
        if self.failed:
            lines.append(f"{len(self.failed)} items failed and were skipped:")
            lines += [f"  {f.id}: {f.reason}" for f in self.failed[:max_failures]]
            if len(self.failed) > max_failures:
                lines.append(f"  ... and {len(self.failed) - max_failures} more (index.json)")
        lines += [f"note: {note}" for note in self.notes]
        files = sorted(p.name for p in self.version.iterdir())
        lines.append(f"wrote {self.index_dir} -> {self.version}: {', '.join(files)}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- build


def build(config: BuildConfig, on_shard: Callable[[Path], None] | None = None) -> Report:
    """Embed a corpus and write a new index bundle at ``config.out`` (switched atomically)."""
    _check_common(config.embed, config.max_failed_share, config.keep_versions)
    if config.engine not in ENGINES:
        raise BundleError(f"unknown engine {config.engine!r}; use {' or '.join(ENGINES)}")
    if config.shards < 1:
        raise BundleError(f"--shards must be 1 or more, not {config.shards}")
    on_ray = _ray_engine() if config.engine == "ray" else None
    started = time.monotonic()
    out = Path(config.out)
    bundle.check_target(out, config.overwrite)
    items = read_manifest(config.corpus)
    if not items:
        raise CorpusError(f"the manifest of {config.corpus} lists no items")
    gpu = GpuContext() if use_gpu(config.device) else None
    # With Ray the actors embed; this process only reads the bundle's sizes and hash.
    runtime = ModelRuntime(config.model,
                           device="cpu" if config.engine == "ray" else config.device,
                           batch_size=config.embed.batch_size)
    with bundle.writer_lock(out), ExitStack() as ray_stage:
        entries, plan_failed = plan_entries(config.corpus, items, runtime.window_s,
                                            config.segments, progress=config.embed.progress)
        # Parameters that cannot work are refused now, not after an hour of embedding.
        choose_params(config.kind, max(len(entries), 2), runtime.info.embed_dim,
                      config.overrides)
        split_rows(len(entries), config.shards)
        manifest = manifest_hash(config.corpus)
        key = ("build", runtime.content_hash, manifest, f"segments={config.segments}")
        staging = staging_dir(out, *key)
        open_staging(staging, {"job": list(key), "entries": len(entries)})
        if on_ray is None:
            done = embed_entries(runtime, config.corpus, entries, staging, config.embed,
                                 on_shard)
            provider = runtime.provider
            build_indices = build_parts
        else:
            # One Ray session for the embedding and the index stage (embed_on_ray joins it);
            # it is left just before the lock is released (bundle published or discarded).
            ray_stage.enter_context(on_ray.session(config.ray, config.embed.progress))
            done, provider = on_ray.embed(config.ray, config.model, config.device,
                                          config.corpus, entries, staging, config.embed,
                                          runtime, on_shard)
            build_indices = on_ray.indices
        failed = plan_failed + done.failed
        _check_failures(len(done.rowids), failed, config.max_failed_share)
        params = choose_params(config.kind, len(done.rowids), runtime.info.embed_dim,
                               config.overrides)
        split_rows(len(done.rowids), config.shards)
        build_id = bundle.new_build_id()
        version = bundle.new_version(out, build_id)
        try:
            kept = {entry.rowid: entry for entry in entries}
            _write_store(version, [kept[r] for r in done.rowids.tolist()], config.corpus)
            vectors = {m: normalised(v) for m, v in done.vectors.items()}
            device = _write_indices(version, params, done.rowids, vectors, gpu,
                                    config.embed.progress, config.shards, build_indices)
            info = IndexInfo(
                build_id=build_id,
                model_hash=runtime.content_hash,
                model_dir=str(Path(config.model).resolve()),
                model_preset=runtime.info.preset.get("name"),
                embed_dim=runtime.info.embed_dim,
                window_s=runtime.window_s,
                corpus=str(Path(config.corpus).resolve()),
                manifest_hash=manifest,
                segments=config.segments,
                counts=_counts(len(done.rowids), vectors),
                modalities=list(vectors),
                index=params,
                device=device,
                provider=provider,
                built_at=bundle.now_iso(),
                build_seconds=round(time.monotonic() - started, 3),
                next_rowid=len(entries),
                trained_on=len(done.rowids) if params.kind == "ivfpq" else None,
                shards=config.shards,
                engine=config.engine,
                failed=failed,
                history=bundle.history(None, "build", build_id, len(done.rowids),
                                       list(config.argv)),
            )
            bundle.write_info(version, info)
            final = bundle.publish(out, version, build_id, config.keep_versions)
        except BaseException:
            bundle.discard(version)
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return Report("build", out, final, info, len(done.rowids), failed, done.resumed)


IndexBuilder = Callable[[IndexParams, np.ndarray, np.ndarray, int, GpuContext | None, bool, str],
                        tuple[list[faiss.Index], str]]
"""(params, normalised vectors, rowids, shards, gpu, progress, label) -> (the index or its
shards in row order, where the quantiser was trained): ``build_parts`` or
``ray_index.build_on_ray``."""


class _RayEngine(NamedTuple):
    """What ``--engine ray`` runs on Ray: the session, the embedding, the index stage."""

    session: Callable[[RayConfig, bool], AbstractContextManager[None]]
    embed: Callable[..., tuple[Embedded, str]]
    indices: IndexBuilder


def _ray_engine() -> _RayEngine:
    """The Ray modules, imported only now (the local path never loads Ray)."""
    try:
        from indexer.ray_build import embed_on_ray, ray_session
        from indexer.ray_index import build_on_ray
    except ImportError as exc:
        raise BundleError(f"--engine ray needs Ray ({exc}): pip install 'avsearch[ray]'") \
            from None
    return _RayEngine(ray_session, embed_on_ray, build_on_ray)


# ---------------------------------------------------------------------------- add


def add(config: AddConfig, on_shard: Callable[[Path], None] | None = None) -> Report:
    """Embed the corpus's items that the bundle lacks and publish a new version with them."""
    _check_common(config.embed, config.max_failed_share, config.keep_versions)
    started = time.monotonic()
    index_dir = Path(config.index)
    base = bundle.resolve_bundle(index_dir)
    info = bundle.read_info(base)
    model_dir = Path(config.model or info.model_dir)
    runtime = ModelRuntime(model_dir, device=config.device, batch_size=config.embed.batch_size)
    bundle.check_model(info, runtime.content_hash, model_dir, index_dir)
    items = read_manifest(config.corpus)
    with bundle.writer_lock(index_dir):
        base = bundle.resolve_bundle(index_dir)  # again, under the lock
        info = bundle.read_info(base)
        bundle.check_model(info, runtime.content_hash, model_dir, index_dir)
        _refuse_sharded(info, index_dir, "add")
        with ItemStore(base / bundle.ITEMS_DB) as store:
            present = store.source_ids()
        new_items = [item for item in items if item.id not in present]
        if not new_items:
            return Report("add", index_dir, None, info, 0)
        entries, plan_failed = plan_entries(config.corpus, new_items, info.window_s,
                                            info.segments, first_rowid=info.next_rowid,
                                            progress=config.embed.progress)
        manifest = manifest_hash(config.corpus)
        key = ("add", info.build_id, runtime.content_hash, manifest,
               str(Path(config.corpus).resolve()))
        staging = staging_dir(index_dir, *key)
        open_staging(staging, {"job": list(key), "entries": len(entries)})
        done = embed_entries(runtime, config.corpus, entries, staging, config.embed, on_shard)
        failed = plan_failed + done.failed
        _check_failures(len(done.rowids), failed, config.max_failed_share)
        build_id = bundle.new_build_id()
        version = bundle.new_version(index_dir, build_id)
        try:
            shutil.copyfile(base / bundle.ITEMS_DB, version / bundle.ITEMS_DB)
            kept = {entry.rowid: entry for entry in entries}
            with ItemStore(version / bundle.ITEMS_DB, writable=True) as store:
                store.insert([kept[r] for r in done.rowids.tolist()], config.corpus)
            old_rowids = np.load(base / ROWIDS)
            rowids = np.concatenate([old_rowids, done.rowids])
            for modality in info.modalities:
                index = read_index(base / bundle.index_file(modality))
                fresh = normalised(done.vectors[modality])
                add_vectors(index, fresh, done.rowids, config.embed.progress)
                write_index(index, version / bundle.index_file(modality))
                stored = np.load(base / bundle.vectors_file(modality))
                np.save(version / bundle.vectors_file(modality), np.concatenate([stored, fresh]))
            np.save(version / ROWIDS, rowids)
            added_ids = {kept[r].item.id for r in done.rowids.tolist()}
            added_sources = {kept[r].source_id for r in done.rowids.tolist()}
            still_failed = [f for f in info.failed
                            if f.id not in added_ids and f.id not in added_sources]
            new_info = info.model_copy(update={
                "build_id": build_id,
                "counts": _counts(len(rowids), info.modalities),
                "next_rowid": info.next_rowid + len(entries),
                "failed": still_failed + failed,
                "built_at": bundle.now_iso(),
                "build_seconds": round(time.monotonic() - started, 3),
                "history": bundle.history(info, "add", build_id, len(done.rowids),
                                          list(config.argv)),
            })
            bundle.write_info(version, new_info)
            final = bundle.publish(index_dir, version, build_id, config.keep_versions)
        except BaseException:
            bundle.discard(version)
            raise
        shutil.rmtree(staging, ignore_errors=True)
    notes = _regrow_note(new_info)
    return Report("add", index_dir, final, new_info, len(done.rowids), failed, done.resumed,
                  notes)


def _regrow_note(info: IndexInfo) -> list[str]:
    trained = info.trained_on
    if info.index.kind != "ivfpq" or not trained:
        return []
    if info.counts["items"] <= REGROW_FACTOR * trained:
        return []
    return [f"the ivfpq lists were trained on {trained} items and now hold "
            f"{info.counts['items']}: rebuild (avsearch index build) to retrain them"]


# ---------------------------------------------------------------------------- remove


def remove(config: RemoveConfig) -> Report:
    """Publish a new version without the items ``config.ids`` (ids or source ids)."""
    if not config.ids:
        raise BundleError("name at least one item id to remove")
    _check_common(EmbedConfig(), 0.0, config.keep_versions)
    started = time.monotonic()
    index_dir = Path(config.index)
    bundle.resolve_bundle(index_dir)
    with bundle.writer_lock(index_dir):
        base = bundle.resolve_bundle(index_dir)
        info = bundle.read_info(base)
        _refuse_sharded(info, index_dir, "remove")
        with ItemStore(base / bundle.ITEMS_DB) as store:
            found = store.rowids_of(config.ids)
        unknown = [i for i in config.ids if i not in found]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise BundleError(f"not in {index_dir}: {shown}{more}; nothing was removed")
        gone = np.asarray(sorted({r for rows in found.values() for r in rows}), dtype=np.int64)
        build_id = bundle.new_build_id()
        version = bundle.new_version(index_dir, build_id)
        try:
            shutil.copyfile(base / bundle.ITEMS_DB, version / bundle.ITEMS_DB)
            with ItemStore(version / bundle.ITEMS_DB, writable=True) as store:
                store.delete(gone.tolist())
            rowids = np.load(base / ROWIDS)
            keep = ~np.isin(rowids, gone)
            for modality in info.modalities:
                vectors = np.load(base / bundle.vectors_file(modality))[keep]
                index = _without(base / bundle.index_file(modality), info.index, gone,
                                 vectors, rowids[keep], config.progress, modality)
                write_index(index, version / bundle.index_file(modality))
                np.save(version / bundle.vectors_file(modality), vectors)
            np.save(version / ROWIDS, rowids[keep])
            new_info = info.model_copy(update={
                "build_id": build_id,
                "counts": _counts(int(keep.sum()), info.modalities),
                "built_at": bundle.now_iso(),
                "build_seconds": round(time.monotonic() - started, 3),
                "history": bundle.history(info, "remove", build_id, len(gone),
                                          list(config.argv)),
            })
            bundle.write_info(version, new_info)
            final = bundle.publish(index_dir, version, build_id, config.keep_versions)
        except BaseException:
            bundle.discard(version)
            raise
    return Report("remove", index_dir, final, new_info, len(gone))


def _without(path: Path, params: IndexParams, gone: np.ndarray, vectors: np.ndarray,
             rowids: np.ndarray, progress: bool, label: str):
    """The index at ``path`` less the ids ``gone``: removed in place for flat and IVF-PQ, rebuilt
    from the remaining stored vectors for HNSW (a graph cannot drop nodes)."""
    if can_remove(params):
        index = read_index(path)
        remove_ids(index, gone)
        return index
    return build_index(params, vectors, rowids, progress=progress, label=label)


# ---------------------------------------------------------------------------- helpers


def _refuse_sharded(info: IndexInfo, index_dir: Path, op: str) -> None:
    if info.shards > 1:
        raise BundleError(f"{index_dir} holds its index as {info.shards} shards, and {op} "
                          "changes unsharded bundles only: rebuild it (avsearch index build "
                          f"--shards {info.shards}) from the changed corpus")


def _check_common(embed: EmbedConfig, max_failed_share: float, keep_versions: int) -> None:
    if embed.batch_size < 1:
        raise BundleError(f"--batch-size must be 1 or more, not {embed.batch_size}")
    if embed.shard_size < 1:
        raise BundleError(f"--shard-size must be 1 or more, not {embed.shard_size}")
    if embed.workers < 1:
        raise BundleError(f"--workers must be 1 or more, not {embed.workers}")
    if not 0.0 <= max_failed_share <= 1.0:
        raise BundleError(f"--max-failed-share must be between 0 and 1, not {max_failed_share}")
    if keep_versions < 1:
        raise BundleError(f"--keep-versions must be 1 or more, not {keep_versions}")


def _check_failures(embedded: int, failed: Sequence[FailedItem], max_share: float) -> None:
    total = embedded + len(failed)
    first = f" (first: {failed[0].id}: {failed[0].reason})" if failed else ""
    if embedded == 0:
        raise BundleError(f"nothing could be embedded: all {total} items failed{first}")
    share = len(failed) / total
    if share > max_share:
        raise BundleError(f"{len(failed)} of {total} items failed ({share:.0%}, more than "
                          f"--max-failed-share {max_share:g}){first}")


def _write_store(version: Path, entries: Sequence[Entry], corpus: Path) -> None:
    path = version / bundle.ITEMS_DB
    create_store(path)
    with ItemStore(path, writable=True) as store:
        store.insert(entries, corpus)


def _write_indices(version: Path, params: IndexParams, rowids: np.ndarray,
                   vectors: dict[str, np.ndarray], gpu: GpuContext | None,
                   progress: bool, shards: int = 1,
                   build_indices: IndexBuilder | None = None) -> str:
    """Every modality's index (``build_indices``, default the local build) and embeddings;
    returns where FAISS built them (cpu, cuda)."""
    build_indices = build_indices or build_parts
    devices = set()
    for modality in vectors:
        parts, device = build_indices(params, vectors[modality], rowids, shards, gpu, progress,
                                      modality)
        devices.add(device)
        for name, part in zip(bundle.index_files(modality, shards), parts, strict=True):
            write_index(part, version / name)
        np.save(version / bundle.vectors_file(modality), vectors[modality])
    np.save(version / ROWIDS, rowids)
    return "cuda" if devices == {"cuda"} else "cpu"


def _counts(items: int, modalities: Iterable[str]) -> dict[str, int]:
    return {"items": items, **{modality: items for modality in modalities}}
