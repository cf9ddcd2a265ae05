"""Calibrated probabilities from model scores (numpy; used by export, evaluation and serving).

A search hit's score is the inner product of two normalised embeddings; a scene's on-screen
score is AVOL-Net's best cell logit. Neither is a probability. Platt scaling (a logistic
regression of the held-out outcome on the score, with Platt's smoothed targets so that a
separable set does not drive the slope to infinity) turns each into one. The fit needs only
scores and outcomes, so it is refitted whenever the bundle is exported or recalibrated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RELIABILITY_BINS = 10


@dataclass(frozen=True)
class Platt:
    """p = sigmoid(a * score + b)."""

    a: float
    b: float

    def __call__(self, scores: np.ndarray | float) -> np.ndarray:
        logits = self.a * np.asarray(scores, dtype=np.float64) + self.b
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))


def fit_platt(scores: np.ndarray, outcomes: np.ndarray, iterations: int = 100) -> Platt:
    """Maximum-likelihood (a, b) by Newton's method on Platt's smoothed targets."""
    x = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(outcomes, dtype=bool).ravel()
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("calibration needs both matching and non-matching pairs")
    target = np.where(y, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))
    a, b = 0.0, float(np.log((positives + 1.0) / (negatives + 1.0)))
    design = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * x + b, -60.0, 60.0)))
        gradient = design.T @ (p - target)
        weights = np.maximum(p * (1.0 - p), 1e-12)
        hessian = (design * weights[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        a, b = a - float(step[0]), b - float(step[1])
        if np.abs(step).max() < 1e-10:
            break
    return Platt(a, b)


def reliability_table(
    probabilities: np.ndarray, outcomes: np.ndarray, bins: int = RELIABILITY_BINS
) -> list[dict[str, float]]:
    """Equal-width probability bins: how many pairs, their mean probability, how many matched."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(outcomes, dtype=np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for index in range(bins):
        inside = which == index
        count = int(inside.sum())
        rows.append({
            "low": index / bins,
            "high": (index + 1) / bins,
            "pairs": count,
            "mean_probability": float(p[inside].mean()) if count else float("nan"),
            "match_rate": float(y[inside].mean()) if count else float("nan"),
        })
    return rows


def expected_calibration_error(
    probabilities: np.ndarray, outcomes: np.ndarray, bins: int = RELIABILITY_BINS
) -> float:
    """Sum over bins of (share of pairs) x |mean probability - match rate|."""
    table = reliability_table(probabilities, outcomes, bins)
    total = sum(row["pairs"] for row in table)
    if total == 0:
        return float("nan")
    return float(sum(row["pairs"] / total * abs(row["mean_probability"] - row["match_rate"])
                     for row in table if row["pairs"]))


@dataclass(frozen=True)
class Operating:
    """A probability threshold and what accepting the pairs at or above it gives."""

    threshold: float
    precision: float
    recall: float


def operating_point(probabilities: np.ndarray, outcomes: np.ndarray,
                    threshold: float) -> Operating:
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(outcomes, dtype=bool).ravel()
    accepted = p >= threshold
    hits = int((accepted & y).sum())
    precision = hits / int(accepted.sum()) if accepted.any() else 1.0
    recall = hits / int(y.sum()) if y.any() else 1.0
    return Operating(float(threshold), float(precision), float(recall))


def best_threshold(probabilities: np.ndarray, outcomes: np.ndarray,
                   floor: float = 0.5) -> Operating:
    """The threshold (on a 0.01 grid, ``floor`` or above) with the highest F1; the higher one
    among equals. The floor of 0.5 keeps out hits more likely wrong than right, whatever F1
    would trade for recall."""
    best: Operating | None = None
    best_f1 = -1.0
    for threshold in np.round(np.arange(floor, 1.0, 0.01), 2):
        point = operating_point(probabilities, outcomes, float(threshold))
        total = point.precision + point.recall
        f1 = 2 * point.precision * point.recall / total if total else 0.0
        if f1 >= best_f1:
            best, best_f1 = point, f1
    assert best is not None
    return best


@dataclass(frozen=True)
class Isotonic:
    """A non-decreasing curve through (score, probability) knots, linear between them and flat
    beyond the ends."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, scores: np.ndarray | float) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)


def fit_isotonic(scores: np.ndarray, outcomes: np.ndarray, margin: float = 1e-3) -> Isotonic:
    """Isotonic regression of the outcome on the score (pool adjacent violators).

    Unlike a logistic curve it follows any monotone shape, such as a floor of matches among
    low scores; each pooled block becomes one knot at its mean score. Probabilities are kept
    ``margin`` away from 0 and 1: a held-out sample never proves certainty.
    """
    x = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(outcomes, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("calibration needs pairs")
    order = np.argsort(x, kind="stable")
    sums_x: list[float] = []
    sums_y: list[float] = []
    counts: list[int] = []
    for score, outcome in zip(x[order], y[order], strict=True):
        sums_x.append(score)
        sums_y.append(outcome)
        counts.append(1)
        # Pool while the previous block's rate is not below this one's (equal rates pool too).
        while len(counts) > 1 and sums_y[-2] * counts[-1] >= sums_y[-1] * counts[-2]:
            last_x, last_y, last_n = sums_x.pop(), sums_y.pop(), counts.pop()
            sums_x[-1] += last_x
            sums_y[-1] += last_y
            counts[-1] += last_n
    n = np.asarray(counts, dtype=np.float64)
    knots_x = np.asarray(sums_x) / n
    knots_y = np.clip(np.asarray(sums_y) / n, margin, 1.0 - margin)
    return Isotonic(tuple(float(v) for v in knots_x), tuple(float(v) for v in knots_y))
