"""Embedding held-out media with the torch model (training-time evaluation and export checks)."""

from __future__ import annotations

import numpy as np
import torch

from models.nn.model import AVModel


def images_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]: what the exported graph does first."""
    tensor = torch.as_tensor(images)
    return tensor.permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def embed_images(model: AVModel, images: np.ndarray, batch: int = 256):
    """-> (embeddings (N, D), grids (N, h, w, D)) as numpy."""
    device = next(model.parameters()).device
    embeddings, grids = [], []
    for start in range(0, len(images), batch):
        chunk = images_to_tensor(images[start : start + batch]).to(device)
        embedding, grid = model.image(chunk)
        embeddings.append(embedding.cpu().numpy())
        grids.append(grid.permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(embeddings), np.concatenate(grids)


@torch.no_grad()
def embed_waves(model: AVModel, waves: np.ndarray, batch: int = 256) -> np.ndarray:
    device = next(model.parameters()).device
    out = [
        model.audio(torch.as_tensor(waves[start : start + batch]).to(device)).cpu().numpy()
        for start in range(0, len(waves), batch)
    ]
    return np.concatenate(out)
