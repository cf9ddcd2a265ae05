"""Embedding throughput: the local build against the Ray build with 1 and 2 CPU actors.

One run builds an AV-digits corpus (real MNIST digits and FSDD recordings), then indexes it with
the shipped model four ways (``--engine local`` with 1 and 2 decoding threads, ``--engine ray
--ray-actors 1`` and ``... 2``)
and prints one Markdown table. Ray is started once (a local Ray with ``--cpus`` CPUs) and its
start-up is timed on its own, so the Ray rows show the pipeline itself; the bundles are
compared bit for bit with the local one.

    python bench/bench_ray.py                  # 2,000 items (a few minutes on two cores)
    python bench/bench_ray.py --images 300     # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexer.build import BuildConfig, build  # noqa: E402
from indexer.embed import EmbedConfig  # noqa: E402
from indexer.ray_config import RayConfig  # noqa: E402

MODEL = REPO / "models" / "pretrained" / "digits"


def make_corpus(source: Path, out: Path, images: int) -> Path:
    from models.corpus.digits import DigitsCorpusConfig, build_digits_corpus

    build_digits_corpus(DigitsCorpusConfig(source=source, out=out, max_images=images,
                                           max_takes=5, progress=False))
    return out


def timed_build(corpus: Path, out: Path, engine: str, actors: int | None,
                batch_size: int, workers: int = 1) -> tuple[float, int]:
    config = BuildConfig(model=MODEL, corpus=corpus, out=out, kind="flat", device="cpu",
                         engine=engine, ray=RayConfig(actors=actors),
                         embed=EmbedConfig(batch_size=batch_size, workers=workers,
                                           progress=False))
    started = time.perf_counter()
    report = build(config)
    return time.perf_counter() - started, report.changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data",
                        help="MNIST/FSDD folder (default ../shared/data)")
    parser.add_argument("--images", type=int, default=2000, help="MNIST images (~ items)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2,
                        help="CPUs of the local Ray (default: all)")
    args = parser.parse_args()
    if not (args.source / "mnist").is_dir():
        args.source = REPO / "data" / "sample"

    import ray
    import ray.data

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        corpus = make_corpus(args.source, work / "corpus", args.images)
        rows = []
        seconds, items = timed_build(corpus, work / "local", "local", None, args.batch_size)
        rows.append(("local, 1 decoding thread (the default)", seconds, items))
        seconds, items = timed_build(corpus, work / "local-2", "local", None, args.batch_size,
                                     workers=2)
        rows.append(("local, `--workers 2` decoding threads", seconds, items))
        started = time.perf_counter()
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False)
        ray.data.DataContext.get_current()  # Ray Data's own start-up belongs to Ray's
        startup = time.perf_counter() - started
        try:
            for actors in (1, 2):
                out = work / f"ray-{actors}"
                seconds, items = timed_build(corpus, out, "ray", actors, args.batch_size)
                rows.append((f"Ray, {actors} CPU actor{'s' if actors > 1 else ''}", seconds,
                             items))
                for name in ("image.npy", "audio.npy", "rowids.npy"):
                    same = np.array_equal(np.load(out / name), np.load(work / "local" / name))
                    assert same, f"{out / name} differs from the local build's"
        finally:
            ray.shutdown()
        print(f"{items} items (AV-digits: 28x28 digits, 1 s at 8 kHz), model "
              f"models/pretrained/digits, batch {args.batch_size}, {os.cpu_count()} cores, "
              f"{platform.processor() or platform.machine()}, Ray {ray.__version__}; "
              f"local Ray start-up (not in the rows): {startup:.1f} s\n")
        print("| build | seconds | items/s | vs local |")
        print("|---|---:|---:|---:|")
        base = rows[0][1]
        for name, seconds, count in rows:
            print(f"| {name} | {seconds:.1f} | {count / seconds:,.0f} | {base / seconds:.2f}x |")
        print("\nThe Ray bundles' embeddings equal the local build's bit for bit.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
