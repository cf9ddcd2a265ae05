"""Retrieval of seed ensembles: several bundles of one recipe, their embeddings concatenated.

Each bundle (trained from another seed on the same corpus) embeds the corpus's held-out media
through ONNX Runtime; an ensemble of k of them concatenates their L2-normalised embeddings, so
its cosine is the mean of its members' cosines. Prints nDCG@30 in the four directions for each
bundle alone, the mean over every combination of each size, and writes the same as JSON. It
measures what an ensemble would gain, for k times the embedding compute; `avsearch train
--teachers` is the way to one model taught by such an ensemble.

Usage:
  python bench/seed_ensemble.py --corpus runs/sweep/corpus-jackson \
      --models runs/s1/model,runs/s2/model,runs/s3/model --json ensemble-jackson.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from models.evaluation.dataset import load_retrieval_set, split_items
from models.evaluation.scores import retrieval_table
from models.item_media import InputSpec
from models.manifest import read_manifest
from models.runtime import ModelRuntime

DIRECTIONS = ("im-im", "im-aud", "aud-im", "aud-aud")


def concatenated(parts: list[np.ndarray]) -> np.ndarray:
    """Row-wise concatenation of normalised embeddings, normalised again."""
    joined = np.concatenate(parts, axis=1)
    return joined / np.linalg.norm(joined, axis=1, keepdims=True)


def embed_all(models: list[str], corpus: str, split: str
              ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list, list]:
    """Each bundle's (image, audio) embeddings of the split's distinct media, and the labels."""
    runtimes = [ModelRuntime(model, device="cpu") for model in models]
    first = runtimes[0]
    shapes = {(r.image_size, r.sample_rate, r.window_s) for r in runtimes}
    if len(shapes) > 1:
        raise SystemExit("the bundles read different inputs (frame size, rate or window)")
    spec = InputSpec(first.image_size, first.sample_rate, first.window_s)
    items = split_items(read_manifest(corpus), split)
    data = load_retrieval_set(corpus, items, spec, progress=False)
    embeddings = [(r.embed_images(data.images).embeddings, r.embed_audio(data.waves))
                  for r in runtimes]
    return embeddings, data.image_labels, data.audio_labels


def ensemble_tables(embeddings: list[tuple[np.ndarray, np.ndarray]], image_labels: list,
                    audio_labels: list) -> dict[str, dict[str, float]]:
    """nDCG@30 of every combination of the bundles, keyed by their positions ("0+2")."""
    tables = {}
    for size in range(1, len(embeddings) + 1):
        for combo in itertools.combinations(range(len(embeddings)), size):
            images = concatenated([embeddings[i][0] for i in combo])
            audio = concatenated([embeddings[i][1] for i in combo])
            tables["+".join(map(str, combo))] = retrieval_table(images, audio, image_labels,
                                                                audio_labels)
    return tables


def by_size(tables: dict[str, dict[str, float]]) -> dict[int, dict[str, float]]:
    """The mean over every combination of each ensemble size."""
    sizes: dict[int, list[dict[str, float]]] = {}
    for name, table in tables.items():
        sizes.setdefault(name.count("+") + 1, []).append(table)
    return {size: {d: float(np.mean([t[d] for t in group])) for d in DIRECTIONS}
            for size, group in sorted(sizes.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="corpus folder (manifest.jsonl)")
    parser.add_argument("--models", required=True, help="bundle folders, comma-separated")
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", help="write every combination's table here")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    missing = [m for m in models if not (Path(m) / "model.json").is_file()]
    if len(models) < 2 or missing:
        raise SystemExit("--models: two or more bundle folders, each with a model.json"
                         + (f" (none in {', '.join(missing)})" if missing else ""))
    embeddings, image_labels, audio_labels = embed_all(models, args.corpus, args.split)
    tables = ensemble_tables(embeddings, image_labels, audio_labels)
    print("| bundles | " + " | ".join(DIRECTIONS) + " |")
    print("|---|" + "---:|" * len(DIRECTIONS))
    for size, table in by_size(tables).items():
        print(f"| {size} | " + " | ".join(f"{table[d]:.3f}" for d in DIRECTIONS) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"models": models, "corpus": args.corpus,
                                               "tables": tables}, indent=2))


if __name__ == "__main__":
    main()
