"""The loaded model and index, and the hot swap of the index.

A query leases the current index for its whole duration (``with engine.lease() as index``); a
swap installs a new index at once and closes the old one when its last lease ends, so queries in
flight finish on the version they started with and later ones see the new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexer.bundle import resolve_bundle
from indexer.search import SearchIndex, open_index
from models.runtime import ModelRuntime

log = logging.getLogger(__name__)


class _Held:
    """An index and the number of queries using it."""

    def __init__(self, index: SearchIndex) -> None:
        self.index = index
        self.leases = 0
        self.retired = False


class Engine:
    """The model runtime and the index the service answers from."""

    def __init__(self, runtime: ModelRuntime, index: SearchIndex, device: str) -> None:
        index.check_model(runtime.content_hash, runtime.model_dir)
        self.runtime = runtime
        self.device = device
        self._lock = threading.Lock()
        self._current = _Held(index)

    @classmethod
    def load(cls, model_dir: Path, index_dir: Path, device: str, onnx_threads: int) -> Engine:
        runtime = ModelRuntime(model_dir, device=device, intra_op_threads=onnx_threads)
        return cls(runtime, open_index(index_dir, device=device), device)

    @property
    def index(self) -> SearchIndex:
        """The current index, for a glance (counts, info); queries use ``lease``."""
        return self._current.index

    @contextmanager
    def lease(self) -> Iterator[SearchIndex]:
        with self._lock:
            held = self._current
            held.leases += 1
        try:
            yield held.index
        finally:
            with self._lock:
                held.leases -= 1
                close = held.retired and held.leases == 0
            if close:
                held.index.close()

    def reload(self, index_dir: Path | None = None) -> SearchIndex:
        """Open the index bundle again (after a rebuild switched it) and swap it in.

        The new version is opened and checked against the model before anything changes, so a
        bundle that cannot be used leaves the old one serving (and the error is raised).
        """
        index_dir = index_dir or self.index.index_dir
        if resolve_bundle(index_dir) == self.index.root:
            return self.index  # already serving this version
        fresh = open_index(index_dir, device=self.device)
        try:
            fresh.check_model(self.runtime.content_hash, self.runtime.model_dir)
        except BaseException:
            fresh.close()
            raise
        with self._lock:
            old, self._current = self._current, _Held(fresh)
            old.retired = True
            close = old.leases == 0
        if close:
            old.index.close()
        log.info("index swapped: %s -> %s (%d items)", old.index.root.name, fresh.root.name,
                 fresh.count)
        return fresh

    def close(self) -> None:
        with self._lock:
            self._current.retired = True
            close = self._current.leases == 0
        if close:
            self._current.index.close()
