"""``/v1/search``: cross-modal and same-modality search from an upload or an indexed item."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile

from indexer.bundle import FEATURES
from models.expansion import MAX_EXPAND
from service.deps import ReadyEngine, State
from service.engine import Engine
from service.errors import ApiError
from service.explain import explain_aud2im, explain_im2aud, item_frame
from service.links import explanation_out, hit_out, moments_out, overlay_url
from service.matching import applied_cut, with_probabilities
from service.queries import (
    DEFAULT_DIRECTION,
    Direction,
    check_direction,
    decode,
    embed_image,
    embed_sound,
    expand_query,
    search,
    stored_vector,
    vector_sets,
)
from service.schemas import ERROR_RESPONSES, ErrorResponse, QueryOut, SearchResponse, Timing
from service.timeline import best, clip_timeline

router = APIRouter(prefix="/v1/search", tags=["search"])

MAX_K = 100
_ERRORS = ERROR_RESPONSES

K = Annotated[int, Form(ge=1, le=MAX_K, description="how many results (1-100)")]
T = Annotated[float | None, Form(ge=0, description="seconds into a clip or sound "
                                                     "(default: its middle)")]
ExplainForm = Annotated[bool, Form(
    description="for im2aud and aud2im: where in the image the sound comes from, per hit")]
MIN_PROBABILITY_HELP = ("leave out hits less likely than this to match (0-1; default: the "
                        "model's threshold, chosen when it was calibrated; 0 keeps all k)")
MinProbabilityForm = Annotated[float | None, Form(ge=0, le=1, description=MIN_PROBABILITY_HELP)]
EXPAND_HELP = ("a sound query (aud2im, aud2aud) is first averaged with this many of the "
               "index's nearest sounds by the audio features (0-50; 10 is a good start; "
               "default: the service's, 0 unless configured: the sound searches alone)")
ExpandForm = Annotated[int | None, Form(ge=0, le=MAX_EXPAND, description=EXPAND_HELP)]
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
    explain: ExplainForm = False,
    timeline: Annotated[bool, Form(description="a clip: score it window by window and search "
                                               "from the window where the sound most comes "
                                               "from the frame (unless t is given)")] = False,
    hop: Annotated[float, Form(gt=0, le=3600, description="seconds between windows of the "
                                                          "timeline")] = 0.5,
    min_probability: MinProbabilityForm = None,
    expand: ExpandForm = None,
) -> SearchResponse:
    data = await file.read()
    count = state.settings.expand if expand is None else expand
    return await state.workers.run(_search_upload, state.settings.public_url, engine, data,
                                   direction, k, t, explain, hop if timeline else None,
                                   min_probability, count, state.metrics.stage)


def _search_upload(base: str, engine: Engine, data: bytes, direction: Direction | None, k: int,
                   t: float | None, explain: bool, hop: float | None,
                   min_probability: float | None, expand: int, stage) -> SearchResponse:
    started = time.perf_counter()
    runtime = engine.runtime
    cut = applied_cut(runtime, min_probability)
    moments = None
    if hop is not None:
        moments = clip_timeline(runtime, data, hop)
        if t is None:
            t = best(moments).time
    upload = decode(data, runtime, t)
    direction = direction or DEFAULT_DIRECTION[upload.kind]
    check_direction(upload.kind, direction)
    decoded = time.perf_counter()
    query_side, searched = vector_sets(runtime, direction)
    query_grid, features = None, None
    if query_side == "image":
        vector, query_grid = embed_image(runtime, upload)
    else:
        vector, features = embed_sound(runtime, upload, query_side)
    embedded = time.perf_counter()
    with engine.lease() as index:
        query, expanded_with = expand_query(index, vector, features, query_side, expand)
        hits = with_probabilities(runtime, direction, search(index, query, searched, k), cut,
                                  expanded=expanded_with > 0)
        build_id = index.info.build_id
        searched_at = time.perf_counter()
        found: list = [None] * len(hits)
        if explain and direction == "im2aud" and query_grid is not None:
            assert upload.frame is not None
            height, width = upload.frame.shape[:2]
            found = explain_im2aud(runtime, index, query_grid, width, height, hits)
    if explain and direction == "aud2im":
        found = explain_aud2im(runtime, vector, hits)
    done = time.perf_counter()
    stage.labels("decode").observe(decoded - started)
    stage.labels("embed").observe(embedded - decoded)
    stage.labels("search").observe(searched_at - embedded)
    side = "query" if direction == "im2aud" else "hit"
    results = [hit_out(h, base, explanation_out(f, side) if f is not None else None)
               for h, f in zip(hits, found, strict=True)]
    return SearchResponse(
        query=QueryOut(kind=upload.kind, direction=direction, time=upload.time,
                       duration=upload.duration,
                       timeline=moments_out(moments) if moments is not None else None,
                       expanded=expanded_with),
        k=k, min_probability=cut, no_match=not results, results=results, index=build_id,
        timing=Timing(decode_ms=_ms(decoded - started), embed_ms=_ms(embedded - decoded),
                      search_ms=_ms(searched_at - embedded),
                      explain_ms=_ms(done - searched_at) if explain else None,
                      total_ms=_ms(done - started)),
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
    explain: Annotated[bool, Query(description="for im2aud and aud2im: where in the image the "
                                               "sound comes from, per hit")] = False,
    min_probability: Annotated[float | None, Query(ge=0, le=1,
                                                   description=MIN_PROBABILITY_HELP)] = None,
    expand: Annotated[int | None, Query(ge=0, le=MAX_EXPAND, description=EXPAND_HELP)] = None,
) -> SearchResponse:
    count = state.settings.expand if expand is None else expand
    return await state.workers.run(_search_by_id, state.settings.public_url, engine, item_id,
                                   direction, k, explain, min_probability, count)


def _search_by_id(base: str, engine: Engine, item_id: str, direction: Direction,
                  k: int, explain: bool, min_probability: float | None,
                  expand: int) -> SearchResponse:
    started = time.perf_counter()
    runtime = engine.runtime
    cut = applied_cut(runtime, min_probability)
    query_side, searched = vector_sets(runtime, direction)
    with engine.lease() as index:
        item = index.item_by_id(item_id)
        if item is None:
            raise ApiError(404, "unknown_item", f"no item {item_id!r} in the index")
        vector = stored_vector(index, item["rowid"], query_side)
        features = (stored_vector(index, item["rowid"], FEATURES)
                    if query_side != "image" and index.has_audio_features else None)
        looked_up = time.perf_counter()
        # The item itself is not an answer to "what else looks (sounds) like this", nor its own
        # evidence in an expansion.
        exclude = item["rowid"] if query_side == searched else None
        query, expanded_with = expand_query(index, vector, features, query_side, expand,
                                            exclude=item["rowid"])
        hits = with_probabilities(runtime, direction,
                                  search(index, query, searched, k, exclude=exclude), cut,
                                  expanded=expanded_with > 0)
        build_id = index.info.build_id
        searched_at = time.perf_counter()
        found: list = [None] * len(hits)
        if explain and direction == "im2aud":
            frame = item_frame(item, runtime)
            grid = runtime.embed_images([frame]).grids[0]
            found = explain_im2aud(runtime, index, grid, frame.shape[1], frame.shape[0], hits)
    if explain and direction == "aud2im":
        found = explain_aud2im(runtime, vector, hits)
    done = time.perf_counter()
    results = []
    for hit, where in zip(hits, found, strict=True):
        explanation = None
        if where is not None:
            image_item, sound_item = ((item_id, hit.item["id"]) if direction == "im2aud"
                                      else (hit.item["id"], item_id))
            explanation = explanation_out(where, "query" if direction == "im2aud" else "hit",
                                          overlay_url(image_item, sound_item, base))
        results.append(hit_out(hit, base, explanation))
    return SearchResponse(
        query=QueryOut(kind="item", direction=direction, id=item_id, time=item["time"],
                       expanded=expanded_with),
        k=k, min_probability=cut, no_match=not results, results=results, index=build_id,
        timing=Timing(decode_ms=0.0, embed_ms=_ms(looked_up - started),
                      search_ms=_ms(searched_at - looked_up),
                      explain_ms=_ms(done - searched_at) if explain else None,
                      total_ms=_ms(done - started)),
    )
