"""``avsearch index build|add|remove``: write and change index bundles.

Nothing heavy is imported here: FAISS, ONNX Runtime and the media decoders load inside ``run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEVICES = ["auto", "cpu", "cuda"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build an index bundle from a corpus, add items to it or remove them",
        description="Index bundles: one FAISS index per modality, an SQLite item store and "
        "index.json. Every change writes a new version and switches INDEX_DIR to it atomically.",
    )
    jobs = parser.add_subparsers(dest="index_command", required=True, metavar="JOB")
    _register_build(jobs)
    _register_add(jobs)
    _register_remove(jobs)


def _embedding_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="ONNX Runtime and FAISS device (default: the GPU when present)")
    parser.add_argument("--batch-size", type=int, default=64, help="items per batch (64)")
    parser.add_argument("--shard-size", type=int, default=4096,
                        help="items per shard on disk; an interrupted run resumes from the "
                        "last shard written (4096)")
    parser.add_argument("--workers", type=int, default=1, help="threads decoding media (1)")
    parser.add_argument("--max-failed-share", type=float, default=0.5,
                        help="fail when more than this share of the items cannot be embedded "
                        "(0.5)")
    parser.add_argument("--keep-versions", type=int, default=2,
                        help="versions kept after the switch: the new one and the previous (2)")
    parser.add_argument("--threads", type=int, help="FAISS threads (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _register_build(jobs: argparse._SubParsersAction) -> None:
    parser = jobs.add_parser(
        "build",
        help="embed a corpus with a model bundle and write an index bundle",
        description="Embed every item of the corpus (in batches, in resumable shards), build "
        "one FAISS index per modality and switch --out to the new bundle when it is complete.",
    )
    parser.add_argument("--model", required=True, help="model bundle folder")
    parser.add_argument("--corpus", required=True, help="corpus folder (manifest.jsonl)")
    parser.add_argument("--out", required=True, help="index bundle path (a symlink to a version)")
    parser.add_argument("--kind", default="auto", choices=["auto", "flat", "ivfpq", "hnsw"],
                        help="index kind (default: by collection size, see docs/indexing.md)")
    parser.add_argument("--segments", action="store_true",
                        help="index a video longer than one window as one item per window")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a folder at --out that this indexer did not write")
    group = parser.add_argument_group("index parameters (default: chosen from the data)")
    group.add_argument("--nlist", type=int, help="ivfpq: inverted lists (~4 sqrt(n))")
    group.add_argument("--nprobe", type=int, help="ivfpq: lists searched by default")
    group.add_argument("--pq-m", type=int, help="ivfpq: sub-quantizers (bytes per vector)")
    group.add_argument("--pq-nbits", type=int, help="ivfpq: bits per sub-quantizer (8)")
    group.add_argument("--train-size", type=int, help="ivfpq: training sample size")
    group.add_argument("--rerank", type=int, help="ivfpq: re-score k x this many candidates "
                       "with the exact embeddings (4; 1: off)")
    group.add_argument("--hnsw-m", type=int, help="hnsw: links per node")
    group.add_argument("--ef-construction", type=int, help="hnsw: build-time candidate list")
    group.add_argument("--ef-search", type=int, help="hnsw: search-time candidate list")
    group.add_argument("--shards", type=int, default=1,
                       help="keep each index as N shards, searched in parallel and merged (1)")
    scale = parser.add_argument_group("Ray (pip install 'avsearch[ray]'; docs/scale.md)")
    scale.add_argument("--engine", default="local", choices=["local", "ray"],
                       help="decode and embed here (local) or on a Ray cluster (ray)")
    scale.add_argument("--ray-address", metavar="HOST:PORT",
                       help="join this Ray cluster (default: start a local Ray for the job)")
    scale.add_argument("--ray-actors", type=int, metavar="N",
                       help="embedding actors (default: one per GPU of the cluster, else 1)")
    _embedding_flags(parser)
    parser.set_defaults(run=run_build)


def _register_add(jobs: argparse._SubParsersAction) -> None:
    parser = jobs.add_parser(
        "add",
        help="add the corpus's items that the index does not hold yet",
        description="Embed only the new items (by id) and publish a new version with them; the "
        "stored embeddings of the others are reused.",
    )
    parser.add_argument("--index", required=True, help="index bundle path")
    parser.add_argument("--corpus", required=True, help="corpus folder (manifest.jsonl)")
    parser.add_argument("--model", help="model bundle (default: the one index.json names; it "
                        "must be the model the index was built with)")
    _embedding_flags(parser)
    parser.set_defaults(run=run_add)


def _register_remove(jobs: argparse._SubParsersAction) -> None:
    parser = jobs.add_parser(
        "remove",
        help="remove items by id",
        description="Publish a new version without these items (a video's id removes all its "
        "segments). HNSW indices are rebuilt from the stored embeddings.",
    )
    parser.add_argument("--index", required=True, help="index bundle path")
    parser.add_argument("ids", nargs="+", metavar="ID", help="item ids")
    parser.add_argument("--keep-versions", type=int, default=2,
                        help="versions kept after the switch (2)")
    parser.add_argument("--threads", type=int, help="FAISS threads (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_remove)


# ---------------------------------------------------------------------------- running


def _embed_config(args: argparse.Namespace):
    from indexer.embed import EmbedConfig

    return EmbedConfig(batch_size=args.batch_size, shard_size=args.shard_size,
                       workers=args.workers, progress=not args.quiet)


def _set_threads(args: argparse.Namespace) -> None:
    """FAISS's thread count is process-wide: set once, here at the edge."""
    if args.threads is not None:
        import faiss

        from models.errors import BundleError

        if args.threads < 1:
            raise BundleError(f"--threads must be 1 or more, not {args.threads}")
        faiss.omp_set_num_threads(args.threads)


def _ray_config(args: argparse.Namespace):
    from indexer.ray_config import RayConfig
    from models.errors import BundleError

    if args.engine != "ray" and (args.ray_address or args.ray_actors is not None):
        raise BundleError("--ray-address and --ray-actors need --engine ray")
    if args.ray_actors is not None and args.ray_actors < 1:
        raise BundleError(f"--ray-actors must be 1 or more, not {args.ray_actors}")
    return RayConfig(address=args.ray_address, actors=args.ray_actors)


def run_build(args: argparse.Namespace) -> int:
    from indexer.build import BuildConfig, build
    from indexer.kinds import Overrides

    _set_threads(args)
    ray = _ray_config(args)
    config = BuildConfig(
        model=Path(args.model), corpus=Path(args.corpus), out=Path(args.out), kind=args.kind,
        device=args.device, segments=args.segments, embed=_embed_config(args),
        max_failed_share=args.max_failed_share, overwrite=args.overwrite,
        overrides=Overrides(
            nlist=args.nlist, nprobe=args.nprobe, pq_m=args.pq_m, pq_nbits=args.pq_nbits,
            train_size=args.train_size, hnsw_m=args.hnsw_m,
            ef_construction=args.ef_construction, ef_search=args.ef_search,
            rerank=args.rerank,
        ),
        keep_versions=args.keep_versions, argv=tuple(getattr(args, "argv", ())),
        engine=args.engine, ray=ray, shards=args.shards,
    )
    print(build(config).summary())
    return 0


def run_add(args: argparse.Namespace) -> int:
    from indexer.build import AddConfig, add

    _set_threads(args)
    config = AddConfig(
        index=Path(args.index), corpus=Path(args.corpus),
        model=Path(args.model) if args.model else None, device=args.device,
        embed=_embed_config(args), max_failed_share=args.max_failed_share,
        keep_versions=args.keep_versions, argv=tuple(getattr(args, "argv", ())),
    )
    print(add(config).summary())
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from indexer.build import RemoveConfig, remove

    _set_threads(args)
    config = RemoveConfig(index=Path(args.index), ids=tuple(args.ids),
                          keep_versions=args.keep_versions, progress=not args.quiet,
                          argv=tuple(getattr(args, "argv", ())))
    print(remove(config).summary())
    return 0
