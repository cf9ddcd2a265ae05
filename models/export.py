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
from collections.abc import Iterable
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
    MODEL_JSON,
    AudioGraphInfo,
    CentringInfo,
    ImageGraphInfo,
    LocalizationInfo,
    ModelInfo,
    write_model_info,
)
from models.errors import BundleError
from models.nn.model import AVModel
from models.nn.tempo import normalise_tempo
from models.nn.towers import AudioTower, ImageTower
from models.presets import AudioSpec, Preset

log = logging.getLogger(__name__)
OPSET = 17
PARITY_TOLERANCE = 1e-4
# The audio graph's playback speeds (see AudioGraph): the ends and the middle of the training's
# speed perturbation (0.75-1.3). On twelve unseen-voice fold runs they gain nDCG@30 over
# 0.9,1,1.1 (audio->audio +0.005, audio->image +0.003 on the mean) at the same cost; five
# speeds over the range gain about as much again (0.75,0.87,1,1.15,1.3: +0.009, +0.006) but
# cost the service its audio latency goal on two cores (docs/benchmarks.md, "A wider speed
# ensemble" and "Service under load"). `--speeds 1` exports one plain pass.
DEFAULT_SPEEDS = (0.75, 1.0, 1.3)


def centred(embedding: torch.Tensor, centre: torch.Tensor | None) -> torch.Tensor:
    """``embedding`` less the modality's mean embedding, renormalised (no-op without a centre).

    Towers trained contrastively leave each modality's embeddings in a cone of its own (the
    "modality gap"); removing each cone's axis, measured once on the training items at export,
    ranks the other modality's items more by content than by how far they lie from that axis
    (docs/benchmarks.md, "Centring").
    """
    return embedding if centre is None else F.normalize(embedding - centre, dim=1)


class ImageGraph(nn.Module):
    """uint8 (B, H, W, 3) RGB -> embedding (B, D), grid (B, h, w, D).

    ``centre``: the mean image embedding subtracted from ``embedding`` (see :func:`centred`);
    the grid, which AVOL-Net compares with sounds, is left as trained.
    """

    def __init__(self, tower: ImageTower, centre: torch.Tensor | None = None) -> None:
        super().__init__()
        self.tower = tower
        self.centre = centre

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding, grid = self.tower(image.permute(0, 3, 1, 2).float() / 255.0)
        return centred(embedding, self.centre), grid.permute(0, 2, 3, 1)


class AudioGraph(nn.Module):
    """float32 (B, samples) mono -> embedding (B, D), features (B, D).

    With ``speeds`` other than ``(1.0,)``, the sound is also played faster and slower (pitch and
    tempo together, as the training augmentation does), each version embedded, and the
    embeddings averaged: an ensemble over voices a little higher and lower than the one heard,
    which keeps less of the speaker in the embedding (docs/benchmarks.md).

    ``features`` is the audio tower's pooled trunk map before the head (averaged over the
    speeds, L2-normalised): the representation sounds are compared by for audio -> audio. The
    head is trained to meet the image tower and keeps little beyond what a picture shows; the
    trunk keeps how a sound sounds, and ranks another recording of the same word said by the
    same voice much higher (docs/benchmarks.md, "The audio tower's own features"). With
    ``with_features=False`` the graph has the one output, as bundles before it. Where the trunk
    is wider or narrower than the embedding, the features are brought to the embedding's size by
    a fixed orthonormal projection (:func:`features_projection`), so that every index of a bundle
    holds vectors of one size; a projection of that kind keeps cosine similarities close.
    """

    def __init__(self, tower: AudioTower, audio: AudioSpec,
                 speeds: tuple[float, ...] = (1.0,), centre: torch.Tensor | None = None,
                 tempo_s: float | None = None, with_features: bool = True) -> None:
        super().__init__()
        self.tower = tower
        self.audio = audio
        self.speeds = tuple(speeds)
        self.centre = centre
        self.tempo_s = tempo_s
        self.with_features = with_features
        self.projection = features_projection(tower.fc1.in_features, tower.fc2.out_features)

    def pooled(self, wave: torch.Tensor) -> torch.Tensor:
        """One pass of the tower's trunk, on the spectrogram stretched to ``tempo_s`` when it is
        set: (B, samples) -> (B, F)."""
        spec = self.tower.frontend.spectrogram(wave, exact_log=True)
        if self.tempo_s:
            spec = normalise_tempo(spec, wave, self.audio.hop_length, self.audio.n_fft,
                                   self.audio.sample_rate, self.tempo_s)
        return self.tower.features(spec)

    def forward(self, audio: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.speeds == (1.0,):
            pooled = self.pooled(audio)
            embedding = centred(self.tower.head(pooled), self.centre)
            return (embedding, self.project(pooled)) if self.with_features else embedding
        samples, count = self.audio.num_samples, audio.shape[0]
        # Every speed's version in one batch through one pass of the tower: about a fifth less
        # time in ONNX Runtime than a pass per speed (docs/benchmarks.md, "Service under load").
        waves = torch.cat([play_at(audio, speed, samples) for speed in self.speeds])
        pooled = self.pooled(waves)
        embeddings = self.tower.head(pooled).reshape(len(self.speeds), count, -1)
        embedding = centred(F.normalize(embeddings.sum(0), dim=1), self.centre)
        if not self.with_features:
            return embedding
        return embedding, self.project(pooled.reshape(len(self.speeds), count, -1).mean(0))

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features -> the L2-normalised ``features`` output, of the embedding's
        size."""
        if self.projection is not None:
            pooled = pooled @ self.projection
        return F.normalize(pooled, dim=1)


def features_projection(width: int, size: int, seed: int = 0) -> torch.Tensor | None:
    """A fixed (width, size) matrix with orthonormal columns (or rows, when the trunk is
    narrower than the embedding), the same for every export of a preset; None where the
    trunk's width already is the embedding's size."""
    if width == size:
        return None
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(max(width, size), min(width, size), generator=generator,
                           dtype=torch.float64)
    basis, _ = torch.linalg.qr(gaussian)  # (max, min), orthonormal columns
    return (basis if width > size else basis.T).float().contiguous()


def mean_embedding(graph: nn.Module, batches: Iterable[np.ndarray]) -> torch.Tensor | None:
    """The mean of ``graph``'s embedding (its first output) over ``batches``; None if empty."""
    total, count = None, 0
    with torch.no_grad():
        for batch in batches:
            output = graph(torch.from_numpy(batch))
            embedding = output[0] if isinstance(output, tuple) else output
            total = embedding.sum(0) if total is None else total + embedding.sum(0)
            count += len(embedding)
    return None if total is None else total / count


def play_at(audio: torch.Tensor, speed: float, length: int) -> torch.Tensor:
    """(B, length) -> (B, length): played at ``speed`` times the rate (linear interpolation),
    then cropped or zero-padded about the centre back to ``length`` samples.

    Written as two gathers at fixed positions with fixed weights (see :func:`playback_taps`)
    rather than a resize: every sample of the batch is then computed alone, so an embedding
    does not depend on which other sounds share its batch (the local and the Ray index builds
    batch differently and must agree bit for bit). ``torch.gather`` exports as GatherElements,
    which ONNX Runtime runs several times faster than the Gather that indexing exports as.
    """
    if speed == 1.0:
        return audio
    first, second, w_first, w_second = (torch.from_numpy(a) for a in playback_taps(speed, length))
    rows = (audio.shape[0], length)
    return (torch.gather(audio, 1, first.expand(rows)) * w_first
            + torch.gather(audio, 1, second.expand(rows)) * w_second)


def playback_taps(speed: float, length: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each output sample of a ``length``-sample sound played at ``speed``: the two input
    samples it lies between and their weights, as linear interpolation with half-sample
    centres computes them (``F.interpolate(mode="linear", align_corners=False)``); output
    samples in the zero padding of a sped-up sound take weight 0."""
    size = max(1, round(length / speed))
    source = np.maximum((np.arange(size) + 0.5) * (length / size) - 0.5, 0.0)
    first = np.minimum(np.floor(source).astype(np.int64), length - 1)
    second = np.minimum(first + 1, length - 1)
    w_second = source - first
    w_first = 1.0 - w_second
    if size >= length:
        keep = slice((size - length) // 2, (size - length) // 2 + length)
        taps = first[keep], second[keep], w_first[keep], w_second[keep]
    else:
        before = (length - size) // 2
        taps = tuple(np.zeros(length, dtype=a.dtype) for a in (first, second, w_first, w_second))
        for tap, values in zip(taps, (first, second, w_first, w_second), strict=True):
            tap[before : before + size] = values
    return taps[0], taps[1], taps[2].astype(np.float32), taps[3].astype(np.float32)


class Centring:
    """Decoded training items, in batches, for the mean embeddings of :func:`centred`.

    ``frames`` (N, H, W, 3) uint8 and ``waves`` (N, samples) float32; ``corpus`` and ``split``
    say where they came from, for model.json.
    """

    def __init__(self, frames: np.ndarray, waves: np.ndarray, corpus: str, split: str,
                 batch_size: int = 64) -> None:
        if len(frames) == 0 or len(frames) != len(waves):
            raise BundleError("centring needs as many frames as sounds, and at least one")
        self.frames, self.waves = frames, waves
        self.corpus, self.split, self.batch_size = corpus, split, batch_size

    @property
    def count(self) -> int:
        return len(self.frames)

    def batches(self, array: np.ndarray) -> Iterable[np.ndarray]:
        """``array`` (``frames`` or ``waves``) in slices of ``batch_size``."""
        return (array[s : s + self.batch_size] for s in range(0, self.count, self.batch_size))


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


def write_graphs(image_graph: ImageGraph, audio_graph: AudioGraph, folder: Path,
                 images: np.ndarray, waves: np.ndarray) -> dict[str, float]:
    """Export both graphs into ``folder``; their parity with torch on ``images``/``waves``."""
    _export(image_graph, torch.from_numpy(images[:2]), folder / IMAGE_ONNX, "image",
            ["embedding", "grid"])
    _export(audio_graph, torch.from_numpy(waves[:2]), folder / AUDIO_ONNX, "audio",
            audio_outputs(audio_graph))
    return {
        "image_max_abs": parity(image_graph, folder / IMAGE_ONNX, images, "image"),
        "audio_max_abs": parity(audio_graph, folder / AUDIO_ONNX, waves, "audio"),
    }


def audio_outputs(graph: AudioGraph) -> list[str]:
    return ["embedding", "features"] if graph.with_features else ["embedding"]


def export_bundle(
    run_dir: str | Path, out_dir: str | Path, images: np.ndarray, waves: np.ndarray,
    extra: dict | None = None, speeds: tuple[float, ...] = DEFAULT_SPEEDS,
    centring: Centring | None = None, tempo_s: float | None = None, features: bool = True,
) -> ModelInfo:
    """Write the bundle to ``out_dir`` (atomically) and check parity on ``images``/``waves``.
    ``speeds``: the audio graph's ensemble over playback speeds (see :class:`AudioGraph`);
    ``centring``: training items whose mean embeddings the graphs subtract (see :func:`centred`);
    ``tempo_s``: the heard duration every sound is stretched to (see :mod:`models.nn.tempo`);
    ``features``: whether the audio graph also gives the tower's own features (see
    :class:`AudioGraph`; without them a bundle is as those made before they existed).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, state = load_checkpoint(run_dir)
    preset = model.preset
    staging = out_dir.with_name(out_dir.name + ".tmp-export")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    image_graph = ImageGraph(model.image).eval()
    audio_graph = AudioGraph(model.audio, preset.audio, speeds, tempo_s=tempo_s,
                             with_features=features).eval()
    centring_info = None
    if centring is not None:
        image_graph.centre = mean_embedding(image_graph, centring.batches(centring.frames))
        audio_graph.centre = mean_embedding(audio_graph, centring.batches(centring.waves))
        centring_info = CentringInfo(corpus=centring.corpus, split=centring.split,
                                     images=centring.count, sounds=centring.count)
    differences = write_graphs(image_graph, audio_graph, staging, images, waves)
    if max(differences.values()) > PARITY_TOLERANCE and centring_info is not None:
        # A barely trained model puts every item in a cone so narrow that centring magnifies
        # float rounding past the tolerance: such a model is exported as trained.
        log.warning("the training items' embeddings are nearly all alike (a model this little "
                    "trained): exported without centring")
        image_graph.centre = audio_graph.centre = centring_info = None
        differences = write_graphs(image_graph, audio_graph, staging, images, waves)
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
                             samples=preset.audio.num_samples, speeds=list(speeds),
                             tempo_s=tempo_s, outputs=audio_outputs(audio_graph),
                             features_dim=preset.embed_dim if features else None),
        localization=LocalizationInfo(scale=model.avol.scale.item(), bias=model.avol.bias.item()),
        ave_head={"weight": model.ave.fc.weight.flatten().tolist(),
                  "bias": model.ave.fc.bias.tolist()},
        training={**state["config"], "steps_done": state["step"], **state.get("data", {}),
                  **(extra or {})},
        metrics={k: v for k, v in (history[-1] if history else {}).items()
                 if k in ("ndcg30", "localization")},
        parity={**differences, "inputs": len(images)},
        centring=centring_info,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    info = write_model_info(staging, info)
    if out_dir.exists():
        keep_other_files(out_dir, staging)
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return info


def keep_other_files(old: Path, new: Path) -> None:
    """Copy what ``old`` holds besides a bundle's own files (a README, a licence notice) into
    ``new``, which replaces it whole: an export over a bundle updates the model, not the rest."""
    for path in old.iterdir():
        if path.name in (IMAGE_ONNX, AUDIO_ONNX, MODEL_JSON) or (new / path.name).exists():
            continue
        if path.is_dir():
            shutil.copytree(path, new / path.name)
        else:
            shutil.copy2(path, new / path.name)
