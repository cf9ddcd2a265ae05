"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import State
from service.schemas import ErrorResponse, IndexStatus, ModelStatus, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyResponse,
            responses={503: {"model": ErrorResponse, "description": "not loaded (yet)"}},
            summary="The model and the index are loaded; what runs where")
async def readyz(state: State) -> ReadyResponse | JSONResponse:
    engine = state.engine
    if engine is None:
        why = state.load_error or "the model and the index are still loading"
        return JSONResponse({"error": {"code": "not_ready", "message": f"not ready: {why}"}},
                            status_code=503, headers={"Retry-After": "2"})
    runtime, index = engine.runtime, engine.index
    info = index.info
    return ReadyResponse(
        ready=True,
        model=ModelStatus(hash=runtime.content_hash, preset=runtime.info.preset.get("name"),
                          provider=runtime.provider, on_gpu=runtime.on_gpu),
        index=IndexStatus(build_id=info.build_id, kind=info.index.kind,
                          items=info.counts.get("items", 0),
                          vectors={m: info.counts.get(m, 0) for m in info.modalities},
                          shards=info.shards, on_gpu=index.on_gpu, gpus=index.gpus,
                          built_at=info.built_at),
    )


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
