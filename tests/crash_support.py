"""What the crash tests share (payouts and deposits: rails/ton/test_crash.py, screened
deposits: screening/test_deposits_crash.py, treasury: treasury/test_crash.py, wallet
rotation: rails/ton/test_wallet_rotation_crash.py): a local network, a real `tonrail worker`
process configured for it, killed by SIGKILL at a crash point (CRASH_AT, kit/faults.py) and
started again without one.

A test module takes the `net` fixture by importing it (`from tests.crash_support import
net`)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from ton_core import NetworkGlobalID, PrivateKey
from tonutils.clients import ToncenterClient as TonutilsClient
from tonutils.contracts import WalletV5R1

from tests.tonnet import Localnet, running_localnet
from tonrail.localnet.genesis import TON, derive_key
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.keys import passphrase_kek, seal, write_envelope
from tonrail.settings import Settings

TONRAIL = str(Path(sys.executable).parent / "tonrail")
PASSPHRASE = "crash-test-passphrase"
Worker = asyncio.subprocess.Process


@pytest.fixture
async def net() -> AsyncIterator[Localnet]:
    async with running_localnet(block_ms=50) as n:
        yield n


def worker_env(net: Localnet, settings: Settings, tmp_path: Path, crash_at: str) -> dict[str, str]:
    """The environment of a worker on `net` with the genesis hot wallet's key (sealed under a
    passphrase in tmp_path), the test's database, and CRASH_AT."""
    key_file = tmp_path / "hot_wallet.key"
    if not key_file.exists():
        seed = bytes.fromhex(net.genesis.wallet("hot").to_json()["private_key"])
        kek = passphrase_kek(
            settings.model_copy(
                update={"ton_key_passphrase": settings.ton_key_passphrase.__class__(PASSPHRASE)}
            ),
            n=2**14,
        )
        write_envelope(key_file, seal(seed, kek))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TON", "DATABASE"))}
    env.update(
        DATABASE_URL=settings.database_url,
        DATA_DIR=str(tmp_path),
        ENVIRONMENT="test",
        TON_NETWORK="localnet",
        TON_API_URL=net.v2,
        TON_API_V3_URL=net.v3,
        USDT_JETTON_MASTER=net.genesis.usdt_master.to_str(),
        TON_MASTER_KEY_FILE=str(key_file),
        TON_KEY_PASSPHRASE=PASSPHRASE,
        TON_RESEND_SECONDS="1",
        WORKER_LEASE_SECONDS="2",
        TON_PAYOUTS_LEASE_SECONDS="2",  # a killed worker hands ton_payouts over as fast
        CRASH_AT=crash_at,
        FEES_WINDOW_URGENT_MS="0",
        FEES_WINDOW_NORMAL_MS="0",
        FEES_WINDOW_LOW_MS="0",
        LOG_LEVEL="WARNING",
    )
    return env


async def run_worker(env: dict[str, str], loops: str) -> Worker:
    """`tonrail worker --only <loops>` in its own process."""
    return await asyncio.create_subprocess_exec(
        TONRAIL,
        "worker",
        "--only",
        loops,
        env=env,
        cwd=env["DATA_DIR"],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _stderr(worker: Worker, last: int = 2000) -> str:
    return (await worker.stderr.read()).decode()[-last:] if worker.stderr is not None else ""


async def crash(
    env: dict[str, str],
    loops: str,
    *,
    within: float = 60,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run a worker with env's CRASH_AT and wait until it dies there: fails unless it was
    killed by SIGKILL (the crash point's way out) within `within` seconds. `meanwhile` runs
    every 0.2 s while it lives (what the worker waits for to reach its crash point)."""
    assert env["CRASH_AT"], "a crash test needs a crash point"
    worker = await run_worker(env, loops)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while worker.returncode is None:
        if loop.time() > deadline:
            worker.kill()
            await worker.wait()
            raise AssertionError(
                f"the worker did not reach {env['CRASH_AT']}: {await _stderr(worker, 3000)}"
            )
        if meanwhile is not None:
            await meanwhile()
        try:
            await asyncio.wait_for(worker.wait(), timeout=0.2)
        except TimeoutError:
            pass
    assert worker.returncode == -signal.SIGKILL, await _stderr(worker)


@asynccontextmanager
async def running_worker(env: dict[str, str], loops: str) -> AsyncIterator[Worker]:
    """A worker for the body of the `async with`, killed after it."""
    worker = await run_worker(env, loops)
    try:
        yield worker
    finally:
        worker.kill()
        await worker.wait()


@asynccontextmanager
async def crashed_and_restarted(
    env: dict[str, str],
    loops: str,
    *,
    within: float = 60,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[Worker]:
    """`crash`, then a worker without a crash point for the body of the `async with`."""
    await crash(env, loops, within=within, meanwhile=meanwhile)
    async with running_worker({**env, "CRASH_AT": ""}, loops) as worker:
        yield worker


async def wait_final(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    path: str,
    ids: list[str],
    done: set[str],
    within: float = 90,
) -> list[dict[str, Any]]:
    """The payments at `path`/<id> once every one has a status in `done`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        got = [(await client.get(f"{path}/{i}", headers=auth)).json() for i in ids]
        if all(p["status"] in done for p in got):
            return got
        if loop.time() > deadline:
            raise AssertionError([p["status"] for p in got])
        await asyncio.sleep(0.1)


@asynccontextmanager
async def funded_wallet(net: Localnet, *seed: str) -> AsyncIterator[WalletV5R1]:
    """A wallet v5 (key derived from `seed`) the faucet gave 10 TON, once the TON is there."""
    tc = TonutilsClient(NetworkGlobalID.MAINNET, base_url=net.v2, api_key="x", rps_limit=1000)
    await tc.connect()
    try:
        payer = WalletV5R1.from_private_key(tc, PrivateKey(bytes(derive_key(*seed))))
        net.chain.faucet(payer.address, 10 * TON)
        for _ in range(1200):  # up to a minute on a loaded machine
            await payer.refresh()
            if payer.balance:
                break
            await asyncio.sleep(0.05)
        yield payer
    finally:
        await tc.close()


async def pay_hot_wallet(net: Localnet, seed: tuple[str, str], amount: int, body: str) -> str:
    """A funded wallet (`funded_wallet`) sends `amount` with comment `body` to the genesis
    hot wallet; the payer's address."""
    async with funded_wallet(net, *seed) as payer:
        await payer.transfer(net.genesis.wallet("hot").address, amount, body=body, bounce=False)
        return str(payer.address.to_str())


async def deployed_payer(net: Localnet, name: str) -> str:
    """A funded wallet that has sent one message (0.1 TON to the hot wallet, so it is
    deployed); its raw address."""
    async with funded_wallet(net, "crash", name) as payer:
        await payer.transfer(net.genesis.wallet("hot").address, TON // 10, bounce=False)
        for _ in range(1200):
            await payer.refresh()
            if payer.is_active:
                break
            await asyncio.sleep(0.05)
        assert payer.is_active, "the payer's wallet did not deploy"
        return raw(payer.address)
