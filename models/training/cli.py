"""``avsearch train``: train the towers on a corpus (imports torch only when it runs)."""

from __future__ import annotations

import argparse
import json
import math
import shlex

from models.arguments import whole_number
from models.presets import PRESETS
from models.training.config import MIN_TEMPERATURE, TrainConfig


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, not {text}")
    return value


def _share(text: str) -> float:
    value = _weight(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _dropout(text: str) -> float:
    value = _weight(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {text}")
    return value


def _tempo(text: str) -> float:
    value = _weight(text)
    if not 1.0 <= value <= 3.0:
        raise argparse.ArgumentTypeError(f"must be between 1 and 3, not {text}")
    return value


def _positive(text: str) -> float:
    value = _weight(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _temperature(text: str) -> float:
    value = _weight(text)
    if 0 < value < MIN_TEMPERATURE:
        raise argparse.ArgumentTypeError(f"must be 0 (learned) or at least {MIN_TEMPERATURE}")
    return value


def _emphasis(text: str) -> float:
    value = _weight(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be 0 or more and below 1, not {text}")
    return value


def _steps(text: str) -> int:
    value = whole_number(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _channels(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if len(widths) != 4 or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            "expected four positive block widths, e.g. 32,64,128,256"
        )
    return widths


def _run_dirs(text: str) -> tuple[str, ...]:
    folders = tuple(part for part in text.split(",") if part)
    if not folders:
        raise argparse.ArgumentTypeError("expected one or more run folders, comma-separated")
    return folders


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train AVE-Net / AVOL-Net on a corpus",
        description="Train the image and audio towers on a corpus's train split. Labels are "
        "never used for training, only for the held-out metrics printed each epoch.",
    )
    parser.add_argument("--corpus", required=True, help="corpus folder (manifest.jsonl)")
    parser.add_argument("--out", required=True, help="run folder for checkpoints and metrics")
    parser.add_argument("--preset", default="digits", choices=["digits", "paper"])
    parser.add_argument("--loss", default="infonce", choices=["infonce", "avc"],
                        help="embedding loss (default: infonce, the better one on held-out "
                        "speakers, see docs/benchmarks.md)")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps,
                        help=f"optimiser steps (default: {TrainConfig.steps})")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr,
                        help=f"peak learning rate, after a warm-up and before a cosine decay "
                        f"(default: {TrainConfig.lr:g})")
    parser.add_argument("--weight-decay", type=float, default=1e-5)
    parser.add_argument("--loc-weight", type=float, default=1.0,
                        help="weight of the AVOL-Net localisation loss")
    parser.add_argument("--distractors", type=whole_number, default=TrainConfig.distractors,
                        metavar="N",
                        help="synthetic sounds of no image (noise bursts, tones) added to each "
                        "batch as negatives, so that unrelated sounds match nothing "
                        "(default: 8; 0: off)")
    parser.add_argument("--ema", type=float, default=TrainConfig.ema, metavar="DECAY",
                        help="evaluate and export an exponential moving average of the weights "
                        "with this decay; until the decay is reached (499 steps at 0.998) the "
                        f"plain mean of the steps so far (default: {TrainConfig.ema:g}; 0: off, "
                        "the last step's weights)")
    parser.add_argument("--channels", type=_channels, default=(), metavar="C1,C2,C3,C4",
                        help="the towers' block widths (default: the preset's)")
    parser.add_argument("--audio-channels", type=_channels, default=(), metavar="C1,C2,C3,C4",
                        help="the audio tower's block widths alone, where they differ from the "
                        "image tower's (default: those of --channels)")
    parser.add_argument("--lifter", type=whole_number, default=None, metavar="N",
                        help="cepstral coefficients the audio front end keeps per frame, which "
                        "smooths away the pitch harmonics (0: all; default: the preset's)")
    parser.add_argument("--top-db", type=_positive, default=None, metavar="DB",
                        help="dynamic range the audio front end keeps below each clip's peak; "
                        "quieter detail (a recording's noise floor) is cut to that level "
                        "(default: the preset's)")
    parser.add_argument("--pre-emphasis", type=_emphasis, default=None, metavar="A",
                        help="high-pass y[n] = x[n] - A x[n-1] in the audio front end, before "
                        "the --top-db floor, so that quiet consonants are not cut with the "
                        "noise (0: off; default: the preset's)")
    parser.add_argument("--pcen", action=argparse.BooleanOptionalAction, default=None,
                        help="per-channel energy normalisation instead of the log in the audio "
                        "front end: each band divided by its own smoothed past (steady noise "
                        "flattened, onsets lifted; default: the preset's)")
    parser.add_argument("--pitch-warp", type=_share, default=None, metavar="R",
                        help="in training, stretch each sound's pitch harmonics alone (the "
                        "formants kept) by a random factor within 1 +- R: voices differ in "
                        "pitch and vocal tract apart (0: off; default: the preset's)")
    parser.add_argument("--tempo", type=_tempo, default=None, metavar="X",
                        help="in training, stretch each sound's time axis by a random factor "
                        "between 1/X and X, its pitch kept: voices say a word faster or slower "
                        "(1: off; default: the preset's)")
    parser.add_argument("--frame-norm", action=argparse.BooleanOptionalAction, default=None,
                        help="feed the audio tower each frame less its mean over the bands as a "
                        "second channel: the spectral shape of quiet consonants as plain as a "
                        "vowel's (default: the preset's)")
    parser.add_argument("--audio-pooling", choices=["max", "meanmax"], default=None,
                        help="how the audio tower pools its last map: max (AVE-Net's global "
                        "max-pool) or meanmax (max and mean side by side, so the quiet parts of "
                        "a word count too; default: the preset's)")
    parser.add_argument("--view-weight", type=_weight, default=0.0, metavar="W",
                        help="weight of a loss asking two augmented views of each sound for the "
                        "same embedding (default: 0, off)")
    parser.add_argument("--neighbours", type=_share, default=0.0, metavar="SHARE",
                        help="InfoNCE only: give this share of each pair's target to the other "
                        "sounds of the batch whose images look alike to the image tower, so "
                        "that one word said by two voices is not pushed apart (default: 0, off)")
    parser.add_argument("--neighbour-temperature", type=_positive, default=0.1, metavar="T",
                        help="softmax temperature of those image similarities (default: 0.1)")
    parser.add_argument("--temperature", type=_temperature, default=0.0, metavar="T",
                        help="InfoNCE only: hold the softmax temperature at T instead of "
                        "learning it (a higher T pushes less on the other sounds of the batch, "
                        "some of which are the same word; default: 0, learned)")
    parser.add_argument("--equaliser", type=_weight, default=12.0, metavar="DB",
                        help="pass each training sound through a random smooth filter of at "
                        "most this many dB of boost or cut (another microphone or room; "
                        "default: 12; 0: off)")
    parser.add_argument("--reverb", type=_share, default=0.5, metavar="SHARE",
                        help="hear this share of the training sounds in a random room "
                        "(synthetic reverberation, RT60 0.1-0.6 s; default: 0.5; 0: off)")
    parser.add_argument("--mixstyle", type=_share, default=0.0, metavar="SHARE",
                        help="in this share of the batches, mix each sound's early audio "
                        "feature statistics with another's (MixStyle: made-up voices; "
                        "default: 0, off)")
    parser.add_argument("--head-dropout", type=_dropout, default=0.0, metavar="P",
                        help="in training, drop this share of the audio tower's pooled trunk "
                        "features before its head, so that the head leans on no few of them "
                        "(default: 0, off)")
    parser.add_argument("--freq-mask", type=whole_number, default=None, metavar="BINS",
                        help="in training, mask up to two bands of at most this many "
                        "spectrogram bins in each sound (SpecAugment; 0: off; default: an "
                        "eighth of the bins: " + ", ".join(
                            f"{p.audio.mask_widths[0]} for {name}" for name, p in PRESETS.items())
                        + ")")
    parser.add_argument("--time-mask", type=whole_number, default=None, metavar="FRAMES",
                        help="in training, mask up to two spans of at most this many frames in "
                        "each sound (SpecAugment; 0: off; default: a tenth of the frames: "
                        + ", ".join(f"{p.audio.mask_widths[1]} for {name}"
                                    for name, p in PRESETS.items()) + ")")
    parser.add_argument("--mil-alike", type=_share, default=0.0, metavar="COS",
                        help="from a quarter of the way in, leave out of the localisation loss "
                        "each rolled negative whose sound's source (the location of its own "
                        "frame that matches it best) looks like some location of the frame it "
                        "is rolled onto, above this cosine: most such pairs are no negative "
                        "(default: 0, off)")
    parser.add_argument("--clusters", type=whole_number, default=None, metavar="K",
                        help="from a quarter of the way in, group the training images into K "
                        "by the image tower (k-means, regrouped every --recluster-every steps) "
                        "and teach each sound the centre of its image's group, so that one "
                        "word said by other voices lands in one place (0: off; default: the "
                        "preset's: " + ", ".join(f"{p.clusters} for {name}"
                                                 for name, p in PRESETS.items()) + ")")
    parser.add_argument("--cluster-weight", type=_weight, default=1.0, metavar="W",
                        help="weight of that loss (default: 1)")
    parser.add_argument("--recluster-every", type=_steps, default=250, metavar="STEPS",
                        help="steps between two groupings of the training images (default: 250)")
    parser.add_argument("--teachers", type=_run_dirs, default=(), metavar="RUN[,RUN...]",
                        help="training run folders (of other seeds, say) whose averaged "
                        "similarities over each batch this run is also trained toward: one "
                        "model taught what an ensemble of them ranks (default: none)")
    parser.add_argument("--distill-weight", type=_weight, default=1.0, metavar="W",
                        help="weight of that loss (default: 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--eval-every", type=int, default=0,
                        help="steps between held-out evaluations (default: each epoch)")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (default: every core)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from models.training.loop import train

    if args.neighbours and args.loss != "infonce":
        raise SystemExit("avsearch train: --neighbours needs --loss infonce")
    if args.temperature and args.loss != "infonce":
        raise SystemExit("avsearch train: --temperature needs --loss infonce")

    config = TrainConfig(
        corpus=args.corpus, out=args.out, preset=args.preset, loss=args.loss, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        loc_weight=args.loc_weight, distractors=args.distractors, ema=args.ema,
        channels=args.channels, audio_channels=args.audio_channels,
        lifter=-1 if args.lifter is None else args.lifter,
        top_db=-1.0 if args.top_db is None else args.top_db, view_weight=args.view_weight,
        pre_emphasis=-1.0 if args.pre_emphasis is None else args.pre_emphasis,
        pcen=args.pcen, pitch_warp=-1.0 if args.pitch_warp is None else args.pitch_warp,
        tempo=args.tempo or 0.0, frame_norm=args.frame_norm, audio_pooling=args.audio_pooling or "",
        neighbours=args.neighbours, neighbour_temperature=args.neighbour_temperature,
        mil_alike=args.mil_alike, clusters=-1 if args.clusters is None else args.clusters,
        cluster_weight=args.cluster_weight,
        recluster_every=args.recluster_every,
        teachers=args.teachers, distill_weight=args.distill_weight,
        equaliser=args.equaliser, reverb=args.reverb, mixstyle=args.mixstyle,
        head_dropout=args.head_dropout,
        freq_mask=-1 if args.freq_mask is None else args.freq_mask,
        time_mask=-1 if args.time_mask is None else args.time_mask,
        temperature=args.temperature,
        seed=args.seed,
        device=args.device,
        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, threads=args.threads,
        command=shlex.join(["avsearch", *args.argv]),
    )
    summary = train(config, resume=args.resume, progress=not args.quiet)
    print(json.dumps(summary["final"], indent=2))
    print(f"wrote {args.out}/checkpoint.pt and {args.out}/run.json "
          f"({summary['steps']} steps, {summary['samples_per_s']} samples/s)")
    return 0
