"""Embedding cost of exported model bundles, side by side: what a recipe costs the service.

Each bundle is loaded through the runtime the service uses (ONNX Runtime, one intra-op thread,
as the server runs a query) and embeds the same random images and sounds, batch 1 and 32,
taking turns so that a noisy shared machine slows each alike. Prints each bundle's items/s per
tower and batch, its ONNX files' size, and its time as a ratio to the first bundle's.

Usage:
  python bench/bench_bundles.py --models models/pretrained/digits,runs/wide/model --repeats 20
"""

from __future__ import annotations

import argparse
import timeit
from pathlib import Path

import numpy as np

from models.errors import BundleError
from models.runtime import ModelRuntime

BATCHES = (1, 32)


def best_time(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls after a warm-up (the least disturbed by other load)."""
    fn()
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def inputs(runtime: ModelRuntime, batch: int):
    """Random images and sounds of the bundle's shapes, the same for every bundle alike."""
    rng = np.random.default_rng(batch)
    size = runtime.image_size
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    samples = round(runtime.sample_rate * runtime.window_s)
    waves = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
    return images, waves


def bundle_size_mb(model_dir: Path) -> float:
    return sum(path.stat().st_size for path in model_dir.glob("*.onnx")) / 2**20


def measure(runtimes: dict[str, ModelRuntime], repeats: int, rounds: int) -> dict:
    """{(name, tower, batch): best seconds}, the bundles taking turns ``rounds`` times."""
    best: dict[tuple[str, str, int], float] = {}
    for _ in range(rounds):
        for batch in BATCHES:
            for name, runtime in runtimes.items():
                images, waves = inputs(runtime, batch)
                timings = {
                    "image": best_time(lambda r=runtime, x=images: r.embed_images(x), repeats),
                    "audio": best_time(lambda r=runtime, x=waves: r.embed_audio(x), repeats),
                }
                for tower, seconds in timings.items():
                    key = (name, tower, batch)
                    best[key] = min(best.get(key, float("inf")), seconds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated bundle folders; the "
                        "first is the reference of the ratios")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folders = list(dict.fromkeys(Path(folder) for folder in args.models.split(",") if folder))
    if len(folders) < 2:
        raise SystemExit("--models needs two different bundles or more, comma-separated")
    try:
        runtimes = {str(folder): ModelRuntime(folder, device="cpu", intra_op_threads=1)
                    for folder in folders}
    except BundleError as error:
        raise SystemExit(f"error: {error}") from None
    best = measure(runtimes, args.repeats, args.rounds)
    reference = str(folders[0])
    print("| bundle | MB | speeds | tower | batch | items/s | time / first |")
    print("|---|---:|---|---|---:|---:|---:|")
    for folder in folders:
        name = str(folder)
        speeds = ",".join(f"{s:g}" for s in runtimes[name].info.audio.speeds or (1.0,))
        for tower in ("image", "audio"):
            for batch in BATCHES:
                seconds = best[(name, tower, batch)]
                ratio = seconds / best[(reference, tower, batch)]
                print(f"| {name} | {bundle_size_mb(folder):.1f} | {speeds} | {tower} | {batch} "
                      f"| {batch / seconds:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
