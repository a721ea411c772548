"""The client-side limiter: keyless toncenter allows about one request a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class RateLimiter:
    """Spaces calls at least 1/rps seconds apart (rps <= 0: no limit)."""

    def __init__(self, rps: float, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.interval = 1.0 / rps if rps > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._sleep = sleep

    async def acquire(self) -> None:
        if self.interval <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await self._sleep(wait)
