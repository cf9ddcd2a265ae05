"""Background index rebuilds started through the admin API.

A rebuild runs ``indexer.build`` into the serving INDEX_DIR (a new version, switched atomically
by the indexer), then the engine opens the new version and swaps it in. Until that swap the old
version serves; a rebuild that fails leaves it serving and reports why. One rebuild at a time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from indexer.build import BuildConfig, build
from indexer.embed import EmbedConfig
from models.errors import AvsearchError
from models.manifest import read_manifest
from service.engine import Engine

log = logging.getLogger(__name__)

SHARD_SIZE = 512
"""Items per embedding shard in a rebuild: progress is reported shard by shard."""


@dataclass(frozen=True)
class Job:
    id: str
    state: str = "queued"  # queued, running, succeeded, failed
    stage: str = "queued"
    done: int = 0
    total: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None
    build_id: str | None = None


@dataclass(frozen=True)
class ReindexConfig:
    model_dir: Path
    index_dir: Path
    corpus_dir: Path | None  # None: the corpus the serving index was built from
    device: str
    keep_versions: int = 2

    @property
    def state_dir(self) -> Path:
        """Where jobs are recorded, so that every process of a multi-process server (and a
        restarted one) can report them: ``.INDEX_DIR.jobs`` beside the index bundle."""
        return self.index_dir.parent / f".{self.index_dir.name}.jobs"


class JobBusy(Exception):
    """A rebuild is already running (its id is the message)."""


@dataclass
class Jobs:
    """The rebuilds this process has run, newest last."""

    engine: Engine
    config: ReindexConfig
    _jobs: dict[str, Job] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        return _read_job(self.config.state_dir, job_id)

    def start(self, corpus_dir: Path | None = None) -> Job:
        with self._lock:
            running = [j for j in self._jobs.values() if j.state in ("queued", "running")]
            if running:
                raise JobBusy(running[0].id)
            job = Job(id=uuid.uuid4().hex[:12], started_at=_now())
            self._jobs[job.id] = job
        _write_job(self.config.state_dir, job)
        corpus = corpus_dir or self.config.corpus_dir or Path(self.engine.index.info.corpus)
        thread = threading.Thread(target=self._run, args=(job.id, corpus),
                                  name=f"reindex-{job.id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return job

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the rebuilds started so far (the app's shutdown, tests)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def _update(self, job_id: str, **changes: object) -> None:
        with self._lock:
            job = self._jobs[job_id] = replace(self._jobs[job_id], **changes)
        _write_job(self.config.state_dir, job)

    def _run(self, job_id: str, corpus: Path) -> None:
        try:
            self._update(job_id, state="running", stage="reading the manifest")
            total = len(read_manifest(corpus))
            self._update(job_id, stage="embedding", total=total)
            done = 0

            def on_shard(path: Path) -> None:
                nonlocal done
                with np.load(path) as shard:
                    done += len(shard["rowids"]) + len(shard["failed_rowids"])
                self._update(job_id, done=done)

            config = BuildConfig(
                model=self.config.model_dir, corpus=corpus, out=self.config.index_dir,
                device=self.config.device, overwrite=True,
                embed=EmbedConfig(shard_size=SHARD_SIZE, progress=False),
                keep_versions=self.config.keep_versions,
                argv=("service", "reindex", str(corpus)),
            )
            report = build(config, on_shard=on_shard)
            self._update(job_id, stage="swapping in the new index", done=report.changed)
            fresh = self.engine.reload(self.config.index_dir)
            self._update(job_id, state="succeeded", stage="done", finished_at=_now(),
                         build_id=fresh.info.build_id,
                         message=report.summary().splitlines()[0])
        except AvsearchError as exc:
            log.warning("reindex %s failed: %s", job_id, exc)
            self._update(job_id, state="failed", stage="failed", finished_at=_now(),
                         message=f"{exc}; the previous index is still serving")
        except Exception as exc:  # a bug or an OS error: keep serving, say what happened
            log.exception("reindex %s failed", job_id)
            self._update(job_id, state="failed", stage="failed", finished_at=_now(),
                         message=f"{type(exc).__name__}: {exc}; the previous index is still "
                                 "serving")


def _write_job(folder: Path, job: Job) -> None:
    """Record a job (a temporary file, then a rename: readers never see half a record)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{job.id}.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(asdict(job)))
        os.replace(tmp, folder / f"{job.id}.json")
    except OSError as exc:  # the job still runs; only other processes cannot see it
        log.warning("job %s could not be recorded in %s: %s", job.id, folder, exc)


def _read_job(folder: Path, job_id: str) -> Job | None:
    if not job_id.isalnum():  # ids are hex; nothing else may name a file
        return None
    try:
        return Job(**json.loads((folder / f"{job_id}.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
