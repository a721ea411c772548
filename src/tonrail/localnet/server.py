"""The local network's HTTP server: toncenter v2 and v3, and the `/localnet/` admin API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tonrail.localnet.boc import parse_address
from tonrail.localnet.chain import Chain
from tonrail.localnet.config import ChainConfig, describe
from tonrail.localnet.faults import Faults
from tonrail.localnet.toncenter_v2 import create_router as v2_router
from tonrail.localnet.toncenter_v2 import error_response
from tonrail.localnet.toncenter_v3 import create_router as v3_router


class FaultInjection:
    """Answers toncenter API requests with 429 or 5xx as the faults say (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, chain: Chain) -> None:
        self.app = app
        self.chain = chain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only the toncenter APIs misbehave; the admin API must stay usable to undo a fault.
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            faults = self.chain.faults
            response: Response | None = None
            if faults.roll(faults.http_429_rate):
                response = error_response(429, "Ratelimit exceeded")
            elif faults.roll(faults.http_5xx_rate):
                code = faults.choice([502, 503, 504])
                response = JSONResponse(
                    {"ok": False, "error": "injected server error", "code": code},
                    status_code=code,
                )
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(chain: Chain, *, manage_lifecycle: bool = True) -> FastAPI:
    """The ASGI app; with `manage_lifecycle` it starts and stops the chain's block producer."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await chain.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await chain.stop()

    app = FastAPI(title="tonrail local TON network", lifespan=lifespan)
    app.state.chain = chain

    app.include_router(v2_router(chain), prefix="/api/v2")
    app.include_router(v3_router(chain), prefix="/api/v3")
    app.add_middleware(FaultInjection, chain=chain)

    @app.get("/localnet/genesis")
    async def genesis() -> dict[str, Any]:
        return chain.genesis.to_json()

    @app.get("/localnet/status")
    async def status() -> dict[str, Any]:
        last = chain.last_block
        return {
            "seqno": chain.seqno,
            "lt": chain.lt,
            "block_ms": chain.block_ms,
            "collate_ms": chain.collate_ms,
            "queue_size": chain.queue_size(),
            "last_block_utime": last.utime if last else None,
            "last_block_tx_count": last.tx_count if last else 0,
            "now": chain.now(),
        }

    @app.get("/localnet/faults")
    async def get_faults() -> dict[str, Any]:
        return chain.faults.to_dict()

    @app.post("/localnet/faults")
    async def set_faults(request: Request) -> Response:
        try:
            chain.faults.update(await request.json())
        except ValueError as exc:  # also invalid JSON
            return error_response(422, str(exc))
        return JSONResponse(chain.faults.to_dict())

    @app.delete("/localnet/faults")
    async def reset_faults() -> dict[str, Any]:
        chain.faults.update({k: v for k, v in Faults().to_dict().items() if k != "seed"})
        return chain.faults.to_dict()

    @app.post("/localnet/faucet")
    async def faucet(request: Request) -> Response:
        try:
            body = await request.json()
            address = parse_address(str(body["address"]))
            amount = int(body["amount"])
            asset = str(body.get("asset", "TON"))
            chain.faucet(address, amount, asset)
        except (KeyError, ValueError, TypeError) as exc:
            return error_response(422, f"invalid faucet request: {exc}")
        return JSONResponse({"ok": True, "queued": True}, status_code=202)

    @app.post("/localnet/blocks")
    async def produce_block() -> dict[str, Any]:
        block = await chain.produce_block()
        return {"seqno": block.seqno, "tx_count": block.tx_count, "utime": block.utime}

    return app


def collate_limit(collate_ms: int) -> int | None:
    """The command lines' `--collate-ms` as `Chain` takes it: 0 is no limit (None); a
    negative time is refused (ValueError, in the option's words)."""
    if collate_ms < 0:
        raise ValueError("--collate-ms must be 0 or more")
    return collate_ms or None


def serve(
    state: str,
    host: str,
    port: int,
    block_ms: int,
    *,
    collate_ms: int = 0,
    config_path: str | None = None,
    config: ChainConfig | None = None,
    faults: Faults | None = None,
) -> None:
    """Run the local network until interrupted (`tonrail localnet --state FILE --port 8081`).

    The blockchain config is `config`, else the file `config_path`, else the bundled mainnet
    config (`tonrail.localnet.config`). `faults` are active from the first block (they can be
    changed later through `/localnet/faults`). A block of the timer takes messages for at
    most `collate_ms` (0, the default: no limit, whole traces in one block).
    """
    import logging

    import uvicorn

    chain = Chain.open(
        state,
        block_ms=block_ms,
        collate_ms=collate_limit(collate_ms),
        config_path=config_path,
        config=config,
        faults=faults,
    )
    log = logging.getLogger("tonrail.localnet")
    log.info(describe(chain.chain_config))
    for note in chain.config_notes:
        log.warning("config adapted for the emulator: %s", note)
    try:
        # No access log: at hundreds of requests a second it costs more than the API itself.
        server_config = uvicorn.Config(
            create_app(chain), host=host, port=port, log_level="info", access_log=False
        )
        asyncio.run(uvicorn.Server(server_config).serve())
    finally:
        chain.close()
