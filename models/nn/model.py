"""AVE-Net with the AVOL-Net localisation head: both towers and both heads in one module."""

from __future__ import annotations

import math

import torch
from torch import nn

from models.nn.heads import AVEHead, AVOLHead
from models.nn.towers import AudioTower, ImageTower
from models.presets import Preset

MAX_LOGIT_SCALE = 4.6052  # log(100): InfoNCE's temperature never below 0.01 (CLIP)


class AVModel(nn.Module):
    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset
        self.image = ImageTower(preset)
        self.audio = AudioTower(preset)
        self.ave = AVEHead()
        self.avol = AVOLHead()
        # InfoNCE temperature, learned as in CLIP (log of the inverse temperature).
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07)

    def inverse_temperature(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def hold_temperature(self, temperature: float) -> None:
        """Fix InfoNCE's temperature instead of learning it."""
        with torch.no_grad():
            self.logit_scale.fill_(math.log(1.0 / temperature))
        self.logit_scale.requires_grad_(False)

    def forward(
        self, image: torch.Tensor, wave: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_emb, grid = self.image(image)
        audio_emb = self.audio(wave)
        return image_emb, grid, audio_emb
