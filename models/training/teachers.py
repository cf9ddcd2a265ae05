"""Ensemble distillation: frozen runs of the same recipe teach a new run their batch similarities.

Several runs trained from different seeds, their embeddings concatenated, retrieve better on an
unseen voice than any one of them, but cost as many passes at query time. Here the ensemble
teaches one model instead. Each teacher embeds every training pair once, before training; on
each batch, every teacher ranks the batch's sounds for each image, its images for each sound,
and its other sounds for each sound; the ranks (softmax probabilities at the teacher's own
temperature) are averaged over the teachers, and the student, which sees augmented copies, is
trained toward them beside its own contrastive loss. Only the pairing is read, never a label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from models.errors import CorpusError
from models.nn.model import AVModel
from models.presets import Preset

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class BatchTargets:
    """Averaged teacher probabilities over the batch; each row sums to 1."""

    image_to_audio: torch.Tensor  # (B, B): image i over the batch's sounds
    audio_to_image: torch.Tensor  # (B, B): sound i over the batch's images
    audio_to_audio: torch.Tensor  # (B, B): sound i over the batch's other sounds (diagonal 0)


@dataclass(frozen=True)
class TeacherBank:
    """Every teacher's embeddings of every training pair, computed once before training."""

    images: torch.Tensor  # (T, N, D)
    audio: torch.Tensor  # (T, N, D)
    scales: torch.Tensor  # (T,): each teacher's inverse temperature


def load_teachers(run_dirs: tuple[str, ...], preset: Preset,
                  device: torch.device) -> list[AVModel]:
    """The teachers' trained weights, frozen, in eval mode (no augmentation, fixed BatchNorm).

    A teacher must read the same inputs as the student (frame size, sample rate, window); its
    widths and front end may differ, since only its similarities are used.
    """
    teachers = []
    for run_dir in run_dirs:
        path = Path(run_dir) / CHECKPOINT
        if not path.is_file():
            raise CorpusError(f"--teachers: no {CHECKPOINT} in {run_dir}: "
                              "is it a training run folder?")
        state = torch.load(path, map_location="cpu", weights_only=False)
        theirs = Preset.from_json(state["preset"])
        mine = (preset.image_size, preset.audio.sample_rate, preset.audio.window_s)
        if (theirs.image_size, theirs.audio.sample_rate, theirs.audio.window_s) != mine:
            raise CorpusError(
                f"--teachers: {run_dir} was trained on {theirs.image_size} px frames and "
                f"{theirs.audio.window_s} s at {theirs.audio.sample_rate} Hz; this run reads "
                f"{preset.image_size} px and {preset.audio.window_s} s at "
                f"{preset.audio.sample_rate} Hz"
            )
        model = AVModel(theirs)
        model.load_state_dict(state["model"])  # a half-precision copy is cast back
        model.requires_grad_(False)
        teachers.append(model.to(device).eval())
    return teachers


def _masked_self(similarity: torch.Tensor) -> torch.Tensor:
    """The diagonal (each item against itself) pushed out of every softmax (last two axes)."""
    size = similarity.shape[-1]
    eye = torch.eye(size, dtype=torch.bool, device=similarity.device)
    return similarity.masked_fill(eye, -1e4)


@torch.no_grad()
def embed_pairs(teachers: list[AVModel], images: torch.Tensor, waves: torch.Tensor,
                batch: int = 256) -> TeacherBank:
    """The teachers' embeddings of the training pairs as they are (uint8 frames (N, S, S, 3),
    waves (N, samples)), unaugmented: the student learns from augmented copies toward what the
    teachers make of the clean ones, at no cost per step."""
    device = next(teachers[0].parameters()).device
    image_bank, audio_bank = [], []
    for teacher in teachers:
        image_rows, audio_rows = [], []
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch].to(device)
            image_rows.append(teacher.image(chunk.permute(0, 3, 1, 2).float() / 255.0)[0])
            audio_rows.append(teacher.audio(waves[start : start + batch].to(device)))
        image_bank.append(torch.cat(image_rows))
        audio_bank.append(torch.cat(audio_rows))
    scales = torch.stack([teacher.inverse_temperature() for teacher in teachers])
    return TeacherBank(torch.stack(image_bank), torch.stack(audio_bank), scales)


def teacher_targets(bank: TeacherBank, index: torch.Tensor) -> BatchTargets:
    """Each teacher's softmax over the batch of pairs ``index``, averaged over the teachers."""
    images, audio = bank.images[:, index], bank.audio[:, index]  # (T, B, D)
    scales = bank.scales.view(-1, 1, 1)
    cross = scales * images @ audio.transpose(1, 2)  # (T, B, B)
    same = _masked_self(scales * audio @ audio.transpose(1, 2))
    return BatchTargets(cross.softmax(dim=2).mean(dim=0),
                        cross.transpose(1, 2).softmax(dim=2).mean(dim=0),
                        same.softmax(dim=2).mean(dim=0))


def distill_loss(scale: torch.Tensor, image_emb: torch.Tensor, audio_emb: torch.Tensor,
                 targets: BatchTargets) -> torch.Tensor:
    """Cross-entropy of the student's softmaxes (at its own temperature) against the teachers':
    the mean of the two cross-modal directions, plus sound against sound."""
    cross = scale * image_emb @ audio_emb.T
    same = _masked_self(scale * audio_emb @ audio_emb.T)

    def soft_ce(logits: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        return -(probabilities * logits.log_softmax(dim=1)).sum(dim=1).mean()

    return (0.5 * (soft_ce(cross, targets.image_to_audio)
                   + soft_ce(cross.T, targets.audio_to_image))
            + soft_ce(same, targets.audio_to_audio))
