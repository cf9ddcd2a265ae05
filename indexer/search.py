"""Searching an index bundle: what the service and ``avsearch eval --index`` use.

``open_index(INDEX_DIR)`` resolves the bundle's link once and reads everything from that
version, so a build that switches INDEX_DIR meanwhile never mixes two versions under a reader;
a reader picks up a new version by opening the bundle again. Searches are thread-safe: FAISS
searches a CPU index concurrently, the search parameters (nprobe, efSearch, a restriction to
some rows) are built per call, and the SQLite connection is guarded by a lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer import kinds
from indexer.bundle import (
    FEATURES,
    ITEMS_DB,
    ROWIDS,
    IndexInfo,
    check_model,
    index_file,
    read_info,
    resolve_bundle,
    vectors_file,
)
from indexer.gpu_shards import GpuShardedIndex, search_copy, to_gpu
from indexer.shards import merge
from indexer.store import Entry, ItemStore
from models.errors import BundleError

TIE_MARGIN = 16
"""Results fetched beyond the ``k`` asked for: an index returns tied items in whatever order it
met them, so a few more are fetched and re-sorted, and a group of items tied at the k-th place
is cut by row id, not by chance (exact while a tie group has at most this many more items)."""


class SearchIndex:
    """One version of an index bundle, opened read-only.

    ``device``: ``cpu``; ``cuda`` or ``auto`` also put the flat and IVF-PQ indices on a GPU
    (when FAISS has one) for unrestricted searches: an unsharded index on GPU 0, a sharded
    bundle's shards spread over every GPU (``gpus`` says how many it uses). Restricted searches
    run on the CPU copy, because FAISS GPU indices take no id selector; HNSW has no GPU form and
    stays on the CPU.
    """

    def __init__(self, index_dir: str | Path, device: str = "cpu") -> None:
        self.index_dir = Path(index_dir)
        self.root = resolve_bundle(index_dir)
        self.info: IndexInfo = read_info(self.root)
        self.params = self.info.index
        # Memory-mapped read-only where the kind allows (kinds.MMAP_FLAGS): replicas on one
        # host share the pages. A sharded bundle opens as one ShardedIndex per modality.
        self._indices = {m: _open_modality(self.root, m, self.info.shards)
                         for m in self.info.modalities}
        for modality, index in self._indices.items():
            if index.d != self.params.dim:
                raise BundleError(f"{self.root / index_file(modality)} holds {index.d}-d "
                                  f"vectors, index.json says {self.params.dim}")
        self.store = ItemStore(self.root / ITEMS_DB)
        # The embeddings, memory-mapped: IVF-PQ re-scores its candidates with them.
        self._rowids = np.load(self.root / ROWIDS, mmap_mode="r")
        self._stored = {m: np.load(self.root / vectors_file(m), mmap_mode="r")
                        for m in self.info.modalities}
        if len(self._rowids) > 1 and not np.all(np.diff(self._rowids) > 0):
            raise BundleError(f"{self.root / ROWIDS} is not sorted: the bundle is damaged")
        # GPU copies for unrestricted searches: one index on GPU 0, or the shards of a sharded
        # bundle spread over every GPU FAISS sees (indexer.gpu_shards).
        self._gpu: dict[str, Any] = {}
        self.gpus = 0
        if self.params.kind != "hnsw" and kinds.use_gpu(device):
            try:
                self._gpu, self.gpus = _gpu_copies(self._indices, self.info.shards)
            except RuntimeError as exc:  # e.g. PQ code sizes FAISS GPU does not support
                self._gpu.clear()
                if device == "cuda":
                    raise BundleError(f"{self.root} cannot be searched on the GPU: "
                                      f"{str(exc).strip().splitlines()[-1]}; use device cpu") \
                        from None

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.store.close()
        for copy in self._gpu.values():
            copy.close()
        self._gpu.clear()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def on_gpu(self) -> bool:
        return bool(self._gpu)

    def check_model(self, model_hash: str, model_dir: str | Path = "the model") -> None:
        """Refuse a model bundle other than the one this index was built with (BundleError)."""
        check_model(self.info, model_hash, model_dir, self.index_dir)

    @property
    def has_audio_features(self) -> bool:
        """Whether the bundle holds the audio tower's own features (audio -> audio ranks by
        them)."""
        return FEATURES in self._indices

    @property
    def count(self) -> int:
        return self._indices["image"].ntotal

    # ------------------------------------------------------------------ searching

    def search(
        self,
        modality: str,
        vectors: np.ndarray,
        k: int,
        restrict_to: np.ndarray | list[int] | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        rerank: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items of ``modality`` (``image``, ``audio`` or, in a bundle that
        holds them, ``audio_features``) to each vector.

        Returns (scores, rowids), both (len(vectors), k), best first: scores are cosine
        similarities; rowid -1 (score -inf) pads when fewer than ``k`` items qualify.
        Items with exactly equal scores (the same media in two items) come by ascending row
        id, and when they tie for the last places the lowest ids are kept (``TIE_MARGIN``), so
        every index kind, sharded or not, on CPU or GPU, orders the same answer the same way.
        ``restrict_to`` limits the results to those row ids (e.g. one split). ``nprobe``,
        ``ef_search`` and ``rerank`` (IVF-PQ: re-score ``k * rerank`` candidates exactly; 1 turns
        it off) override the bundle's defaults for this call only.
        """
        if modality not in self._indices:
            raise BundleError(f"unknown modality {modality!r}; this bundle holds "
                              f"{', '.join(self._indices)}")
        if k < 1:
            raise BundleError(f"k must be 1 or more, not {k}")
        factor = rerank if rerank is not None else (self.params.rerank or 1)
        fetch = (k * factor if factor > 1 else k) + TIE_MARGIN
        restrict = None if restrict_to is None else np.asarray(restrict_to, dtype=np.int64)
        if restrict is None and modality in self._gpu:
            scores, ids = kinds.search(self._gpu[modality], self.params, vectors, fetch, None,
                                       nprobe, ef_search)
        else:
            scores, ids = kinds.search(self._indices[modality], self.params, vectors, fetch,
                                       restrict, nprobe, ef_search)
        if factor > 1:
            return kinds.refine(vectors, ids, k, self._stored[modality], self._rowids)
        return merge([(scores, ids)], k)

    def vectors(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """The stored embeddings of ``modality`` and their row ids (memory-mapped)."""
        return self._stored[modality], self._rowids

    # ------------------------------------------------------------------ items

    def items(self, rowids: np.ndarray | list[int]) -> list[dict[str, Any] | None]:
        """The items of ``rowids`` (id, media, time, labels, split, extra, corpus), in order;
        None for -1 (padding) or a row id the bundle does not hold."""
        return self.store.rows([int(r) for r in np.asarray(rowids).ravel()])

    def item_by_id(self, item_id: str) -> dict[str, Any] | None:
        return self.store.row_by_id(item_id)

    def entries(self, rowids: list[int]) -> list[Entry]:
        return self.store.entries(rowids)

    def rowids(self, split: str | None = None) -> list[int]:
        return self.store.rowids(split)


def open_index(index_dir: str | Path, device: str = "cpu") -> SearchIndex:
    return SearchIndex(index_dir, device)


def _open_modality(root: Path, modality: str, shards: int) -> Any:
    """A FAISS index, or an ``indexer.shards.ShardedIndex`` (searched the same way)."""
    if shards == 1:
        return kinds.read_index(root / index_file(modality), mmap=True)
    from indexer.shards import open_shards

    return open_shards(root, modality, shards, mmap=True)


def _gpu_copies(indices: dict[str, Any], shards: int) -> tuple[dict[str, Any], int]:
    """GPU copies of every modality's index, searched as the CPU ones, and the GPUs used."""
    if shards == 1:
        context = kinds.GpuContext()
        copies = {m: _SingleGpuIndex(context, index) for m, index in indices.items()}
        return copies, 1
    gpus = faiss.get_num_gpus()
    copies = {m: GpuShardedIndex(index.parts, gpus) for m, index in indices.items()}
    return copies, max(copy.gpus for copy in copies.values())


class _SingleGpuIndex:
    """One CPU index's GPU copy, answering in row ids (``search(x, k, params)``)."""

    def __init__(self, context: kinds.GpuContext, index: faiss.Index) -> None:
        self.context = context  # the resources must outlive the GPU index
        self.copy = to_gpu(context, index)
        self.d, self.ntotal = index.d, index.ntotal

    def search(self, x: np.ndarray, k: int,
               params: faiss.SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
        return search_copy(self.copy, x, k, params)

    def close(self) -> None:
        self.copy = None
