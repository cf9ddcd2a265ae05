"""The evaluation of a model bundle on a corpus's held-out split, through ONNX Runtime."""

from __future__ import annotations

import logging
from pathlib import Path

from models.errors import CorpusError
from models.evaluation.calibrate import calibration_report, on_screen_report
from models.evaluation.cca import CCA, raw_audio_features, raw_image_features
from models.evaluation.dataset import (
    load_offscreen_set,
    load_retrieval_set,
    load_scene_set,
    split_items,
)
from models.evaluation.scores import auroc, chance_table, localization_scores, retrieval_table
from models.expansion import EXPAND, SOUND_QUERIES, expand_sounds
from models.item_media import InputSpec
from models.manifest import read_manifest
from models.runtime import ModelRuntime

log = logging.getLogger(__name__)


def evaluate_bundle(
    model_dir: str | Path,
    corpus_dir: str | Path,
    split: str = "test",
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """The table of DESIGN.md: nDCG@30 rows (random, cca, model) and the localisation scores."""
    runtime = ModelRuntime(model_dir, device=device)
    spec = InputSpec(runtime.image_size, runtime.sample_rate, runtime.window_s)
    items = read_manifest(corpus_dir)
    held_out = split_items(items, split)
    if not held_out:
        splits = sorted({str(item.split) for item in items})
        raise CorpusError(f"no items in split {split!r} of {corpus_dir} (splits: {splits})")
    data = load_retrieval_set(corpus_dir, held_out, spec, progress)
    result: dict = {"split": split, "provider": runtime.provider, "notes": []}
    result["counts"] = {"images": len(data.images), "sounds": len(data.waves)}
    if len(data.images) and len(data.waves):
        image_emb = runtime.embed_images(data.images).embeddings
        sounds = runtime.embed_sounds(data.waves)
        audio_emb, features = sounds.embeddings, sounds.features
        ndcg = {"random": chance_table(data.image_labels, data.audio_labels)}
        train = split_items(items, "train")
        if train and split != "train":
            ndcg["cca"] = cca_row(corpus_dir, train, spec, data, progress)
        else:
            result["notes"].append("no train split: the CCA row needs one and is left out")
        ndcg["model"] = retrieval_table(image_emb, audio_emb, data.image_labels, data.audio_labels,
                                        audio_features=features)
        result["ndcg30"] = ndcg
        if features is not None:
            # Searches rank sounds by the audio tower's own features; the shared embedding's
            # figure is kept beside it, for comparison with bundles that have none.
            by_embedding = retrieval_table(image_emb, audio_emb, data.image_labels,
                                           data.audio_labels, directions=["aud-aud"])["aud-aud"]
            result["aud_aud_by_embedding"] = by_embedding
            result["notes"].append("aud-aud ranks sounds by the audio tower's own features "
                                   f"(by the shared embedding: {by_embedding:.3f})")
            ndcg["expanded"] = {**ndcg["model"], **retrieval_table(
                image_emb, audio_emb, data.image_labels, data.audio_labels,
                audio_features=features, directions=SOUND_QUERIES,
                sound_queries=expand_sounds(audio_emb, features, EXPAND))}
            result["notes"].append(
                f"expanded: each sound queries with its {EXPAND} nearest other sounds of the "
                "split by the audio features averaged in, as a search with expand does (helps "
                "where the collection holds the querying voice; docs/benchmarks.md)")
        report = calibration_report(runtime, data, image_emb, audio_emb, features)
        if report is not None:
            result["calibration"] = report
        else:
            result["notes"].append("the bundle holds no match calibration: no ECE")
    add_localization(result, runtime, corpus_dir, held_out, spec, progress)
    return result


def add_localization(
    result: dict, runtime: ModelRuntime, corpus_dir, held_out, spec: InputSpec, progress: bool
) -> None:
    """Score the held-out scenes (pointing game, cIoU) into ``result``, or note their absence."""
    scenes = load_scene_set(corpus_dir, held_out, spec, progress)
    if len(scenes.images):
        grids = runtime.embed_images(scenes.images).grids
        audio_emb = runtime.embed_audio(scenes.waves)
        heats = runtime.heat_maps(grids, audio_emb)
        result["localization"] = localization_scores(list(heats), scenes.boxes)
        absent = load_offscreen_set(corpus_dir, held_out, spec, progress)
        if len(absent.images):
            # On-screen against off-screen: does the best cell's probability tell them apart?
            on_logits = runtime.best_cell_logits(grids, audio_emb)
            off_logits = runtime.best_cell_logits(runtime.embed_images(absent.images).grids,
                                                  runtime.embed_audio(absent.waves))
            result["localization"]["offscreen_auroc"] = auroc(on_logits, off_logits)
            result["localization"]["offscreen_scenes"] = len(off_logits)
            report = on_screen_report(runtime, on_logits, off_logits)
            if report is not None:
                result["localization"]["on_screen_ece"] = report["ece"]
    else:
        result["notes"].append("no scenes in this split: no localisation scores")


def cca_row(corpus_dir, train_items, spec: InputSpec, test, progress: bool) -> dict[str, float]:
    """CCA on raw features, fitted on the train split's pairs (their labels unused)."""
    train = load_retrieval_set(corpus_dir, train_items, spec, progress)
    # Fit on aligned pairs: each train item's frame and sound (distinct media may differ in count).
    count = min(len(train.images), len(train.waves))
    cca = CCA().fit(
        raw_image_features(train.images[:count]), raw_audio_features(train.waves[:count])
    )
    image_emb = cca.transform_x(raw_image_features(test.images))
    audio_emb = cca.transform_y(raw_audio_features(test.waves))
    return retrieval_table(image_emb, audio_emb, test.image_labels, test.audio_labels)


def format_table(result: dict) -> str:
    lines = []
    if "ndcg30" in result:
        header = f"{'nDCG@30':<10}" + "".join(
            f"{d:>9}" for d in ("im-im", "im-aud", "aud-im", "aud-aud")
        )
        lines += [header, "-" * len(header)]
        for row, values in result["ndcg30"].items():
            lines.append(f"{row:<10}" + "".join(f"{values[d]:>9.3f}" for d in values))
    if "localization" in result:
        loc = result["localization"]
        lines.append(
            f"localisation on {loc['scenes']} scenes: pointing {loc['pointing_accuracy']:.3f} "
            f"(chance {loc['chance']:.3f}), cIoU@0.5 {loc['ciou50']:.3f}, AUC {loc['auc']:.3f}"
        )
        if "offscreen_auroc" in loc:
            lines.append(f"on-screen against {loc['offscreen_scenes']} off-screen scenes: "
                         f"AUROC {loc['offscreen_auroc']:.3f}")
        if "on_screen_ece" in loc:
            lines.append(f"on-screen probability: ECE {loc['on_screen_ece']:.3f}")
    if "calibration" in result:
        cal = result["calibration"]
        lines.append(
            f"match probability on {cal['pairs']} top-{cal['top_k']} hits: ECE {cal['ece']:.3f}; "
            f"at the default threshold {cal['threshold']:.2f}: precision {cal['precision']:.3f}, "
            f"recall {cal['recall']:.3f}"
        )
        lines.append("  probability    pairs  mean p  match rate")
        for row in cal["reliability"]:
            if row["pairs"]:
                lines.append(f"  {row['low']:.1f}-{row['high']:.1f}  {row['pairs']:>10}  "
                             f"{row['mean_probability']:.3f}  {row['match_rate']:.3f}")
    lines += [f"note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines)
