"""The JSON bodies of the API (requests are multipart forms and query parameters)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

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


class HitOut(BaseModel):
    rank: int = Field(ge=1)
    id: str
    score: float = Field(description="cosine similarity of the two embeddings, in [-1, 1]")
    labels: list[str]
    time: float | None = None
    media: MediaLinks


class QueryOut(BaseModel):
    kind: Kind | Literal["item"] = Field(description="what was uploaded, or item for by-id")
    direction: Direction
    id: str | None = Field(None, description="the item searched from (by-id)")
    time: float | None = Field(None, description="the moment of a clip or sound used")
    duration: float | None = Field(None, description="length of the uploaded clip or sound")


class Timing(BaseModel):
    decode_ms: float
    embed_ms: float
    search_ms: float
    render_ms: float | None = Field(None, description="drawing the overlay (localize)")
    total_ms: float


class SearchResponse(BaseModel):
    query: QueryOut
    k: int
    results: list[HitOut]
    timing: Timing
    index: str = Field(description="the index version (build id) that answered")


class Peak(BaseModel):
    row: int
    col: int
    x: float = Field(description="pixels from the left edge of the uploaded frame")
    y: float = Field(description="pixels from the top edge of the uploaded frame")
    score: float = Field(description="the peak cell's probability of holding the sound")


class LocalizeResponse(BaseModel):
    kind: Literal["video", "pair"]
    time: float | None = None
    width: int = Field(description="of the uploaded frame, in pixels")
    height: int
    grid: list[list[float]] = Field(description="rows x columns of probabilities in [0, 1]")
    peak: Peak
    overlay_png: str = Field(description="the frame with the heat map over it, PNG as base64")
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
    on_gpu: bool
    built_at: str


class ReadyResponse(BaseModel):
    ready: bool
    model: ModelStatus
    index: IndexStatus


class JobOut(BaseModel):
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
