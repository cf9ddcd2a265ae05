"""Query latency as the shard count grows: flat and HNSW at 1, 2, 4 and 8 shards.

The vectors are ``bench_index.make_data``'s clustered mixture (seeded); each configuration is
built with ``indexer.shards.build_shards`` and searched through ``ShardedIndex`` (1 shard:
the plain index), the reader the service uses, one query at a time with one FAISS thread per
shard search (the service's setting), k = 10. Prints one Markdown table: single-query p50/p99,
and recall@10 against exact search.

    python bench/bench_shards.py                    # 200,000 vectors (minutes on two cores)
    python bench/bench_shards.py --n 20000          # a smoke run
    python bench/bench_shards.py --gpu --kinds flat,ivfpq   # also the shards on the GPUs

With ``--gpu`` each flat or IVF-PQ configuration is also searched through
``indexer.gpu_shards.GpuShardedIndex`` (shard n on GPU n mod G), beside the CPU row.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_index import exact_neighbours, make_data  # noqa: E402

from indexer import kinds  # noqa: E402
from indexer.gpu_shards import GpuShardedIndex  # noqa: E402
from indexer.shards import ShardedIndex, build_shards  # noqa: E402

K = 10


def latency(index, params: kinds.IndexParams, queries: np.ndarray,
            truth: np.ndarray) -> tuple[float, float, float]:
    for query in queries[:20]:  # warm up: threads started, pages touched
        kinds.search(index, params, query[None], K)
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        found.append(kinds.search(index, params, query[None], K)[1][0])
        times.append(time.perf_counter() - started)
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth,
                                                                     strict=True)]))
    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--kinds", default="flat,hnsw")
    parser.add_argument("--shards", default="1,2,4,8")
    parser.add_argument("--gpu", action="store_true",
                        help="also search the shards on the GPUs (needs faiss-gpu)")
    args = parser.parse_args()
    if args.gpu and not kinds.faiss_has_gpu():
        parser.error("--gpu: FAISS sees no GPU (install faiss-gpu on a machine with one)")
    faiss.omp_set_num_threads(1)
    x = make_data("clustered", args.n + args.queries, clusters=max(10, args.n // 250), seed=0)
    x, queries = x[: args.n], x[args.n :]
    ids = np.arange(args.n, dtype=np.int64)
    truth = exact_neighbours(x, queries)
    print(f"{args.n:,} clustered 128-d vectors, {args.queries} single queries, k={K}, one FAISS "
          f"thread a shard, {os.cpu_count()} cores ({platform.machine()}), FAISS "
          f"{faiss.__version__}\n")
    print("| kind | shards | searched on | build s | p50 ms | p99 ms | recall@10 |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for kind in args.kinds.split(","):
        params = kinds.choose_params(kind, args.n, x.shape[1])
        for count in (int(s) for s in args.shards.split(",")):
            started = time.perf_counter()
            parts, _ = build_shards(params, x, ids, count)
            built = time.perf_counter() - started
            index = parts[0] if count == 1 else ShardedIndex(parts)
            p50, p99, recall = latency(index, params, queries, truth)
            print(f"| {kind} | {count} | CPU | {built:.1f} | {p50:.3f} | {p99:.3f} "
                  f"| {recall:.3f} |", flush=True)
            if args.gpu and kind != "hnsw":  # FAISS has no GPU HNSW
                on_gpus = GpuShardedIndex(parts, faiss.get_num_gpus())
                p50, p99, recall = latency(on_gpus, params, queries, truth)
                print(f"| {kind} | {count} | {on_gpus.gpus} GPU | {built:.1f} | {p50:.3f} "
                      f"| {p99:.3f} | {recall:.3f} |", flush=True)
                on_gpus.close()


if __name__ == "__main__":
    main()
