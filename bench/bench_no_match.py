"""How often a search that should find nothing says so: "no match" at the default threshold.

Two kinds of query that nothing in the database corresponds to, on a corpus split (sound ->
images, brute force, the bundle's own calibration and default min_probability):

- a digit missing from the database: for each digit d, the split's images of the other nine
  digits are the database and the split's sounds of d the queries;
- unrelated sounds: noise bursts, hums and clicks between silences, drawn here with numpy
  (not the training code's distractor generator), at random lengths and levels.

Also, as the other side of the trade: the share of the split's own sounds (their digit present
in the database) that still find a hit. Prints one line per model bundle.

Usage:
  python bench/bench_no_match.py --model runs/cal-d/george/model --corpus runs/cal/george/corpus
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from models.evaluation.dataset import load_retrieval_set, split_items
from models.item_media import InputSpec
from models.manifest import read_manifest
from models.runtime import ModelRuntime


def unrelated_sounds(count: int, samples: int, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((count, samples), dtype=np.float32)
    t = np.arange(samples) / rate
    for row in range(count):
        length = int(rng.integers(samples // 10, samples))
        start = int(rng.integers(0, samples - length + 1))
        kind = row % 3
        if kind == 0:  # white noise
            burst = rng.normal(0.0, 1.0, length)
        elif kind == 1:  # a hum: a fundamental and two harmonics
            f0 = rng.uniform(50, 400)
            burst = sum(np.sin(2 * np.pi * f0 * h * t[:length]) / h for h in (1, 2, 3))
        else:  # clicks
            burst = np.zeros(length)
            burst[rng.integers(0, length, size=max(1, length // 400))] = 1.0
        burst = burst / max(float(np.sqrt(np.mean(burst ** 2))), 1e-8)
        out[row, start : start + length] = burst * 10 ** rng.uniform(-2.0, -0.5)
    return out


def measure(model: str, corpus: str, split: str, seed: int) -> dict:
    runtime = ModelRuntime(model, device="cpu")
    fit = runtime.info.match_calibration
    if fit is None:
        raise SystemExit(f"{model} holds no match calibration")
    spec = InputSpec(runtime.image_size, runtime.sample_rate, runtime.window_s)
    data = load_retrieval_set(corpus, split_items(read_manifest(corpus), split), spec, False)
    images = runtime.embed_images(data.images).embeddings
    sounds = runtime.embed_audio(data.waves)
    image_digit = np.array([min(labels) for labels in data.image_labels])
    sound_digit = np.array([min(labels) for labels in data.audio_labels])

    def best_probability(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
        scores = (queries @ database.T).max(axis=1)
        return runtime.match_probability("aud-im", scores)

    missing = []
    for digit in sorted(set(sound_digit)):
        others = images[image_digit != digit]
        missing.append(best_probability(sounds[sound_digit == digit], others) < fit.threshold)
    missing_rate = float(np.concatenate(missing).mean())
    samples = runtime.info.audio.samples
    noise = runtime.embed_audio(unrelated_sounds(300, samples, spec.sample_rate, seed))
    noise_probability = best_probability(noise, images)
    present = best_probability(sounds, images) >= fit.threshold
    return {
        "model": model, "threshold": fit.threshold,
        "missing_digit_no_match": round(missing_rate, 3),
        "unrelated_no_match": round(float((noise_probability < fit.threshold).mean()), 3),
        "unrelated_median_probability": round(float(np.median(noise_probability)), 3),
        "own_digit_found": round(float(present.mean()), 3),
        "queries": {"missing": int(sum(len(m) for m in missing)), "unrelated": len(noise),
                    "own": len(sounds)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="model bundle (repeat)")
    parser.add_argument("--corpus", action="append", required=True,
                        help="corpus of each --model, in the same order")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.model) != len(args.corpus):
        raise SystemExit("give one --corpus per --model")
    for model, corpus in zip(args.model, args.corpus, strict=True):
        print(json.dumps(measure(model, corpus, args.split, args.seed)))


if __name__ == "__main__":
    main()
