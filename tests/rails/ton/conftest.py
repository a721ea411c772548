"""Local servers for the toncenter client: the local TON network, a scriptable misbehaving
toncenter, and an address where nothing listens."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from tests.localnet.conftest import chain, server  # noqa: F401  (the local network fixtures)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    return srv, task, f"http://127.0.0.1:{port}"


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | None = None  # str/bytes sent as is; None: a valid empty result
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class FakeToncenter:
    """Answers every request with the next scripted reply (the last one repeats)."""

    url: str = ""
    replies: list[Reply] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST"])
        async def any_path(path: str, request: Request) -> Response:
            self.requests.append((path, dict(request.headers)))
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if reply.delay:
                await asyncio.sleep(reply.delay)
            body = reply.body if reply.body is not None else '{"ok": true, "result": "42"}'
            return Response(body, status_code=reply.status, headers=reply.headers)

        return app


@pytest.fixture
async def fake() -> AsyncIterator[FakeToncenter]:
    f = FakeToncenter(replies=[Reply()])
    srv, task, f.url = await serve(f.app())
    try:
        yield f
    finally:
        srv.should_exit = True
        await task


@pytest.fixture
def down_url() -> str:
    """A local address where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


from tests.rails.ton.rail_fixture import payer, rail  # noqa: E402,F401  (fixtures of the e2e tests)
