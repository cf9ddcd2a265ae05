"""``/v1/admin``: rebuild the index in the background and swap it in (bearer token)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path

from service.deps import AdminJobs
from service.errors import ApiError
from service.jobs import Job, JobBusy
from service.schemas import ErrorResponse, JobOut

router = APIRouter(prefix="/v1/admin", tags=["admin"])

_ERRORS = {401: {"model": ErrorResponse, "description": "no or a wrong bearer token"},
           404: {"model": ErrorResponse, "description": "admin API off, or no such job"}}


def _out(job: Job) -> JobOut:
    return JobOut(**asdict(job))


@router.post("/reindex", response_model=JobOut, status_code=202,
             responses={**_ERRORS, 409: {"model": ErrorResponse,
                                         "description": "a rebuild is already running"}},
             summary="Rebuild the index from its corpus and swap it in when done")
async def reindex(jobs: AdminJobs) -> JobOut:
    try:
        job = jobs.start()
    except JobBusy as busy:
        raise ApiError(409, "busy", f"rebuild {busy} is still running; poll "
                       f"/v1/admin/jobs/{busy}") from None
    return _out(job)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_ERRORS,
            summary="A rebuild's progress and outcome")
async def job_status(jobs: AdminJobs,
                     job_id: Annotated[str, Path(description="as returned by reindex")]) -> JobOut:
    job = jobs.get(job_id)
    if job is None:
        raise ApiError(404, "unknown_job", f"no job {job_id!r} (jobs are kept until the "
                       "server restarts)")
    return _out(job)
