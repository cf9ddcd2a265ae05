"""Training objectives: the paper's AVC classification and in-batch InfoNCE, plus AVOL's MIL.

Negatives are made by pairing each frame with the audio of another item in the batch (a random
non-zero roll), so no label is ever read: only which image came with which sound.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from models.nn.model import AVModel


def roll_negatives(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices pairing item i with the audio of item (i + s) mod batch, for one random s != 0."""
    shift = int(torch.randint(1, batch, (1,), generator=generator)) if batch > 1 else 0
    return (torch.arange(batch) + shift) % batch


def avc_loss(model: AVModel, image_emb, audio_emb, negatives,
             extra_audio: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the AVE head on the positives and as many rolled negatives (plus each
    sound of ``extra_audio`` against an image, as a negative)."""
    positive = model.ave(image_emb, audio_emb)
    negative = model.ave(image_emb, audio_emb[negatives])
    if extra_audio is not None and len(extra_audio):
        count = min(len(extra_audio), len(image_emb))
        negative = torch.cat([negative, model.ave(image_emb[:count], extra_audio[:count])])
    logits = torch.cat([positive, negative])
    targets = torch.cat(
        [torch.ones(len(positive), dtype=torch.long), torch.zeros(len(negative), dtype=torch.long)]
    ).to(logits.device)
    return F.cross_entropy(logits, targets)


def neighbour_targets(image_emb: torch.Tensor, weight: float,
                      temperature: float) -> torch.Tensor:
    """Soft InfoNCE targets: each pair's own partner, mixed (by ``weight``) with a softmax over
    how alike the batch's images are to its image.

    In-batch InfoNCE treats every other pair as a negative, so two recordings of the same word
    by different voices are pushed apart whenever they share a batch. The image tower separates
    what it sees early and well, so its similarities, learnt from the pairing alone (no label
    is read), say which other sounds in the batch belong with an image. Row i is the target of
    image i over the batch's sounds, and of sound i over the batch's images.
    """
    with torch.no_grad():
        eye = torch.eye(len(image_emb), device=image_emb.device)
        if weight <= 0:
            return eye
        alike = (image_emb @ image_emb.T / temperature).softmax(dim=1)
        return (1.0 - weight) * eye + weight * alike


def infonce_loss(model: AVModel, image_emb, audio_emb,
                 extra_audio: torch.Tensor | None = None,
                 targets: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric in-batch contrastive loss (CLIP): each image against every sound and back.
    ``extra_audio`` are sounds of no image: more columns for every image, never a target.
    ``targets``: a batch x batch matrix of target probabilities (rows sum to 1), for instance
    from :func:`neighbour_targets`; default: each pair's own partner."""
    scale = model.inverse_temperature()
    logits = scale * image_emb @ audio_emb.T
    if targets is None:
        targets = torch.arange(len(logits), device=logits.device)
    image_targets = targets
    image_to_audio = logits
    if extra_audio is not None and len(extra_audio):
        image_to_audio = torch.cat([logits, scale * image_emb @ extra_audio.T], dim=1)
        if targets.dim() == 2:
            image_targets = F.pad(targets, (0, len(extra_audio)))
    return 0.5 * (F.cross_entropy(image_to_audio, image_targets)
                  + F.cross_entropy(logits.T, targets))


def alike_negatives(grid: torch.Tensor, audio_emb: torch.Tensor, negatives: torch.Tensor,
                    threshold: float) -> torch.Tensor:
    """(B,) bool: the rolled negatives that are probably no negative at all.

    A sound rolled onto another frame is taken to come from nothing in it, yet its source is
    often shown there too (a scene of four digits holds the spoken digit of another pair four
    times in ten). Each sound's own frame says what makes it: the grid location that matches it
    best. When that location's feature matches some location of the frame the sound is rolled
    onto with a cosine above ``threshold``, the pair is flagged. Only the pairing is read,
    never a label.
    """
    with torch.no_grad():
        flat = grid.flatten(2)  # (B, D, L)
        located = torch.einsum("bdl,bd->bl", flat, audio_emb).argmax(dim=1)
        source = flat[torch.arange(len(flat), device=flat.device), :, located]  # (B, D)
        alike = torch.einsum("bdl,bd->bl", flat, source[negatives]).amax(dim=1)
        return alike > threshold


def mil_loss(model: AVModel, grid, audio_emb, negatives,
             extra_audio: torch.Tensor | None = None,
             skip: torch.Tensor | None = None) -> torch.Tensor:
    """AVOL-Net: binary cross-entropy of the max-over-locations score, positives and negatives
    (each sound of ``extra_audio`` against a frame is one more negative). ``skip`` (B,) bool:
    rolled negatives left out, for instance those :func:`alike_negatives` flags."""
    positive = model.avol(grid, audio_emb)
    negative = model.avol(grid, audio_emb[negatives])
    if skip is not None:
        negative = negative[~skip]
    if extra_audio is not None and len(extra_audio):
        count = min(len(extra_audio), len(grid))
        negative = torch.cat([negative, model.avol(grid[:count], extra_audio[:count])])
    logits = torch.cat([positive, negative])
    targets = torch.cat([torch.ones_like(positive), torch.zeros_like(negative)])
    return F.binary_cross_entropy_with_logits(logits, targets)
