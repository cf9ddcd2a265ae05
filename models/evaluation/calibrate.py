"""Fit a bundle's probabilities on a held-out split, and judge them on another.

Match probabilities: each query of the split searches the split in the four directions; the
scores of its top hits, and whether each hit shares the query's label, are the pairs that a
an isotonic fit per direction turns into probabilities (models.calibration). One default
threshold, the best F1 over all directions (0.5 or above), is what a search uses as
``min_probability`` unless told otherwise. On-screen probability: a Platt fit of the best cell
logit of the split's on-screen scenes against its off-screen ones.

The split must be one that training never saw (``avsearch corpus digits --val-share``); the
figures that judge the fit come from another one (``avsearch eval`` on the test split).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models.bundle import (
    CurveInfo,
    MatchCalibrationInfo,
    OnScreenCalibrationInfo,
    read_model_info,
    write_model_info,
)
from models.calibration import (
    Isotonic,
    best_threshold,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    operating_point,
    reliability_table,
)
from models.errors import CorpusError
from models.evaluation.dataset import (
    RetrievalSet,
    load_offscreen_set,
    load_retrieval_set,
    load_scene_set,
    split_items,
)
from models.evaluation.scores import retrieved_pairs
from models.expansion import EXPAND, EXPANDED, SOUND_QUERIES, expand_sounds, plain
from models.item_media import InputSpec
from models.manifest import read_manifest
from models.runtime import ModelRuntime

log = logging.getLogger(__name__)
TOP_K = 30  # hits per query that calibration is fitted and judged on (as nDCG@30)
RANDOM_PER_QUERY = 30  # random pairs per query added to the fit: the low scores of no match


def embed_pairs(runtime: ModelRuntime, data: RetrievalSet, k: int = TOP_K,
                random_per_query: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    image_emb = runtime.embed_images(data.images).embeddings
    sounds = runtime.embed_sounds(data.waves)
    return all_pairs(data, image_emb, sounds.embeddings, sounds.features, k, random_per_query)


def all_pairs(data: RetrievalSet, image_emb: np.ndarray, audio_emb: np.ndarray,
              features: np.ndarray | None, k: int = TOP_K, random_per_query: int = 0
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The pairs of each direction, and, with the audio features, those of the sound queries
    expanded through the split's other sounds (``aud-im+expand``, ``aud-aud+expand``: what a
    search that asks for an expansion shows)."""
    pairs = retrieved_pairs(image_emb, audio_emb, data.image_labels, data.audio_labels, k,
                            random_per_query, audio_features=features)
    if features is None:
        return pairs
    queries = expand_sounds(audio_emb, features, EXPAND)
    expanded_pairs = retrieved_pairs(image_emb, audio_emb, data.image_labels, data.audio_labels,
                                     k, random_per_query, audio_features=features,
                                     sound_queries=queries, directions=SOUND_QUERIES)
    pairs.update({d + EXPANDED: p for d, p in expanded_pairs.items()})
    return pairs


def fit_match_calibration(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]], fitted_on: dict
) -> MatchCalibrationInfo | None:
    """An isotonic fit per direction with both matches and non-matches, and the default
    threshold. (A logistic curve was tried first: the share of matches among low scores has a
    floor it cannot follow, which cost up to 0.06 of calibration error on unseen speakers.)"""
    fits: dict[str, Isotonic] = {
        d: fit_isotonic(s, y) for d, (s, y) in pairs.items() if y.any() and not y.all()
    }
    if not fits:
        return None
    # The default threshold is chosen on what a default search shows (each query alone).
    shown = [d for d in plain(pairs) if d in fits]
    probabilities = np.concatenate([fits[d](pairs[d][0]) for d in shown])
    outcomes = np.concatenate([pairs[d][1] for d in shown])
    point = best_threshold(probabilities, outcomes)
    return MatchCalibrationInfo(
        directions={d: CurveInfo(method="isotonic", x=[round(v, 6) for v in f.x],
                                 y=[round(v, 6) for v in f.y]) for d, f in fits.items()},
        threshold=point.threshold, precision=round(point.precision, 4),
        recall=round(point.recall, 4),
        fitted_on={**fitted_on, "top_k": TOP_K, "random_per_query": RANDOM_PER_QUERY,
                   "pairs": int(outcomes.size),
                   "matches": int(outcomes.sum())},
    )


def scene_logits(runtime: ModelRuntime, corpus_dir, items,
                 spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Best cell logits of the on-screen and of the off-screen scenes among ``items``."""
    logits = []
    for scenes in (load_scene_set(corpus_dir, items, spec, False),
                   load_offscreen_set(corpus_dir, items, spec, False)):
        if len(scenes.images):
            grids = runtime.embed_images(scenes.images).grids
            logits.append(runtime.best_cell_logits(grids, runtime.embed_audio(scenes.waves)))
        else:
            logits.append(np.zeros(0))
    return logits[0], logits[1]


def calibrate_bundle(model_dir: str | Path, corpus_dir: str | Path, split: str = "val",
                     device: str = "auto", progress: bool = True) -> dict:
    """Fit both calibrations on ``split`` of the corpus and write them into ``model.json``.

    Returns a summary (what was fitted, on how much). Raises CorpusError when the split is
    missing or holds nothing to fit on.
    """
    runtime = ModelRuntime(model_dir, device=device)
    spec = InputSpec(runtime.image_size, runtime.sample_rate, runtime.window_s)
    items = split_items(read_manifest(corpus_dir), split)
    if not items:
        raise CorpusError(f"no {split!r} split in {corpus_dir} to calibrate on (build the corpus "
                          "with --val-share, or name another held-out split with --split)")
    fitted_on = {"corpus": str(corpus_dir), "split": split,
                 "aud-aud": "features" if runtime.has_audio_features else "embedding",
                 "expand": EXPAND if runtime.has_audio_features else 0}
    data = load_retrieval_set(corpus_dir, items, spec, progress)
    match = None
    if len(data.images) and len(data.waves):
        # The top hits alone hold few low scores: without random pairs an isotonic curve would
        # stay flat below them, at the match rate of the weakest top hits, for any query
        # that matches nothing at all.
        match = fit_match_calibration(embed_pairs(runtime, data, TOP_K, RANDOM_PER_QUERY),
                                      fitted_on)
    on_logits, off_logits = scene_logits(runtime, corpus_dir, items, spec)
    on_screen = None
    if len(on_logits) and len(off_logits):
        fit = fit_platt(np.concatenate([on_logits, off_logits]),
                        np.concatenate([np.ones(len(on_logits), bool),
                                        np.zeros(len(off_logits), bool)]))
        on_screen = OnScreenCalibrationInfo(
            a=fit.a, b=fit.b,
            fitted_on={**fitted_on, "on_screen": len(on_logits), "off_screen": len(off_logits)})
    if match is None and on_screen is None:
        raise CorpusError(f"the {split!r} split of {corpus_dir} has neither labelled image/sound "
                          "pairs nor on- and off-screen scenes: nothing to calibrate on")
    info = read_model_info(model_dir)
    info = info.model_copy(update={"match_calibration": match, "on_screen": on_screen})
    write_model_info(Path(model_dir), info)
    return {"match_calibration": match.model_dump() if match else None,
            "on_screen": on_screen.model_dump() if on_screen else None}


def calibration_report(runtime: ModelRuntime, data: RetrievalSet, image_emb: np.ndarray,
                       audio_emb: np.ndarray, audio_features: np.ndarray | None = None
                       ) -> dict | None:
    """ECE, reliability table and the default threshold's precision and recall, on the top
    hits among ``data`` (embedded as ``image_emb``, ``audio_emb``, ``audio_features``) in every
    direction the bundle is calibrated for (None if it is not)."""
    fit = runtime.info.match_calibration
    if fit is None or not (len(data.images) and len(data.waves)):
        return None
    pairs = all_pairs(data, image_emb, audio_emb, audio_features)
    shown = plain(pairs)
    per_direction, all_p, all_y = {}, [], []
    for direction, (scores, outcomes) in pairs.items():
        probabilities = runtime.match_probability(direction, scores)
        if probabilities is None:
            continue
        per_direction[direction] = {
            "ece": expected_calibration_error(probabilities, outcomes),
            "pairs": int(outcomes.size),
        }
        if direction in shown:  # the summary judges what a default search shows
            all_p.append(probabilities)
            all_y.append(outcomes)
    if not all_p:
        return None
    probabilities, outcomes = np.concatenate(all_p), np.concatenate(all_y)
    point = operating_point(probabilities, outcomes, fit.threshold)
    return {
        "ece": expected_calibration_error(probabilities, outcomes),
        "threshold": fit.threshold,
        "precision": point.precision,
        "recall": point.recall,
        "pairs": int(outcomes.size),
        "top_k": TOP_K,
        "directions": per_direction,
        "reliability": reliability_table(probabilities, outcomes),
    }


def on_screen_report(runtime: ModelRuntime, on_logits: np.ndarray,
                     off_logits: np.ndarray) -> dict | None:
    """ECE of the on-screen probability over on- and off-screen scenes."""
    if runtime.info.on_screen is None or not (len(on_logits) and len(off_logits)):
        return None
    probabilities = runtime.on_screen_probability(np.concatenate([on_logits, off_logits]))
    outcomes = np.concatenate([np.ones(len(on_logits), bool), np.zeros(len(off_logits), bool)])
    return {"ece": expected_calibration_error(probabilities, outcomes),
            "scenes": int(outcomes.size)}
