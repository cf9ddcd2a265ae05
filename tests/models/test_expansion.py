"""Query expansion through a collection's sounds (models.expansion)."""

from __future__ import annotations

import numpy as np

from models.evaluation.metrics import label_relevance, ndcg_at_k
from models.expansion import expand_sounds, expanded, nearest_sounds, plain


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_expanded_is_the_normalised_sum_of_the_query_and_its_neighbours_mean():
    queries = _unit(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    neighbours = [np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), np.zeros((0, 3))]
    out = expanded(queries, neighbours)
    assert np.allclose(out[0], _unit(np.array([1.0, 0.5, 0.5])))
    assert np.array_equal(out[1], queries[1])  # no neighbours: as it was


def test_nearest_sounds_never_include_the_same_recording():
    rng = np.random.default_rng(0)
    features = _unit(rng.normal(size=(6, 8)))
    collection = np.vstack([features, features[:1]])  # a copy of sound 0 at the end
    found = nearest_sounds(features, collection, 3)
    assert 0 not in found[0] and 6 not in found[0] and len(found[0]) == 3
    for row, rows in enumerate(found[1:], 1):
        assert row not in rows
    similarity = features[1] @ collection[found[1]].T
    assert np.all(np.diff(similarity) <= 0)  # best first
    assert [len(r) for r in nearest_sounds(features, collection, 0)] == [0] * 6


def test_expansion_pulls_a_stray_sound_back_to_its_word():
    # Ten recordings each of two words by one voice; one recording of word 0 lands nearer
    # word 1's centre in the embedding, while its features still sit with its own word's.
    rng = np.random.default_rng(1)
    words = _unit(rng.normal(size=(2, 16)))
    labels = [frozenset({str(w)}) for w in (0,) * 10 + (1,) * 10]
    centres = np.repeat(words, 10, axis=0)
    features = _unit(centres + 0.1 * rng.normal(size=(20, 16)))
    embeddings = _unit(centres + 0.3 * rng.normal(size=(20, 16)))
    embeddings[0] = _unit(0.3 * words[0] + words[1])
    queries, _ = expand_sounds(embeddings, features, 5)
    relevance = label_relevance(labels, labels)
    before = ndcg_at_k(embeddings[:1] @ embeddings.T, relevance[:1], 9)
    after = ndcg_at_k(queries[:1] @ embeddings.T, relevance[:1], 9)
    assert after > before


def test_a_default_search_is_judged_on_the_queries_alone():
    pairs = {"im-aud": 1, "aud-im": 2, "aud-im+expand": 3, "aud-aud": 4}
    assert plain(pairs) == {"im-aud": 1, "aud-im": 2, "aud-aud": 4}
