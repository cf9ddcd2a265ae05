"""Running blocking work (decoding, ONNX Runtime, FAISS) off the event loop, with a bound.

``threads`` queries run at once; up to ``max_waiting`` more wait for a thread; beyond that a
query is refused at once with 503 (busy) instead of piling up, so a burst cannot make every
later request slow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from service.errors import ApiError

T = TypeVar("T")


class Workers:
    def __init__(self, threads: int, max_waiting: int) -> None:
        self.threads = threads
        self.max_waiting = max_waiting
        self._limiter = anyio.CapacityLimiter(threads)
        self._pending = 0

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
            return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)
        finally:
            self._pending -= 1
