"""Export a training run to a model bundle: two ONNX graphs and ``model.json``.

As timm does it: eval mode, a named dynamic batch axis, ``onnx.checker``, then a parity check of
ONNX Runtime against torch on real inputs before success is reported. Everything that must match
between training and serving (uint8 -> float scaling, normalisation, the log-spectrogram) is
inside the graphs.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

from models.bundle import (
    AUDIO_ONNX,
    IMAGE_ONNX,
    AudioGraphInfo,
    ImageGraphInfo,
    LocalizationInfo,
    ModelInfo,
    write_model_info,
)
from models.errors import BundleError
from models.nn.model import AVModel
from models.nn.towers import AudioTower, ImageTower
from models.presets import Preset

log = logging.getLogger(__name__)
OPSET = 17
PARITY_TOLERANCE = 1e-4
# The audio graph's playback speeds (see AudioGraph). One plain pass by default: 0.9,1,1.1
# gains 0.01-0.02 nDCG@30 on unseen voices (docs/benchmarks.md), but the Ray build's batches
# do not yet reproduce the local build's embeddings bit for bit with it.
DEFAULT_SPEEDS = (1.0,)


class ImageGraph(nn.Module):
    """uint8 (B, H, W, 3) RGB -> embedding (B, D), grid (B, h, w, D)."""

    def __init__(self, tower: ImageTower) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding, grid = self.tower(image.permute(0, 3, 1, 2).float() / 255.0)
        return embedding, grid.permute(0, 2, 3, 1)


class AudioGraph(nn.Module):
    """float32 (B, samples) mono -> embedding (B, D).

    With ``speeds`` other than ``(1.0,)``, the sound is also played faster and slower (pitch and
    tempo together, as the training augmentation does), each version embedded, and the
    embeddings averaged: an ensemble over voices a little higher and lower than the one heard,
    which keeps less of the speaker in the embedding (docs/benchmarks.md).
    """

    def __init__(self, tower: AudioTower, samples: int,
                 speeds: tuple[float, ...] = (1.0,)) -> None:
        super().__init__()
        self.tower = tower
        self.samples = samples
        self.speeds = tuple(speeds)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.speeds == (1.0,):
            return self.tower(audio)
        total = sum(self.tower(play_at(audio, speed, self.samples)) for speed in self.speeds)
        return F.normalize(total, dim=1)


def play_at(audio: torch.Tensor, speed: float, length: int) -> torch.Tensor:
    """(B, length) -> (B, length): resampled by linear interpolation to ``speed`` times the
    rate, then cropped or zero-padded about the centre back to ``length`` samples (``length``
    is the graph's fixed input size, passed as a number so that the sizes export as constants)."""
    if speed == 1.0:
        return audio
    size = max(1, round(length / speed))
    played = F.interpolate(audio[:, None], size=size, mode="linear", align_corners=False)[:, 0]
    if size >= length:
        start = (size - length) // 2
        return played[:, start : start + length]
    pad = length - size
    return F.pad(played, (pad // 2, pad - pad // 2))


def load_checkpoint(run_dir: Path) -> tuple[AVModel, dict]:
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise BundleError(f"no checkpoint.pt in {run_dir}: is this a training run folder?")
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = AVModel(Preset.from_json(state["preset"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def _export(graph: nn.Module, example: torch.Tensor, path: Path, input_name: str, outputs) -> None:
    axes = {input_name: {0: "batch"}, **{name: {0: "batch"} for name in outputs}}
    torch.onnx.export(
        graph, (example,), str(path), input_names=[input_name], output_names=list(outputs),
        dynamic_axes=axes, opset_version=OPSET, dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)))


def parity(graph: nn.Module, path: Path, inputs: np.ndarray, input_name: str) -> float:
    """Max abs difference between torch and ONNX Runtime (CPU) over every output."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = graph(torch.from_numpy(inputs))
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session.run(None, {input_name: inputs})
    return max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True))


def export_bundle(
    run_dir: str | Path, out_dir: str | Path, images: np.ndarray, waves: np.ndarray,
    extra: dict | None = None, speeds: tuple[float, ...] = DEFAULT_SPEEDS,
) -> ModelInfo:
    """Write the bundle to ``out_dir`` (atomically) and check parity on ``images``/``waves``.
    ``speeds``: the audio graph's ensemble over playback speeds (see :class:`AudioGraph`)."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, state = load_checkpoint(run_dir)
    preset = model.preset
    staging = out_dir.with_name(out_dir.name + ".tmp-export")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    image_graph = ImageGraph(model.image).eval()
    audio_graph = AudioGraph(model.audio, preset.audio.num_samples, speeds).eval()
    _export(image_graph, torch.from_numpy(images[:2]), staging / IMAGE_ONNX, "image",
            ["embedding", "grid"])
    _export(audio_graph, torch.from_numpy(waves[:2]), staging / AUDIO_ONNX, "audio", ["embedding"])
    differences = {
        "image_max_abs": parity(image_graph, staging / IMAGE_ONNX, images, "image"),
        "audio_max_abs": parity(audio_graph, staging / AUDIO_ONNX, waves, "audio"),
    }
    worst = max(differences.values())
    if worst > PARITY_TOLERANCE:
        shutil.rmtree(staging)
        raise BundleError(f"ONNX Runtime differs from torch by {worst:.2e} "
                          f"(> {PARITY_TOLERANCE:.0e}): the export is not faithful")
    history = state.get("history", [])
    info = ModelInfo(
        preset=preset.to_json(),
        embed_dim=preset.embed_dim,
        image=ImageGraphInfo(size=preset.image_size, grid=preset.grid_size),
        audio=AudioGraphInfo(sample_rate=preset.audio.sample_rate,
                             samples=preset.audio.num_samples, speeds=list(speeds)),
        localization=LocalizationInfo(scale=model.avol.scale.item(), bias=model.avol.bias.item()),
        ave_head={"weight": model.ave.fc.weight.flatten().tolist(),
                  "bias": model.ave.fc.bias.tolist()},
        training={**state["config"], "steps_done": state["step"], **state.get("data", {}),
                  **(extra or {})},
        metrics={k: v for k, v in (history[-1] if history else {}).items()
                 if k in ("ndcg30", "localization")},
        parity={**differences, "inputs": len(images)},
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    info = write_model_info(staging, info)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return info
