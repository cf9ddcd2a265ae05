"""Sound queries expanded through an index bundle's sounds (models.expansion, in the index).

The service's ``expand`` and ``avsearch eval --index``'s expanded row both come here, so that
a search and its evaluation pick the same neighbours: the query's nearest indexed sounds by the
audio features, best first, one row for each recording (never the query's own recording, nor
a second item that holds the same recording as one already taken).
"""

from __future__ import annotations

import numpy as np

from indexer.bundle import FEATURES
from indexer.search import SearchIndex
from models.expansion import SAME_RECORDING, expanded


def expand_queries(index: SearchIndex, vectors: np.ndarray, features: np.ndarray,
                   space: str, count: int, exclude: int | None = None
                   ) -> tuple[np.ndarray, list[int]]:
    """(N, D) sound queries (``vectors``, in the vector set ``space``: ``audio`` or
    ``audio_features``) with their (N, D) audio ``features`` -> the expanded queries and how
    many sounds each was averaged with; ``exclude`` leaves one row out (the query's own item)."""
    if count < 1 or not index.has_audio_features:
        return vectors, [0] * len(vectors)
    found = nearest_recordings(index, features, count, exclude=exclude)
    return expand_with(index, vectors, space, found), [len(at) for at in found]


def nearest_recordings(index: SearchIndex, features: np.ndarray, count: int,
                       restrict_to: np.ndarray | None = None, exclude: int | None = None,
                       fetch: int | None = None) -> list[np.ndarray]:
    """For each of the (N, D) query ``features``, the positions in the index's stored vectors
    of its ``count`` nearest sounds, one for each recording, best first. ``restrict_to`` limits
    them to those rows; ``fetch`` is how many candidates to look at (default: room for a few
    copies of each recording)."""
    stored_features, rowids = index.vectors(FEATURES)
    fetch = min(fetch or 4 * (count + 1) + 8, max(index.count, 1))
    scores, found = index.search(FEATURES, features, fetch, restrict_to=restrict_to)
    return [_distinct_recordings(row_scores, row_ids, rowids, stored_features, count, exclude)
            for row_scores, row_ids in zip(scores, found, strict=True)]


def expand_with(index: SearchIndex, vectors: np.ndarray, space: str,
                found: list[np.ndarray]) -> np.ndarray:
    """``vectors`` (in the vector set ``space``: ``audio`` or ``audio_features``) each averaged
    with the stored vectors of that set at its ``found`` positions."""
    if space not in ("audio", FEATURES):
        raise ValueError(f"only sound queries are expanded, not {space!r} ones")
    stored, _ = index.vectors(space)
    return expanded(vectors, [np.asarray(stored[at], dtype=np.float32) for at in found])


def _distinct_recordings(scores: np.ndarray, found: np.ndarray, rowids: np.ndarray,
                         stored_features: np.ndarray, count: int,
                         exclude: int | None) -> np.ndarray:
    """Positions (in the stored vectors) of up to ``count`` candidates, best first, one for each
    recording and none of the query's own."""
    taken: list[int] = []
    for score, rowid in zip(scores.tolist(), found.tolist(), strict=True):
        if rowid < 0 or len(taken) == count:
            break
        if rowid == exclude or score >= SAME_RECORDING:
            continue
        at = int(np.searchsorted(rowids, rowid))
        if taken and np.max(stored_features[taken] @ stored_features[at]) >= SAME_RECORDING:
            continue  # another item of a recording already taken
        taken.append(at)
    return np.asarray(taken, dtype=np.int64)
