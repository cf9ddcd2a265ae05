"""``avsearch calibrate --model MODEL_DIR --corpus DIR``: fit a bundle's probabilities."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit a model bundle's match and on-screen probabilities on held-out data",
        description="Calibrate the scores of search hits (an isotonic fit per direction, on the "
        "top 30 hits of each held-out query and 30 pairs drawn at random) and AVOL-Net's "
        "on-screen score (Platt), choose the default "
        "min_probability, and write it all into the bundle's model.json. `avsearch export` "
        "does this itself when the corpus has a val split.",
    )
    parser.add_argument("--model", required=True, help="model bundle folder (updated in place)")
    parser.add_argument("--corpus", required=True, help="corpus folder")
    parser.add_argument("--split", default="val",
                        help="held-out split to fit on; never the one you report (default: val)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def calibrate_and_report(model_dir: str | Path, corpus: str | Path, split: str,
                         device: str = "auto", progress: bool = False) -> None:
    from models.evaluation.calibrate import calibrate_bundle

    summary = calibrate_bundle(model_dir, corpus, split, device, progress)
    match, on_screen = summary["match_calibration"], summary["on_screen"]
    if match:
        fitted = match["fitted_on"]
        print(f"match probability fitted on {fitted['pairs']} pairs (each query's top "
              f"{fitted['top_k']} hits and {fitted['random_per_query']} drawn at random) of "
              f"the {split!r} split ({fitted['matches']} matches); default min_probability "
              f"{match['threshold']:.2f} (precision {match['precision']:.3f}, "
              f"recall {match['recall']:.3f})")
    else:
        print(f"note: the {split!r} split has no labelled image/sound pairs: no match probability")
    if on_screen:
        fitted = on_screen["fitted_on"]
        print(f"on-screen probability fitted on {fitted['on_screen']} on-screen and "
              f"{fitted['off_screen']} off-screen scenes")
    else:
        print(f"note: the {split!r} split lacks on- or off-screen scenes: the on-screen "
              "probability stays the best cell's")
    print(f"wrote the calibration into {model_dir}/model.json")


def run(args: argparse.Namespace) -> int:
    from models.errors import CorpusError

    if not Path(args.corpus, "manifest.jsonl").is_file():
        raise CorpusError(f"no manifest.jsonl in {args.corpus}: not a corpus folder")
    calibrate_and_report(args.model, args.corpus, args.split, args.device, not args.quiet)
    return 0
