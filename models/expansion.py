"""Query expansion through a collection's sounds (torch-free: the service uses it too).

A sound query is averaged with the sounds of the collection nearest to it by the audio tower's
own features (``audio.onnx`` -> ``features``), each in the space it is searched in: its
embedding with theirs for audio -> image, its features with theirs for audio -> audio. Where
the collection holds other recordings of the querying voice, their average lands nearer the
word than one recording does (an unfamiliar voice's sound that lands off its word is pulled
back by the others): on unseen voices audio -> image rises from 0.883 to 0.911 and
audio -> audio from 0.951 to 0.959; where it holds none, nothing changes (docs/benchmarks.md,
"Expanding a sound query through the collection"). A search asks for it (``expand``): it costs
a second search, which on two cores with a flat index of 100,000 items took the audio queries'
p99 latency from about 66-70 to 85-87 ms, so it is off by default.
"""

from __future__ import annotations

import numpy as np

EXPAND = 10
"""The collection's nearest sounds a sound query is averaged with when a search asks for an
expansion without a count, and what ``avsearch eval`` and calibration measure it with."""

MAX_EXPAND = 50

SOUND_QUERIES = ("aud-im", "aud-aud")
"""The directions whose queries are sounds: those an expansion changes."""

EXPANDED = "+expand"
"""The suffix of a direction's calibration curve fitted on expanded queries (``aud-im+expand``)."""

SAME_RECORDING = 0.9999
"""Features this alike are one recording (the query itself, or a copy of it in the collection):
never its own evidence."""


def expanded(queries: np.ndarray, neighbours: list[np.ndarray]) -> np.ndarray:
    """(N, D) unit queries, each with its (n_i, D) neighbours -> (N, D) unit rows: the query
    plus the mean of its neighbours, normalised (a query without neighbours stays as it is)."""
    out = np.array(queries, dtype=np.float32, copy=True)
    for row, found in enumerate(neighbours):
        if len(found):
            out[row] += np.asarray(found, dtype=np.float32).mean(axis=0)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def nearest_sounds(query_features: np.ndarray, collection_features: np.ndarray,
                   count: int) -> list[np.ndarray]:
    """For each query, the row numbers of its ``count`` nearest sounds of the collection by
    features, best first, never the same recording (brute force over distinct media: for
    evaluation and calibration; an index is asked through indexer.expand)."""
    if count < 1 or not len(collection_features):
        return [np.zeros(0, np.int64) for _ in range(len(query_features))]
    similarity = query_features @ collection_features.T
    similarity[similarity >= SAME_RECORDING] = -np.inf
    depth = min(count, similarity.shape[1])
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :depth]
    return [row[np.isfinite(np.take(similarity[i], row))] for i, row in enumerate(top)]


def expand_sounds(embeddings: np.ndarray, features: np.ndarray,
                  count: int = EXPAND) -> tuple[np.ndarray, np.ndarray]:
    """A collection's sounds as queries expanded through the same collection (each never by
    itself): their expanded (embeddings, features)."""
    found = nearest_sounds(features, features, count)
    return (expanded(embeddings, [embeddings[rows] for rows in found]),
            expanded(features, [features[rows] for rows in found]))


def plain(pairs: dict) -> dict:
    """Of calibration pairs keyed by direction (and ``direction+expand``), those a default
    search shows: the queries alone."""
    return {d: v for d, v in pairs.items() if not d.endswith(EXPANDED)}
