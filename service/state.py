"""What one app holds while it runs: its settings and, once loaded, the engine and jobs."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from indexer.bundle import resolve_bundle
from models.errors import AvsearchError
from service.engine import Engine
from service.jobs import Jobs, ReindexConfig
from service.metrics import Metrics
from service.settings import Settings
from service.workers import Workers

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    workers: Workers
    engine: Engine | None = None
    jobs: Jobs | None = None
    load_error: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)

    def load(self) -> None:
        """Load the model and the index (in a thread: the app answers /healthz meanwhile)."""
        settings = self.settings
        try:
            engine = Engine.load(settings.model_dir, settings.index_dir, settings.device,
                                 settings.onnx_threads)
        except AvsearchError as exc:
            self.load_error = str(exc)
            log.error("the model or the index could not be loaded: %s", exc)
        except Exception as exc:  # keep the process up and say why in /readyz
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("the model or the index could not be loaded")
        else:
            self.jobs = Jobs(engine, ReindexConfig(
                model_dir=settings.model_dir, index_dir=settings.index_dir,
                corpus_dir=settings.corpus_dir, device=settings.device))
            self.engine = engine
            log.info("ready: model %s on %s, index %s (%d items, FAISS on %s)",
                     engine.runtime.content_hash, engine.runtime.provider,
                     engine.index.info.build_id, engine.index.count,
                     "GPU" if engine.index.on_gpu else "CPU")
        finally:
            self.loaded.set()

    def watch_index(self, stop: threading.Event) -> None:
        """Swap in a new version of the index bundle when another process (the indexer CLI, a
        compose one-shot job) switches INDEX_DIR; check every ``reload_interval`` seconds."""
        interval = self.settings.reload_interval
        refused: Path | None = None  # a version that failed to load: not retried every time
        while not stop.wait(interval):
            engine = self.engine
            if engine is None:
                continue
            current = None
            try:
                current = resolve_bundle(self.settings.index_dir)
                if current != engine.index.root and current != refused:
                    log.info("INDEX_DIR now points to %s: swapping it in", current.name)
                    engine.reload(self.settings.index_dir)
            except AvsearchError as exc:
                refused = current
                log.warning("the new index version cannot be used, the old one keeps "
                            "serving: %s", exc)
            except Exception:  # keep watching; the old index keeps serving
                log.exception("checking the index bundle for a new version failed")

    def index_sizes(self) -> dict[str, float]:
        if self.engine is None:
            return {}
        info = self.engine.index.info
        return {"items": info.counts.get("items", 0),
                **{m: info.counts.get(m, 0) for m in info.modalities}}

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.wait(timeout=5)
        if self.engine is not None:
            self.engine.close()
