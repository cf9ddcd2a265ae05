"""Cross-modal clustering: what the image tower groups together, taught to the audio tower.

In-batch contrastive learning pulls each sound toward one image only, its own partner. The
image tower separates what it sees early and well, so its groups of training images (found by
k-means on its embeddings, from the pairing alone: no label is read) say which sounds belong
together across voices. Each sound is then asked to be nearest the centre of its own image's
group (a cosine softmax over the centres), the cross-modal deep clustering of Alwassel et al.
(2020) in its simplest form. The centres are fixed between two clusterings, so only the audio
tower learns from this loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from models.nn.model import AVModel
from models.training.embed import images_to_tensor

CLUSTER_TEMPERATURE = 0.1


@dataclass(frozen=True)
class Clusters:
    assignments: torch.Tensor  # long (N,): each training pair's group, by its image
    centres: torch.Tensor  # float (K, D), unit length


def spherical_kmeans(
    points: torch.Tensor, k: int, gen: torch.Generator, iterations: int = 30, restarts: int = 5
) -> Clusters:
    """K-means on the unit sphere (cosine) on unit-length ``points`` (N, D): the best of
    ``restarts`` runs, each seeded by k-means++ (one run alone often merges two groups)."""
    if not 0 < k <= len(points):
        raise ValueError(f"cannot make {k} clusters of {len(points)} points")
    best, best_fit = None, -float("inf")
    for _ in range(restarts):
        found = _kmeans_once(points, k, gen, iterations)
        fit = float((points * found.centres[found.assignments]).sum())
        if fit > best_fit:
            best, best_fit = found, fit
    return best


def _kmeans_once(points: torch.Tensor, k: int, gen: torch.Generator, iterations: int) -> Clusters:
    first = int(torch.randint(len(points), (1,), generator=gen))
    centres = [points[first]]
    nearest = 1.0 - points @ points[first]
    for _ in range(1, k):
        weights = nearest.clamp(min=0.0) + 1e-12
        pick = int(torch.multinomial(weights, 1, generator=gen))
        centres.append(points[pick])
        nearest = torch.minimum(nearest, 1.0 - points @ points[pick])
    centre = torch.stack(centres)
    for _ in range(iterations):
        assignments = (points @ centre.T).argmax(dim=1)
        sums = torch.zeros_like(centre).index_add_(0, assignments, points)
        empty = sums.norm(dim=1) == 0
        sums[empty] = centre[empty]  # an empty group keeps its centre
        centre = F.normalize(sums, dim=1)
    return Clusters((points @ centre.T).argmax(dim=1), centre)


@torch.no_grad()
def cluster_images(
    model: AVModel, images: torch.Tensor, k: int, gen: torch.Generator, batch: int = 256
) -> Clusters:
    """Groups of the uint8 (N, S, S, 3) training images by the image tower's embeddings."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    embeddings = torch.cat([
        model.image(images_to_tensor(images[start : start + batch]).to(device))[0].cpu()
        for start in range(0, len(images), batch)
    ])
    model.train(was_training)
    return spherical_kmeans(F.normalize(embeddings, dim=1), k, gen)


def cluster_loss(audio_emb: torch.Tensor, centres: torch.Tensor,
                 assignments: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each sound's cosine softmax over the centres against its image's group."""
    logits = audio_emb @ centres.to(audio_emb.device).T / CLUSTER_TEMPERATURE
    return F.cross_entropy(logits, assignments.to(audio_emb.device))
