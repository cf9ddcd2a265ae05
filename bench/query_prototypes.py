"""A sound query pulled toward the groups of the training images, measured on held-out voices.

The training images' embeddings (through the bundle, as exported) are grouped by spherical
k-means (FAISS), as ``avsearch train --clusters`` groups them in training; each held-out sound
then queries with its embedding plus ``weight`` times the softmax-weighted mean of the group
centres (softmax of its cosines to them over ``temperature``), renormalised. This uses the
training split alone, so it is a query-alone figure like the protocol's. Prints audio->image
nDCG@30 for every setting against the plain query and writes the same as JSON.

Usage:
  python bench/query_prototypes.py --model runs/ema/jackson/model \
      --corpus runs/voices/corpus-jackson \
      --train-corpus runs/voices/jackson-george+nicolas+yweweler-t50/corpus --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import faiss
import numpy as np

from models.evaluation.dataset import load_retrieval_set, split_items
from models.evaluation.scores import retrieval_table
from models.item_media import InputSpec
from models.manifest import read_manifest
from models.runtime import ModelRuntime


def group_centres(embeddings: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """(count, D) unit centres of spherical k-means over unit rows."""
    kmeans = faiss.Kmeans(embeddings.shape[1], count, niter=50, spherical=True, seed=seed)
    kmeans.train(np.ascontiguousarray(embeddings, dtype=np.float32))
    return kmeans.centroids


def pulled(queries: np.ndarray, centres: np.ndarray, temperature: float,
           weight: float) -> np.ndarray:
    """Each unit query plus ``weight`` times its softmax-weighted mean centre, renormalised."""
    logits = queries @ centres.T / temperature
    shares = np.exp(logits - logits.max(axis=1, keepdims=True))
    shares /= shares.sum(axis=1, keepdims=True)
    out = queries + weight * shares @ centres
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model bundle")
    parser.add_argument("--corpus", required=True, help="corpus with the held-out test split")
    parser.add_argument("--train-corpus", required=True, help="corpus whose train split the "
                        "bundle was trained on (its images give the groups)")
    parser.add_argument("--train-images", type=int, default=3000,
                        help="training items drawn at random for the grouping")
    parser.add_argument("--clusters", default="10,20", help="group counts, comma-separated")
    parser.add_argument("--temperatures", default="0.1,0.2,0.3,0.5")
    parser.add_argument("--weights", default="1,2,4,100")
    parser.add_argument("--json", type=Path, help="write the table here")
    args = parser.parse_args()

    runtime = ModelRuntime(args.model, device="cpu")
    spec = InputSpec(runtime.image_size, runtime.sample_rate, runtime.window_s)
    test = load_retrieval_set(args.corpus, split_items(read_manifest(args.corpus), "test"),
                              spec, progress=False)
    train_items = split_items(read_manifest(args.train_corpus), "train")
    if not train_items or not len(test.waves):
        raise SystemExit("need a train split in --train-corpus and a test split in --corpus")
    order = np.random.default_rng(0).permutation(len(train_items))[: args.train_images]
    train = load_retrieval_set(args.train_corpus, [train_items[i] for i in order], spec,
                               progress=False)
    images = runtime.embed_images(test.images).embeddings
    sounds = runtime.embed_audio(test.waves)
    train_images = runtime.embed_images(train.images).embeddings

    def audio_to_image(queries: np.ndarray) -> float:
        return retrieval_table(images, queries, test.image_labels, test.audio_labels,
                               directions=["aud-im"])["aud-im"]

    table = {"plain": audio_to_image(sounds)}
    for count in (int(c) for c in args.clusters.split(",")):
        centres = group_centres(train_images, count)
        for temperature, weight in itertools.product(
                (float(t) for t in args.temperatures.split(",")),
                (float(w) for w in args.weights.split(","))):
            key = f"k={count} t={temperature:g} w={weight:g}"
            table[key] = audio_to_image(pulled(sounds, centres, temperature, weight))
    for key, value in table.items():
        print(f"{key:<22} aud-im {value:.3f} ({value - table['plain']:+.3f})")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
