"""The evaluation metrics on cases whose answer is known."""

import numpy as np

from models.evaluation.cca import CCA
from models.evaluation.metrics import (
    ciou,
    ciou_summary,
    label_relevance,
    ndcg_at_k,
    pointing_hit,
    random_ndcg,
)
from models.evaluation.scores import localization_scores, retrieval_table


def test_ndcg_perfect_reversed_and_random():
    labels = [frozenset({str(i % 2)}) for i in range(10)]
    relevance = label_relevance(labels, labels)
    same = relevance.copy()
    assert ndcg_at_k(same, relevance, k=4, exclude_self=True) == 1.0
    assert ndcg_at_k(-same, relevance, k=4, exclude_self=True) == 0.0
    chance = random_ndcg(relevance, k=4, exclude_self=True)
    assert 0.2 < chance < 0.7


def test_ndcg_known_value():
    similarity = np.array([[0.9, 0.8, 0.7]])
    relevance = np.array([[0.0, 1.0, 1.0]])
    expected = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert np.isclose(ndcg_at_k(similarity, relevance, k=3), expected)


def test_retrieval_table_with_perfect_embeddings():
    labels = [frozenset({str(i % 3)}) for i in range(12)]
    emb = np.eye(3)[[i % 3 for i in range(12)]]
    table = retrieval_table(emb, emb, labels, labels)
    assert all(np.isclose(value, 1.0) for value in table.values())


def test_pointing_and_ciou():
    heat = np.zeros((4, 4))
    heat[0:2, 2:4] = 1.0  # top-right quadrant
    box_right, box_left = (0.5, 0.0, 1.0, 0.5), (0.0, 0.0, 0.5, 0.5)
    assert pointing_hit(heat, box_right) and not pointing_hit(heat, box_left)
    assert ciou(heat, box_right) > 0.45
    assert ciou(heat, box_left) < 0.2
    share, auc = ciou_summary([1.0, 0.0])
    assert share == 0.5 and np.isclose(auc, 0.5, atol=0.03)
    scores = localization_scores([heat, heat], np.array([box_right, box_left]))
    assert scores["pointing_accuracy"] == 0.5 and scores["chance"] == 0.25


def test_cca_finds_the_shared_signal():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(400, 4))
    x = np.hstack([shared, rng.normal(size=(400, 20))]) @ rng.normal(size=(24, 24))
    y = np.hstack([shared, rng.normal(size=(400, 30))]) @ rng.normal(size=(34, 34))
    cca = CCA(components=4, pca_dims=24).fit(x[:300], y[:300])
    a, b = cca.transform_x(x[300:]), cca.transform_y(y[300:])
    matched = np.mean(np.sum(a * b, axis=1))
    shuffled = np.mean(np.sum(a * b[::-1], axis=1))
    assert matched > 0.7 and matched > shuffled + 0.5
