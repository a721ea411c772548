"""The API's latency and readiness as the service objectives read them (monitoring/slo.py).

`RequestTiming` times every /v1 request from the first byte in to the response's start
(pure ASGI, so a streamed body does not stretch it) and counts it per minute in a latency
bucket; an API process writes its counts every SIGNALS_FLUSH_SECONDS (`flush_signals`),
a worker with its monitoring loops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tonrail.db import Database
from tonrail.monitoring.signals import observe_api_request, persist_signals

log = logging.getLogger(__name__)


class RequestTiming:
    def __init__(self, app: ASGIApp, prefix: str = "/v1/"):
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = False

        async def timed(message: Message) -> None:
            nonlocal seen
            if message["type"] == "http.response.start" and not seen:
                seen = True
                observe_api_request((time.perf_counter() - started) * 1000)
            await send(message)

        await self.app(scope, receive, timed)


async def flush_signals(db: Database, every_seconds: float) -> Any:
    """Write this process's buffered signals every `every_seconds` until cancelled."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await persist_signals(db)
        except Exception as exc:  # the database may be down; the buffer waits for the next
            log.warning("could not write monitoring signals: %s", exc)
