"""Leave-one-speaker-out on the shared data: the protocol behind the model's headline figures.

For each speaker: build AV-digits with that speaker (and 20% of the images) held out, half of
them (--val-share) as a val split, train on the other three speakers' recordings and the
remaining images, export (which calibrates the bundle's probabilities on val), and evaluate the
bundle through ONNX Runtime on the held-out speaker's test half (`avsearch eval`). Prints each
fold and the mean, as a Markdown table, and writes everything to OUT/summary.json.

Usage:
  python bench/leave_one_speaker_out.py --data ../shared/data --out runs/loso --loss infonce
  (--speakers george,jackson to run some folds only; --steps to shorten training)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from models.cli import main as avsearch
from models.training.config import TrainConfig

SPEAKERS = ("george", "jackson", "nicolas", "yweweler")
DIRECTIONS = ("im-im", "im-aud", "aud-im", "aud-aud")


def run_fold(speaker: str, args: argparse.Namespace) -> dict:
    fold = Path(args.out) / f"{args.loss}-{speaker}"
    corpus, run, model = fold / "corpus", fold / "run", fold / "model"
    fold.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    steps = [
        ["corpus", "digits", "--source", args.data, "--out", str(corpus), "--test-speakers",
         speaker, "--scenes", str(args.scenes), "--val-share", str(args.val_share),
         "--no-progress", "--overwrite"],
        ["train", "--corpus", str(corpus), "--out", str(run), "--loss", args.loss, "--steps",
         str(args.steps), "--seed", str(args.seed), "--threads", str(args.threads), "--quiet",
         *(["--resume"] if (run / "checkpoint.pt").exists() else [])],
        ["export", str(run), "--out", str(model),
         *(["--speeds", args.speeds] if args.speeds else [])],
        ["eval", "--model", str(model), "--corpus", str(corpus), "--json",
         str(fold / "eval.json"), "--quiet"],
    ]
    for argv in steps:
        if argv[0] == "corpus" and (corpus / "manifest.jsonl").exists():
            continue
        if avsearch(argv) != 0:
            raise SystemExit(f"fold {speaker}: avsearch {argv[0]} failed")
    result = json.loads((fold / "eval.json").read_text())
    result["minutes"] = round((time.perf_counter() - started) / 60, 1)
    return result


def table(results: dict[str, dict]) -> str:
    extras = ("pointing", "ciou", "offscreen_auroc", "ece")
    lines = ["| fold (held out) | row | " + " | ".join(DIRECTIONS) +
             " | pointing | cIoU@0.5 | off-screen AUROC | ECE |",
             "|---|---|" + "---|" * (len(DIRECTIONS) + len(extras))]
    means: dict[str, list[float]] = {}
    for speaker, result in results.items():
        for row in ("cca", "model"):
            values = [result["ndcg30"][row][d] for d in DIRECTIONS]
            loc = result.get("localization", {}) if row == "model" else {}
            extra = [loc.get("pointing_accuracy"), loc.get("ciou50"), loc.get("offscreen_auroc"),
                     result.get("calibration", {}).get("ece") if row == "model" else None]
            cells = [f"{v:.3f}" for v in values] + [f"{v:.3f}" if v is not None else "" for v in
                                                    extra]
            lines.append(f"| {speaker} | {row} | " + " | ".join(cells) + " |")
            for key, value in zip(DIRECTIONS + extras, values + extra, strict=True):
                if value is not None:
                    means.setdefault(f"{row}:{key}", []).append(value)
    for row in ("random", "cca", "model"):
        if row == "random":
            values = [sum(r["ndcg30"]["random"][d] for r in results.values()) / len(results)
                      for d in DIRECTIONS]
            lines.append("| mean | random | " + " | ".join(f"{v:.3f}" for v in values) +
                         " | 0.250 | | 0.500 | |")
            continue
        cells = []
        for key in DIRECTIONS + extras:
            values = means.get(f"{row}:{key}")
            cells.append(f"**{sum(values) / len(values):.3f}**" if values else "")
        lines.append(f"| mean | {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="runs/loso")
    parser.add_argument("--loss", default="infonce", choices=["infonce", "avc"])
    parser.add_argument("--steps", type=int, default=TrainConfig.steps,
                        help="training steps a run (default: the trainer's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--val-share", type=float, default=0.5,
                        help="share of the held-out speaker's items used to calibrate")
    parser.add_argument("--speakers", default=",".join(SPEAKERS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all)")
    parser.add_argument("--speeds", default=None,
                        help="export's --speeds (default: export's own; 1: one plain pass)")
    args = parser.parse_args()
    results = {s: run_fold(s, args) for s in args.speakers.split(",")}
    summary = Path(args.out) / f"summary-{args.loss}.json"
    summary.write_text(json.dumps(results, indent=2))
    print(f"\nleave-one-speaker-out, loss {args.loss}, {args.steps} steps, seed {args.seed}")
    print(table(results))
    print(f"wrote {summary}")


if __name__ == "__main__":
    main()
