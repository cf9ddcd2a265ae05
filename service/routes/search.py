"""``/v1/search``: cross-modal and same-modality search from an upload or an indexed item."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile

from service.deps import ReadyEngine, State
from service.engine import Engine
from service.errors import ApiError
from service.links import hit_out
from service.queries import (
    DEFAULT_DIRECTION,
    SIDES,
    Direction,
    check_direction,
    decode,
    embed,
    search,
    stored_vector,
)
from service.schemas import ERROR_RESPONSES, ErrorResponse, QueryOut, SearchResponse, Timing

router = APIRouter(prefix="/v1/search", tags=["search"])

MAX_K = 100
_ERRORS = ERROR_RESPONSES

K = Annotated[int, Form(ge=1, le=MAX_K, description="how many results (1-100)")]
T = Annotated[float | None, Form(ge=0, description="seconds into a clip or sound "
                                                     "(default: its middle)")]
DirectionForm = Annotated[Direction | None, Form(
    description="im2aud, aud2im, im2im or aud2aud; default: im2aud for an image, aud2im for a "
                "sound or a clip")]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@router.post("", response_model=SearchResponse, responses=_ERRORS,
             summary="Search with an uploaded image, sound or clip")
async def search_upload(
    state: State,
    engine: ReadyEngine,
    file: Annotated[UploadFile, File(description="an image (PNG, JPEG), a sound (WAV, FLAC, "
                                                 "OGG, MP3) or a clip (MP4, WebM, MKV, MOV)")],
    direction: DirectionForm = None,
    k: K = 10,
    t: T = None,
) -> SearchResponse:
    data = await file.read()
    return await state.workers.run(_search_upload, state.settings.public_url, engine, data,
                                   direction, k, t, state.metrics.stage)


def _search_upload(base: str, engine: Engine, data: bytes, direction: Direction | None, k: int,
                   t: float | None, stage) -> SearchResponse:
    started = time.perf_counter()
    upload = decode(data, engine.runtime, t)
    direction = direction or DEFAULT_DIRECTION[upload.kind]
    check_direction(upload.kind, direction)
    decoded = time.perf_counter()
    query_side, searched = SIDES[direction]
    vector = embed(engine.runtime, upload, query_side)
    embedded = time.perf_counter()
    with engine.lease() as index:
        hits = search(index, vector, searched, k)
        build_id = index.info.build_id
    done = time.perf_counter()
    stage.labels("decode").observe(decoded - started)
    stage.labels("embed").observe(embedded - decoded)
    stage.labels("search").observe(done - embedded)
    return SearchResponse(
        query=QueryOut(kind=upload.kind, direction=direction, time=upload.time,
                       duration=upload.duration),
        k=k, results=[hit_out(h, base) for h in hits], index=build_id,
        timing=Timing(decode_ms=_ms(decoded - started), embed_ms=_ms(embedded - decoded),
                      search_ms=_ms(done - embedded), total_ms=_ms(done - started)),
    )


@router.post("/by-id/{item_id:path}", response_model=SearchResponse,
             responses={404: {"model": ErrorResponse, "description": "no item with this id"},
                        422: _ERRORS[422], 503: _ERRORS[503]},
             summary="Search from an indexed item")
async def search_by_id(
    state: State,
    engine: ReadyEngine,
    item_id: Annotated[str, Path(description="the item's id, as in the manifest")],
    direction: Annotated[Direction, Query(description="im2aud, aud2im, im2im or aud2aud")]
    = "im2aud",
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many results (1-100)")] = 10,
) -> SearchResponse:
    return await state.workers.run(_search_by_id, state.settings.public_url, engine, item_id,
                                   direction, k)


def _search_by_id(base: str, engine: Engine, item_id: str, direction: Direction,
                  k: int) -> SearchResponse:
    started = time.perf_counter()
    query_side, searched = SIDES[direction]
    with engine.lease() as index:
        item = index.item_by_id(item_id)
        if item is None:
            raise ApiError(404, "unknown_item", f"no item {item_id!r} in the index")
        vector = stored_vector(index, item["rowid"], query_side)
        looked_up = time.perf_counter()
        # The item itself is not an answer to "what else looks (sounds) like this".
        exclude = item["rowid"] if query_side == searched else None
        hits = search(index, vector, searched, k, exclude=exclude)
        build_id = index.info.build_id
    done = time.perf_counter()
    return SearchResponse(
        query=QueryOut(kind="item", direction=direction, id=item_id, time=item["time"]),
        k=k, results=[hit_out(h, base) for h in hits], index=build_id,
        timing=Timing(decode_ms=0.0, embed_ms=_ms(looked_up - started),
                      search_ms=_ms(done - looked_up), total_ms=_ms(done - started)),
    )
