"""The index stage of ``avsearch index build --engine ray``: FAISS indices filled in Ray tasks.

The driver trains once and the cluster fills:

- ``--shards N`` (N > 1), every kind: the driver trains the template once (``kinds.trained``,
  on the same seeded sample as the local build), serialises it and puts it in the object store
  once; each shard is a task that deserialises the template, adds its contiguous row range
  (``shards.split_rows``) and returns the filled shard serialised. HNSW has no quantiser: its
  template is the empty graph, so each task builds its shard's graph from scratch.
- ``--shards 1 --kind ivfpq``: trained once in the driver as above; P tasks each encode a
  contiguous row range into a copy of the template, and the driver merges the parts into the
  template in row order with IVF ``merge_from``, which appends every part's entries to each
  inverted list. Every list thus holds its entries in the order one ``add`` of all rows would
  have put them, with the same codes: the index is the local build's.
- ``--shards 1``, flat or HNSW: built in the driver, as the local build does
  (``shards.build_parts``): a flat index is only a copy of the vectors (a task would move them
  twice for nothing), and an HNSW graph cannot be merged from parts; IVF-PQ too when the data is
  too small to be worth tasks.

Vectors and templates reach the tasks through the object store (``ray.put``), never through
files, so the index stage needs no shared storage. With a FAISS GPU in the driver the quantiser
is trained there as in the local build; the tasks always fill on the CPU. Only the Ray engine
imports this module (it imports Ray).
"""

from __future__ import annotations

import sys

import faiss
import numpy as np
import ray

from indexer.kinds import GpuContext, IndexParams, add_vectors, trained
from indexer.shards import build_parts, split_rows

FILL_CPUS = 1
"""Logical CPUs a filling task asks for (Ray then gives its FAISS one OpenMP thread)."""
MAX_ENCODERS = 8
"""At most this many tasks encode one unsharded IVF-PQ index."""
MIN_ROWS_PER_ENCODER = 64
"""An encoding task gets at least this many rows: below that a task costs more than it saves."""


def build_on_ray(params: IndexParams, vectors: np.ndarray, rowids: np.ndarray, shards: int,
                 gpu: GpuContext | None = None, progress: bool = False,
                 label: str = "index") -> tuple[list[faiss.Index], str]:
    """A modality's CPU index, or its ``shards`` index shards in row order, built with Ray
    (already initialised); and where the quantiser was trained (cpu, cuda).

    ``vectors`` are the normalised embeddings, ``rowids`` their ids (as ``shards.build_shards``
    and ``kinds.build_index_on`` take them; the result equals theirs).
    """
    ids = np.ascontiguousarray(rowids, dtype=np.int64)
    if shards > 1:
        template, device = _trained_on_cpu(params, vectors, gpu, progress, label)
        ranges = split_rows(len(ids), shards)
        if progress:
            print(f"filling {label} in {shards} shards on Ray", file=sys.stderr)
        return _fill_on_ray(template, vectors, ids, ranges), device
    if params.kind != "ivfpq":
        return build_parts(params, vectors, ids, 1, gpu, progress, label)
    encoders = encoder_count(len(ids), _cluster_cpus())
    if encoders < 2:
        return build_parts(params, vectors, ids, 1, gpu, progress, label)
    template, device = _trained_on_cpu(params, vectors, gpu, progress, label)
    if progress:
        print(f"encoding {label} in {encoders} tasks on Ray", file=sys.stderr)
    parts = _fill_on_ray(template, vectors, ids, split_rows(len(ids), encoders))
    return [merged_in_order(template, parts)], device


def encoder_count(rows: int, cpus: int) -> int:
    """How many tasks encode ``rows`` vectors on a cluster of ``cpus`` logical CPUs."""
    return max(1, min(MAX_ENCODERS, cpus, rows // MIN_ROWS_PER_ENCODER))


def merged_in_order(template: faiss.Index, parts: list[faiss.Index]) -> faiss.Index:
    """``parts`` (filled copies of the trained IVF ``template``, over consecutive row ranges)
    merged into ``template`` in their order: each inverted list gets part 0's entries, then part
    1's, ..., the order of one ``add`` of all rows. Ids are kept (``add_id`` 0)."""
    for part in parts:
        template.merge_from(part, 0)
    return template


def _trained_on_cpu(params: IndexParams, vectors: np.ndarray, gpu: GpuContext | None,
                    progress: bool, label: str) -> tuple[faiss.Index, str]:
    """The template trained once (on the GPU when ``gpu`` takes it), as a CPU index."""
    template, device = trained(params, vectors, gpu, progress=progress, label=label)
    if device == "cuda":
        template = faiss.index_gpu_to_cpu(template)
    return template, device


def _cluster_cpus() -> int:
    return int(ray.cluster_resources().get("CPU", 1))


def _fill_on_ray(template: faiss.Index, vectors: np.ndarray, ids: np.ndarray,
                 ranges: list[slice]) -> list[faiss.Index]:
    """A copy of ``template`` filled with each row range, one Ray task a range, in range order.

    The template is put in the object store once and every range's vectors and ids once each;
    a task returns its filled index serialised (FAISS indices do not pickle).
    """
    template_ref = ray.put(faiss.serialize_index(template))
    pending = [
        _fill.remote(template_ref, ray.put(vectors[rows]), ray.put(ids[rows]))
        for rows in ranges
    ]
    return [faiss.deserialize_index(blob) for blob in ray.get(pending)]


@ray.remote(num_cpus=FILL_CPUS)
def _fill(template: np.ndarray, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """A task: the serialised template with ``vectors`` (ids ``ids``) added, serialised."""
    index = faiss.deserialize_index(template)
    add_vectors(index, vectors, ids)
    return faiss.serialize_index(index)
