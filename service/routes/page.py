"""The web page at ``/`` and its static files (plain HTML, CSS and an ES module; no build)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

WEB = Path(__file__).resolve().parents[1] / "web"

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})
