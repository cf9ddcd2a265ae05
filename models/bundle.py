"""The model bundle's ``model.json`` (DESIGN.md, "Model bundle"): its schema and content hash.

Torch-free: the runtime validates a bundle with it, the exporter writes one with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.errors import BundleError

FORMAT = "avsearch-model/1"
MODEL_JSON = "model.json"
IMAGE_ONNX = "image.onnx"
AUDIO_ONNX = "audio.onnx"


class ImageGraphInfo(BaseModel):
    file: str = IMAGE_ONNX
    input: str = "image"
    size: int  # square frame, pixels; uint8 (batch, size, size, 3) RGB
    grid: int  # locations per side of the localisation grid
    outputs: list[str] = ["embedding", "grid"]


class AudioGraphInfo(BaseModel):
    file: str = AUDIO_ONNX
    input: str = "audio"
    sample_rate: int
    samples: int  # float32 (batch, samples) mono in [-1, 1]
    outputs: list[str] = ["embedding"]  # and "features" (for audio -> audio), when it has them
    features_dim: int | None = None  # the size of "features"; None: the graph has none
    speeds: list[float] = [1.0]  # playback speeds the graph averages embeddings over
    tempo_s: float | None = None  # heard duration each sound is stretched to first; None: as is

    @model_validator(mode="after")
    def _features_sized(self) -> AudioGraphInfo:
        if self.outputs not in (["embedding"], ["embedding", "features"]):
            raise ValueError(f"audio outputs {self.outputs}: expected embedding, and "
                             "optionally features")
        if ("features" in self.outputs) != (self.features_dim is not None):
            raise ValueError("features_dim must be given exactly when the audio graph has "
                             "a features output")
        return self


class CentringInfo(BaseModel):
    """The graphs subtract each modality's mean embedding over these training items (then
    renormalise) from the ``embedding`` outputs; the image grid is left as trained."""

    corpus: str
    split: str
    images: int
    sounds: int


class LocalizationInfo(BaseModel):
    scale: float
    bias: float


class CurveInfo(BaseModel):
    """A score -> probability curve: ``platt`` (p = sigmoid(a * score + b)) or ``isotonic``
    (knots ``x`` -> ``y``, linear between them); models.calibration.Platt and .Isotonic."""

    method: Literal["platt", "isotonic"] = "platt"
    a: float | None = None
    b: float | None = None
    x: list[float] | None = None
    y: list[float] | None = None

    @model_validator(mode="after")
    def _complete(self) -> CurveInfo:
        if self.method == "platt" and (self.a is None or self.b is None):
            raise ValueError("a platt curve needs a and b")
        if self.method == "isotonic" and (not self.x or not self.y or len(self.x) != len(self.y)):
            raise ValueError("an isotonic curve needs knots x and y of one length")
        return self


class MatchCalibrationInfo(BaseModel):
    """A search hit's score (inner product of embeddings) -> the probability of a match.

    One curve per direction, fitted on the top hits of held-out queries; ``threshold`` is the
    default ``min_probability`` of a search, with its precision and recall on those pairs.
    """

    directions: dict[str, CurveInfo]
    threshold: float = Field(ge=0.0, le=1.0)
    precision: float
    recall: float
    fitted_on: dict[str, Any] = Field(default_factory=dict)


class OnScreenCalibrationInfo(BaseModel):
    """AVOL-Net's best cell logit -> the probability that the sound's source is in the frame."""

    method: str = "platt"
    a: float
    b: float
    fitted_on: dict[str, Any] = Field(default_factory=dict)


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: str = FORMAT
    preset: dict[str, Any]
    embed_dim: int
    image: ImageGraphInfo
    audio: AudioGraphInfo
    localization: LocalizationInfo
    ave_head: dict[str, list[float]] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    # An ensemble bundle (avsearch export RUN RUN ...): each member run's training record, in
    # the order the graphs join their outputs; empty for a bundle of one run.
    members: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, float] = Field(default_factory=dict)
    centring: CentringInfo | None = None
    # Fitted after export on held-out data (avsearch export / avsearch calibrate); they change
    # the probabilities reported, not the embeddings, so they stay out of the content hash.
    match_calibration: MatchCalibrationInfo | None = None
    on_screen: OnScreenCalibrationInfo | None = None
    content_hash: str = ""
    created: str = ""


def content_hash(model_dir: Path, info: ModelInfo) -> str:
    """sha256 over the two graphs and everything that changes what they mean."""
    digest = hashlib.sha256()
    for name in (info.image.file, info.audio.file):
        digest.update(hashlib.sha256((model_dir / name).read_bytes()).digest())
    meaning = {"preset": info.preset, "localization": info.localization.model_dump()}
    digest.update(json.dumps(meaning, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def read_model_info(model_dir: str | Path, verify_hash: bool = True) -> ModelInfo:
    """Load and validate ``model.json``; refuse a bundle whose files do not match its hash."""
    folder = Path(model_dir)
    path = folder / MODEL_JSON
    if not path.is_file():
        raise BundleError(f"no {MODEL_JSON} in {folder}: not a model bundle (avsearch export)")
    try:
        info = ModelInfo.model_validate_json(path.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"{path}: invalid model.json at {where!r}: {first['msg']}") from None
    if info.format != FORMAT:
        raise BundleError(f"{path}: format {info.format!r}, this avsearch reads {FORMAT!r}")
    for name in (info.image.file, info.audio.file):
        if not (folder / name).is_file():
            raise BundleError(f"model bundle {folder} is missing {name}")
    if verify_hash and info.content_hash != content_hash(folder, info):
        raise BundleError(f"model bundle {folder}: files do not match model.json's content_hash")
    return info


def write_model_info(model_dir: Path, info: ModelInfo) -> ModelInfo:
    info = info.model_copy(update={"content_hash": content_hash(model_dir, info)})
    tmp = model_dir / (MODEL_JSON + ".tmp")
    tmp.write_text(info.model_dump_json(indent=2))
    tmp.replace(model_dir / MODEL_JSON)
    return info
