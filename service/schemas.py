"""The JSON bodies of the API (requests are multipart forms and query parameters)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.queries import Direction, Kind


class ErrorBody(BaseModel):
    """Every error: a stable machine-readable code and a message a person can act on."""

    code: str = Field(examples=["bad_media"])
    message: str = Field(examples=["the uploaded file (812 bytes) is a corrupt or truncated "
                                   "image (...); re-export it or use a PNG or JPEG image"])
    detail: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class MediaLinks(BaseModel):
    image: str = Field(description="the item's frame or image")
    audio: str = Field(description="the item's sound (its window, for a video item)")
    video: str | None = Field(None, description="the whole video, for a video item")


class ItemOut(BaseModel):
    id: str = Field(examples=["pair-00042"])
    source_id: str = Field(description="the manifest item (a video segment's video)")
    labels: list[str] = Field(examples=[["7"]])
    time: float | None = Field(None, description="seconds into the video, for a video item")
    split: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict,
                                  description="every other manifest field (speaker, kind, ...)")
    media: MediaLinks


class Peak(BaseModel):
    row: int
    col: int
    x: float = Field(description="pixels from the left edge of the frame")
    y: float = Field(description="pixels from the top edge of the frame")
    score: float = Field(description="the peak cell's probability of holding the sound")


class ExplanationOut(BaseModel):
    """Where in the image of a cross-modal pair the sound comes from: in the query image for
    im2aud, in the hit's image for aud2im."""

    image: Literal["query", "hit"]
    width: int
    height: int
    grid: list[list[float]] = Field(description="rows x columns of probabilities in [0, 1]")
    peak: Peak
    overlay: str | None = Field(None, description="URL of the PNG overlay (queries by id)")


class HitOut(BaseModel):
    rank: int = Field(ge=1)
    id: str
    score: float = Field(description="cosine similarity of the two embeddings, in [-1, 1]")
    match_probability: float | None = Field(
        None, description="the probability that query and hit correspond, calibrated on "
                          "held-out pairs when the model was exported (null: the model bundle "
                          "holds no calibration)")
    labels: list[str]
    time: float | None = None
    media: MediaLinks
    explanation: ExplanationOut | None = Field(
        None, description="with explain=true, for im2aud and aud2im hits")


class MomentOut(BaseModel):
    time: float = Field(description="the window's centre, seconds into the clip")
    score: float = Field(description="the on-screen probability then: how likely the sound "
                                     "comes from something in the frame")
    peak: Peak


class QueryOut(BaseModel):
    kind: Kind | Literal["item"] = Field(description="what was uploaded, or item for by-id")
    direction: Direction
    id: str | None = Field(None, description="the item searched from (by-id)")
    time: float | None = Field(None, description="the moment of a clip or sound used")
    duration: float | None = Field(None, description="length of the uploaded clip or sound")
    timeline: list[MomentOut] | None = Field(
        None, description="with timeline=true: each window of the clip; the query is the best")
    expanded: int = Field(0, description="how many of the index's nearest sounds a sound query "
                                         "was averaged with (expand); 0: it searched alone")


class Timing(BaseModel):
    decode_ms: float
    embed_ms: float
    search_ms: float
    render_ms: float | None = Field(None, description="drawing the overlay (localize)")
    explain_ms: float | None = Field(None, description="the explanations (explain=true)")
    total_ms: float


class SearchResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "query": {"kind": "image", "direction": "im2aud", "id": None, "time": None,
                  "duration": None},
        "k": 2, "min_probability": 0.5, "no_match": False,
        "results": [
            {"rank": 1, "id": "pair-00090", "score": 0.751, "match_probability": 0.962,
             "labels": ["7"], "time": None,
             "media": {"image": "/v1/items/pair-00090/image",
                       "audio": "/v1/items/pair-00090/audio", "video": None}},
            {"rank": 2, "id": "clip-00003", "score": 0.749, "match_probability": 0.958,
             "labels": ["7"], "time": 0.5,
             "media": {"image": "/v1/items/clip-00003/image",
                       "audio": "/v1/items/clip-00003/audio",
                       "video": "/v1/items/clip-00003/video"}},
        ],
        "timing": {"decode_ms": 0.5, "embed_ms": 1.0, "search_ms": 0.8, "render_ms": None,
                   "total_ms": 2.3},
        "index": "20261126T005859-d3a019",
    }]})

    query: QueryOut
    k: int
    min_probability: float | None = Field(
        description="the cut applied: hits below it are left out (the model's default unless "
                    "asked; null: no calibration, no cut)")
    no_match: bool = Field(description="true when no hit reaches min_probability: nothing in "
                                       "the index matches the query")
    results: list[HitOut]
    timing: Timing
    index: str = Field(description="the index version (build id) that answered")


class LocalizeResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "kind": "pair", "time": 0.18, "width": 56, "height": 56,
        "grid": [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.72, 0.5, 0.03, 0.02],
                 [0.81, 0.22, 0.01, 0.01]],
        "peak": {"row": 3, "col": 0, "x": 7.0, "y": 49.0, "score": 0.81},
        "on_screen_probability": 0.81, "on_screen": True,
        "overlay_png": "iVBORw0KGgo...",
        "timing": {"decode_ms": 6.3, "embed_ms": 2.3, "search_ms": 0.0, "render_ms": 1.4,
                   "total_ms": 10.0},
    }]})

    kind: Literal["video", "pair"]
    time: float | None = None
    on_screen_probability: float = Field(
        description="how likely the sound comes from something in the frame: AVOL-Net's best "
                    "cell, calibrated on held-out on- and off-screen scenes when the model was "
                    "exported (without that calibration, the best cell's own probability)")
    on_screen: bool = Field(description="on_screen_probability >= 0.5; when false the overlay "
                                        "is the frame alone and the peak is only a guess")
    width: int = Field(description="of the uploaded frame, in pixels")
    height: int
    grid: list[list[float]] = Field(description="rows x columns of probabilities in [0, 1]")
    peak: Peak
    overlay_png: str = Field(description="the frame with the heat map over it, PNG as base64")
    timeline: list[MomentOut] | None = Field(
        None, description="with timeline=true, each window of the clip (window: the model's "
                          "length; every `hop` seconds)")
    timing: Timing


class ModelStatus(BaseModel):
    hash: str
    preset: str | None
    provider: str
    on_gpu: bool


class IndexStatus(BaseModel):
    build_id: str
    kind: str
    items: int
    vectors: dict[str, int]
    shards: int = 1
    on_gpu: bool
    gpus: int = 0  # GPUs the index is searched on (a sharded index spreads over several)
    built_at: str


class ReadyResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "ready": True,
        "model": {"hash": "092d4b8664cbb2aa", "preset": "digits",
                  "provider": "CPUExecutionProvider", "on_gpu": False},
        "index": {"build_id": "20261126T005859-d3a019", "kind": "flat", "items": 5200,
                  "vectors": {"image": 5200, "audio": 5200, "audio_features": 5200},
                  "shards": 1,
                  "on_gpu": False, "gpus": 0,
                  "built_at": "2026-11-26T00:59:00+0000"},
    }]})

    ready: bool
    model: ModelStatus
    index: IndexStatus


class JobOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "9f0e4b7bf72e", "op": "reindex", "state": "running", "stage": "embedding",
        "done": 1024, "total": 5200, "started_at": "2026-11-26T01:00:00+0000",
        "finished_at": None, "message": None, "build_id": None,
    }]})

    id: str
    op: Literal["reindex"] = "reindex"
    state: Literal["queued", "running", "succeeded", "failed"]
    stage: str
    done: int = Field(0, description="items embedded so far")
    total: int | None = Field(None, description="items to embed")
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None
    build_id: str | None = Field(None, description="the version now serving, on success")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "media that cannot be decoded, or silent"},
    413: {"model": ErrorResponse, "description": "an upload over the size limit"},
    415: {"model": ErrorResponse, "description": "not an image, a sound or a clip"},
    422: {"model": ErrorResponse, "description": "bad parameters"},
    503: {"model": ErrorResponse, "description": "not ready, or busy"},
}
