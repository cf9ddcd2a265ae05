"""``avsearch eval --index``: the evaluation table, with the model's rankings from the index.

The table is the brute-force one of ``models.evaluation.run`` (distinct media of the held-out
split; rows random, cca, model; nDCG@30 in four directions; localisation on the scenes), except
that the model row ranks by searching the index bundle, restricted to the split's rows, with
the hits mapped from row ids to distinct media (``media_keys``) and duplicates dropped. On a
flat index this equals the brute-force table; approximate kinds also report recall@10 against
an exact search over the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.bundle import FEATURES
from indexer.expand import expand_with, nearest_recordings
from indexer.search import SearchIndex, open_index
from models.errors import CorpusError
from models.evaluation.dataset import is_retrieval_item, load_retrieval_set, split_items
from models.evaluation.metrics import label_relevance
from models.evaluation.run import add_localization, cca_row
from models.evaluation.scores import chance_table
from models.expansion import EXPAND
from models.item_media import InputSpec, media_keys
from models.manifest import Item, read_manifest
from models.runtime import ModelRuntime

DIRECTIONS = {  # direction: (query side, database side, same modality)
    "im-im": ("im", "im", True),
    "im-aud": ("im", "aud", False),
    "aud-im": ("aud", "im", False),
    "aud-aud": ("aud", "aud", True),
}
_MODALITY = {"im": "image", "aud": "audio"}
_KEY_SIDE = {"im": 0, "aud": 1}  # position in media_keys(item)


@dataclass(frozen=True)
class Side:
    """The distinct query media of one modality: their keys and labels."""

    keys: list[str]
    labels: list[frozenset[str]]


@dataclass(frozen=True)
class Database:
    """The index rows searched for one modality, grouped into distinct media."""

    rowids: np.ndarray  # int64, sorted
    key_of: dict[int, int]  # row id -> position in keys
    keys: list[str]
    labels: list[frozenset[str]]
    max_rows_per_key: int


def evaluate_index(
    index_dir: str | Path,
    model_dir: str | Path,
    corpus_dir: str | Path,
    split: str = "test",
    device: str = "auto",
    progress: bool = True,
    k: int = 30,
) -> dict:
    """The evaluation table through the index bundle (see the module docstring)."""
    runtime = ModelRuntime(model_dir, device=device)
    with open_index(index_dir) as index:
        index.check_model(runtime.content_hash, model_dir)
        spec = InputSpec(runtime.image_size, runtime.sample_rate, runtime.window_s)
        items = read_manifest(corpus_dir)
        held_out = split_items(items, split)
        if not held_out:
            splits = sorted({str(item.split) for item in items})
            raise CorpusError(f"no items in split {split!r} of {corpus_dir} (splits: {splits})")
        data = load_retrieval_set(corpus_dir, held_out, spec, progress)
        params = index.params
        result: dict = {
            "split": split, "provider": runtime.provider, "notes": [],
            "index": {"path": str(index.root), "kind": params.kind, "factory": params.factory,
                      "items": index.count},
        }
        result["counts"] = {"images": len(data.images), "sounds": len(data.waves)}
        if len(data.images) and len(data.waves):
            queries = query_sides(held_out, data.image_labels, data.audio_labels)
            sounds = runtime.embed_sounds(data.waves)
            vectors = {"im": runtime.embed_images(data.images).embeddings,
                       "aud": sounds.embeddings}
            if sounds.features is not None:
                vectors["features"] = sounds.features
            ndcg = {"random": chance_table(data.image_labels, data.audio_labels)}
            train = split_items(items, "train")
            if train and split != "train":
                ndcg["cca"] = cca_row(corpus_dir, train, spec, data, progress)
            else:
                result["notes"].append("no train split: the CCA row needs one and is left out")
            ndcg["model"], recall = index_table(index, split, queries, vectors, k)
            if "features" in vectors and index.has_audio_features:
                ndcg["expanded"] = expanded_table(index, split, queries, vectors, ndcg["model"],
                                                  EXPAND, k)
                result["notes"].append(
                    f"expanded row: each sound queries with its {EXPAND} nearest other sounds of "
                    "the split in the index averaged in, as a search with expand does")
            result["ndcg30"] = ndcg
            result["notes"].append(f"model row: rankings from the {params.kind} index "
                                   f"{index.root} ({params.factory})")
            if recall is not None:
                result["recall10"] = recall
                result["notes"].append(
                    f"recall@10 of the {params.kind} index against exact search: "
                    + ", ".join(f"{name} {value:.3f}" for name, value in recall.items())
                )
        add_localization(result, runtime, corpus_dir, held_out, spec, progress)
    return result


def query_sides(held_out: Sequence[Item], image_labels, audio_labels) -> dict[str, Side]:
    """The query keys in the order ``load_retrieval_set`` decoded them (first appearance)."""
    retrieval = [item for item in held_out if is_retrieval_item(item)]
    sides = {}
    for side, labels in (("im", image_labels), ("aud", audio_labels)):
        keys = list(dict.fromkeys(media_keys(item)[_KEY_SIDE[side]] for item in retrieval))
        sides[side] = Side(keys=keys, labels=list(labels))
    return sides


def index_table(
    index: SearchIndex,
    split: str,
    queries: dict[str, Side],
    vectors: dict[str, np.ndarray],
    k: int = 30,
) -> tuple[dict[str, float], dict[str, float] | None]:
    """nDCG@k in the four directions with rankings from ``index`` over the split's rows, and
    (approximate kinds only) recall@10 against exact search over the same rows.

    ``queries`` and ``vectors`` are keyed ``im`` and ``aud``: the distinct query media and
    their embeddings, in the same order (and ``vectors["features"]``, the sounds' audio
    features, which rank audio -> audio when the index holds them, as a search does).
    """
    databases = _databases(index, split)
    routes = {name: _route(index, name, q, d, vectors) for name, (q, d, _) in DIRECTIONS.items()}
    ndcg = {
        name: _ndcg(index, routes[name][0], queries[q], databases[d], routes[name][1], same, k)
        for name, (q, d, same) in DIRECTIONS.items()
    }
    if index.params.kind == "flat":
        return ndcg, None
    recall = {name: _recall(index, routes[name][0], databases[d], routes[name][1])
              for name, (q, d, _) in DIRECTIONS.items()}
    return ndcg, recall


def expanded_table(index: SearchIndex, split: str, queries: dict[str, Side],
                   vectors: dict[str, np.ndarray], plain: dict[str, float], count: int,
                   k: int = 30) -> dict[str, float]:
    """The table with each sound query expanded through the split's other sounds in the index,
    as a search with ``expand`` expands it (indexer.expand); image queries as in ``plain``."""
    databases = _databases(index, split)
    sounds = databases["aud"]
    fetch = (count + 2) * sounds.max_rows_per_key + 8  # room for each recording's copies
    found = nearest_recordings(index, vectors["features"], count, restrict_to=sounds.rowids,
                               fetch=fetch)
    query_emb = expand_with(index, vectors["aud"], "audio", found)
    query_features = expand_with(index, vectors["features"], FEATURES, found)
    return {
        **plain,
        "aud-im": _ndcg(index, query_emb, queries["aud"], databases["im"], "image", False, k),
        "aud-aud": _ndcg(index, query_features, queries["aud"], sounds, FEATURES, True, k),
    }


def _route(index: SearchIndex, name: str, query_side: str, db_side: str,
           vectors: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """The query vectors of a direction and the index modality they search."""
    if name == "aud-aud" and index.has_audio_features and "features" in vectors:
        return vectors["features"], FEATURES
    return vectors[query_side], _MODALITY[db_side]


def _databases(index: SearchIndex, split: str) -> dict[str, Database]:
    """The split's rows of the index (scenes left out, as in the brute-force table)."""
    entries = [e for e in index.entries(index.rowids(split)) if is_retrieval_item(e.item)]
    databases = {}
    for side in ("im", "aud"):
        positions: dict[str, int] = {}
        labels: list[frozenset[str]] = []
        key_of: dict[int, int] = {}
        per_key: dict[int, int] = {}
        for entry in entries:
            key = media_keys(entry.item)[_KEY_SIDE[side]]
            if key not in positions:
                positions[key] = len(positions)
                labels.append(frozenset(entry.item.labels))
            key_of[entry.rowid] = positions[key]
            per_key[positions[key]] = per_key.get(positions[key], 0) + 1
        databases[side] = Database(
            rowids=np.asarray(sorted(key_of), dtype=np.int64), key_of=key_of,
            keys=list(positions), labels=labels, max_rows_per_key=max(per_key.values(), default=1),
        )
    return databases


def _ndcg(index: SearchIndex, vectors: np.ndarray, queries: Side, db: Database, modality: str,
          same: bool, k: int) -> float:
    """Mean nDCG@k of the index's rankings; the same definition as ``metrics.ndcg_at_k``
    (same-modality queries exclude their own medium; queries without relevant media skipped)."""
    if not len(db.rowids):
        return 0.0
    relevance = label_relevance(queries.labels, db.labels).astype(np.float64)
    k = min(k, len(db.keys) - (1 if same else 0))
    if k < 1:
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    fetch = min(len(db.rowids), (k + 1) * db.max_rows_per_key)
    _, found = index.search(modality, vectors, fetch, restrict_to=db.rowids)
    db_position = {key: i for i, key in enumerate(db.keys)}
    scores = []
    for q, row in enumerate(found):
        own = db_position.get(queries.keys[q]) if same else None
        ranked: list[int] = []
        for rowid in row.tolist():
            if rowid < 0:
                break
            position = db.key_of[rowid]
            if position != own and position not in ranked:
                ranked.append(position)
                if len(ranked) == k:
                    break
        gains = relevance[q].copy()
        if own is not None:
            gains[own] = 0.0
        dcg = float((gains[ranked] * discounts[: len(ranked)]).sum())
        ideal = float((-np.sort(-gains)[:k] * discounts).sum())
        if ideal > 0:
            scores.append(dcg / ideal)
    return float(np.mean(scores)) if scores else 0.0


def _recall(index: SearchIndex, vectors: np.ndarray, db: Database, modality: str,
            k: int = 10) -> float:
    """Recall@k of the index's row ids against an exact search over the same rows."""
    if not len(db.rowids):
        return 0.0
    stored, rowids = index.vectors(modality)
    keep = np.isin(rowids, db.rowids)
    candidates, candidate_ids = np.asarray(stored[keep]), np.asarray(rowids[keep])
    k = min(k, len(candidate_ids))
    similarity = vectors.astype(np.float32) @ candidates.T
    exact = candidate_ids[np.argsort(-similarity, axis=1, kind="stable")[:, :k]]
    _, approx = index.search(modality, vectors, k, restrict_to=db.rowids)
    hits = [len(set(a.tolist()) & set(e.tolist())) / k for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits))
