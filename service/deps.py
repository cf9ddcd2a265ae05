"""Dependencies that hand routes what the app loaded (never module globals)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.engine import Engine
from service.errors import ApiError
from service.jobs import Jobs
from service.state import AppState

_bearer = HTTPBearer(auto_error=False, description="AVSEARCH_ADMIN_TOKEN")


async def get_state(request: Request) -> AppState:
    return request.app.state.avsearch


State = Annotated[AppState, Depends(get_state)]


async def get_engine(state: State) -> Engine:
    if state.engine is None:
        why = state.load_error or "the model and the index are still loading"
        raise ApiError(503, "not_ready", f"not ready: {why}", headers={"Retry-After": "2"})
    return state.engine


ReadyEngine = Annotated[Engine, Depends(get_engine)]


async def require_admin(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Jobs:


    token = state.settings.admin_token
    if token is None:
        raise ApiError(404, "admin_disabled", "the admin API is off: set AVSEARCH_ADMIN_TOKEN "
                       "to turn it on")
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ApiError(401, "unauthorized", "a valid bearer token is required "
                       "(Authorization: Bearer $AVSEARCH_ADMIN_TOKEN)",
                       headers={"WWW-Authenticate": "Bearer"})
    if state.jobs is None:
        raise ApiError(503, "not_ready", "not ready: the index is not loaded yet")
    return state.jobs


AdminJobs = Annotated[Jobs, Depends(require_admin)]
