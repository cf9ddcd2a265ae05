"""AVOL-Net's heat map from the exported outputs (numpy; used by evaluation and serving).

The image graph gives an L2-normalised embedding at every location; the heat at a location is
sigmoid(scale * <location, audio embedding> + bias), with the calibration stored in model.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    scale: float
    bias: float


def cell_logits(grids: np.ndarray, audio_emb: np.ndarray, calibration: Calibration) -> np.ndarray:
    """grids (B, h, w, D), audio (B, D) -> (B, h, w) logits that each location sounds."""
    return calibration.scale * np.einsum("bhwd,bd->bhw", grids, audio_emb) + calibration.bias


def heat_maps(grids: np.ndarray, audio_emb: np.ndarray, calibration: Calibration) -> np.ndarray:
    """grids (B, h, w, D), audio (B, D) -> (B, h, w) probabilities that each location sounds."""
    return 1.0 / (1.0 + np.exp(-cell_logits(grids, audio_emb, calibration)))
