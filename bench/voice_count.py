"""How a held-out voice is heard as the number of training voices grows.

For each held-out speaker (a leave-one-speaker-out fold) and each condition ``K:TAKES`` (train on
K of the other voices, each with its first TAKES recordings of every digit), builds the training
corpus with `avsearch corpus digits --speakers ... --max-takes TAKES` (the fold's 4,000 training
images and its scenes recipe), trains with `avsearch train`'s defaults, exports (centred, by
default, on the items of that training corpus: those the model saw) and judges the bundle with
`avsearch eval` on the full fold corpus (the held-out speaker's 500 recordings, 1,000 test
images, 1,000 scenes): the same test set whatever the training voices. Conditions of equal
K x TAKES separate how many voices from how many recordings (``2:50`` and ``3:33`` both train
on about 1,000).

Usage:
  python bench/voice_count.py --data ../shared/data --out runs/voices --conditions 2:50,3:33 \
      --speakers jackson,yweweler --jobs 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from loso_sweep import SPEAKERS, avsearch, build_corpus

from models.training.config import TrainConfig

COLUMNS = ("im-aud", "aud-im", "aud-aud")


@dataclass(frozen=True)
class Job:
    held_out: str
    voices: tuple[str, ...]
    takes: int
    seed: int

    @property
    def name(self) -> str:
        """The run's folder: -sN for a seed other than 0, so that seeds never share finished
        steps."""
        seed = f"-s{self.seed}" if self.seed else ""
        return f"{self.held_out}-{'+'.join(self.voices)}-t{self.takes}{seed}"


def parse_conditions(text: str) -> list[tuple[int, int]]:
    conditions = []
    for part in filter(None, text.split(",")):
        try:
            voices, takes = (int(v) for v in part.split(":"))
        except ValueError:
            raise SystemExit(f"--conditions: K:TAKES, comma-separated (got {part!r})") from None
        if not 1 <= voices <= len(SPEAKERS) - 1 or not 1 <= takes <= 50:
            raise SystemExit(f"--conditions {part}: K in 1-{len(SPEAKERS) - 1}, TAKES in 1-50")
        conditions.append((voices, takes))
    if not conditions:
        raise SystemExit("--conditions names no condition")
    return conditions


def plan(speakers: list[str], conditions: list[tuple[int, int]], subsets: int,
         seed: int) -> list[Job]:
    """The first ``subsets`` choices of K training voices for every fold and condition."""
    jobs = []
    for count, takes in conditions:
        for held_out in speakers:
            others = [s for s in SPEAKERS if s != held_out]
            for voices in list(itertools.combinations(others, count))[:subsets]:
                jobs.append(Job(held_out, voices, takes, seed))
    return jobs


def run(job: Job, args: argparse.Namespace) -> dict | None:
    out = Path(args.out)
    folder = out / job.name
    corpus, run_dir, model = folder / "corpus", folder / "run", folder / "model"
    verdict = folder / "eval.json"
    started = time.perf_counter()
    steps = [
        (corpus / "manifest.jsonl",
         ("corpus", "digits", "--source", args.data, "--out", str(corpus),
          "--test-speakers", job.held_out, "--speakers", ",".join((job.held_out, *job.voices)),
          "--max-takes", str(job.takes), "--scenes", str(args.scenes), "--no-progress",
          "--overwrite")),
        (run_dir / "run.json",
         ("train", "--corpus", str(corpus), "--out", str(run_dir), "--device", args.device,
          "--threads", str(args.threads), "--seed", str(job.seed), "--steps", str(args.steps),
          "--eval-every", str(args.steps), "--quiet")),
        (model / "model.json", ("export", str(run_dir), "--out", str(model))),
        (verdict, ("eval", "--model", str(model), "--corpus", str(out / f"corpus-{job.held_out}"),
                   "--json", str(verdict))),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for done, argv in steps:
        # A step whose output is there (an earlier run into the same --out) is not redone.
        if not done.exists() and avsearch(*argv, log=folder / f"{argv[0]}.log") != 0:
            print(f"{job.name}: {argv[0]} failed (see {folder}/{argv[0]}.log)", flush=True)
            return None
    figures = json.loads(verdict.read_text())
    result = {"held_out": job.held_out, "voices": list(job.voices), "takes": job.takes,
              "minutes": round((time.perf_counter() - started) / 60, 1),
              **{k: figures["ndcg30"]["model"][k] for k in COLUMNS},
              "pointing": figures.get("localization", {}).get("pointing_accuracy")}
    print(json.dumps(result), flush=True)
    return result


def table(results: list[dict]) -> str:
    lines = ["| held-out speaker | training voices | takes | runs | "
             + " | ".join(COLUMNS) + " | pointing |", "|---|---:|---:|---:|" + "---:|" * 4]
    groups: dict[tuple[str, int, int], list[dict]] = {}
    for r in results:
        groups.setdefault((r["held_out"], len(r["voices"]), r["takes"]), []).append(r)
    for (held_out, count, takes), runs in sorted(groups.items()):
        cells = [f"{sum(r[k] or 0 for r in runs) / len(runs):.3f}" for k in (*COLUMNS, "pointing")]
        lines.append(f"| {held_out} | {count} | {takes} | {len(runs)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="runs/voices")
    parser.add_argument("--conditions", default="2:50,3:33",
                        help="K:TAKES, comma-separated: K training voices, TAKES recordings of "
                             "each digit from each")
    parser.add_argument("--speakers", default="jackson,yweweler",
                        help="the folds (held-out speakers), comma-separated")
    parser.add_argument("--subsets", type=int, default=1,
                        help="choices of K training voices per fold and condition (in order)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps,
                        help="training steps a run (default: the trainer's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenes", type=int, default=1000)
    args = parser.parse_args()
    speakers = [s for s in args.speakers.split(",") if s]
    if not speakers or set(speakers) - set(SPEAKERS):
        raise SystemExit(f"--speakers: choose among {', '.join(SPEAKERS)}")
    if args.subsets < 1:
        raise SystemExit("--subsets must be 1 or more")
    jobs = plan(speakers, parse_conditions(args.conditions), args.subsets, args.seed)
    started = time.monotonic()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(len(speakers)) as pool:
        list(pool.map(lambda s: build_corpus(s, args), speakers))
    print(f"{len(jobs)} runs; fold corpora ready after {time.monotonic() - started:.0f} s",
          flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = [r for r in pool.map(lambda job: run(job, args), jobs) if r]
    (Path(args.out) / "voices.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
