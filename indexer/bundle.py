"""The index bundle on disk: ``index.json``'s schema, its versions, and the atomic switch.

Layout (DESIGN.md, "Index bundle")::

    INDEX_DIR -> INDEX_DIR.versions/<build-id>      a relative symlink, switched atomically
    INDEX_DIR.versions/
        <build-id>/    image.faiss, audio.faiss     one CPU FAISS index per modality (and
                       audio_features.faiss         the audio tower's own features)
                       items.sqlite                 row id == FAISS id
                       image.npy, audio.npy, ...    the embeddings (float32, unit rows) and
                       rowids.npy                   their row ids, so add/remove never decode
                       index.json                   written last: a version without it is unused
        <previous>/    kept after a switch, for readers that resolved the link before it
        .lock          held by the one writer (build, add, remove) at a time

A new version is written under a temporary name, renamed to its build id when complete, and
published by ``os.replace`` of a temporary symlink onto INDEX_DIR (atomic on POSIX): a reader
sees the old bundle or the new one, never a mixture, and a crashed build leaves INDEX_DIR as it
was. Readers resolve the link once (``resolve_bundle``) and read everything from that folder.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from indexer.kinds import IndexParams
from models.errors import BundleError

FORMAT = "avsearch-index/1"
INDEX_JSON = "index.json"
ITEMS_DB = "items.sqlite"
ROWIDS = "rowids.npy"
MODALITIES: tuple[str, ...] = ("image", "audio")
FEATURES = "audio_features"
"""The third index of a bundle built with a model whose audio graph gives the audio tower's own
features: what audio -> audio searches rank sounds by (models.export.AudioGraph)."""
_TMP_MARK = ".tmp-"


def modalities_of(has_audio_features: bool) -> tuple[str, ...]:
    """The vector sets a bundle holds: image and audio, and the audio features when the
    model gives them."""
    return (*MODALITIES, FEATURES) if has_audio_features else MODALITIES


def index_file(modality: str) -> str:
    return f"{modality}.faiss"


def index_files(modality: str, shards: int = 1) -> list[str]:
    """The FAISS file(s) of ``modality``: one, or ``shards`` of them (indexer/shards.py)."""
    if shards == 1:
        return [index_file(modality)]
    return [f"{modality}.shard-{n:03d}-of-{shards:03d}.faiss" for n in range(shards)]


def vectors_file(modality: str) -> str:
    return f"{modality}.npy"


class FailedItem(BaseModel):
    """A manifest item that could not be embedded, and why."""

    id: str
    reason: str


class Operation(BaseModel):
    """One step of the bundle's history: a build, an add or a remove."""

    op: str
    build_id: str
    at: str
    items: int  # items added or removed
    argv: list[str] = Field(default_factory=list)


class IndexInfo(BaseModel):
    """``index.json``: what the bundle holds and how it was made."""

    format: str = FORMAT
    build_id: str
    model_hash: str
    model_dir: str
    model_preset: str | None = None
    embed_dim: int
    window_s: float
    corpus: str
    manifest_hash: str
    segments: bool
    counts: dict[str, int]  # items, and vectors per modality
    # The vector sets it holds, an index each; bundles written before the audio features had
    # no such field and hold MODALITIES.
    modalities: list[str] = Field(default_factory=lambda: list(MODALITIES))
    index: IndexParams
    metric: str = "inner_product"
    device: str  # where FAISS built the indices: cpu or cuda
    provider: str  # the ONNX Runtime provider that embedded the items
    built_at: str
    build_seconds: float
    next_rowid: int
    trained_on: int | None = None  # IVF-PQ: how many items its lists were trained on
    shards: int = 1  # >1: each modality's index is split in row-id ranges (indexer/shards.py)
    engine: str = "local"  # what embedded the items: local, or ray (indexer/ray_build.py)
    failed: list[FailedItem] = Field(default_factory=list)
    history: list[Operation] = Field(default_factory=list)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def new_build_id() -> str:
    """Sortable by time, unique across concurrent machines: 20250101T120000-3fa2c1."""
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------- index.json


def read_info(version_dir: Path) -> IndexInfo:
    path = version_dir / INDEX_JSON
    if not path.is_file():
        raise BundleError(f"no {INDEX_JSON} in {version_dir}: not an index bundle "
                          "(avsearch index build)")
    try:
        info = IndexInfo.model_validate_json(path.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"{path}: invalid index.json at {where!r}: {first['msg']}") from None
    if info.format != FORMAT:
        raise BundleError(f"{path}: format {info.format!r}, this avsearch reads {FORMAT!r}")
    return info


def write_info(version_dir: Path, info: IndexInfo) -> None:
    tmp = version_dir / (INDEX_JSON + ".tmp")
    tmp.write_text(info.model_dump_json(indent=2))
    tmp.replace(version_dir / INDEX_JSON)


def check_model(info: IndexInfo, model_hash: str, model_dir: str | Path, index_dir: str | Path):
    """Refuse a model bundle other than the one the index was built with."""
    if info.model_hash != model_hash:
        raise BundleError(
            f"index {index_dir} was built with model {info.model_hash} ({info.model_dir}), but "
            f"the model bundle {model_dir} is {model_hash}: use the model the index was built "
            "with, or rebuild the index with this one (avsearch index build)"
        )


# ---------------------------------------------------------------------------- versions


def versions_dir(index_dir: Path) -> Path:
    return index_dir.parent / (index_dir.name + ".versions")


def resolve_bundle(index_dir: str | Path) -> Path:
    """The folder of the bundle INDEX_DIR names now (the link resolved once)."""
    path = Path(index_dir)
    if not path.exists():
        raise BundleError(f"no index bundle at {path} (avsearch index build --out {path})")
    real = path.resolve()
    if not (real / INDEX_JSON).is_file():
        raise BundleError(f"{path} is not an index bundle: no {INDEX_JSON}")
    return real


def check_target(index_dir: Path, overwrite: bool) -> None:
    """Refuse to replace something at INDEX_DIR that we did not make, unless told to."""
    if index_dir.is_symlink() or not index_dir.exists():
        return  # our link, a dangling link, another link (replaced, target kept) or nothing
    if index_dir.is_dir():
        if overwrite or not any(index_dir.iterdir()):
            return
        raise BundleError(f"--out {index_dir} is a folder that this indexer did not write: "
                          "choose a new path, or pass --overwrite to replace it")
    raise BundleError(f"--out {index_dir} exists and is not a folder")


def new_version(index_dir: Path, build_id: str) -> Path:
    """An empty folder for a version being written (a temporary name until ``publish``)."""
    folder = versions_dir(index_dir) / f"{build_id}{_TMP_MARK}{os.getpid()}"
    folder.mkdir(parents=True)
    return folder


def publish(index_dir: Path, staged: Path, build_id: str, keep: int = 2) -> Path:
    """Switch INDEX_DIR to the complete version ``staged``; prune versions beyond ``keep``.

    The caller holds ``writer_lock``. A plain folder at INDEX_DIR (allowed by ``check_target``)
    is moved into the versions folder first, so that it too can be replaced by a link.
    """
    versions = versions_dir(index_dir)
    final = versions / build_id
    _fsync_tree(staged)
    os.rename(staged, final)
    previous = index_dir.resolve() if index_dir.is_symlink() and index_dir.exists() else None
    if index_dir.exists() and not index_dir.is_symlink():
        if any(index_dir.iterdir()):
            replaced = versions / f"replaced-{build_id}"
            os.rename(index_dir, replaced)
            previous = replaced
        else:
            index_dir.rmdir()
    link = index_dir.parent / f".{index_dir.name}.link-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(os.path.join(versions.name, build_id), link)
    os.replace(link, index_dir)
    _fsync_dir(index_dir.parent)
    _prune(versions, final, previous, keep)
    return final


def _prune(versions: Path, current: Path, previous: Path | None, keep: int) -> None:
    """Delete versions beyond ``keep``: the current one, then the previous, then the newest."""
    kept = [current.resolve()] + ([previous] if previous is not None else [])
    others = sorted((c for c in versions.iterdir() if c.is_dir() and c.resolve() not in kept),
                    key=lambda c: c.stat().st_mtime, reverse=True)
    for child in (kept + others)[keep:]:
        if child.parent.resolve() == versions.resolve():
            shutil.rmtree(child, ignore_errors=True)


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_file():
            with child.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


@contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """One writer per INDEX_DIR at a time (build, add, remove); readers never wait."""
    versions = versions_dir(index_dir)
    versions.mkdir(parents=True, exist_ok=True)
    with (versions / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BundleError(f"another build, add or remove is writing {index_dir}; "
                                  "wait for it to finish") from None
            raise
        try:
            _remove_stale(versions)
            yield
        finally:
            if not index_dir.exists() and [p.name for p in versions.iterdir()] == [".lock"]:
                shutil.rmtree(versions, ignore_errors=True)  # a first build that failed
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_stale(versions: Path) -> None:
    """Half-written versions of crashed writers (we hold the lock, so none is in progress)."""
    for child in versions.iterdir():
        if child.is_dir() and _TMP_MARK in child.name:
            shutil.rmtree(child, ignore_errors=True)


def history(info: IndexInfo | None, op: str, build_id: str, items: int, argv: list[str]):
    earlier: list[Any] = list(info.history) if info else []
    return [*earlier, Operation(op=op, build_id=build_id, at=now_iso(), items=items, argv=argv)]
