"""Export a training run to a model bundle: two ONNX graphs and ``model.json``.

As timm does it: eval mode, a named dynamic batch axis, ``onnx.checker``, then a parity check of
ONNX Runtime against torch on real inputs before success is reported. Everything that must match
between training and serving (uint8 -> float scaling, normalisation, the log-spectrogram) is
inside the graphs.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import shutil
from collections.abc import Iterable, Sequence
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


class JoinedGraph(nn.Module):
    """Several members' graphs of one kind (image or audio, each from a run of one preset) as
    one graph: each output is the members' outputs joined along the last axis, divided by the
    square root of their number.

    Every output of a member is L2-normalised along that axis (the embedding, each location of
    the grid, the audio features), so a joined output is unit length too, and the inner product
    of two joined vectors is the mean of the members' inner products: the ensemble's cosine is
    the mean of its members' cosines, and every index, search and heat map reads it as it reads
    one model's (docs/benchmarks.md, "An ensemble bundle").
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble joins at least two members")
        self.members = nn.ModuleList(members)
        self.weight = 1.0 / math.sqrt(len(members))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = [member(inputs) for member in self.members]
        if isinstance(outputs[0], torch.Tensor):
            return torch.cat(outputs, dim=-1) * self.weight
        return tuple(torch.cat(parts, dim=-1) * self.weight for parts in zip(*outputs, strict=True))


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


def write_graphs(image_graph: nn.Module, audio_graph: nn.Module, audio_names: list[str],
                 folder: Path, images: np.ndarray, waves: np.ndarray) -> dict[str, float]:
    """Export both graphs into ``folder``; their parity with torch on ``images``/``waves``."""
    _export(image_graph, torch.from_numpy(images[:2]), folder / IMAGE_ONNX, "image",
            ["embedding", "grid"])
    _export(audio_graph, torch.from_numpy(waves[:2]), folder / AUDIO_ONNX, "audio", audio_names)
    return {
        "image_max_abs": parity(image_graph, folder / IMAGE_ONNX, images, "image"),
        "audio_max_abs": parity(audio_graph, folder / AUDIO_ONNX, waves, "audio"),
    }


def audio_outputs(with_features: bool) -> list[str]:
    return ["embedding", "features"] if with_features else ["embedding"]


def load_members(run_dirs: Sequence[Path]) -> list[tuple[AVModel, dict]]:
    """Each run's model and checkpoint state; the runs of an ensemble must share a preset (the
    same inputs, grid and embedding size) and be different runs."""
    if not run_dirs:
        raise BundleError("no training run to export")
    if len({run.resolve() for run in run_dirs}) != len(run_dirs):
        raise BundleError("a run is given twice: an ensemble's members are different runs")
    members = [load_checkpoint(run) for run in run_dirs]
    first = members[0][0].preset.to_json()
    for run, (model, _) in zip(run_dirs[1:], members[1:], strict=True):
        if model.preset.to_json() != first:
            raise BundleError(f"{run} was trained with another preset than {run_dirs[0]} "
                              "(inputs, towers or embedding size): an ensemble's runs must "
                              "share one")
    return members


def export_bundle(
    run_dir: str | Path | Sequence[str | Path], out_dir: str | Path, images: np.ndarray,
    waves: np.ndarray, extra: dict | None = None, speeds: tuple[float, ...] = DEFAULT_SPEEDS,
    centring: Centring | None = None, tempo_s: float | None = None, features: bool = True,
) -> ModelInfo:
    """Write the bundle to ``out_dir`` (atomically) and check parity on ``images``/``waves``.
    ``run_dir``: one training run, or several of one preset for an ensemble bundle (see
    :class:`JoinedGraph`: an embedding of that many times the size, that many times the
    compute);
    ``speeds``: the audio graph's ensemble over playback speeds (see :class:`AudioGraph`);
    ``centring``: training items whose mean embeddings the graphs subtract (see :func:`centred`);
    ``tempo_s``: the heard duration every sound is stretched to (see :mod:`models.nn.tempo`);
    ``features``: whether the audio graph also gives the tower's own features (see
    :class:`AudioGraph`; without them a bundle is as those made before they existed).
    """
    runs = [Path(run_dir)] if isinstance(run_dir, str | Path) else [Path(r) for r in run_dir]
    out_dir = Path(out_dir)
    members = load_members(runs)
    model, state = members[0]
    preset = model.preset
    staging = out_dir.with_name(out_dir.name + ".tmp-export")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    image_graphs = [ImageGraph(member.image).eval() for member, _ in members]
    audio_graphs = [AudioGraph(member.audio, preset.audio, speeds, tempo_s=tempo_s,
                               with_features=features).eval() for member, _ in members]
    # One run's graphs go out as they are (no join): its bundle is as before ensembles existed.
    image_graph = image_graphs[0] if len(members) == 1 else JoinedGraph(image_graphs).eval()
    audio_graph = audio_graphs[0] if len(members) == 1 else JoinedGraph(audio_graphs).eval()
    audio_names = audio_outputs(features)
    centring_info = None
    if centring is not None:
        for graph in image_graphs:
            graph.centre = mean_embedding(graph, centring.batches(centring.frames))
        for graph in audio_graphs:
            graph.centre = mean_embedding(graph, centring.batches(centring.waves))
        centring_info = CentringInfo(corpus=centring.corpus, split=centring.split,
                                     images=centring.count, sounds=centring.count)
    differences = write_graphs(image_graph, audio_graph, audio_names, staging, images, waves)
    if max(differences.values()) > PARITY_TOLERANCE and centring_info is not None:
        # A barely trained model puts every item in a cone so narrow that centring magnifies
        # float rounding past the tolerance: such a model is exported as trained.
        log.warning("the training items' embeddings are nearly all alike (a model this little "
                    "trained): exported without centring")
        for graph in (*image_graphs, *audio_graphs):
            graph.centre = None
        centring_info = None
        differences = write_graphs(image_graph, audio_graph, audio_names, staging, images, waves)
    worst = max(differences.values())
    if worst > PARITY_TOLERANCE:
        shutil.rmtree(staging)
        raise BundleError(f"ONNX Runtime differs from torch by {worst:.2e} "
                          f"(> {PARITY_TOLERANCE:.0e}): the export is not faithful")
    embed_dim = preset.embed_dim * len(members)
    records = [training_record(member_state, extra) for _, member_state in members]
    info = ModelInfo(
        preset=preset.to_json(),
        embed_dim=embed_dim,
        image=ImageGraphInfo(size=preset.image_size, grid=preset.grid_size),
        audio=AudioGraphInfo(sample_rate=preset.audio.sample_rate,
                             samples=preset.audio.num_samples, speeds=list(speeds),
                             tempo_s=tempo_s, outputs=audio_names,
                             features_dim=embed_dim if features else None),
        localization=mean_localization([member for member, _ in members]),
        ave_head=mean_ave_head([member for member, _ in members]),
        training=records[0],
        members=records if len(members) > 1 else [],
        # One run's held-out metrics during training; an ensemble's are for `avsearch eval`.
        metrics=last_metrics(state) if len(members) == 1 else {},
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


def training_record(state: dict, extra: dict | None) -> dict:
    """What model.json's ``training`` says of one run: its options, steps and data."""
    return {**state["config"], "steps_done": state["step"], **state.get("data", {}),
            **(extra or {})}


def last_metrics(state: dict) -> dict:
    """The run's held-out nDCG@30 and localisation after its last evaluation ({} if none)."""
    history = state.get("history", [])
    return {k: v for k, v in (history[-1] if history else {}).items()
            if k in ("ndcg30", "localization")}


def mean_localization(models: Sequence[AVModel]) -> LocalizationInfo:
    """AVOL-Net's calibration for joined outputs: the members' mean scale and bias, so that a
    location's logit is the mean of the members' logits where their scales agree (the joined
    grid and sound give the mean of the members' inner products; see :class:`JoinedGraph`)."""
    return LocalizationInfo(scale=float(np.mean([m.avol.scale.item() for m in models])),
                            bias=float(np.mean([m.avol.bias.item() for m in models])))


def mean_ave_head(models: Sequence[AVModel]) -> dict[str, list[float]]:
    """AVE-Net's correspondence head, averaged over the members (one model's as it is)."""
    return {"weight": np.mean([m.ave.fc.weight.flatten().tolist() for m in models], 0).tolist(),
            "bias": np.mean([m.ave.fc.bias.tolist() for m in models], 0).tolist()}


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
