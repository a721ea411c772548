"""Figures shared by every viewer of a page for a few seconds, per process.

A 7-day aggregate is not recomputed on every 2 s poll of every open page: each page asks
`shared_figures(request).get(key, ttl, now, compute)` and concurrent requests for stale
figures wait for one computation. One instance per app (so per process and per database).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")


class SharedFigures:
    """Range figures computed once and shared by every viewer for the range's
    `cache_seconds` (per process): a 7-day aggregate is not recomputed on every 2 s poll of
    every open page. Concurrent requests for the same figures wait for one computation."""

    def __init__(self) -> None:
        self._done: dict[Hashable, tuple[datetime, Any]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    def _fresh(self, key: Hashable, ttl: int, now: datetime) -> tuple[datetime, Any] | None:
        hit = self._done.get(key)
        if hit is None:
            return None
        age = (now - hit[0]).total_seconds()
        return hit if 0 <= age < ttl else None

    async def get(
        self,
        key: Hashable,
        ttl: int,
        now: datetime,
        compute: Callable[[datetime], Awaitable[T]],
    ) -> tuple[datetime, T]:
        """(when computed, figures): fresh ones if younger than `ttl` s, else computed at `now`."""
        hit = self._fresh(key, ttl, now)
        if hit is None:
            async with self._locks.setdefault(key, asyncio.Lock()):
                hit = self._fresh(key, ttl, now)  # computed while this request waited
                if hit is None:
                    hit = (now, await compute(now))
                    self._done[key] = hit
        at, value = hit
        return at, value


def shared_figures(request: Request) -> SharedFigures:
    """The app's one cache of page figures."""
    cache = getattr(request.app.state, "dashboard_shared_figures", None)
    if not isinstance(cache, SharedFigures):
        cache = SharedFigures()
        request.app.state.dashboard_shared_figures = cache
    return cache
