"""The training loop: batches of pairs, the chosen loss plus AVOL's MIL, checkpoints, evaluation."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from models.errors import CorpusError
from models.evaluation.dataset import load_retrieval_set, load_scene_set, split_items
from models.evaluation.scores import localization_scores, retrieval_table
from models.item_media import InputSpec
from models.localization import Calibration, heat_maps
from models.manifest import read_manifest
from models.nn.losses import (
    alike_negatives,
    avc_loss,
    infonce_loss,
    mil_loss,
    neighbour_targets,
    roll_negatives,
)
from models.nn.model import AVModel
from models.presets import Preset, get_preset
from models.training.augment import augment_images, augment_waves
from models.training.clusters import Clusters, cluster_images, cluster_loss
from models.training.config import TrainConfig
from models.training.data import PairSet, load_pairs
from models.training.distractors import distractor_waves
from models.training.embed import embed_images, embed_waves, images_to_tensor
from models.training.teachers import (
    TeacherBank,
    distill_loss,
    embed_pairs,
    load_teachers,
    teacher_targets,
)

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
RUN_FILE = "run.json"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CorpusError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


AverageUpdate = Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]


def warm_ema(decay: float) -> AverageUpdate:
    """The ``multi_avg_fn`` of an exponential moving average whose decay is at most
    n / (n + 1) after n updates: the plain mean of the weights until the decay is reached (after
    decay / (1 - decay) steps, 499 at 0.998), the moving average from there on. A short run
    then exports the mean of its steps rather than its first step's weights."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               count: torch.Tensor) -> None:
        n = int(count)
        weight = 1.0 - min(decay, n / (n + 1))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # integer buffers (BatchNorm's batch count): the latest value
            for mine, theirs in zip(averaged, current, strict=True):
                mine.copy_(theirs)

    return update


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def configured_preset(config: TrainConfig) -> Preset:
    """The named preset with the run's overrides of widths and front end applied."""
    preset = get_preset(config.preset)
    if config.channels:
        preset = replace(preset, channels=tuple(config.channels))
    if config.audio_channels:
        preset = replace(preset, audio_channels=tuple(config.audio_channels))
    audio = preset.audio
    if config.lifter >= 0:
        audio = replace(audio, lifter=config.lifter)
    if config.top_db > 0:
        audio = replace(audio, top_db=config.top_db)
    if config.pre_emphasis >= 0:
        audio = replace(audio, pre_emphasis=config.pre_emphasis)
    if config.pcen is not None:
        audio = replace(audio, pcen=config.pcen)
    if config.pitch_warp >= 0:
        audio = replace(audio, pitch_warp=config.pitch_warp)
    if config.tempo >= 1.0:
        audio = replace(audio, max_tempo=config.tempo)
    if config.frame_norm is not None:
        audio = replace(audio, frame_norm=config.frame_norm)
    if config.audio_pooling:
        audio = replace(audio, pooling=config.audio_pooling)
    if config.clusters >= 0:
        preset = replace(preset, clusters=config.clusters)
    return replace(preset, audio=audio)


class Trainer:
    def __init__(
        self, config: TrainConfig, progress: bool = True, preset: Preset | None = None
    ) -> None:
        """``preset``: the resumed run's own (a preset's defaults may have changed since)."""
        self.config = config
        self.progress = progress
        self.preset = preset or configured_preset(config)
        self.spec = InputSpec(
            self.preset.image_size, self.preset.audio.sample_rate, self.preset.audio.window_s
        )
        self.out = Path(config.out)
        self.device = pick_device(config.device)
        self.gen = seed_everything(config.seed)
        self.model = AVModel(self.preset).to(self.device)
        self.model.audio.mixstyle.p = config.mixstyle
        self.model.audio.head_dropout = config.head_dropout
        self.model.audio.spec_augment.set_widths(config.freq_mask, config.time_mask)
        if config.temperature > 0:
            self.model.hold_temperature(config.temperature)
        # The averaged weights are the ones evaluated and exported; the raw ones are trained.
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=warm_ema(config.ema),
                          use_buffers=True)
            if config.ema > 0 else None
        )
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.step = 0
        self.history: list[dict] = []
        self.order: torch.Tensor | None = None  # this epoch's shuffled item order
        self.cursor = 0  # position in it
        self.clusters: Clusters | None = None  # the image groups the sounds are taught
        self.teachers = load_teachers(tuple(config.teachers), self.preset, self.device)
        self.bank: TeacherBank | None = None  # the teachers' embeddings of the training pairs

    # -- data ---------------------------------------------------------------------------------
    def load_data(self) -> None:
        items = read_manifest(self.config.corpus)
        # Off-screen scenes (the sound is of nothing shown) are no positive pair to learn from.
        train = [item for item in items
                 if item.split in (None, "train") and not item.extra.get("absent")]
        self.train_items = len(train)
        self.train_speakers = sorted(
            {str(i.extra["speaker"]) for i in train if "speaker" in i.extra}
        )
        self.pairs: PairSet = load_pairs(self.config.corpus, train, self.spec, self.progress)
        self.fit_groups_to(int(self.pairs.single.sum()))
        if self.teachers:
            self.bank = embed_pairs(self.teachers, self.pairs.images, self.pairs.waves)
            log.info("%d teachers embedded the %d training pairs", len(self.teachers),
                     len(self.pairs))
        held_out = split_items(items, self.config.eval_split)
        self.retrieval = load_retrieval_set(self.config.corpus, held_out, self.spec, self.progress)
        self.scenes = load_scene_set(self.config.corpus, held_out, self.spec, self.progress)
        log.info(
            "training on %d pairs; held out: %d images, %d sounds, %d scenes",
            len(self.pairs),
            len(self.retrieval.images),
            len(self.retrieval.waves),
            len(self.scenes.images),
        )

    def fit_groups_to(self, singles: int) -> None:
        """Refuse an explicit --clusters beyond the train split's single-object images; drop the
        preset's default grouping there instead (a small corpus of one's own), and say so."""
        if self.preset.clusters <= singles:
            return
        if self.config.clusters >= 0:
            raise CorpusError(f"--clusters {self.config.clusters}: the train split has only "
                              f"{singles} single-object images to group")
        log.warning("the train split has only %d single-object images: too few for the "
                    "preset's %d groups, so the sounds are trained without them",
                    singles, self.preset.clusters)
        self.preset = replace(self.preset, clusters=0)

    # -- one step -----------------------------------------------------------------------------
    def batch_loss(self, index: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        pairs, device = self.pairs, self.device
        single = pairs.single[index]
        images = augment_images(
            images_to_tensor(pairs.images[index]), single, self.gen, self.preset.hflip
        ).to(device)
        audio = self.preset.audio
        waves = pairs.waves[index]
        if self.config.distractors:
            extra = distractor_waves(self.config.distractors, audio.num_samples,
                                     audio.sample_rate, self.gen)
            waves = torch.cat([waves, extra])
        # Distractors go through the audio tower with the batch (one set of BatchNorm statistics).
        waves = augment_waves(waves, audio.sample_rate, self.gen,
                              equaliser_db=self.config.equaliser,
                              reverb_share=self.config.reverb).to(device)
        image_emb, grid, all_audio = self.model(images, waves)
        audio_emb, extra_emb = all_audio[: len(index)], all_audio[len(index) :]
        negatives = roll_negatives(len(index), self.gen).to(device)
        skip = None
        if self.config.mil_alike > 0 and self.step >= self.config.steps // 4:
            skip = alike_negatives(grid, audio_emb, negatives, self.config.mil_alike)
        loc = mil_loss(self.model, grid, audio_emb, negatives, extra_emb, skip)
        keep = single.to(device)
        if int(keep.sum()) >= 2:
            img, aud = image_emb[keep], audio_emb[keep]
            if self.config.loss == "infonce":
                targets = neighbour_targets(img, self.neighbour_weight(),
                                            self.config.neighbour_temperature)
                main = infonce_loss(self.model, img, aud, extra_emb, targets)
            else:
                main = avc_loss(self.model, img, aud, roll_negatives(len(img), self.gen).to(device),
                                extra_emb)
        else:
            main = torch.zeros((), device=device)
        loss = main + self.config.loc_weight * loc
        parts = {"main": main.item(), "mil": loc.item(),
                 "temperature": 1.0 / self.model.inverse_temperature().item()}
        if self.bank is not None and int(keep.sum()) >= 2:
            targets = teacher_targets(self.bank, index[single].to(device))
            taught = distill_loss(self.model.inverse_temperature(), image_emb[keep],
                                  audio_emb[keep], targets)
            loss = loss + self.config.distill_weight * taught
            parts["distill"] = taught.item()
        if self.clusters is not None and int(keep.sum()):
            grouped = cluster_loss(audio_emb[keep], self.clusters.centres,
                                   self.clusters.assignments[index][keep.cpu()])
            loss = loss + self.config.cluster_weight * grouped
            parts["clusters"] = grouped.item()
        if skip is not None:
            parts["mil_skipped"] = skip.float().mean().item()
        if self.config.view_weight > 0:
            views = self.view_loss(pairs.waves[index], audio_emb)
            loss = loss + self.config.view_weight * views
            parts["views"] = views.item()
        return loss, {"loss": loss.item(), **parts}

    def refresh_clusters(self) -> None:
        """Group the training images anew every ``recluster_every`` steps from a quarter of the
        way in (before that the image tower has not learnt what to group by)."""
        config = self.config
        start = config.steps // 4
        k = self.preset.clusters
        if (not k or self.step < start
                or (self.step - start) % config.recluster_every):
            return
        single = self.pairs.single
        found = cluster_images(self.model, self.pairs.images[single], k, self.gen)
        assignments = torch.full((len(self.pairs),), -1, dtype=torch.long)
        assignments[single] = found.assignments
        self.clusters = Clusters(assignments, found.centres)
        sizes = torch.bincount(found.assignments, minlength=k)
        log.info("step %d: %d image groups, %d-%d images each", self.step, k,
                 int(sizes.min()), int(sizes.max()))

    def neighbour_weight(self) -> float:
        """``neighbours``, ramped up from 0 over the first quarter of the run: the image tower's
        similarities mean little until it has trained a while."""
        ramp = max(1, self.config.steps // 4)
        return self.config.neighbours * min(1.0, self.step / ramp)

    def view_loss(self, waves: torch.Tensor, audio_emb: torch.Tensor) -> torch.Tensor:
        """1 - cosine between each sound's embedding and that of a second, independently
        augmented view of it (another speed, shift, gain, warp, masks): the augmentations stand
        in for other voices, and this asks the audio tower to ignore them directly."""
        audio = self.preset.audio
        second = self.model.audio(augment_waves(waves, audio.sample_rate, self.gen,
                                                equaliser_db=self.config.equaliser,
                                                reverb_share=self.config.reverb)
                                  .to(self.device))
        return (1.0 - (audio_emb * second).sum(dim=1)).mean()

    def train(self) -> dict:
        config = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        epoch_steps = max(1, len(self.pairs) // config.batch_size)
        eval_every = config.eval_every or epoch_steps
        if self.order is None:
            self.order = torch.randperm(len(self.pairs), generator=self.gen)
        bar = tqdm(
            total=config.steps,
            initial=self.step,
            desc="training",
            unit="step",
            disable=not self.progress,
        )
        started, seen = time.perf_counter(), 0
        while self.step < config.steps:
            if self.cursor + config.batch_size > len(self.order):
                self.order, self.cursor = torch.randperm(len(self.pairs), generator=self.gen), 0
            index = self.order[self.cursor : self.cursor + config.batch_size]
            self.cursor += config.batch_size
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(self.step, config)
            self.refresh_clusters()
            self.model.train()
            loss, parts = self.batch_loss(index)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.step += 1
            seen += len(index)
            rate = seen / (time.perf_counter() - started)
            bar.update(1)
            bar.set_postfix(
                loss=f"{parts['loss']:.3f}", mil=f"{parts['mil']:.3f}", samples_s=f"{rate:.0f}"
            )
            if self.step % eval_every == 0 or self.step == config.steps:
                self.record(parts, rate)
            if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                self.save_checkpoint()
        bar.close()
        return self.write_run(time.perf_counter() - started, seen)

    # -- evaluation, checkpoints --------------------------------------------------------------
    @property
    def exported(self) -> AVModel:
        """The weights that are evaluated and exported: the average when ``ema`` is on."""
        return self.model if self.ema is None else self.ema.module

    def evaluate(self) -> dict:
        model = self.exported
        model.eval()
        metrics: dict = {}
        if len(self.retrieval.images) and len(self.retrieval.waves):
            image_emb, _ = embed_images(model, self.retrieval.images)
            audio_emb = embed_waves(model, self.retrieval.waves)
            metrics["ndcg30"] = retrieval_table(
                image_emb, audio_emb, self.retrieval.image_labels, self.retrieval.audio_labels
            )
        if len(self.scenes.images):
            _, grids = embed_images(model, self.scenes.images)
            audio_emb = embed_waves(model, self.scenes.waves)
            heats = heat_maps(grids, audio_emb, self.calibration())
            metrics["localization"] = localization_scores(list(heats), self.scenes.boxes)
        return metrics

    def calibration(self) -> Calibration:
        avol = self.exported.avol
        return Calibration(avol.scale.item(), avol.bias.item())

    def record(self, parts: dict, rate: float) -> None:
        entry = {"step": self.step, **parts, "samples_per_s": rate, **self.evaluate()}
        self.history.append(entry)
        with (self.out / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        summary = entry.get("ndcg30", {})
        pointing = entry.get("localization", {}).get("pointing_accuracy")
        tqdm.write(
            f"step {self.step}: loss {parts['loss']:.3f} "
            + " ".join(f"{k} {v:.3f}" for k, v in summary.items())
            + (f" pointing {pointing:.3f}" if pointing is not None else ""),
        )

    def save_checkpoint(self) -> Path:
        path = self.out / CHECKPOINT
        state = {
            "model": self.exported.state_dict(),
            "trained_model": self.model.state_dict() if self.ema is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "config": self.config.to_json(),
            "preset": self.preset.to_json(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "order": self.order,
            "cursor": self.cursor,
            "clusters": (None if self.clusters is None
                         else {"assignments": self.clusters.assignments,
                               "centres": self.clusters.centres}),
            "history": self.history,
            "data": {"train_items": self.train_items, "train_speakers": self.train_speakers},
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def resume(self, state: dict) -> None:
        """Continue from a saved checkpoint: weights, optimiser, data order and random streams."""
        self.model.load_state_dict(state.get("trained_model") or state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.order, self.cursor = state["order"], state["cursor"]
        if state.get("clusters") is not None:
            self.clusters = Clusters(**state["clusters"])
        self.history = state.get("history", [])
        log.info("resumed from step %d of %s", self.step, self.out / CHECKPOINT)

    def write_run(self, elapsed: float, seen: int) -> dict:
        final = self.history[-1] if self.history else {}
        run = {
            "config": self.config.to_json(),
            "preset": self.preset.to_json(),
            "train_items": self.train_items,
            "train_speakers": self.train_speakers,
            "steps": self.step,
            "elapsed_s": round(elapsed, 1),
            "samples_per_s": round(seen / elapsed, 1) if elapsed else None,
            "device": str(self.device),
            "final": {k: v for k, v in final.items() if k in ("ndcg30", "localization")},
        }
        (self.out / RUN_FILE).write_text(json.dumps(run, indent=2))
        return run


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a run; returns the summary written to RUN_DIR/run.json.

    A resumed run keeps its saved configuration; only ``steps`` (to train longer) is taken
    from ``config``.
    """
    checkpoint = Path(config.out) / CHECKPOINT
    if resume and not checkpoint.is_file():
        raise CorpusError(f"--resume: no {CHECKPOINT} in {config.out}")
    if not resume and checkpoint.is_file():
        raise CorpusError(f"{config.out} already holds a run: pass --resume or another --out")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False) if resume else None
    if state is not None:
        # A run saved before distractors or the equaliser existed trained without them, and
        # goes on so.
        saved = {"distractors": 0, "equaliser": 0.0, **state["config"]}
        config = replace(TrainConfig(**saved), steps=config.steps, threads=config.threads)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    saved_preset = Preset.from_json(state["preset"]) if state is not None else None
    trainer = Trainer(config, progress, saved_preset)
    if state is not None:
        trainer.resume(state)
    trainer.load_data()
    return trainer.train()
