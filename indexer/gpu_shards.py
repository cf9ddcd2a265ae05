"""Index copies on GPUs: one index on one GPU, or a sharded bundle's shards spread over all.

A reader (``indexer.search.SearchIndex``) keeps the CPU indices it opened and adds GPU copies for
unrestricted searches (FAISS GPU indices take no id selector). A sharded bundle's shard ``n`` goes
to GPU ``n mod G`` of the ``G`` GPUs FAISS sees (``CUDA_VISIBLE_DEVICES`` chooses them). The
shards of one GPU are searched one after the other by one thread that owns that GPU's resources
(a ``StandardGpuResources`` must not serve two threads at once); the GPUs run in parallel, and
the answers are merged exactly as the CPU shards' (``indexer.shards.merge``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

from indexer.kinds import GpuContext
from indexer.shards import merge

GpuCopy = tuple[faiss.Index, np.ndarray | None]
"""A GPU index and, when the CPU index was an ``IndexIDMap``, the row id of each of its rows."""


def to_gpu(context: GpuContext, index: faiss.Index) -> GpuCopy:
    """A GPU copy of a CPU index; an IDMap's inner index is moved alone and its ids kept here
    (FAISS GPU has no IDMap of a flat index)."""
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        return context.to_gpu(inner), faiss.vector_to_array(index.id_map).astype(np.int64)
    return context.to_gpu(index), None


def search_copy(copy: GpuCopy, x: np.ndarray, k: int,
                params: faiss.SearchParameters | None) -> tuple[np.ndarray, np.ndarray]:
    """Search one GPU copy; ids are row ids (an IDMap's mapping applied)."""
    index, id_map = copy
    scores, ids = index.search(x, k, params=params)
    if id_map is not None:
        ids = np.where(ids >= 0, id_map[np.maximum(ids, 0)], -1)
    return scores, ids


class GpuShardedIndex:
    """The shards of one modality on the GPUs, searched as one index (``search(x, k, params)``).

    Raises RuntimeError (from FAISS) when a shard cannot go to a GPU, e.g. a PQ code size FAISS
    GPU does not support; the caller then searches the CPU shards.
    """

    def __init__(self, parts: list[faiss.Index], gpus: int) -> None:
        if gpus < 1:
            raise ValueError("GpuShardedIndex needs at least one GPU")
        used = min(gpus, len(parts))
        # One context (resources) per GPU, each used only by that GPU's search thread.
        self.contexts = [GpuContext(device=g) for g in range(used)]
        self.groups: list[list[GpuCopy]] = [[] for _ in range(used)]
        for number, part in enumerate(parts):
            gpu = number % used
            self.groups[gpu].append(to_gpu(self.contexts[gpu], part))
        self.d = parts[0].d
        self.ntotal = sum(part.ntotal for part in parts)
        self.gpus = used
        self._pool = ThreadPoolExecutor(max_workers=used, thread_name_prefix="gpu-shard")

    def search(self, x: np.ndarray, k: int,
               params: faiss.SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
        def on_gpu(group: list[GpuCopy]) -> list[tuple[np.ndarray, np.ndarray]]:
            return [search_copy(copy, x, k, params) for copy in group]

        answers = [answer for group in self._pool.map(on_gpu, self.groups) for answer in group]
        return merge(answers, k)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.groups.clear()
