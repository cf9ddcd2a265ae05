"""AVE-Net with the AVOL-Net localisation head: both towers and both heads in one module."""

from __future__ import annotations

import torch
from torch import nn

from models.nn.heads import AVEHead, AVOLHead
from models.nn.towers import AudioTower, ImageTower
from models.presets import Preset


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

    def forward(
        self, image: torch.Tensor, wave: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_emb, grid = self.image(image)
        audio_emb = self.audio(wave)
        return image_emb, grid, audio_emb
