"""The FastAPI application: ``create_app(settings)``; nothing is created at import time."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import faiss
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service import errors
from service.limits import UploadLimit
from service.metrics import Metrics, MetricsMiddleware
from service.routes import admin, health, items, localize, page, search
from service.settings import Settings
from service.state import AppState
from service.workers import Workers

DESCRIPTION = """
Cross-modal search between images and sounds, and localisation of the sounding object in a
frame, with AVE-Net / AVOL-Net embeddings ("Objects that Sound").

Upload an image, a sound or a clip to `/v1/search`, or start from an indexed item with
`/v1/search/by-id/{id}`; localise with `/v1/localize`. Errors are JSON:
`{"error": {"code": ..., "message": ...}}`.
"""


def create_app(settings: Settings, wait_until_loaded: bool = False) -> FastAPI:
    """The app for ``settings``. The model and the index load in the background at start-up
    (``/readyz`` answers 503 until then) unless ``wait_until_loaded``."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # OpenMP's thread count is per thread: set it here and in every worker thread.
        def faiss_threads() -> None:
            faiss.omp_set_num_threads(settings.faiss_threads)

        faiss_threads()
        workers = Workers(settings.workers, settings.max_queue, thread_setup=faiss_threads)
        state = AppState(settings, metrics, workers)
        metrics.watch_index(state.index_sizes)
        app.state.avsearch = state
        loader = threading.Thread(target=state.load, name="avsearch-load", daemon=True)
        loader.start()
        if wait_until_loaded:
            loader.join()
        stop = threading.Event()
        watcher = threading.Thread(target=state.watch_index, args=(stop,),
                                   name="avsearch-watch", daemon=True)
        if settings.reload_interval > 0:
            watcher.start()
        try:
            yield
        finally:
            stop.set()
            loader.join()
            if watcher.is_alive():
                watcher.join()
            state.close()

    app = FastAPI(title="avsearch", version=_version(), description=DESCRIPTION,
                  lifespan=lifespan)
    errors.install(app)
    for module in (search, localize, items, admin, health, page):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=page.WEB), name="static")
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    return app


def create_app_from_environment() -> FastAPI:
    """The app of one process of a multi-process server (``avsearch serve --processes N``),
    configured by the ``AVSEARCH_*`` variables the parent set."""
    return create_app(Settings())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("avsearch")
    except PackageNotFoundError:
        return "0.0.0"
