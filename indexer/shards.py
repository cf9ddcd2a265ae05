"""An index held as N shards: built from one trained quantiser, searched as one.

A sharded bundle stores ``image.shard-000-of-004.faiss`` ... instead of ``image.faiss``
(``index.json``: ``shards``). Rows are split into N contiguous row-id ranges; an approximate
kind trains its quantiser once, on the same seeded sample an unsharded build uses, and every
shard starts from a copy of it, so the shards share their lists and codebooks and differ only in
the vectors they hold. Shards are filled in parallel (FAISS releases the GIL). A reader opens
them as one (``ShardedIndex``): a query goes to every shard (one thread each) and the k best of
the N answers are merged, so callers search a sharded bundle as an unsharded one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from indexer.bundle import index_files
from indexer.kinds import (
    GpuContext,
    IndexParams,
    add_vectors,
    build_index_on,
    normalised,
    read_index,
    trained,
)
from models.errors import BundleError


def shard_file(modality: str, number: int, count: int) -> str:
    return index_files(modality, count)[number]


def split_rows(count: int, parts: int) -> list[slice]:
    """``parts`` contiguous ranges covering ``count`` rows, sizes differing by at most one."""
    if parts < 1:
        raise BundleError(f"--shards must be 1 or more, not {parts}")
    if parts > max(count, 1):
        raise BundleError(f"--shards {parts} is more than the {count} items to index")
    edges = np.linspace(0, count, parts + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def build_shards(params: IndexParams, vectors: np.ndarray, rowids: np.ndarray, parts: int,
                 gpu: GpuContext | None = None, progress: bool = False,
                 label: str = "index") -> tuple[list[faiss.Index], str]:
    """``parts`` CPU indices over contiguous row ranges, from one trained quantiser, filled in
    parallel threads; and where the quantiser was trained (cpu, cuda)."""
    ranges = split_rows(len(rowids), parts)
    x = normalised(vectors)
    # Trained once, on the sample an unsharded build takes; every shard starts from a copy.
    template, device = trained(params, x, gpu, progress=progress, label=label)
    if device == "cuda":
        template = faiss.index_gpu_to_cpu(template)
    ids = np.ascontiguousarray(rowids, dtype=np.int64)

    def fill(rows: slice) -> faiss.Index:
        index = faiss.clone_index(template)
        add_vectors(index, x[rows], ids[rows])
        return index

    with ThreadPoolExecutor(max_workers=parts) as pool:
        return list(pool.map(fill, ranges)), device


def build_parts(params: IndexParams, vectors: np.ndarray, rowids: np.ndarray, shards: int,
                gpu: GpuContext | None = None, progress: bool = False,
                label: str = "index") -> tuple[list[faiss.Index], str]:
    """The index (``shards`` 1) or its shards, in row order, built in this process; and where
    the quantiser was trained (cpu, cuda). The local build's index stage."""
    if shards > 1:
        return build_shards(params, vectors, rowids, shards, gpu, progress, label)
    index, device = build_index_on(params, vectors, rowids, gpu, progress=progress, label=label)
    return [index], device


class ShardedIndex:
    """The shards of one modality searched as one index: ``search(x, k, params)`` as FAISS's.

    Every shard is searched for the k best (in parallel threads: FAISS releases the GIL) and the
    N lists are merged (``merge``). A row's score is computed exactly as in one unsharded index
    (bit for bit), so the answers are the unsharded index's; only among items whose scores are
    exactly equal (the same media in two items) may the order, and which of them fill the last
    places, differ: one FAISS flat index decides that by the order its heap met them in.

    Why not ``faiss.IndexShards``, which fans out the same way: its threads share one parameter
    object, which ``IndexIDMap`` swaps the selector of in place while it searches, so searches
    restricted to some ids came back empty (FAISS 1.15.1); and its merge orders ties by shard
    number. For the same reason a restricted search here runs the shards one after the other.
    """

    def __init__(self, parts: list[faiss.Index]) -> None:
        if any(part.metric_type != faiss.METRIC_INNER_PRODUCT for part in parts):
            raise BundleError("sharded indices are searched by inner product only")
        self.parts = parts
        self.d = parts[0].d
        self.ntotal = sum(part.ntotal for part in parts)
        # The shards are the parallelism: each pool thread searches with an equal share of the
        # OpenMP threads the opening thread has (a new thread would start with all the cores,
        # whatever omp_set_num_threads said in the opening thread).
        per_shard = max(1, faiss.omp_get_max_threads() // len(parts))
        self._pool = ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="shard",
                                        initializer=faiss.omp_set_num_threads,
                                        initargs=(per_shard,))

    def search(self, x: np.ndarray, k: int,
               params: faiss.SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
        def one(part: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
            return part.search(x, k, params=params)

        restricted = params is not None and params.sel is not None
        answers = list(map(one, self.parts) if restricted else self._pool.map(one, self.parts))
        return merge(answers, k)


def merge(answers: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of several (scores, ids) lists of the same queries: larger scores first, equal
    scores by ascending id, missing results (-1) last."""
    scores = np.concatenate([s for s, _ in answers], axis=1)
    ids = np.concatenate([i for _, i in answers], axis=1)
    missing = ids < 0
    scores = np.where(missing, -np.inf, scores)
    tie_key = np.where(missing, np.iinfo(np.int64).max, ids)
    keep = np.lexsort((tie_key, -scores), axis=1)[:, :k]
    scores = np.take_along_axis(scores, keep, axis=1)
    ids = np.take_along_axis(ids, keep, axis=1)
    ids[~np.isfinite(scores)] = -1
    return scores.astype(np.float32), ids


def open_shards(root: Path, modality: str, count: int, mmap: bool = True) -> ShardedIndex:
    """The ``count`` shards of ``modality`` under ``root`` as one searchable index."""
    parts = [read_index(root / shard_file(modality, n, count), mmap=mmap) for n in range(count)]
    dims = {part.d for part in parts}
    if len(dims) != 1:
        raise BundleError(f"the shards of {modality} in {root} hold vectors of sizes {dims}")
    return ShardedIndex(parts)
