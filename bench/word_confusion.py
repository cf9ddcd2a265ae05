"""Which words of a held-out voice land on which digit: sound -> image confusion per label.

Embeds a corpus split's images and sounds with a model bundle (ONNX Runtime), takes the mean
embedding of each label's images, and assigns every sound to the nearest of those means. Prints
the confusion matrix (rows: the label spoken; columns: the label whose images it lands on),
each label's share right, and how often a sound's nearest other sound has its label (so a
word said alike every time but placed among the wrong images is told apart from noisy
recordings). ``--play-speed S`` plays every sound S times as fast (pitch and tempo together,
linear interpolation about its centre) before the bundle, to see which words a speed moves.

Usage:
  python bench/word_confusion.py --model runs/voices/jackson-george+nicolas+yweweler-t50/model \
      --corpus runs/voices/corpus-jackson [--play-speed 1.25]
"""

from __future__ import annotations

import argparse

import numpy as np

from models.evaluation.dataset import load_retrieval_set, split_items
from models.item_media import InputSpec
from models.manifest import read_manifest
from models.runtime import ModelRuntime


def played_at(waves: np.ndarray, speed: float) -> np.ndarray:
    """(n, T) -> each wave played ``speed`` times as fast about its centre, zero beyond its ends."""
    length = waves.shape[1]
    positions = np.arange(length)
    source = (positions - length / 2) * speed + length / 2
    return np.stack([np.interp(source, positions, wave, left=0.0, right=0.0)
                     for wave in waves]).astype(np.float32)


def confusion(image_emb: np.ndarray, image_labels: list[str], audio_emb: np.ndarray,
              audio_labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Labels and the (label spoken, label of the nearest image mean) count matrix."""
    labels = sorted(set(image_labels))
    image_of = np.asarray(image_labels)
    means = np.stack([image_emb[image_of == label].mean(0) for label in labels])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    nearest = (audio_emb @ means.T).argmax(1)
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for spoken, landed in zip(audio_labels, nearest, strict=True):
        matrix[labels.index(spoken), landed] += 1
    return labels, matrix


def nearest_sound_agreement(audio_emb: np.ndarray, audio_labels: list[str]) -> float:
    """Share of sounds whose most similar other sound has the same label."""
    similarity = audio_emb @ audio_emb.T
    np.fill_diagonal(similarity, -np.inf)
    labels = np.asarray(audio_labels)
    return float((labels[similarity.argmax(1)] == labels).mean())


def single_label(labels: frozenset[str]) -> str:
    if len(labels) != 1:
        raise SystemExit(f"word_confusion needs one label per item, got {sorted(labels)}")
    return next(iter(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--play-speed", type=float, default=1.0)
    args = parser.parse_args()
    if not 0.5 <= args.play_speed <= 2.0:
        raise SystemExit("--play-speed must be between 0.5 and 2")
    runtime = ModelRuntime(args.model, device="cpu")
    spec = InputSpec(runtime.image_size, runtime.sample_rate, runtime.window_s)
    items = split_items(read_manifest(args.corpus), args.split)
    data = load_retrieval_set(args.corpus, items, spec, progress=False)
    if not len(data.images) or not len(data.waves):
        raise SystemExit(f"split {args.split!r} of {args.corpus} holds no image/sound pairs")
    waves = data.waves if args.play_speed == 1.0 else played_at(data.waves, args.play_speed)
    image_emb = runtime.embed_images(data.images).embeddings
    audio_emb = runtime.embed_audio(waves)
    audio_labels = [single_label(labels) for labels in data.audio_labels]
    labels, matrix = confusion(image_emb, [single_label(x) for x in data.image_labels],
                               audio_emb, audio_labels)
    print(f"sounds played at {args.play_speed:g}; rows: the label spoken, columns: the label "
          "whose mean image embedding is nearest")
    print("| spoken | " + " | ".join(labels) + " | right |")
    print("|---|" + "---:|" * (len(labels) + 1))
    for index, label in enumerate(labels):
        row = matrix[index]
        print(f"| {label} | " + " | ".join(map(str, row)) + f" | {row[index]}/{row.sum()} |")
    print(f"\nright: {np.trace(matrix) / matrix.sum():.3f}; nearest other sound of the same "
          f"label: {nearest_sound_agreement(audio_emb, audio_labels):.3f}")


if __name__ == "__main__":
    main()
