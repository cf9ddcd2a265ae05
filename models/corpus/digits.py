"""The AV-digits corpus: MNIST handwriting paired with FSDD spoken digits (DESIGN.md, "Data").

Three kinds of items, each in every split present:

- ``pair``: an image of a digit and a recording of the same spoken digit. Within a split, each
  digit gets max(#images, #recordings) pairs, cycling through both (shuffled) lists so every image
  and every recording is used at least once.
- ``scene``: a 56x56 image made of a 2x2 grid of four different digits, one of which is spoken;
  the spoken cell's box is the ground truth for localisation.
- ``clip``: a 1 s mp4 whose frame is a digit (112x112) and whose sound is that digit spoken.

The labels decide the pairing (as co-occurrence in a video would) and are written to the manifest
for evaluation only. The build goes to ``OUT.tmp-<pid>`` and is renamed into place at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from models.corpus.clips import write_clip
from models.corpus.sources import MnistImages, Recording, find_recordings, load_mnist, read_wav
from models.errors import CorpusError
from models.manifest import Item, write_manifest

SPLITS = ("train", "val", "test")
DIGITS = tuple(range(10))
CELL = 28  # MNIST image side, and the side of one scene cell
CLIP_SIDE = 112
CLIP_SECONDS = 1.0
CLIP_FPS = 25

# One random stream per stage, so that e.g. asking for more scenes leaves the pairs unchanged.
_STAGE_SPLIT, _STAGE_PAIRS, _STAGE_SCENES, _STAGE_CLIPS, _STAGE_ABSENT, _STAGE_VAL = range(1, 7)

NOTICE = """\
# Notice

This corpus was made by `avsearch corpus digits` from two public data sets. Their attribution
and licences apply to the media in this folder (`audio/`, `images/`, `scenes/`, `clips/`).

- Spoken digits (`audio/`, and the sound of `scenes/` and `clips/` items): Free Spoken Digit
  Dataset (FSDD), Jakobovski et al., https://github.com/Jakobovski/free-spoken-digit-dataset.
  Licence: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).
- Handwritten digits (`images/`, `scenes/`, and the frames of `clips/`): MNIST, Yann LeCun,
  Corinna Cortes and Christopher J. C. Burges, http://yann.lecun.com/exdb/mnist/.
  Licence: CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/).

Changes: recordings are copied unchanged (for clips, resampled to 16 kHz and padded to 1 s);
images are written as PNG, composed into 2x2 scenes, or upscaled to 112x112 video frames.
This corpus is shared under the same licences (ShareAlike).

## How it was made

{parameters}
"""


@dataclass(frozen=True)
class DigitsCorpusConfig:
    """What to build; see ``avsearch corpus digits --help`` for the meaning of each field."""

    source: Path
    out: Path
    test_speakers: tuple[str, ...] = ()
    test_image_share: float = 0.2
    val_share: float = 0.0
    scenes: int = 0
    absent_share: float = 0.25
    clips: int = 0
    split: str | None = None
    seed: int = 0
    max_images: int | None = None
    max_takes: int | None = None
    speakers: tuple[str, ...] | None = None
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> None:
        if self.split is not None and self.split not in SPLITS:
            raise CorpusError(f"--split must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if self.split is not None and self.test_speakers:
            raise CorpusError(
                "--split marks every item with one split and cannot be combined with "
                "--test-speakers (which makes a train and a test split): use one of them"
            )
        if not 0.0 <= self.absent_share < 1.0:
            raise CorpusError(f"--absent-share must be in [0, 1), not {self.absent_share}")
        if not 0.0 <= self.val_share < 1.0:
            raise CorpusError(f"--val-share must be in [0, 1), not {self.val_share}")
        if self.val_share and self.split is not None:
            raise CorpusError("--val-share cannot be combined with --split (one split for all)")
        if not 0.0 <= self.test_image_share < 1.0:
            raise CorpusError(f"--test-image-share must be in [0, 1), not {self.test_image_share}")
        for name, value in (("--scenes", self.scenes), ("--clips", self.clips)):
            if value < 0:
                raise CorpusError(f"{name} must be 0 or more, not {value}")
        for name, value in (("--max-images", self.max_images), ("--max-takes", self.max_takes)):
            if value is not None and value < 1:
                raise CorpusError(f"{name} must be 1 or more, not {value}")
        if self.seed < 0:
            raise CorpusError(f"--seed must be 0 or more, not {self.seed}")
        if self.speakers is not None and not self.speakers:
            raise CorpusError("--speakers names no speaker")


@dataclass
class CorpusSummary:
    """What a build wrote: the folder, item counts per split and kind, speakers per split."""

    out: Path
    manifest: Path
    counts: dict[str, dict[str, int]]
    speakers: dict[str, list[str]]
    images: int = 0
    recordings: int = 0

    @property
    def total(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.counts.values())

    def describe(self) -> str:
        all_speakers = sorted({s for names in self.speakers.values() for s in names})
        lines = [f"wrote an AV-digits corpus of {self.total} items to {self.out}"]
        for split, kinds in self.counts.items():
            kinds_text = ", ".join(f"{n} {kind}s" for kind, n in kinds.items())
            speakers = ", ".join(self.speakers.get(split, []))
            lines.append(f"  {split}: {kinds_text} (speakers: {speakers})")
        lines.append(
            f"  {self.images} images, {self.recordings} recordings from "
            f"{len(all_speakers)} speakers ({', '.join(all_speakers)})"
        )
        lines.append(f"  manifest: {self.manifest}")
        lines.append(f"  licences: {self.out / 'NOTICE.md'}")
        return "\n".join(lines)


@dataclass
class _SplitPool:
    """The images and recordings of one split, by digit."""

    images: dict[int, list[int]] = field(default_factory=dict)
    recordings: dict[int, list[Recording]] = field(default_factory=dict)


@dataclass
class _Plan:
    items: list[Item]
    image_indices: list[int]
    recordings: list[Recording]
    scenes: list[tuple[str, np.ndarray]]  # (relative path, 56x56 image)
    clips: list[tuple[str, int, Recording]]  # (relative path, mnist index, recording)
    counts: dict[str, dict[str, int]]
    speakers: dict[str, list[str]]


def _rng(seed: int, *stage: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stage])


def _image_path(index: int) -> str:
    return f"images/mnist-{index:05d}.png"


def _audio_path(recording: Recording) -> str:
    return f"audio/{recording.name}"


def _select_recordings(config: DigitsCorpusConfig, recordings: list[Recording]) -> list[Recording]:
    known = sorted({r.speaker for r in recordings})
    if config.speakers is not None:
        unknown = [s for s in config.speakers if s not in known]
        if unknown:
            raise CorpusError(
                f"unknown speaker {', '.join(unknown)} in --speakers; "
                f"known speakers: {', '.join(known)}"
            )
        recordings = [r for r in recordings if r.speaker in config.speakers]
    unknown = [s for s in config.test_speakers if s not in known]
    if unknown:
        raise CorpusError(
            f"unknown test speaker {', '.join(unknown)}; known speakers: {', '.join(known)}"
        )
    if config.speakers is not None:
        outside = [s for s in config.test_speakers if s not in config.speakers]
        if outside:
            raise CorpusError(
                f"test speaker {', '.join(outside)} is not among --speakers "
                f"({', '.join(config.speakers)})"
            )
    if config.max_takes is not None:
        recordings = [r for r in recordings if r.take < config.max_takes]
    if not recordings:
        raise CorpusError("no recordings left after applying --speakers and --max-takes")
    chosen = {r.speaker for r in recordings}
    if config.test_speakers and chosen <= set(config.test_speakers):
        raise CorpusError(
            f"--test-speakers {', '.join(config.test_speakers)} leaves no speaker for training "
            f"(speakers: {', '.join(sorted(chosen))})"
        )
    return recordings


def _split_pools(
    config: DigitsCorpusConfig, mnist: MnistImages, recordings: list[Recording]
) -> dict[str, _SplitPool]:
    image_split = ["train"] * len(mnist)
    if config.split is not None:
        image_split = [config.split] * len(mnist)
    elif config.test_speakers and config.test_image_share > 0:
        rng = _rng(config.seed, _STAGE_SPLIT)
        for digit in DIGITS:
            indices = np.flatnonzero(mnist.labels == digit)
            count = int(round(config.test_image_share * indices.size))
            if indices.size >= 2:  # keep each digit present on both sides of the split
                count = min(max(count, 1), indices.size - 1)
            for index in rng.choice(indices, size=count, replace=False):
                image_split[int(index)] = "test"

    def recording_split(recording: Recording) -> str:
        if config.split is not None:
            return config.split
        return "test" if recording.speaker in config.test_speakers else "train"

    recording_splits = [recording_split(r) for r in recordings]
    if config.val_share > 0:
        _carve_val(config, mnist, recordings, image_split, recording_splits)

    pools: dict[str, _SplitPool] = {}
    for index, split in enumerate(image_split):
        pool = pools.setdefault(split, _SplitPool())
        pool.images.setdefault(int(mnist.labels[index]), []).append(index)
    for recording, split in zip(recordings, recording_splits, strict=True):
        pool = pools.setdefault(split, _SplitPool())
        pool.recordings.setdefault(recording.digit, []).append(recording)

    ordered = {split: pools[split] for split in SPLITS if split in pools}
    for split, pool in ordered.items():
        speakers = sorted({r.speaker for rs in pool.recordings.values() for r in rs})
        for digit in DIGITS:
            if not pool.images.get(digit):
                raise CorpusError(
                    f"the {split} split has no image of digit {digit} "
                    f"({sum(map(len, pool.images.values()))} images in that split): "
                    "use more images (--max-images) or another "
                    + ("--val-share" if split == "val" else "--test-image-share")
                )
            if not pool.recordings.get(digit):
                raise CorpusError(
                    f"the {split} split has no recording of digit {digit} "
                    f"(speakers: {', '.join(speakers) or 'none'})"
                )
    return ordered


def _carve_val(
    config: DigitsCorpusConfig,
    mnist: MnistImages,
    recordings: list[Recording],
    image_split: list[str],
    recording_splits: list[str],
) -> None:
    """Move a share of the held-out split's images and recordings (of the train split when there
    is no test split) into ``val``, in place, each digit kept on both sides.

    ``val`` is for fitting what is chosen after training (calibration), on data that training
    never saw, apart from the data the figures are measured on. It has its own random stream,
    so the other splits' contents stay those of a build without it.
    """
    source = "test" if "test" in recording_splits else "train"
    rng = _rng(config.seed, _STAGE_VAL)

    def carve(candidates: list[int]) -> list[int]:
        count = int(round(config.val_share * len(candidates)))
        if len(candidates) >= 2:
            count = min(max(count, 1), len(candidates) - 1)
        else:
            count = 0
        return [candidates[i] for i in rng.choice(len(candidates), size=count, replace=False)]

    for digit in DIGITS:
        images = [i for i in np.flatnonzero(mnist.labels == digit) if image_split[i] == source]
        for index in carve([int(i) for i in images]):
            image_split[index] = "val"
        spoken = [i for i, r in enumerate(recordings)
                  if r.digit == digit and recording_splits[i] == source]
        for index in carve(spoken):
            recording_splits[index] = "val"


def _plan(config: DigitsCorpusConfig, mnist: MnistImages, recordings: list[Recording]) -> _Plan:
    pools = _split_pools(config, mnist, recordings)
    items: list[Item] = []
    counts: dict[str, dict[str, int]] = {split: {} for split in pools}
    speakers = {
        split: sorted({r.speaker for rs in pool.recordings.values() for r in rs})
        for split, pool in pools.items()
    }
    used_images: set[int] = set()
    used_recordings: dict[str, Recording] = {}

    def use(index: int, recording: Recording) -> None:
        used_images.add(index)
        used_recordings[recording.name] = recording

    # Pairs: every image and every recording of a split at least once.
    number = 0
    for split_number, (split, pool) in enumerate(pools.items()):
        rng = _rng(config.seed, _STAGE_PAIRS, split_number)
        rows: list[tuple[int, Recording]] = []
        for digit in DIGITS:
            images = [pool.images[digit][i] for i in rng.permutation(len(pool.images[digit]))]
            spoken = [
                pool.recordings[digit][i] for i in rng.permutation(len(pool.recordings[digit]))
            ]
            for k in range(max(len(images), len(spoken))):
                rows.append((images[k % len(images)], spoken[k % len(spoken)]))
        for row in rng.permutation(len(rows)):
            index, recording = rows[row]
            use(index, recording)
            items.append(
                Item(
                    id=f"pair-{number:05d}",
                    image=_image_path(index),
                    audio=_audio_path(recording),
                    labels=(str(recording.digit),),
                    split=split,
                    extra={
                        "kind": "pair",
                        "speaker": recording.speaker,
                        "mnist_index": index,
                        "take": recording.take,
                    },
                )
            )
            number += 1
        counts[split]["pair"] = len(rows)

    # Scenes: four different digits in a 2x2 grid, one of them spoken; or, for a share of them
    # (`absent_share`), a fifth digit spoken that none of the four cells shows (off-screen).
    # Absence is drawn from its own random stream, so the on-screen scenes stay the same.
    scenes: list[tuple[str, np.ndarray]] = []
    number = 0
    for split_number, (split, pool) in enumerate(pools.items()):
        rng = _rng(config.seed, _STAGE_SCENES, split_number)
        absent_rng = _rng(config.seed, _STAGE_ABSENT, split_number)
        for _ in range(config.scenes):
            digits = [int(d) for d in rng.choice(len(DIGITS), size=4, replace=False)]
            indices = [int(rng.choice(pool.images[d])) for d in digits]
            cell = int(rng.integers(4))
            candidates = pool.recordings[digits[cell]]
            recording = candidates[int(rng.integers(len(candidates)))]
            absent = bool(absent_rng.random() < config.absent_share)
            if absent:
                unseen = [d for d in range(len(DIGITS))
                          if d not in digits and pool.recordings.get(d)]
                spoken = unseen[int(absent_rng.integers(len(unseen)))]
                candidates = pool.recordings[spoken]
                recording = candidates[int(absent_rng.integers(len(candidates)))]
            canvas = np.zeros((2 * CELL, 2 * CELL), dtype=np.uint8)
            for position, index in enumerate(indices):
                row, col = divmod(position, 2)
                canvas[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL] = mnist.images[
                    index
                ]
            row, col = divmod(cell, 2)
            path = f"scenes/scene-{number:05d}.png"
            scenes.append((path, canvas))
            used_recordings[recording.name] = recording
            extra: dict = {"kind": "scene", "speaker": recording.speaker, "grid": [2, 2]}
            if absent:
                extra.update({"absent": True, "cells": [str(d) for d in digits]})
            else:
                extra.update({
                    "cell": cell,
                    "cells": [str(d) for d in digits],
                    "box": [col * CELL, row * CELL, (col + 1) * CELL, (row + 1) * CELL],
                })
            extra.update({"mnist_indices": indices, "take": recording.take})
            items.append(
                Item(
                    id=f"scene-{number:05d}",
                    image=path,
                    audio=_audio_path(recording),
                    labels=(str(spoken if absent else digits[cell]),),
                    split=split,
                    extra=extra,
                )
            )
            number += 1
        if config.scenes:
            counts[split]["scene"] = config.scenes

    # Clips: one digit on screen, the same digit spoken.
    clips: list[tuple[str, int, Recording]] = []
    number = 0
    for split_number, (split, pool) in enumerate(pools.items()):
        rng = _rng(config.seed, _STAGE_CLIPS, split_number)
        for _ in range(config.clips):
            digit = int(rng.integers(len(DIGITS)))
            index = int(rng.choice(pool.images[digit]))
            candidates = pool.recordings[digit]
            recording = candidates[int(rng.integers(len(candidates)))]
            path = f"clips/clip-{number:05d}.mp4"
            clips.append((path, index, recording))
            items.append(
                Item(
                    id=f"clip-{number:05d}",
                    video=path,
                    time=CLIP_SECONDS / 2,
                    labels=(str(digit),),
                    split=split,
                    extra={
                        "kind": "clip",
                        "speaker": recording.speaker,
                        "mnist_index": index,
                        "take": recording.take,
                    },
                )
            )
            number += 1
        if config.clips:
            counts[split]["clip"] = config.clips

    return _Plan(
        items=items,
        image_indices=sorted(used_images),
        recordings=sorted(used_recordings.values(), key=lambda r: r.name),
        scenes=scenes,
        clips=clips,
        counts=counts,
        speakers=speakers,
    )


def _check_out(config: DigitsCorpusConfig) -> None:
    out = config.out
    source = config.source.resolve()
    if source.is_relative_to(out.resolve()):
        raise CorpusError(f"--out {out} is (or contains) the source folder {config.source}")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise CorpusError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not config.overwrite:
            raise CorpusError(
                f"--out {out} is not empty: choose a new folder or pass --overwrite to replace it"
            )


def _parameters(config: DigitsCorpusConfig) -> str:
    rows: list[tuple[str, Any]] = [
        ("test speakers", ", ".join(config.test_speakers) or "none"),
        ("test image share", config.test_image_share if config.test_speakers else "n/a"),
        ("split", config.split or ("train/test" if config.test_speakers else "train")),
        ("val share (of the test split, else of train)", config.val_share),
        ("scenes per split", config.scenes),
        ("share of them with the spoken digit off-screen", config.absent_share),
        ("clips per split", config.clips),
        ("seed", config.seed),
        ("max images", config.max_images if config.max_images is not None else "all"),
        ("max takes", config.max_takes if config.max_takes is not None else "all"),
        ("speakers", ", ".join(config.speakers) if config.speakers else "all"),
    ]
    return "\n".join(f"- {name}: {value}" for name, value in rows)


def _write(folder: Path, config: DigitsCorpusConfig, mnist: MnistImages, plan: _Plan) -> Path:
    for sub in (
        ("images", "audio")
        + (("scenes",) if plan.scenes else ())
        + (("clips",) if plan.clips else ())
    ):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    total = len(plan.image_indices) + len(plan.recordings) + len(plan.scenes) + len(plan.clips)
    with tqdm(
        total=total,
        desc="digits corpus",
        unit="file",
        file=sys.stderr,
        disable=not config.progress,
    ) as bar:
        for index in plan.image_indices:
            Image.fromarray(mnist.images[index]).save(folder / _image_path(index), format="PNG")
            bar.update()
        for recording in plan.recordings:
            shutil.copyfile(recording.path, folder / _audio_path(recording))
            bar.update()
        for path, canvas in plan.scenes:
            Image.fromarray(canvas).save(folder / path, format="PNG")
            bar.update()
        scale = CLIP_SIDE // CELL
        for path, index, recording in plan.clips:
            grey = np.kron(mnist.images[index], np.ones((scale, scale), dtype=np.uint8))
            frame = np.repeat(grey[:, :, None], 3, axis=2)
            audio, rate = read_wav(recording.path)
            write_clip(folder / path, frame, audio, rate, CLIP_SECONDS, fps=CLIP_FPS)
            bar.update()
    (folder / "NOTICE.md").write_text(
        NOTICE.format(parameters=_parameters(config)), encoding="utf-8"
    )
    return write_manifest(folder, plan.items)


def build_digits_corpus(config: DigitsCorpusConfig) -> CorpusSummary:
    """Build the corpus described by ``config`` into ``config.out``; raise CorpusError on bad input.

    Nothing is left behind on failure: the corpus is written to ``OUT.tmp-<pid>`` and renamed into
    place (replacing a previous corpus only with ``overwrite``).
    """
    config.validate()
    _check_out(config)
    mnist = load_mnist(config.source, config.max_images)
    recordings = _select_recordings(config, find_recordings(config.source))
    plan = _plan(config, mnist, recordings)

    out = config.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    old = out.parent / f"{out.name}.old-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write(tmp, config, mnist, plan)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return CorpusSummary(
        out=out,
        manifest=out / "manifest.jsonl",
        counts=plan.counts,
        speakers=plan.speakers,
        images=len(plan.image_indices),
        recordings=len(plan.recordings),
    )
