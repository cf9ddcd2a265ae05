"""The FAISS index kinds side by side: build time, memory, latency, throughput, recall@10.

Two collections of L2-normalised 128-d vectors (default 1,000,000 each): a seeded mixture of a
few thousand clusters (embeddings of real media cluster by what they show or sound like) and,
beside it, uniform random directions (the worst case for every approximate index: no structure
to exploit). 1,000 queries are drawn from the same distribution but held apart from the
database. Each kind is built through ``indexer.kinds`` with the parameters ``avsearch index
build`` would choose for that size, and searched with per-call parameters as the service does.

IVF-PQ re-scores its ``k x rerank`` candidates with the exact embeddings, as ``SearchIndex``
does (they stay on disk, memory-mapped: not counted in its index size).

Columns: build seconds; the index file's size and the process's RSS growth while building;
single-query latency p50/p99 (k=10); throughput with batches of 64 queries; recall@10 against
exact search. One run prints one Markdown table (paste it into docs/indexing.md).

Usage: python bench/bench_index.py [--n 1000000] [--queries 1000] [--kinds flat,hnsw,ivfpq]
                                   [--data clustered,uniform] [--threads N] [--seed 0]
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexer import kinds

DIM = 128
K = 10
CHUNK = 100_000


def rss_bytes() -> int:
    """The resident set size of this process now (Linux), 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_data(kind: str, count: int, clusters: int, seed: int) -> np.ndarray:
    """``count`` unit vectors: a mixture of ``clusters`` Gaussian blobs, or uniform directions.

    Cluster sizes follow a Zipf-like law (a few large classes, a long tail), and each point
    lies at cosine ~0.7 from its centre, so neighbouring clusters overlap as real classes do.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((count, DIM), dtype=np.float32)
    if kind == "uniform":
        for start, stop in _chunks(count):
            out[start:stop] = _unit(rng.standard_normal((stop - start, DIM), dtype=np.float32))
        return out
    centres = _unit(rng.standard_normal((clusters, DIM), dtype=np.float32))
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.8
    weights /= weights.sum()
    spread = 1.0 / np.sqrt(DIM)  # noise of norm ~1: cosine ~0.7 to the centre
    for start, stop in _chunks(count):
        assign = rng.choice(clusters, size=stop - start, p=weights)
        noise = rng.standard_normal((stop - start, DIM), dtype=np.float32) * spread
        out[start:stop] = _unit(centres[assign] + noise)
    return out


def _chunks(count: int) -> Iterator[tuple[int, int]]:
    for start in range(0, count, CHUNK):
        yield start, min(count, start + CHUNK)


@dataclass
class Row:
    data: str
    kind: str
    factory: str
    build_s: float
    index_bytes: int
    rss_growth: int
    p50_ms: float
    p99_ms: float
    batch_qps: float
    recall: float


def exact_neighbours(x: np.ndarray, queries: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatIP(DIM)
    index.add(x)
    return index.search(queries, K)[1]


def search_like_the_service(index, params: kinds.IndexParams, x: np.ndarray, ids: np.ndarray,
                            batch: np.ndarray) -> np.ndarray:
    """As SearchIndex.search does it: IVF-PQ re-scores its k x rerank candidates exactly."""
    fetch = K * (params.rerank or 1)
    found = kinds.search(index, params, batch, fetch)[1]
    return kinds.refine(batch, found, K, x, ids)[1] if fetch > K else found


def measure(data: str, kind: str, x: np.ndarray, queries: np.ndarray, truth: np.ndarray,
            seed: int) -> Row:
    ids = np.arange(len(x), dtype=np.int64)
    params = kinds.choose_params(kind, len(x), DIM)
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    index = kinds.build_index(params, x, ids, seed=seed)
    build_s = time.perf_counter() - start
    gc.collect()
    growth = rss_bytes() - before
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.faiss"
        kinds.write_index(index, path)
        size = path.stat().st_size

    search = functools.partial(search_like_the_service, index, params, x, ids)

    search(queries[:8])  # warm-up
    latencies = []
    for query in queries:
        began = time.perf_counter()
        search(query[None, :])
        latencies.append(time.perf_counter() - began)
    began = time.perf_counter()
    found = np.concatenate([search(queries[s : s + 64]) for s in range(0, len(queries), 64)])
    batch_s = time.perf_counter() - began
    recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])
    del search, index
    gc.collect()
    return Row(data, kind, params.factory, build_s, size, growth,
               1000 * float(np.percentile(latencies, 50)),
               1000 * float(np.percentile(latencies, 99)),
               len(queries) / batch_s, float(recall))


def table(rows: list[Row]) -> str:
    lines = [
        "| data | kind | factory | build s | index MB | RSS +MB | p50 ms | p99 ms "
        "| batch-64 q/s | recall@10 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.data} | {r.kind} | `{r.factory}` | {r.build_s:.1f} "
            f"| {r.index_bytes / 2**20:.1f} | {r.rss_growth / 2**20:.0f} | {r.p50_ms:.3f} "
            f"| {r.p99_ms:.3f} | {r.batch_qps:,.0f} | {r.recall:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database vectors")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, help="mixture components (default: n / 250, "
                        "at most 4096)")
    parser.add_argument("--kinds", default="flat,hnsw,ivfpq")
    parser.add_argument("--data", default="clustered,uniform")
    parser.add_argument("--threads", type=int, help="FAISS threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    clusters = args.clusters or max(16, min(4096, args.n // 250))
    print(f"# {args.n:,} vectors, {args.queries:,} queries, {DIM}-d, k={K}; faiss "
          f"{faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} "
          f"cores, {platform.processor() or platform.machine()}; clustered: {clusters} "
          "clusters\n", flush=True)
    rows = []
    for data in args.data.split(","):
        everything = make_data(data, args.n + args.queries, clusters, args.seed)
        x, queries = everything[: args.n], everything[args.n :].copy()
        del everything
        truth = exact_neighbours(x, queries)
        for kind in args.kinds.split(","):
            rows.append(measure(data, kind, x, queries, truth, args.seed))
            print(table(rows[-1:]).splitlines()[-1], flush=True)  # progress, row by row
        del x
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
