"""``avsearch export RUN_DIR [RUN_DIR ...] --out MODEL_DIR``: a training run (or an ensemble of
several) -> a model bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.arguments import whole_number


def speeds(text: str) -> tuple[float, ...]:
    """``0.9,1,1.1`` -> (0.9, 1.0, 1.1): playback speeds between 0.5 and 2, each once."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated speeds such as 0.9,1,1.1, got {text!r}") from None
    if not all(0.5 <= value <= 2.0 for value in values):  # also refuses nan
        raise argparse.ArgumentTypeError(f"speeds must lie between 0.5 and 2, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a speed is repeated in {text!r}")
    return values


def tempo(text: str) -> float:
    """``auto`` (-1: the training sounds' median), 0 (off) or 0.05 to 10 seconds."""
    if text == "auto":
        return -1.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto or seconds such as 0.4, got {text!r}") from None
    if not (value == 0 or 0.05 <= value <= 10.0):  # also refuses nan
        raise argparse.ArgumentTypeError(f"--tempo must be auto, 0 (off) or 0.05-10 s, "
                                         f"got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a training run to a model bundle (ONNX)",
        description="Write image.onnx, audio.onnx and model.json, after checking ONNX Runtime "
        "against torch on real items of the corpus (max abs difference <= 1e-4). Several runs "
        "of one preset make an ensemble bundle: each graph joins the runs' embeddings, so its "
        "cosine is the mean of theirs (more accurate on voices and hands no run has seen, at "
        "that many times the compute and the embedding size).",
    )
    parser.add_argument("run_dir", nargs="+",
                        help="training run folder (checkpoint.pt, run.json); several for an "
                        "ensemble (seeds of one recipe, say)")
    parser.add_argument("--out", required=True, help="model bundle folder to write")
    parser.add_argument("--corpus", help="corpus for the parity inputs (default: the run's)")
    parser.add_argument("--speeds", type=speeds, default=None, metavar="S1,S2,...",
                        help="the audio graph embeds each sound played at these speeds (pitch "
                        "and tempo together) and averages: less of the speaker's voice in the "
                        "embedding, at that many times the audio compute (default: "
                        "0.75,1,1.3, the ends and middle of the training's speed range; 1 for "
                        "one plain pass)")
    parser.add_argument("--tempo", type=tempo, default=0.0, metavar="SECONDS|auto",
                        help="stretch each sound in time, its pitch kept, so that its heard "
                        "part lasts this long before the tower (auto: the median over the "
                        "centring items, the training sounds; default: 0, off: measured to help "
                        "a slow voice and hurt a fast one, docs/benchmarks.md)")
    parser.add_argument("--parity-items", type=int, default=16)
    parser.add_argument("--centre-items", type=whole_number, default=1000, metavar="N",
                        help="subtract each modality's mean embedding over N training items of "
                        "the corpus in the graphs (0: leave the embeddings as trained)")
    parser.add_argument("--calibration-split", default="val", metavar="SPLIT",
                        help="held-out split of the corpus to calibrate match and on-screen "
                        "probabilities on (default: val; skipped with a note when the corpus "
                        "has none)")
    parser.set_defaults(run=run)


def training_sample(items: list, count: int) -> list:
    """Up to ``count`` pairs of the training split (as training reads it: no split or
    ``train``; no scenes), spread evenly over the manifest."""
    pairs = [item for item in items if item.split in (None, "train")
             and "box" not in item.extra and not item.extra.get("absent")]
    if count <= 0 or not pairs:
        return []
    step = max(1, len(pairs) // count)
    return pairs[::step][:count]


def run(args: argparse.Namespace) -> int:
    from models.errors import BundleError
    from models.export import DEFAULT_SPEEDS, Centring, export_bundle, load_checkpoint
    from models.item_media import InputSpec, load_item
    from models.manifest import read_manifest
    from models.nn.tempo import typical_duration

    run_dirs = [Path(run) for run in args.run_dir]
    _, state = load_checkpoint(run_dirs[0])
    corpus = args.corpus or state["config"]["corpus"]
    if not Path(corpus).is_dir():
        raise BundleError(f"the run's corpus {corpus} is gone: pass --corpus with real items "
                          "for the parity check")
    preset = state["preset"]
    spec = InputSpec(preset["image_size"], preset["audio"]["sample_rate"],
                     preset["audio"]["window_s"])
    manifest = read_manifest(corpus)
    decoded = [load_item(corpus, item, spec) for item in manifest[: args.parity_items]]
    import numpy as np
    import torch
    from tqdm import tqdm

    images = np.stack([frame for frame, _ in decoded])
    waves = np.stack([wave for _, wave in decoded]).astype(np.float32)
    centring = None
    sample = training_sample(manifest, args.centre_items)
    if sample:
        pairs = [load_item(corpus, item, spec)
                 for item in tqdm(sample, desc="centring", unit="item", leave=False)]
        centring = Centring(np.stack([frame for frame, _ in pairs]),
                            np.stack([wave for _, wave in pairs]).astype(np.float32),
                            corpus=str(corpus), split="train")
    elif args.centre_items:
        print(f"note: not centred: {corpus} has no training pairs to take the mean embeddings of")
    tempo_s = args.tempo
    if tempo_s < 0:
        if centring is None:
            raise BundleError("--tempo auto measures the training sounds: it needs "
                              "--centre-items above 0 and a corpus with training pairs")
        tempo_s = typical_duration(torch.from_numpy(centring.waves), preset["audio"]["hop_length"],
                                   preset["audio"]["sample_rate"])
    info = export_bundle(run_dirs, args.out, images, waves,
                         speeds=args.speeds or DEFAULT_SPEEDS, centring=centring,
                         tempo_s=tempo_s or None)
    print(json.dumps({"parity": info.parity, "centred": info.centring is not None,
                      "members": max(1, len(info.members)), "embed_dim": info.embed_dim,
                      "content_hash": info.content_hash}, indent=2))
    print(f"wrote {args.out}/image.onnx, audio.onnx and model.json")
    if any(item.split == args.calibration_split for item in manifest):
        from models.calibrate_cli import calibrate_and_report

        calibrate_and_report(args.out, corpus, args.calibration_split)
    else:
        print(f"note: not calibrated: {corpus} has no {args.calibration_split!r} split, so "
              "search hits will carry no match_probability (build the corpus with "
              "--val-share, or run `avsearch calibrate` later)")
    return 0
