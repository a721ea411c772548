"""`tonrail run` (what `make run` starts): up within a minute, and a payout goes through."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tests.tonnet import free_port
from tonrail.localnet.genesis import Genesis

TONRAIL = str(Path(sys.executable).parent / "tonrail")


@pytest.mark.slow
async def test_run_serves_the_api_and_pays_a_payout(tmp_path: Path) -> None:
    port, localnet_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TON", "DATABASE", "PORT", "DATA_DIR"))
    }
    env.update(
        DATA_DIR=str(tmp_path),
        PORT=str(port),
        LOCALNET_PORT=str(localnet_port),
        LOG_LEVEL="WARNING",
        LOCALNET_BLOCK_MS="100",
    )
    proc = await asyncio.create_subprocess_exec(
        TONRAIL,
        "run",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = ""
    try:
        key = None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while key is None or not await _healthy(client):
                assert loop.time() < deadline, output
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), timeout=1)
                except TimeoutError:
                    continue
                output += line.decode(errors="replace")
                if m := re.search(r"demo API key \(shown once\): (trk_\S+)", output):
                    key = m.group(1)
            auth = {"Authorization": f"Bearer {key}"}
            payee = (
                Genesis()
                .wallet("customer")
                .address.to_str(is_user_friendly=True, is_bounceable=False)
            )
            r = await client.post(
                "/v1/payouts",
                headers=auth,
                json={"amount": "1.5", "asset": "TON", "destination": payee},
            )
            assert r.status_code == 201, r.text
            pid = r.json()["id"]
            while True:
                assert loop.time() < deadline + 60, output
                got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
                if got["status"] in ("succeeded", "failed"):
                    break
                await asyncio.sleep(0.2)
        assert got["status"] == "succeeded", got
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=30)


async def _healthy(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False
