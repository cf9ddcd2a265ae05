"""``/v1/items``: an indexed item's metadata and media.

Media paths come from the index's item store and are resolved inside the item's corpus folder;
a path that would leave it is refused (``models.manifest.resolve``).
"""

from __future__ import annotations

import io
import mimetypes
import wave
from pathlib import Path as FilePath
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, Response
from PIL import Image

from models import media
from models.manifest import resolve
from service.deps import ReadyEngine, State
from service.engine import Engine
from service.errors import ApiError
from service.explain import item_frame
from service.links import item_out
from service.overlay import overlay_png, with_peak
from service.queries import stored_vector
from service.schemas import ErrorResponse, ItemOut

router = APIRouter(prefix="/v1/items", tags=["items"])

ItemId = Annotated[str, Path(description="the item's id, as in the manifest")]
_NOT_FOUND = {404: {"model": ErrorResponse, "description": "no such item, or its media is "
                                                             "missing"}}


def _item(engine: Engine, item_id: str) -> dict[str, Any]:
    with engine.lease() as index:
        item = index.item_by_id(item_id)
    if item is None:
        raise ApiError(404, "unknown_item", f"no item {item_id!r} in the index")
    return item


def _file(item: dict[str, Any], relative: str) -> FilePath:
    if not item.get("corpus"):
        raise ApiError(404, "media_unavailable", f"item {item['id']!r} has no corpus folder")
    path = resolve(item["corpus"], relative)
    if not path.is_file():
        raise ApiError(404, "media_unavailable", f"the media of item {item['id']!r} is missing "
                       "from its corpus folder")
    return path


def _file_response(path: FilePath) -> FileResponse:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind, headers={"Cache-Control": "max-age=3600"})


@router.get("/{item_id:path}/image", responses={200: {"content": {"image/png": {}}},
                                                **_NOT_FOUND},
            response_class=Response, summary="An item's image (a video item's frame, as PNG)")
async def item_image(state: State, engine: ReadyEngine, item_id: ItemId) -> Response:
    item = _item(engine, item_id)
    if item.get("image"):
        return _file_response(_file(item, item["image"]))
    _file(item, item["video"])  # 404 for a missing video, before any decoding
    return await state.workers.run(_frame_png, item, engine)


@router.get("/{item_id:path}/audio", responses={200: {"content": {"audio/wav": {}}},
                                                **_NOT_FOUND},
            response_class=Response, summary="An item's sound (a video item's window, as WAV)")
async def item_audio(state: State, engine: ReadyEngine, item_id: ItemId) -> Response:
    item = _item(engine, item_id)
    if item.get("audio"):
        return _file_response(_file(item, item["audio"]))
    rate, window = engine.runtime.sample_rate, engine.runtime.window_s
    return await state.workers.run(_video_window_wav, item, _file(item, item["video"]), rate,
                                   window)


@router.get("/{item_id:path}/video", responses={200: {"content": {"video/mp4": {}}},
                                                **_NOT_FOUND},
            response_class=Response, summary="A video item's whole video file")
async def item_video(engine: ReadyEngine, item_id: ItemId) -> Response:
    item = _item(engine, item_id)
    if not item.get("video"):
        raise ApiError(404, "media_unavailable", f"item {item_id!r} is not a video item")
    return _file_response(_file(item, item["video"]))


@router.get("/{item_id:path}/overlay", responses={200: {"content": {"image/png": {}}},
                                                  **_NOT_FOUND},
            response_class=Response,
            summary="An item's image with the heat map of another item's sound over it")
async def item_overlay(
    state: State, engine: ReadyEngine, item_id: ItemId,
    sound_of: Annotated[str, Query(description="the item whose sound to localise")],
) -> Response:
    item = _item(engine, item_id)
    return await state.workers.run(_overlay_png, engine, item, sound_of)


@router.get("/{item_id:path}", response_model=ItemOut, responses=_NOT_FOUND,
            summary="An item's metadata and media URLs")
async def item_metadata(state: State, engine: ReadyEngine, item_id: ItemId) -> ItemOut:
    return item_out(_item(engine, item_id), state.settings.public_url)


def _overlay_png(engine: Engine, item: dict[str, Any], sound_of: str) -> Response:
    with engine.lease() as index:
        sound_item = index.item_by_id(sound_of)
        if sound_item is None:
            raise ApiError(404, "unknown_item", f"no item {sound_of!r} in the index")
        sound = stored_vector(index, sound_item["rowid"], "audio")
    runtime = engine.runtime
    frame = item_frame(item, runtime)
    grid = runtime.heat_maps(runtime.embed_images([frame]).grids, sound)[0]
    found = with_peak(grid, frame.shape[1], frame.shape[0])
    return Response(overlay_png(frame, found.grid), media_type="image/png", headers={
        "X-Peak-X": f"{found.peak_xy[0]:.1f}", "X-Peak-Y": f"{found.peak_xy[1]:.1f}",
        "X-Peak-Score": f"{float(found.grid[found.peak_cell]):.4f}"})


def _frame_png(item: dict[str, Any], engine: Engine) -> Response:
    buffer = io.BytesIO()
    Image.fromarray(item_frame(item, engine.runtime)).save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png")


def _video_window_wav(item: dict[str, Any], path: FilePath, rate: int, window: float) -> Response:
    samples = media.load_audio(path, rate, window, item["time"], reject_silent=False)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return Response(buffer.getvalue(), media_type="audio/wav")
