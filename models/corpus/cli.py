"""``avsearch corpus``: make corpora. ``avsearch corpus digits`` builds the AV-digits corpus."""

from __future__ import annotations

import argparse
from pathlib import Path


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return names


def _run_digits(args: argparse.Namespace) -> int:
    from models.corpus.digits import DigitsCorpusConfig, build_digits_corpus

    config = DigitsCorpusConfig(
        source=Path(args.source),
        out=Path(args.out),
        test_speakers=args.test_speakers or (),
        test_image_share=args.test_image_share,
        val_share=args.val_share,
        scenes=args.scenes,
        absent_share=args.absent_share,
        clips=args.clips,
        split=args.split,
        seed=args.seed,
        max_images=args.max_images,
        max_takes=args.max_takes,
        speakers=args.speakers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    summary = build_digits_corpus(config)
    print(summary.describe())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    corpus = subparsers.add_parser(
        "corpus",
        help="make a corpus (manifest.jsonl + media)",
        description="Make a corpus folder: manifest.jsonl and the media it names.",
    )
    kinds = corpus.add_subparsers(dest="corpus_command", required=True, metavar="KIND")
    digits = kinds.add_parser(
        "digits",
        help="AV-digits: MNIST images paired with FSDD spoken digits",
        description=(
            "Build the AV-digits corpus from MNIST (IDX .gz) and FSDD (WAV): image/recording "
            "pairs of the same digit, 2x2 localisation scenes with one spoken digit, and 1 s mp4 "
            "clips. Hold speakers out with --test-speakers to test on voices never trained on."
        ),
    )
    digits.add_argument(
        "--source",
        required=True,
        metavar="DIR",
        help="folder with mnist/*-images-idx3-ubyte.gz (+ labels) and fsdd/**/*.wav",
    )
    digits.add_argument("--out", required=True, metavar="DIR", help="the corpus folder to write")
    digits.add_argument(
        "--test-speakers",
        type=_names,
        metavar="NAME[,NAME...]",
        help="speakers whose recordings (plus a share of the images) form the test split",
    )
    digits.add_argument(
        "--test-image-share",
        type=float,
        default=0.2,
        metavar="SHARE",
        help="share of the images put in the test split with --test-speakers (default 0.2)",
    )
    digits.add_argument(
        "--val-share",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of the test split's images and recordings (of the train split's, without "
        "--test-speakers) put in a val split, on which `avsearch export` calibrates match "
        "probabilities (default 0: no val split)",
    )
    digits.add_argument(
        "--scenes",
        type=int,
        default=0,
        metavar="N",
        help="2x2 localisation scenes per split (default 0)",
    )
    digits.add_argument(
        "--absent-share",
        type=float,
        default=0.25,
        metavar="F",
        help="share of the scenes whose spoken digit is none of the four shown (off-screen; "
        "marked absent in the manifest; default 0.25)",
    )
    digits.add_argument(
        "--clips", type=int, default=0, metavar="N", help="1 s mp4 clips per split (default 0)"
    )
    digits.add_argument(
        "--split",
        choices=("train", "test"),
        help="mark every item with this split (data no model has seen: --split test)",
    )
    digits.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    digits.add_argument(
        "--max-images", type=int, metavar="N", help="use only the first N MNIST images"
    )
    digits.add_argument(
        "--max-takes", type=int, metavar="K", help="use only takes 0..K-1 of each recording"
    )
    digits.add_argument(
        "--speakers", type=_names, metavar="NAME[,NAME...]", help="use only these speakers"
    )
    digits.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    digits.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    digits.set_defaults(run=_run_digits)
