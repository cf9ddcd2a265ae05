"""The heads that turn a pair of embeddings into a correspondence decision.

``AVEHead``: the Euclidean distance of the two embeddings -> fc 1->2 -> logits for
"does not correspond" / "corresponds". ``AVOLHead``: the similarity of the audio embedding with
every location of the vision grid -> a learned affine calibration (the 1x1 conv on a one-channel
map) -> per-location logits; the clip-level logit is their maximum (multiple-instance learning).
"""

from __future__ import annotations

import torch
from torch import nn


class AVEHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():  # a small distance starts out meaning "corresponds"
            self.fc.weight.copy_(torch.tensor([[5.0], [-5.0]]))
            self.fc.bias.copy_(torch.tensor([-5.0, 5.0]))

    def forward(self, image_emb: torch.Tensor, audio_emb: torch.Tensor) -> torch.Tensor:
        distance = torch.linalg.vector_norm(image_emb - audio_emb, dim=1, keepdim=True)
        return self.fc(distance)


class AVOLHead(nn.Module):
    def __init__(self, scale: float = 10.0, bias: float = -5.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.bias = nn.Parameter(torch.tensor(bias))

    def location_logits(self, grid: torch.Tensor, audio_emb: torch.Tensor) -> torch.Tensor:
        """grid (B, D, h, w), audio (B, D) -> (B, h, w) logits of each location sounding."""
        similarity = torch.einsum("bdhw,bd->bhw", grid, audio_emb)
        return self.scale * similarity + self.bias

    def forward(self, grid: torch.Tensor, audio_emb: torch.Tensor) -> torch.Tensor:
        """The clip-level logit: the maximum over locations."""
        return self.location_logits(grid, audio_emb).flatten(1).amax(dim=1)
