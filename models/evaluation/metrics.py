"""The metrics of the evaluation protocol, as plain functions over arrays.

Retrieval: nDCG@k of a similarity ranking against graded relevance (flat labels: 1 when the two
items share a label). Localisation: the pointing game, and cIoU (heat map binarised at its
median) with the AUC of the share of images above each IoU threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def label_relevance(
    query_labels: Sequence[frozenset[str]], db_labels: Sequence[frozenset[str]]
) -> np.ndarray:
    """(queries, db) relevance: 1.0 where the two label sets intersect."""
    vocab = sorted(set().union(*query_labels, *db_labels))
    index = {label: i for i, label in enumerate(vocab)}

    def one_hot(sets: Sequence[frozenset[str]]) -> np.ndarray:
        out = np.zeros((len(sets), len(vocab)), dtype=np.float32)
        for row, labels in enumerate(sets):
            out[row, [index[label] for label in labels]] = 1.0
        return out

    return (one_hot(query_labels) @ one_hot(db_labels).T > 0).astype(np.float32)


def ndcg_at_k(
    similarity: np.ndarray, relevance: np.ndarray, k: int = 30, exclude_self: bool = False
) -> float:
    """Mean nDCG@k over queries (rows). ``exclude_self`` drops the diagonal (same-modality)."""
    similarity = similarity.astype(np.float64, copy=True)
    relevance = relevance.astype(np.float64, copy=True)
    if exclude_self:
        np.fill_diagonal(similarity, -np.inf)
        np.fill_diagonal(relevance, 0.0)
    k = min(k, similarity.shape[1] - (1 if exclude_self else 0))
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    dcg = (np.take_along_axis(relevance, top, axis=1) * discounts).sum(axis=1)
    ideal = (-np.sort(-relevance, axis=1)[:, :k] * discounts).sum(axis=1)
    valid = ideal > 0
    return float((dcg[valid] / ideal[valid]).mean()) if valid.any() else 0.0


def random_ndcg(
    relevance: np.ndarray, k: int = 30, exclude_self: bool = False, trials: int = 20, seed: int = 0
) -> float:
    """Chance level: the mean nDCG@k of random rankings."""
    rng = np.random.default_rng(seed)
    scores = [
        ndcg_at_k(rng.random(relevance.shape), relevance, k, exclude_self) for _ in range(trials)
    ]
    return float(np.mean(scores))


def pointing_hit(heat: np.ndarray, box: Sequence[float]) -> bool:
    """Is the centre of the hottest grid cell inside the box? Box in [0, 1] frame coordinates."""
    rows, cols = heat.shape
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    x, y = (col + 0.5) / cols, (row + 0.5) / rows
    x0, y0, x1, y1 = box
    return bool(x0 <= x <= x1 and y0 <= y <= y1)


def upsample(heat: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a (h, w) map to (size, size), pixel centres aligned."""
    rows, cols = heat.shape
    ys = np.clip((np.arange(size) + 0.5) * rows / size - 0.5, 0, rows - 1)
    xs = np.clip((np.arange(size) + 0.5) * cols / size - 0.5, 0, cols - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, rows - 1), np.minimum(x0 + 1, cols - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = heat[y0][:, x0] * (1 - wx) + heat[y0][:, x1] * wx
    bottom = heat[y1][:, x0] * (1 - wx) + heat[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def ciou(heat: np.ndarray, box: Sequence[float], size: int = 224) -> float:
    """IoU of the heat map binarised at its median (upsampled to size x size) with the box."""
    dense = upsample(heat.astype(np.float64), size)
    predicted = dense > np.median(dense)
    truth = np.zeros((size, size), dtype=bool)
    x0, y0, x1, y1 = (round(v * size) for v in box)
    truth[y0:y1, x0:x1] = True
    union = np.logical_or(predicted, truth).sum()
    return float(np.logical_and(predicted, truth).sum() / union) if union else 0.0


def ciou_summary(ious: Sequence[float]) -> tuple[float, float]:
    """(share with cIoU >= 0.5, AUC of the share above each threshold in [0, 1])."""
    values = np.asarray(ious, dtype=np.float64)
    thresholds = np.linspace(0.0, 1.0, 21)
    shares = np.array([(values >= t).mean() for t in thresholds])
    auc = float(np.sum((shares[1:] + shares[:-1]) / 2 * np.diff(thresholds)))
    return float((values >= 0.5).mean()), auc
