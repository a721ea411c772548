"""A running local TON network for end-to-end tests: in-memory chain + real HTTP server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn

from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import Genesis
from tonrail.localnet.server import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Localnet:
    chain: Chain
    url: str
    genesis: Genesis

    @property
    def v2(self) -> str:
        return f"{self.url}/api/v2"

    @property
    def v3(self) -> str:
        return f"{self.url}/api/v3"


@asynccontextmanager
async def running_localnet(block_ms: int = 50) -> AsyncIterator[Localnet]:
    chain = Chain.open(None, block_ms=block_ms)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(chain), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    try:
        yield Localnet(chain, f"http://127.0.0.1:{port}", Genesis())
    finally:
        server.should_exit = True
        await task
        chain.close()
