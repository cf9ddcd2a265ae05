"""Load a model bundle with ONNX Runtime and embed decoded media (never imports torch).

The indexer and the service meet the model here. CUDA is used when ONNX Runtime offers it
(``device="auto"``) and the provider actually obtained is reported, never assumed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.bundle import CurveInfo, ModelInfo, read_model_info
from models.calibration import Isotonic, Platt
from models.errors import BundleError
from models.localization import Calibration, cell_logits, heat_maps
from models.media import resize_image

log = logging.getLogger(__name__)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        if CUDA not in available:
            raise BundleError("device 'cuda' asked for, but ONNX Runtime has no CUDA provider "
                              "(install avsearch[gpu] on a machine with an NVIDIA GPU)")
        return [CUDA, CPU]
    if device != "auto":
        raise BundleError(f"unknown device {device!r}; use auto, cpu or cuda")
    return [CUDA, CPU] if CUDA in available else [CPU]


def curve(info: CurveInfo) -> Platt | Isotonic:
    """The calibration curve that ``info`` describes."""
    if info.method == "platt":
        assert info.a is not None and info.b is not None  # checked when model.json is read
        return Platt(info.a, info.b)
    assert info.x is not None and info.y is not None
    return Isotonic(tuple(info.x), tuple(info.y))


@dataclass(frozen=True)
class ImageEmbeddings:
    embeddings: np.ndarray  # float32 (N, D), L2-normalised
    grids: np.ndarray  # float32 (N, h, w, D), L2-normalised per location


@dataclass(frozen=True)
class AudioEmbeddings:
    embeddings: np.ndarray  # float32 (N, D), L2-normalised, in the space shared with images
    features: np.ndarray | None  # float32 (N, F), L2-normalised; None: the bundle has none


class ModelRuntime:
    """Both towers of one model bundle, as ONNX Runtime sessions."""

    def __init__(self, model_dir: str | Path, device: str = "auto", batch_size: int = 64,
                 intra_op_threads: int | None = None) -> None:
        """``intra_op_threads``: ONNX Runtime's threads per run (default: one per core); a
        server answering several queries at once runs each on fewer threads."""
        self.model_dir = Path(model_dir)
        self.info: ModelInfo = read_model_info(self.model_dir)
        self.batch_size = batch_size
        providers = choose_providers(device)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
            options.inter_op_num_threads = 1
        self._image = self._session(self.info.image.file, options, providers)
        self._audio = self._session(self.info.audio.file, options, providers)
        self.provider = self._image.get_providers()[0]
        if device == "cuda" and self.provider != CUDA:
            raise BundleError("the CUDA provider is installed but could not start (see the "
                              "ONNX Runtime log); run with device 'cpu' or fix the CUDA setup")
        self.calibration = Calibration(self.info.localization.scale, self.info.localization.bias)
        match = self.info.match_calibration
        # Built once: every search turns its hits' scores into probabilities with these.
        self._match_curves = ({d: curve(c) for d, c in match.directions.items()}
                              if match is not None else {})
        log.info("model %s (%s) on %s", self.info.content_hash, self.info.preset["name"],
                 self.provider)

    def _session(self, name: str, options, providers) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(str(self.model_dir / name), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
            raise BundleError(f"{self.model_dir / name} could not be loaded: {exc}") from None

    @property
    def on_gpu(self) -> bool:
        return self.provider == CUDA

    @property
    def content_hash(self) -> str:
        return self.info.content_hash

    @property
    def image_size(self) -> int:
        return self.info.image.size

    @property
    def sample_rate(self) -> int:
        return self.info.audio.sample_rate

    @property
    def window_s(self) -> float:
        return self.info.audio.samples / self.info.audio.sample_rate

    def prepare_images(self, images: list[np.ndarray] | np.ndarray) -> np.ndarray:
        size = (self.image_size, self.image_size)
        return np.stack([resize_image(np.asarray(image, dtype=np.uint8), size) for image in images])

    def embed_images(self, images: list[np.ndarray] | np.ndarray) -> ImageEmbeddings:
        """RGB uint8 frames of any size -> embeddings and localisation grids."""
        batch = self.prepare_images(images)
        embeddings, grids = [], []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            embedding, grid = self._image.run(None, {self.info.image.input: chunk})
            embeddings.append(embedding)
            grids.append(grid)
        return ImageEmbeddings(np.concatenate(embeddings), np.concatenate(grids))

    def embed_audio(self, waves: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """float32 mono windows of the bundle's length and rate -> embeddings."""
        return self.embed_sounds(waves).embeddings

    @property
    def has_audio_features(self) -> bool:
        """Whether the audio graph also gives the tower's own features (for audio -> audio)."""
        return "features" in self.info.audio.outputs

    def embed_sounds(self, waves: list[np.ndarray] | np.ndarray) -> AudioEmbeddings:
        """float32 mono windows of the bundle's length and rate -> embeddings, and the audio
        tower's own features when the bundle has them (one run of the graph gives both)."""
        batch = np.asarray(waves, dtype=np.float32)
        if batch.ndim != 2 or batch.shape[1] != self.info.audio.samples:
            raise BundleError(f"audio batch of shape {batch.shape}; this model takes "
                              f"(n, {self.info.audio.samples}) at {self.sample_rate} Hz")
        runs = [self._audio.run(None, {self.info.audio.input: batch[s : s + self.batch_size]})
                for s in range(0, len(batch), self.batch_size)]
        embeddings = np.concatenate([run[0] for run in runs])
        if not self.has_audio_features:
            return AudioEmbeddings(embeddings, None)
        return AudioEmbeddings(embeddings, np.concatenate([run[1] for run in runs]))

    def heat_maps(self, grids: np.ndarray, audio_emb: np.ndarray) -> np.ndarray:
        return heat_maps(grids, audio_emb, self.calibration)

    def best_cell_logits(self, grids: np.ndarray, audio_emb: np.ndarray) -> np.ndarray:
        """(B,) AVOL-Net's logit at the best location: the on-screen score."""
        logits = cell_logits(grids, audio_emb, self.calibration)
        return logits.reshape(len(logits), -1).max(axis=1)

    def on_screen_probability(self, best_logits: np.ndarray) -> np.ndarray:
        """The calibrated probability that the sound's source is in the frame; without an
        on-screen calibration in the bundle, the best cell's own probability."""
        fit = self.info.on_screen
        platt = Platt(fit.a, fit.b) if fit is not None else Platt(1.0, 0.0)
        return platt(best_logits)

    @property
    def calibrated(self) -> bool:
        """Whether search hits get a match probability (the bundle holds a match calibration)."""
        return self.info.match_calibration is not None

    def has_match_curve(self, direction: str) -> bool:
        return direction in self._match_curves

    def match_probability(self, direction: str, scores: np.ndarray) -> np.ndarray | None:
        """Hit scores of one direction (e.g. ``aud-im``) -> match probabilities, or None when the
        bundle has no calibration for that direction."""
        fit = self._match_curves.get(direction)
        return None if fit is None else fit(scores)
