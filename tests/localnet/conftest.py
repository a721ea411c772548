"""Fixtures for the local TON network: an in-memory chain and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn

from tonrail.localnet.chain import Chain
from tonrail.localnet.server import create_app


@pytest.fixture
def chain() -> Iterator[Chain]:
    c = Chain.open(None, block_ms=50)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
async def server(chain: Chain) -> AsyncIterator[str]:
    """A real uvicorn server with the block producer running; yields its base URL."""
    # Bind first and hand uvicorn the socket: no window for another process to take the port.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(create_app(chain), log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        await task
        sock.close()
