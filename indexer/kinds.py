"""The FAISS index kinds: choosing one, its parameters from the data, building and searching it.

Three kinds, all on inner product over L2-normalised vectors (cosine similarity):

- ``flat``: exact search (``IDMap2,Flat``). No training, no parameters, removal supported.
- ``hnsw``: a graph (``IDMap2,HNSW{M}``); fast and accurate, about 1.5x the memory of the raw
  vectors, cannot remove (the builder rebuilds it from the stored vectors instead).
- ``ivfpq``: inverted lists of product-quantised codes (``IVF{nlist},PQ{m}x{nbits}np``); the
  vectors are compressed 16x (m = dim / 4 bytes a vector), so the largest collections fit.
  The codes alone cap recall@10 near 0.6, so searches fetch ``k x rerank`` candidates and
  re-score them with the exact embeddings the bundle keeps on disk (``refine``).

Search parameters (``nprobe``, ``efSearch``) and restrictions to a set of ids travel with each
search call as ``faiss.SearchParameters``; a shared index is never mutated to search it.
The thresholds of ``auto`` and their reasons are in docs/indexing.md.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
from pydantic import BaseModel
from tqdm import tqdm

from models.errors import BundleError

log = logging.getLogger(__name__)
Kind = Literal["flat", "ivfpq", "hnsw"]
KINDS: tuple[str, ...] = ("flat", "ivfpq", "hnsw")

FLAT_MAX = 100_000
"""``auto`` searches exactly up to this many items (a query scans at most ~50 MB at 128-d)."""

HNSW_MAX = 2_000_000
"""``auto`` uses HNSW up to this many items, IVF-PQ beyond (memory: 16x less than raw vectors)."""

MIN_POINTS_PER_CENTROID = 39  # FAISS's own advice for k-means training
RERANK = 4
"""IVF-PQ's default: re-score 4k candidates with the exact stored embeddings. PQ codes alone
cap recall@10 near 0.6 (4 dimensions a byte); the embeddings are in the bundle anyway."""
ADD_CHUNK = 65_536  # vectors added to an index per call (the unit of the progress bar)


class IndexParams(BaseModel):
    """What an index is and how it is searched by default; stored in index.json."""

    kind: Kind
    factory: str
    dim: int
    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None
    pq_nbits: int | None = None
    train_size: int | None = None
    hnsw_m: int | None = None
    ef_construction: int | None = None
    ef_search: int | None = None
    rerank: int | None = None  # ivfpq: fetch k x rerank candidates, re-score them exactly


@dataclass(frozen=True)
class Overrides:
    """Parameters given on the command line; ``None`` means "choose from the data"."""

    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None
    pq_nbits: int | None = None
    train_size: int | None = None
    hnsw_m: int | None = None
    ef_construction: int | None = None
    ef_search: int | None = None
    rerank: int | None = None

    def check(self) -> None:
        for name, value in vars(self).items():
            if value is not None and value < 1:
                raise BundleError(f"--{name.replace('_', '-')} must be 1 or more, not {value}")


def choose_kind(count: int) -> str:
    """``auto``: exact up to FLAT_MAX items, a graph up to HNSW_MAX, compressed lists beyond."""
    if count <= FLAT_MAX:
        return "flat"
    return "hnsw" if count <= HNSW_MAX else "ivfpq"


def choose_params(kind: str, count: int, dim: int, given: Overrides | None = None) -> IndexParams:
    """The parameters of ``kind`` for ``count`` vectors of ``dim`` dimensions (``given`` wins)."""
    given = given or Overrides()
    given.check()
    if kind == "auto":
        kind = choose_kind(count)
    if kind == "flat":
        return IndexParams(kind="flat", factory="IDMap2,Flat", dim=dim)
    if kind == "hnsw":
        # M=32: on unstructured data M=16 finds ~20% fewer of the true neighbours at the same
        # efSearch (bench/bench_index.py); the extra links cost 128 bytes a vector.
        m = given.hnsw_m or 32
        ef_search = given.ef_search or (128 if count <= 1_000_000 else 256)
        return IndexParams(
            kind="hnsw", factory=f"IDMap2,HNSW{m}", dim=dim, hnsw_m=m,
            ef_construction=given.ef_construction or 80, ef_search=ef_search,
        )
    if kind == "ivfpq":
        return _ivfpq_params(count, dim, given)
    raise BundleError(f"unknown index kind {kind!r}; use auto, {', '.join(KINDS)}")


def _ivfpq_params(count: int, dim: int, given: Overrides) -> IndexParams:
    if count < 2:
        raise BundleError(f"an ivfpq index needs at least 2 items to train, not {count}; "
                          "use --kind flat")
    # ~4 sqrt(n) lists, each with enough points to train its centroid.
    nlist = given.nlist or max(1, min(round(4 * math.sqrt(count)),
                                      count // MIN_POINTS_PER_CENTROID))
    if nlist > count:
        raise BundleError(f"--nlist {nlist} is more than the {count} items to index")
    train_size = min(count, given.train_size or max(50 * nlist, 16_384))
    pq_m = given.pq_m or _largest_divisor(dim, max(1, dim // 4))
    if dim % pq_m:
        raise BundleError(f"--pq-m {pq_m} must divide the embedding size {dim}")
    # 8 bits (256 centroids per sub-quantizer) once the sample trains them, fewer on tiny data.
    nbits = given.pq_nbits or min(8, max(1, int(math.log2(max(2, train_size // 4)))))
    if nbits > 16:
        raise BundleError(f"--pq-nbits {nbits} is more than FAISS's 16")
    if 2**nbits > train_size:
        raise BundleError(f"--pq-nbits {nbits} needs at least {2**nbits} training vectors, "
                          f"the sample has {train_size}")
    nprobe = min(nlist, given.nprobe or max(16, nlist // 32))  # ~3% of the lists
    return IndexParams(
        kind="ivfpq", factory=f"IVF{nlist},PQ{pq_m}x{nbits}np", dim=dim, nlist=nlist,
        nprobe=nprobe, pq_m=pq_m, pq_nbits=nbits, train_size=train_size,
        rerank=given.rerank or RERANK,
    )


def _largest_divisor(dim: int, at_most: int) -> int:
    return max(d for d in range(1, at_most + 1) if dim % d == 0)


# ---------------------------------------------------------------------------- GPU


def faiss_has_gpu() -> bool:
    """A GPU that FAISS can use: a faiss-gpu build and at least one visible device."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def use_gpu(device: str) -> bool:
    """Resolve ``--device`` for FAISS: ``cuda`` insists, ``auto`` uses a GPU when there is one."""
    if device == "cpu":
        return False
    if device == "cuda":
        if not faiss_has_gpu():
            raise BundleError("device 'cuda' asked for, but FAISS sees no GPU (install "
                              "avsearch[gpu] with faiss-gpu on a machine with an NVIDIA GPU)")
        return True
    if device != "auto":
        raise BundleError(f"unknown device {device!r}; use auto, cpu or cuda")
    return faiss_has_gpu()


@dataclass
class GpuContext:
    """FAISS GPU resources, created once by whoever decides to use the GPU, passed down."""

    device: int = 0
    resources: object = field(default=None)

    def __post_init__(self) -> None:
        if self.resources is None:
            self.resources = faiss.StandardGpuResources()

    def to_gpu(self, index: faiss.Index) -> faiss.Index:
        return faiss.index_cpu_to_gpu(self.resources, self.device, index)


# ---------------------------------------------------------------------------- build


def normalised(vectors: np.ndarray) -> np.ndarray:
    """A float32 C-contiguous copy with unit rows (zero rows stay zero).

    Rows already of unit norm (as the model's outputs are) are kept bit for bit: normalising
    again would move them by an ulp, and the index should hold exactly what the model said.
    """
    out = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if out.ndim != 2:
        raise ValueError(f"expected a (count, dim) array, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1)
    off = np.flatnonzero(np.abs(norms - 1.0) > 1e-5)
    if len(off):
        out[off] /= np.maximum(norms[off], 1e-12)[:, None]
    return out


def create_index(params: IndexParams) -> faiss.Index:
    index = faiss.index_factory(params.dim, params.factory, faiss.METRIC_INNER_PRODUCT)
    if params.kind == "hnsw":
        inner = faiss.downcast_index(index.index)
        inner.hnsw.efConstruction = params.ef_construction
        inner.hnsw.efSearch = params.ef_search  # the file's default; searches pass their own
    elif params.kind == "ivfpq":
        index.nprobe = params.nprobe  # likewise only the default written to the file
        # Our parameter choice already sizes k-means for the sample; silence FAISS's advice.
        index.cp.min_points_per_centroid = 1
        index.pq.cp.min_points_per_centroid = 1
    return index


def build_index(
    params: IndexParams,
    vectors: np.ndarray,
    rowids: np.ndarray,
    gpu: GpuContext | None = None,
    seed: int = 0,
    progress: bool = False,
    label: str = "index",
) -> faiss.Index:
    """A CPU index over ``vectors`` with ids ``rowids``; see ``build_index_on``."""
    return build_index_on(params, vectors, rowids, gpu, seed, progress, label)[0]


def build_index_on(
    params: IndexParams,
    vectors: np.ndarray,
    rowids: np.ndarray,
    gpu: GpuContext | None = None,
    seed: int = 0,
    progress: bool = False,
    label: str = "index",
) -> tuple[faiss.Index, str]:
    """A CPU index over ``vectors`` with ids ``rowids``, and where it was built (cpu or cuda).

    IVF-PQ trains on a seeded sample of ``train_size`` vectors. With ``gpu``, IVF-PQ trains and
    encodes on the GPU and is copied back (``index_gpu_to_cpu``), so the saved file loads
    anywhere; parameters the GPU cannot take (FAISS GPU supports fewer PQ code sizes) fall back
    to the CPU with a warning. Flat has nothing to accelerate and FAISS has no GPU HNSW: those
    two are always built on the CPU.
    """
    x = normalised(vectors)
    ids = np.ascontiguousarray(rowids, dtype=np.int64)
    if len(x) != len(ids):
        raise ValueError(f"{len(x)} vectors but {len(ids)} ids")
    index, device = trained(params, x, gpu, seed, progress, label)
    _add(index, x, ids, progress, label)
    if device == "cuda":
        return faiss.index_gpu_to_cpu(index), "cuda"
    return index, "cpu"


def training_sample(x: np.ndarray, params: IndexParams, seed: int = 0) -> np.ndarray:
    """The seeded sample of ``train_size`` normalised vectors that IVF-PQ is trained on."""
    rng = np.random.default_rng(seed)
    take = min(len(x), params.train_size or len(x))
    return x[np.sort(rng.choice(len(x), size=take, replace=False))]


def trained(params: IndexParams, x: np.ndarray, gpu: GpuContext | None = None, seed: int = 0,
            progress: bool = False, label: str = "index") -> tuple[faiss.Index, str]:
    """An empty index of ``params``, trained when its kind needs it (IVF-PQ, on
    ``training_sample``), and where it lives: ``cuda`` (a GPU index, when ``gpu`` can take
    it) or ``cpu``. Flat and HNSW need no training and stay on the CPU."""
    index = create_index(params)
    if params.kind != "ivfpq":
        return index, "cpu"
    sample = training_sample(x, params, seed)
    if progress:
        print(f"training {label} ({params.factory}) on {len(sample)} vectors", file=sys.stderr)
    on_gpu = _try_gpu(gpu, index, params) if gpu is not None else None
    if on_gpu is not None:
        on_gpu.train(sample)
        return on_gpu, "cuda"
    index.train(sample)
    return index, "cpu"


def _try_gpu(gpu: GpuContext, index: faiss.Index, params: IndexParams) -> faiss.Index | None:
    try:
        return gpu.to_gpu(index)
    except RuntimeError as exc:  # FAISS GPU refuses some code sizes and sub-quantizer counts
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        log.warning("FAISS GPU cannot build %s (%s); building it on the CPU", params.factory,
                    reason)
        return None


def add_vectors(
    index: faiss.Index, vectors: np.ndarray, rowids: np.ndarray, progress: bool = False
) -> None:
    """Add to an existing (trained) index in place; ids must be new."""
    _add(index, normalised(vectors), np.ascontiguousarray(rowids, dtype=np.int64), progress)


def _add(index: faiss.Index, x: np.ndarray, ids: np.ndarray, progress: bool, label: str = "index"):
    """Add in chunks, so that a long HNSW or IVF-PQ build shows its progress."""
    chunk = ADD_CHUNK
    with tqdm(total=len(x), desc=f"adding to {label}", unit="vector", leave=False,
              disable=not progress or len(x) <= chunk, dynamic_ncols=True) as bar:
        for start in range(0, len(x), chunk):
            index.add_with_ids(x[start : start + chunk], ids[start : start + chunk])
            bar.update(min(chunk, len(x) - start))


def can_remove(params: IndexParams) -> bool:
    return params.kind in ("flat", "ivfpq")


def remove_ids(index: faiss.Index, rowids: Sequence[int] | np.ndarray) -> int:
    """Remove ids in place from a flat or IVF index; returns how many were removed."""
    ids = np.ascontiguousarray(rowids, dtype=np.int64)
    return int(index.remove_ids(faiss.IDSelectorBatch(ids)))


def index_ids(index: faiss.Index) -> np.ndarray:
    """Every id stored in a flat/HNSW (IDMap2) or IVF index, sorted."""
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if invlists.list_size(i)
    ]
    return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------- search


def search_parameters(
    params: IndexParams,
    restrict_to: np.ndarray | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    k: int = 1,
) -> tuple[faiss.SearchParameters, list[object]]:
    """Per-call search parameters, and the objects they reference (keep them alive meanwhile).

    HNSW's efSearch is raised to at least ``k``: a graph search cannot return more results than
    its candidate list holds.
    """
    keep: list[object] = []
    selector = None
    if restrict_to is not None:
        ids = np.ascontiguousarray(restrict_to, dtype=np.int64)
        selector = faiss.IDSelectorBatch(ids)
        keep += [ids, selector]
    if params.kind == "ivfpq":
        probe = min(nprobe or params.nprobe or 1, params.nlist or 1)
        search = faiss.SearchParametersIVF(nprobe=probe)
    elif params.kind == "hnsw":
        search = faiss.SearchParametersHNSW(efSearch=max(ef_search or params.ef_search or 16, k))
    else:
        search = faiss.SearchParameters()
    if selector is not None:
        search.sel = selector
    return search, keep


def search(
    index: faiss.Index,
    params: IndexParams,
    queries: np.ndarray,
    k: int,
    restrict_to: np.ndarray | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (queries, k); missing results are id -1 with score -inf."""
    x = normalised(np.atleast_2d(queries))
    if x.shape[1] != params.dim:
        raise BundleError(f"query vectors of size {x.shape[1]}; this index holds {params.dim}")
    search_params, keep = search_parameters(params, restrict_to, nprobe, ef_search, k)
    if params.kind == "flat" and restrict_to is None:
        search_params = None  # nothing to say (and FAISS GPU flat indices take no parameters)
    scores, ids = index.search(x, k, params=search_params)
    del keep
    scores[ids < 0] = -np.inf
    return scores, ids


def refine(
    queries: np.ndarray,
    candidates: np.ndarray,
    k: int,
    vectors: np.ndarray,
    rowids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate ids exactly: (scores, ids) of the best ``k`` per query.

    ``vectors`` (N, D) are the stored unit embeddings (a memory map will do: only the
    candidates' rows are read) and ``rowids`` (N,) their sorted ids; ``candidates`` (Q, C) may
    hold -1, which stays last.
    """
    x = normalised(np.atleast_2d(queries))
    found = np.asarray(candidates, dtype=np.int64)
    if not len(rowids):
        return np.full(found.shape, -np.inf, np.float32)[:, :k], np.full_like(found, -1)[:, :k]
    positions = np.minimum(np.searchsorted(rowids, np.maximum(found, 0)), len(rowids) - 1)
    valid = (found >= 0) & (rowids[positions] == found)
    scores = np.full(found.shape, -np.inf, dtype=np.float32)
    query_of = np.nonzero(valid)[0]
    picked = np.asarray(vectors[positions[valid]], dtype=np.float32)
    scores[valid] = np.einsum("cd,cd->c", picked, x[query_of])
    # Best first; equal scores by ascending id; missing candidates (-inf) last.
    tie_key = np.where(valid, found, np.iinfo(np.int64).max)
    order = np.lexsort((tie_key, -scores), axis=1)[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isfinite(best), np.take_along_axis(found, order, axis=1), -1)
    return best, ids


# ---------------------------------------------------------------------------- files


def write_index(index: faiss.Index, path: Path) -> None:
    """Write a CPU index to ``path`` through a temporary name in the same folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
"""A reader's flags: the vectors of flat and HNSW indices (FAISS's flat codes) are memory-mapped
read-only, so service replicas on one host share them in the page cache instead of each holding
a copy; IVF-PQ's lists are read into memory (small: 40 B a vector) and its exact embeddings are
memory-mapped by ``SearchIndex`` anyway."""


def read_index(path: Path, mmap: bool = False) -> faiss.Index:
    """An index file; ``mmap`` for readers only (the mapped index must not be changed)."""
    if not path.is_file():
        raise BundleError(f"index bundle is missing {path.name} ({path})")
    try:
        return faiss.read_index(str(path), MMAP_FLAGS if mmap else 0)
    except RuntimeError as exc:
        raise BundleError(f"{path} is not a readable FAISS index: {str(exc).splitlines()[0]}") \
            from None
