"""``/v1/localize``: where in the frame the sound comes from (AVOL-Net's heat map)."""

from __future__ import annotations

import base64
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, Header, UploadFile
from fastapi.responses import Response

from models.errors import MediaError
from service.deps import ReadyEngine, State
from service.engine import Engine
from service.errors import ApiError
from service.links import grid_out, moments_out, peak_out
from service.overlay import localize, overlay_png
from service.queries import QueryError, decode
from service.schemas import ERROR_RESPONSES, LocalizeResponse, Timing
from service.timeline import best, clip_timeline

router = APIRouter(prefix="/v1", tags=["localize"])

ON_SCREEN = 0.5
"""The on-screen probability from which the overlay shows the heat map."""


def wants_png(accept: str | None) -> bool:
    """True when the client prefers image/png to JSON (``Accept: image/png``)."""
    if not accept:
        return False
    ranked = []
    for part in accept.split(","):
        kind, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranked.append((quality, kind.strip().lower()))
    png = max((q for q, k in ranked if k in ("image/png", "image/*")), default=0.0)
    json_ = max((q for q, k in ranked if k in ("application/json", "*/*", "application/*")),
                default=0.0)
    return png > 0 and png > json_


@router.post(
    "/localize", response_model=LocalizeResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"image/png": {}},
                                "description": "JSON, or the overlay PNG with Accept: image/png"}},
    summary="Localise the sounding object in a clip, or in an image given a sound",
)
async def localize_upload(
    state: State,
    engine: ReadyEngine,
    file: Annotated[UploadFile | None, File(description="a clip (MP4, WebM, MKV, MOV)")] = None,
    image: Annotated[UploadFile | None, File(description="an image, with `audio`")] = None,
    audio: Annotated[UploadFile | None, File(description="a sound, with `image`")] = None,
    t: Annotated[float | None, Form(ge=0, description="seconds into the clip or sound "
                                                       "(default: its middle, or with timeline "
                                                       "the best window)")] = None,
    timeline: Annotated[bool, Form(description="score a clip window by window")] = False,
    hop: Annotated[float, Form(gt=0, le=3600, description="seconds between windows of the "
                                                          "timeline")] = 0.5,
    accept: Annotated[str | None, Header()] = None,
) -> Response | LocalizeResponse:
    if file is not None and (image is not None or audio is not None):
        raise ApiError(422, "invalid_parameters", "send either a clip as `file`, or an `image` "
                       "and an `audio` file, not both")
    if file is None and (image is None or audio is None):
        raise ApiError(422, "invalid_parameters", "send a clip as `file`, or both an `image` "
                       "and an `audio` file")
    if file is not None:
        uploads = (await file.read(),)
    else:
        assert image is not None and audio is not None
        uploads = (await image.read(), await audio.read())
    answer, png = await state.workers.run(_localize, engine, uploads, t,
                                          hop if timeline else None)
    if wants_png(accept):
        peak = answer.peak
        return Response(png, media_type="image/png", headers={
            "X-Peak-X": f"{peak.x:.1f}", "X-Peak-Y": f"{peak.y:.1f}",
            "X-Peak-Score": f"{peak.score:.4f}",
            "X-On-Screen": "true" if answer.on_screen else "false"})
    return answer


def _localize(engine: Engine, uploads: tuple[bytes, ...], t: float | None,
              hop: float | None) -> tuple[LocalizeResponse, bytes]:
    """``hop``: score the clip window by window (timeline), and by default localise in the
    window where the sound most comes from the frame."""
    started = time.perf_counter()
    runtime = engine.runtime
    moments = None
    if hop is not None:
        if len(uploads) != 1:
            raise QueryError("timeline=true scores a clip window by window: upload a clip as "
                             "`file`")
        moments = clip_timeline(runtime, uploads[0], hop)
        if t is None:
            t = best(moments).time
    if len(uploads) == 1:
        clip = decode(uploads[0], runtime, t, expect="video")
        frame, wave, kind, moment = clip.frame, clip.audio, "video", clip.time
    else:
        picture = decode(uploads[0], runtime, expect="image")
        sound = decode(uploads[1], runtime, t, expect="audio")
        frame, wave, kind, moment = picture.frame, sound.audio, "pair", sound.time
    if frame is None or wave is None:  # decode() guarantees both for these kinds
        raise MediaError("the upload lacks a frame or a sound")
    decoded = time.perf_counter()
    found = localize(runtime, frame, wave)
    embedded = time.perf_counter()
    on_screen = found.on_screen
    # An off-screen sound lights no cell: draw no heat rather than the least-bad guess.
    png = overlay_png(frame, found.grid if on_screen >= ON_SCREEN else np.zeros_like(found.grid))
    done = time.perf_counter()
    answer = LocalizeResponse(
        kind=kind, time=moment, width=found.width, height=found.height,
        on_screen_probability=round(on_screen, 5), on_screen=on_screen >= ON_SCREEN,
        grid=grid_out(found), peak=peak_out(found),
        overlay_png=base64.b64encode(png).decode("ascii"),
        timeline=moments_out(moments) if moments is not None else None,
        timing=Timing(decode_ms=round((decoded - started) * 1000, 3),
                      embed_ms=round((embedded - decoded) * 1000, 3),
                      search_ms=0.0, render_ms=round((done - embedded) * 1000, 3),
                      total_ms=round((done - started) * 1000, 3)),
    )
    return answer, png
