"""Running blocking work (decoding, ONNX Runtime, FAISS) off the event loop, with a bound.

``threads`` queries run at once; up to ``max_waiting`` more wait for a thread; beyond that a
query is refused at once with 503 (busy) instead of piling up, so a burst cannot make every
later request slow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from service.errors import ApiError

T = TypeVar("T")


class Workers:
    """``thread_setup`` runs once in each thread before its first job: per-thread settings
    such as OpenMP's thread count (FAISS), which a call on another thread does not reach."""

    def __init__(self, threads: int, max_waiting: int,
                 thread_setup: Callable[[], None] | None = None) -> None:
        self.threads = threads
        self.max_waiting = max_waiting
        self._limiter = anyio.CapacityLimiter(threads)
        self._pending = 0
        self._setup = thread_setup
        self._local = threading.local()

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, function: Callable[..., T], *args: object) -> T:
        # Only the event loop's thread touches _pending, so no lock is needed.
        if self._pending >= self.threads + self.max_waiting:
            raise ApiError(503, "busy", f"the server is answering {self._pending} queries; "
                           "retry in a moment", headers={"Retry-After": "1"})
        self._pending += 1
        try:
            return await anyio.to_thread.run_sync(self._call, function, args,
                                                  limiter=self._limiter)
        finally:
            self._pending -= 1

    def _call(self, function: Callable[..., T], args: tuple[object, ...]) -> T:
        if self._setup is not None and not getattr(self._local, "ready", False):
            self._setup()
            self._local.ready = True
        return function(*args)
