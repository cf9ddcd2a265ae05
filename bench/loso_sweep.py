"""Compare training options on the leave-one-speaker-out folds, many runs in parallel.

Builds the four fold corpora (as bench/leave_one_speaker_out.py does), then trains every
configuration of a grid on every fold, several `avsearch train` processes at a time (sized for a
machine with a GPU and many cores; on two CPU cores use --jobs 2). Configurations are launched in
grid order, each on all folds, so a --deadline that stops launching early still leaves complete
configurations to compare. The score of a run is its held-out metrics after the last step
(torch, on the fold's test split); the table gives each configuration's mean over its folds.
The best configuration's fold runs can be exported with --export-best. With several seeds
(--seed 1,2,3) every configuration trains on every fold once per seed, the corpora shared, and
the table's means are over folds and seeds.

Usage:
  python bench/loso_sweep.py --data ../shared/data --out runs/sweep --device cuda --jobs 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from models.training.config import TrainConfig

SPEAKERS = ("george", "jackson", "nicolas", "yweweler")
DIRECTIONS = ("im-im", "im-aud", "aud-im", "aud-aud")

# name -> extra `avsearch train` arguments, in launch order, on top of `avsearch train`'s
# defaults of the day (an entry of an earlier sweep ran without the defaults added since;
# `topdb30` names `--reverb 0` so that it stays the recipe before reverberation was default, and
# `reverb5` names `--clusters 0`, the recipe before the digits preset grouped images).
GRID: dict[str, list[str]] = {
    "base": [],
    "ema998": ["--ema", "0.998"],
    "ema998-wide": ["--ema", "0.998", "--channels", "32,64,128,256"],
    "ema998-wd1e-3": ["--ema", "0.998", "--weight-decay", "1e-3"],
    "ema998-4k": ["--ema", "0.998", "--steps", "4000"],
    "ema998-lr1e-3": ["--ema", "0.998", "--lr", "1e-3"],
    "ema999-wide-wd1e-3": ["--ema", "0.999", "--channels", "32,64,128,256",
                           "--weight-decay", "1e-3"],
    "ema998-avc": ["--ema", "0.998", "--loss", "avc"],
    "wide": ["--channels", "32,64,128,256"],
    "lifter20": ["--lifter", "20"],
    "lifter13": ["--lifter", "13"],
    "views1": ["--view-weight", "1.0"],
    "lifter20-views1": ["--lifter", "20", "--view-weight", "1.0"],
    "neighbours5": ["--neighbours", "0.5"],
    "neighbours8": ["--neighbours", "0.8"],
    "lifter20-neighbours5": ["--lifter", "20", "--neighbours", "0.5"],
    "mil-alike7": ["--mil-alike", "0.7"],
    "eq12": ["--equaliser", "12"],
    "eq12-lifter20": ["--equaliser", "12", "--lifter", "20"],
    "eq12-4k": ["--equaliser", "12", "--steps", "4000"],
    "topdb50": ["--top-db", "50"],
    "topdb40": ["--top-db", "40"],
    "topdb30": ["--top-db", "30", "--reverb", "0"],
    "topdb25": ["--top-db", "25"],
    "topdb20": ["--top-db", "20"],
    "preemph97": ["--top-db", "30", "--pre-emphasis", "0.97"],
    "preemph97-topdb40": ["--top-db", "40", "--pre-emphasis", "0.97"],
    "reverb5": ["--top-db", "30", "--reverb", "0.5", "--clusters", "0"],
    "reverb10": ["--top-db", "30", "--reverb", "1.0"],
    "mixstyle5": ["--top-db", "30", "--mixstyle", "0.5"],
    "pcen": ["--top-db", "30", "--pcen"],
    "pitchwarp3": ["--top-db", "30", "--pitch-warp", "0.3"],
    "clusters10": ["--top-db", "30", "--clusters", "10"],
    "clusters20": ["--top-db", "30", "--clusters", "20"],
    "clusters10-reverb5": ["--top-db", "30", "--clusters", "10", "--reverb", "0.5"],
    "meanmax": ["--audio-pooling", "meanmax"],
    "framenorm": ["--frame-norm"],
    "tempo16": ["--tempo", "1.6"],
    "temp5": ["--top-db", "30", "--reverb", "0.5", "--temperature", "0.05"],
    "temp10": ["--top-db", "30", "--reverb", "0.5", "--temperature", "0.1"],
    "temp20": ["--top-db", "30", "--reverb", "0.5", "--temperature", "0.2"],
    "ema998-wider": ["--ema", "0.998", "--channels", "48,96,192,384"],
    "ema998-wide-lr1e-3": ["--ema", "0.998", "--channels", "32,64,128,256", "--lr", "1e-3"],
}


def avsearch(*argv: str, log: Path | None = None) -> int:
    command = [sys.executable, "-m", "models.cli", *argv]
    if log is None:
        return subprocess.call(command)
    with log.open("w") as handle:
        return subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)


def build_corpus(speaker: str, args: argparse.Namespace) -> Path:
    corpus = Path(args.out) / f"corpus-{speaker}"
    if not (corpus / "manifest.jsonl").exists():
        code = avsearch("corpus", "digits", "--source", args.data, "--out", str(corpus),
                        "--test-speakers", speaker, "--scenes", str(args.scenes), "--no-progress",
                        "--overwrite", log=Path(args.out) / f"corpus-{speaker}.log")
        if code != 0:
            raise SystemExit(f"corpus for {speaker} failed (see {args.out}/corpus-{speaker}.log)")
    return corpus


def run_dir(out: str, name: str, speaker: str, seed: int) -> Path:
    """OUT/CONFIG/SPEAKER for seed 0 (the layout of every earlier sweep), -seedN beside it."""
    return Path(out) / name / (speaker if seed == 0 else f"{speaker}-seed{seed}")


def train(name: str, speaker: str, seed: int, args: argparse.Namespace,
          deadline: float) -> dict | None:
    if time.monotonic() > deadline:
        return None
    run = run_dir(args.out, name, speaker, seed)
    run.parent.mkdir(parents=True, exist_ok=True)
    extra = GRID[name]
    if args.teachers:
        extra = [*extra, "--teachers", args.teachers.format(speaker=speaker)]
    steps = [] if "--steps" in extra else ["--steps", str(args.steps)]
    started = time.perf_counter()
    # A finished run (an earlier sweep into the same --out) is read, not trained again.
    code = 0 if (run / "run.json").exists() else avsearch(
        "train", "--corpus", str(Path(args.out) / f"corpus-{speaker}"), "--out", str(run),
        "--device", args.device, "--threads", str(args.threads), "--seed", str(seed),
        "--eval-every", str(args.eval_every), "--quiet", *steps, *extra,
        log=run.with_suffix(".log"))
    if code != 0:
        print(f"{name}/{run.name}: train failed (see {run}.log)", flush=True)
        return None
    summary = json.loads((run / "run.json").read_text())["final"]
    result = {"config": name, "speaker": speaker, "seed": seed,
              "minutes": round((time.perf_counter() - started) / 60, 2),
              **summary.get("ndcg30", {}),
              "pointing": summary.get("localization", {}).get("pointing_accuracy")}
    print(json.dumps(result), flush=True)
    return result


def table(results: list[dict]) -> str:
    lines = ["| configuration | runs | " + " | ".join(DIRECTIONS) + " | pointing |",
             "|---|---|" + "---|" * (len(DIRECTIONS) + 1)]
    for name in GRID:
        runs = [r for r in results if r["config"] == name]
        if not runs:
            continue
        cells = [f"{sum(r[k] for r in runs) / len(runs):.3f}" for k in (*DIRECTIONS, "pointing")]
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best(results: list[dict], runs_each: int) -> str | None:
    """The configuration with every run (fold and seed) done and the highest mean cross-modal
    nDCG."""
    complete = {name: [r for r in results if r["config"] == name] for name in GRID}
    scores = {name: sum(r["im-aud"] + r["aud-im"] for r in runs) / len(runs)
              for name, runs in complete.items() if len(runs) == runs_each}
    return max(scores, key=scores.get) if scores else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="runs/sweep")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps,
                        help="training steps a run (default: the trainer's)")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--seed", default="0",
                        help="training seed, or several comma-separated (one run of each "
                             "configuration and fold per seed)")
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--configs", default=",".join(GRID), help="comma-separated grid names")
    parser.add_argument("--speakers", default=",".join(SPEAKERS),
                        help="the folds to run (held-out speakers, comma-separated)")
    parser.add_argument("--teachers", default="",
                        help="run folders to distil into every run (avsearch train --teachers), "
                             "with {speaker} for the fold's held-out speaker, e.g. "
                             "'runs/s1/base/{speaker},runs/s2/base/{speaker}'")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="minutes after which no new run is started (0: none)")
    parser.add_argument("--export-best", action="store_true",
                        help="export the best configuration's fold runs to OUT/best/SPEAKER")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seed.split(",") if s]
    except ValueError:
        raise SystemExit(f"--seed: integers, comma-separated (got {args.seed!r})") from None
    if not seeds or min(seeds) < 0:
        raise SystemExit("--seed: one or more integers >= 0")
    started = time.monotonic()
    deadline = started + args.deadline * 60 if args.deadline else float("inf")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    speakers = [s for s in args.speakers.split(",") if s]
    if not speakers or set(speakers) - set(SPEAKERS):
        raise SystemExit(f"--speakers: choose among {', '.join(SPEAKERS)}")
    names = [n for n in args.configs.split(",") if n]
    unknown = sorted(set(names) - set(GRID))
    if unknown:
        raise SystemExit(f"unknown configurations: {', '.join(unknown)}")
    with ThreadPoolExecutor(len(speakers)) as pool:
        list(pool.map(lambda s: build_corpus(s, args), speakers))
    print(f"corpora ready after {time.monotonic() - started:.0f} s", flush=True)
    jobs = [(name, speaker, seed) for seed in seeds for name in names for speaker in speakers]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = [r for r in pool.map(lambda job: train(*job, args, deadline), jobs) if r]
    (Path(args.out) / "sweep.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    winner = best(results, len(speakers) * len(seeds))
    print(f"best: {winner}")
    if winner and args.export_best:
        for speaker in speakers:
            run = run_dir(args.out, winner, speaker, seeds[0])
            if avsearch("export", str(run), "--out", str(Path(args.out) / "best" / speaker),
                        log=Path(args.out) / f"export-{speaker}.log") != 0:
                print(f"export of {run} failed", flush=True)
    print(f"{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
