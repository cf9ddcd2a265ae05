"""The CCA baseline: canonical correlation between raw image and raw audio features.

Raw features are the model-free inputs (grey pixels at 32x32; a pooled log-spectrogram), each
reduced by PCA, then regularised CCA (128 components), on L2-normalised features as in the paper.
Fitted on the train split, scored on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def raw_image_features(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) -> grey pixels average-pooled to at most 32x32, flattened."""
    grey = images.astype(np.float32).mean(axis=3) / 255.0
    size = grey.shape[1]
    factor = max(1, size // 32)
    pooled = grey[:, : size // factor * factor, : size // factor * factor]
    pooled = pooled.reshape(len(grey), size // factor, factor, size // factor, factor).mean((2, 4))
    return pooled.reshape(len(grey), -1)


def raw_audio_features(waves: np.ndarray, n_fft: int = 256, bands: int = 32, frames: int = 24):
    """float (N, T) -> log power spectrogram pooled to bands x frames, flattened."""
    hop = n_fft // 2
    count = (waves.shape[1] - n_fft) // hop + 1
    index = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    spectrum = np.abs(np.fft.rfft(waves[:, index] * np.hanning(n_fft), axis=2)) ** 2
    log = np.log(spectrum + 1e-8)  # (N, frames, bins)
    log = log[:, : count // frames * frames, : (n_fft // 2) // bands * bands]
    n = len(waves)
    pooled = log.reshape(n, frames, count // frames, bands, -1).mean(axis=(2, 4))
    return pooled.reshape(n, -1)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class CCA:
    components: int = 128
    pca_dims: int = 256
    reg: float = 1e-3

    def fit(self, x: np.ndarray, y: np.ndarray) -> CCA:
        x, y = _normalise(x), _normalise(y)
        self.x_mean, self.y_mean = x.mean(0), y.mean(0)
        self.x_pca = self._pca(x - self.x_mean)
        self.y_pca = self._pca(y - self.y_mean)
        xp, yp = (x - self.x_mean) @ self.x_pca, (y - self.y_mean) @ self.y_pca
        n = len(x)
        cxx = xp.T @ xp / n + self.reg * np.eye(xp.shape[1])
        cyy = yp.T @ yp / n + self.reg * np.eye(yp.shape[1])
        cxy = xp.T @ yp / n
        wx, wy = _inv_sqrt(cxx), _inv_sqrt(cyy)
        u, _, vt = np.linalg.svd(wx @ cxy @ wy)
        k = min(self.components, u.shape[1], vt.shape[0])
        self.x_proj, self.y_proj = wx @ u[:, :k], wy @ vt[:k].T
        return self

    def _pca(self, centred: np.ndarray) -> np.ndarray:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return vt[: min(self.pca_dims, vt.shape[0])].T

    def transform_x(self, x: np.ndarray) -> np.ndarray:
        return _normalise(((_normalise(x) - self.x_mean) @ self.x_pca) @ self.x_proj)

    def transform_y(self, y: np.ndarray) -> np.ndarray:
        return _normalise(((_normalise(y) - self.y_mean) @ self.y_pca) @ self.y_proj)


def _inv_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return vectors @ np.diag(1.0 / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T
