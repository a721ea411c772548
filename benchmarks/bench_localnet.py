"""Local TON network benchmark: wallet transfers per second and one highload batch of 254.

The network runs as its own process (`tonrail.localnet.server.serve`, uvicorn on 127.0.0.1,
a fresh state file, blocks every BENCH_LOCALNET_BLOCK_MS, default 400). The load comes from
this process over HTTP, through toncenter v2 only:

- transfers/s: BENCH_LOCALNET_WALLETS wallets v4r2 (default 300), funded by the faucet, each
  sending one signed transfer at a time (`sendBoc`) and waiting until it is confirmed in a
  block before the next; for
  BENCH_LOCALNET_SECONDS (default 8). Confirmation is read from each new block's
  `getBlockTransactions` (one request a block) and cross-checked with every wallet's seqno at
  the end. Messages are signed before the clock starts, so the
  figure is the network's, not the client's signing speed.
- highload batch: the genesis hot wallet (highload v3, via tonutils) sends 254 transfers in
  one external; the time runs from `sendBoc` until `getAddressBalance` shows the last
  recipient paid, and all 254 are then checked. Three runs.

`python -m benchmarks.bench_localnet` prints the section.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TON = 10**9


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(state: str, port: int, block_ms: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    code = (
        "from tonrail.localnet.server import serve; "
        f"serve({state!r}, '127.0.0.1', {port}, {block_ms})"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class Http:
    """A thin aiohttp client: faster than httpx, so the client is not what gets measured."""

    def __init__(self, base: str, connections: int) -> None:
        import aiohttp

        self.base = base
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **params: Any) -> Any:
        async with self.session.get(self.base + path, params=params) as r:
            return await r.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.post(self.base + path, json=body) as r:
            return await r.json()

    async def v2(self, method: str, **params: Any) -> Any:
        body = await self.get(f"/api/v2/{method}", **params)
        if not body.get("ok"):
            raise RuntimeError(f"{method}: {body}")
        return body["result"]


async def _wait_up(http: Http, proc: subprocess.Popen[bytes]) -> None:
    import aiohttp

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("localnet server exited")
        try:
            await http.get("/localnet/status")
            return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    raise RuntimeError("localnet server did not start")


async def _transfers(http: Http, wallets: int, seconds: float) -> dict[str, float]:
    from nacl.signing import SigningKey
    from ton_core import Address, Cell

    from tonrail.localnet.boc import b64
    from tonrail.localnet.genesis import Transfer, sign_wallet_v4r2, wallet_v4r2

    keys = [SigningKey(i.to_bytes(4, "big") * 8) for i in range(1, wallets + 1)]
    accounts = [wallet_v4r2(k) for k in keys]
    raw = [a.to_str(False) for a, _ in accounts]
    for address in raw:
        await http.post("/localnet/faucet", {"address": address, "amount": 100 * TON})
    while True:
        balances = await asyncio.gather(*[http.v2("getAddressBalance", address=a) for a in raw])
        if all(int(b) == 100 * TON for b in balances):
            break
        await asyncio.sleep(0.2)

    now = int(time.time())
    rounds = int(seconds * 4) + 4  # more than a wallet can confirm in `seconds`
    signed: list[list[str]] = []
    for i, (key, (address, si)) in enumerate(zip(keys, accounts, strict=True)):
        dest = Address((0, (i + 1).to_bytes(4, "big") * 8))
        signed.append(
            [
                b64(
                    sign_wallet_v4r2(
                        key,
                        address,
                        seqno,
                        now + 600,
                        [Transfer(dest, TON // 100, Cell.empty(), False)],
                        state_init=si if seqno == 0 else None,
                    )
                )
                for seqno in range(rounds)
            ]
        )

    # Confirmation: every new block's short transaction ids (getBlockTransactions), one
    # request a block; a wallet's account appearing there is its transfer confirmed.
    pending: dict[str, asyncio.Future[None]] = {}
    stop = asyncio.Event()
    seen = (await http.v2("getMasterchainInfo"))["last"]["seqno"]

    async def watch_blocks() -> None:
        nonlocal seen
        while not stop.is_set():
            last = (await http.v2("getMasterchainInfo"))["last"]["seqno"]
            for seqno in range(seen + 1, last + 1):
                # toncenter pages with after_lt and after_hash together (the first page: neither)
                after: dict[str, Any] = {}
                while True:
                    page = await http.v2(
                        "getBlockTransactions",
                        workchain=0,
                        shard="-9223372036854775808",
                        seqno=seqno,
                        count=1000,
                        **after,
                    )
                    for tx in page["transactions"]:
                        fut = pending.pop(tx["account"], None)
                        if fut is not None and not fut.done():
                            fut.set_result(None)
                        after = {"after_lt": int(tx["lt"]), "after_hash": tx["hash"]}
                    if not page["incomplete"]:
                        break
            seen = last
            await asyncio.sleep(0.01)

    latencies: list[float] = []
    confirmed = [0] * wallets
    start = time.monotonic()
    end = start + seconds
    loop = asyncio.get_running_loop()

    async def wallet_loop(i: int) -> None:
        for boc in signed[i]:
            if time.monotonic() >= end:
                return
            sent = time.monotonic()
            fut: asyncio.Future[None] = loop.create_future()
            pending[raw[i]] = fut
            r = await http.post("/api/v2/sendBoc", {"boc": boc})
            if not r.get("ok"):
                raise RuntimeError(f"sendBoc refused: {r}")
            await fut
            latencies.append(time.monotonic() - sent)
            confirmed[i] += 1

    watcher = asyncio.create_task(watch_blocks())
    await asyncio.gather(*[wallet_loop(i) for i in range(wallets)])
    elapsed = time.monotonic() - start
    stop.set()
    await watcher
    # Cross-check every confirmation against the wallets' own seqno.
    infos = await asyncio.gather(*[http.v2("getWalletInformation", address=a) for a in raw])
    for i, info in enumerate(infos):
        if int(info["seqno"]) != confirmed[i]:
            raise RuntimeError(f"wallet {i}: seqno {info['seqno']} != {confirmed[i]} confirmed")
    latencies.sort()
    return {
        "transfers": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2],
        "p95": latencies[int(len(latencies) * 0.95)],
    }


async def _highload(http: Http, base_url: str, runs: int = 3) -> list[float]:
    from ton_core import (
        Address,
        NetworkGlobalID,
        PrivateKey,
        WalletHighloadV3Config,
        WalletHighloadV3Params,
    )
    from tonutils.clients import ToncenterClient
    from tonutils.contracts import TONTransferBuilder, WalletHighloadV3R1

    genesis = await http.get("/localnet/genesis")
    hot = next(w for w in genesis["wallets"] if w["name"] == "hot")
    client = ToncenterClient(
        NetworkGlobalID.MAINNET, base_url=f"{base_url}/api/v2", api_key="bench", rps_limit=10_000
    )
    await client.connect()
    try:
        wallet = WalletHighloadV3R1.from_private_key(
            client,
            PrivateKey(bytes.fromhex(hot["private_key"])),
            config=WalletHighloadV3Config(
                subwallet_id=hot["config"]["subwallet_id"], timeout=hot["config"]["timeout"]
            ),
        )
        times: list[float] = []
        for run in range(runs):
            recipients = [Address((0, bytes([run + 1, i % 256]) * 16)) for i in range(254)]
            amount = TON // 100
            params = WalletHighloadV3Params(created_at=int(time.time()) - 30, query_id=1000 + run)
            ext = await wallet.build_external_message(
                [TONTransferBuilder(r, amount, bounce=False) for r in recipients], params
            )
            boc = ext.as_b64
            last = recipients[-1].to_str(False)
            started = time.monotonic()
            r = await http.post("/api/v2/sendBoc", {"boc": boc})
            if not r.get("ok"):
                raise RuntimeError(f"highload sendBoc refused: {r}")
            while int(await http.v2("getAddressBalance", address=last)) != amount:  # noqa: ASYNC110
                await asyncio.sleep(0.005)  # polling over HTTP is what is being measured
            times.append(time.monotonic() - started)
            paid = await asyncio.gather(
                *[http.v2("getAddressBalance", address=a.to_str(False)) for a in recipients]
            )
            if any(int(p) != amount for p in paid):
                raise RuntimeError("not every recipient of the batch was paid")
        return times
    finally:
        await client.close()


async def _run(
    block_ms: int, wallets: int, seconds: float, highload_runs: int = 3
) -> tuple[dict[str, float], list[float]]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = _start_server(str(Path(tmp) / "chain.sqlite3"), port, block_ms)
        try:
            http = Http(base, wallets + 8)
            try:
                await _wait_up(http, proc)
                transfers = await _transfers(http, wallets, seconds)
                batch = await _highload(http, base, highload_runs) if highload_runs else []
                return transfers, batch
            finally:
                await http.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> str:
    block_ms = int(os.environ.get("BENCH_LOCALNET_BLOCK_MS", "400"))
    wallets = int(os.environ.get("BENCH_LOCALNET_WALLETS", "300"))
    seconds = float(os.environ.get("BENCH_LOCALNET_SECONDS", "8"))
    transfers, batch = asyncio.run(_run(block_ms, wallets, seconds))
    cpu = os.cpu_count()
    lines = [
        "## Local TON network",
        "",
        f"Real TVM (libemulator from pytvm), mainnet config, blocks every {block_ms} ms, "
        f"server and client as separate processes on 127.0.0.1, {cpu} CPUs. "
        "All traffic goes through toncenter v2 over HTTP.",
        "",
        "| measurement | result | goal |",
        "| --- | --- | --- |",
        f"| wallet transfers/s, sendBoc to confirmed ({wallets} wallets v4r2, "
        f"{transfers['seconds']:.1f} s, {int(transfers['transfers'])} transfers) "
        f"| {transfers['per_second']:.0f}/s (latency p50 {transfers['p50'] * 1000:.0f} ms, "
        f"p95 {transfers['p95'] * 1000:.0f} ms) | >= 300/s |",
        "| highload v3 batch of 254 transfers, sendBoc to all paid "
        f"({len(batch)} runs) | median {statistics.median(batch) * 1000:.0f} ms, "
        f"max {max(batch) * 1000:.0f} ms | < 1 s |",
        "",
        "Command: `python -m benchmarks.bench_localnet` (knobs: BENCH_LOCALNET_BLOCK_MS, "
        "BENCH_LOCALNET_WALLETS, BENCH_LOCALNET_SECONDS).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
