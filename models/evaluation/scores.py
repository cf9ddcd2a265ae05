"""The evaluation table from embeddings and heat maps (shared by training and ``avsearch eval``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.evaluation.metrics import (
    ciou,
    ciou_summary,
    label_relevance,
    ndcg_at_k,
    pointing_hit,
    random_ndcg,
)

DIRECTIONS = ("im-im", "im-aud", "aud-im", "aud-aud")


def _pairs(image_labels, audio_labels):
    return {
        "im-im": (image_labels, image_labels, True),
        "im-aud": (image_labels, audio_labels, False),
        "aud-im": (audio_labels, image_labels, False),
        "aud-aud": (audio_labels, audio_labels, True),
    }


def retrieval_table(
    image_emb: np.ndarray,
    audio_emb: np.ndarray,
    image_labels: Sequence[frozenset[str]],
    audio_labels: Sequence[frozenset[str]],
    k: int = 30,
    audio_features: np.ndarray | None = None,
    sound_queries: tuple[np.ndarray, np.ndarray] | None = None,
    directions: Sequence[str] = DIRECTIONS,
) -> dict[str, float]:
    """nDCG@k in ``directions`` (default all four); similarity is the inner product of
    normalised embeddings. ``audio_features`` (the audio graph's own features), when given,
    rank audio -> audio; ``sound_queries`` (embeddings, features), when given, are what the
    sounds query with (expanded through the collection: models.expansion)."""
    table = {}
    for direction, (query_labels, db_labels, same) in _pairs(image_labels, audio_labels).items():
        if direction not in directions:
            continue
        similarity = _similarity(direction, image_emb, audio_emb, audio_features, sound_queries)
        relevance = label_relevance(query_labels, db_labels)
        table[direction] = ndcg_at_k(similarity, relevance, k, exclude_self=same)
    return table


def _similarity(direction: str, image_emb: np.ndarray, audio_emb: np.ndarray,
                audio_features: np.ndarray | None,
                sound_queries: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(queries, database) cosine similarities of ``direction`` (``im-aud`` and so on)."""
    query_emb, query_features = sound_queries or (audio_emb, audio_features)
    if direction == "aud-aud" and audio_features is not None:
        assert query_features is not None
        return query_features @ audio_features.T
    queries = {"im": image_emb, "aud": query_emb}
    database = {"im": image_emb, "aud": audio_emb}
    query, db = direction.split("-")
    return queries[query] @ database[db].T


def chance_table(image_labels, audio_labels, k: int = 30) -> dict[str, float]:
    return {
        direction: random_ndcg(label_relevance(query, db), k, exclude_self=same)
        for direction, (query, db, same) in _pairs(image_labels, audio_labels).items()
    }


def localization_scores(heats: Sequence[np.ndarray], boxes: np.ndarray) -> dict[str, float]:
    """Pointing game (and its chance: the mean box area), cIoU@0.5 and its AUC."""
    if len(heats) == 0:
        return {}
    hits = [pointing_hit(heat, box) for heat, box in zip(heats, boxes, strict=True)]
    ious = [ciou(heat, box) for heat, box in zip(heats, boxes, strict=True)]
    ciou50, auc = ciou_summary(ious)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return {
        "pointing_accuracy": float(np.mean(hits)),
        "chance": float(np.mean(areas)),
        "ciou50": ciou50,
        "auc": auc,
        "scenes": len(heats),
    }


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The probability that a positive scores above a negative (ties count half)."""
    pos = np.asarray(positives, dtype=np.float64)[:, None]
    neg = np.asarray(negatives, dtype=np.float64)[None, :]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def retrieved_pairs(
    image_emb: np.ndarray,
    audio_emb: np.ndarray,
    image_labels: Sequence[frozenset[str]],
    audio_labels: Sequence[frozenset[str]],
    k: int = 30,
    random_per_query: int = 0,
    seed: int = 0,
    audio_features: np.ndarray | None = None,
    sound_queries: tuple[np.ndarray, np.ndarray] | None = None,
    directions: Sequence[str] = DIRECTIONS,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per direction, the scores of each query's top ``k`` hits and whether each is a match
    (shares a label): the pairs a search shows, on which match probabilities are judged.
    ``random_per_query`` adds that many pairs of each query with database items drawn at random,
    so that a fit also sees the low scores a search shows only when nothing matches.
    Same-modality queries never retrieve themselves; ``audio_features`` rank audio -> audio
    when given, and ``sound_queries`` are what the sounds query with, as in
    :func:`retrieval_table`; only ``directions`` are paired."""
    rng = np.random.default_rng(seed)
    pairs = {}
    for direction, (query_labels, db_labels, same) in _pairs(image_labels, audio_labels).items():
        if direction not in directions:
            continue
        similarity = _similarity(direction, image_emb, audio_emb, audio_features, sound_queries)
        if same:
            np.fill_diagonal(similarity, -np.inf)
        depth = min(k, similarity.shape[1] - (1 if same else 0))
        if depth < 1:
            continue
        top = np.argpartition(-similarity, depth - 1, axis=1)[:, :depth]
        if random_per_query:
            drawn = rng.integers(0, similarity.shape[1], (len(similarity), random_per_query))
            if same:  # never the query itself
                rows = np.arange(len(similarity))[:, None]
                drawn = np.where(drawn == rows, (drawn + 1) % similarity.shape[1], drawn)
            top = np.concatenate([top, drawn], axis=1)
        scores = np.take_along_axis(similarity, top, axis=1)
        matches = np.take_along_axis(label_relevance(query_labels, db_labels), top, axis=1) > 0
        pairs[direction] = (scores.ravel(), matches.ravel())
    return pairs
