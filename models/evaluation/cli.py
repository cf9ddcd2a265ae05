"""``avsearch eval --model MODEL_DIR --corpus DIR``: the retrieval and localisation table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model bundle on a corpus's held-out split",
        description="nDCG@30 in the four directions (rows: random chance, CCA on raw features "
        "fitted on the train split, the model) and, on scenes, the pointing game and cIoU.",
    )
    parser.add_argument("--model", required=True, help="model bundle folder")
    parser.add_argument("--index", help="index bundle: the model row ranks by searching it "
                        "(and approximate kinds report recall@10 against exact search)")
    parser.add_argument("--corpus", required=True, help="corpus folder")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from models.evaluation.run import evaluate_bundle, format_table

    if args.index:
        from indexer.evaluate import evaluate_index

        result = evaluate_index(args.index, args.model, args.corpus, args.split, args.device,
                                not args.quiet)
    else:
        result = evaluate_bundle(args.model, args.corpus, args.split, args.device,
                                 not args.quiet)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0
