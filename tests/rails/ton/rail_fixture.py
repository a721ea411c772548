"""The TON rail on a running local network: the `rail` fixture of the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from nacl.signing import SigningKey
from ton_core import NetworkGlobalID, PrivateKey
from tonutils.clients import ToncenterClient as TonutilsClient
from tonutils.contracts import WalletV5R1

from tests.tonnet import Localnet, running_localnet
from tonrail.db import Database
from tonrail.localnet.genesis import HOT_SUBWALLET, HOT_TIMEOUT, TON, derive_key
from tonrail.payments.service import PaymentService
from tonrail.processing.context import TonRailContext
from tonrail.processing.ton_loop import assemble, send_due
from tonrail.processing.ton_track import track_open
from tonrail.rails.ton.api import ToncenterTonApi, jetton_balance, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.highload import HighloadWallet
from tonrail.rails.ton.toncenter import ToncenterClient, ToncenterError
from tonrail.settings import Settings


@dataclass
class Rail:
    net: Localnet
    ctx: TonRailContext
    api: ToncenterTonApi

    async def run_until_final(
        self, ids: list[str], client: httpx.AsyncClient, auth: dict[str, str], within: float = 90
    ) -> dict[str, dict]:
        """Drive the loops as a worker would until every payout is final (or `within` s pass:
        generous, because a loaded 2-core machine can be many times slower than a quiet one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            try:  # as the worker's loop does: a failed round is retried on the next one
                state, _ = await self.api.account_state(self.ctx.wallet.address.to_str())
                await assemble(self.ctx, deploy=state != "active")
                await send_due(self.ctx)
                await track_open(self.ctx)
            except ToncenterError:
                pass
            got = {i: (await client.get(f"/v1/payouts/{i}", headers=auth)).json() for i in ids}
            if all(p["status"] in ("succeeded", "failed") for p in got.values()):
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"payouts not final: {[p['status'] for p in got.values()]}")

    async def ton_balance(self, address: str) -> int:
        return (await self.api.account_state(address))[1]

    async def usdt_balance(self, owner: str) -> int:
        wallet = await jetton_wallet_of(self.api, self.net.genesis.usdt_master.to_str(), owner)
        return await jetton_balance(self.api, wallet)


@pytest.fixture
async def rail(db: Database, settings: Settings) -> AsyncIterator[Rail]:
    async with running_localnet() as net:
        hot = net.genesis.wallet("hot")
        key = SigningKey(bytes.fromhex(hot.to_json()["private_key"]))
        wallet = HighloadWallet(bytes(key.verify_key), HOT_SUBWALLET, HOT_TIMEOUT)
        api = ToncenterTonApi(
            ToncenterClient(
                [net.v2], [net.v3], max_attempts=3, backoff_initial=0.01, backoff_max=0.05
            )
        )
        jetton_wallet = await jetton_wallet_of(
            api, net.genesis.usdt_master.to_str(), raw(wallet.address)
        )
        # No batch windows: tests send at once (the optimizer's timing has its own tests).
        fast = settings.model_copy(
            update={
                "ton_resend_seconds": 1,
                "ton_max_attempts": 1,
                "fees_window_urgent_ms": 0,
                "fees_window_normal_ms": 0,
                "fees_window_low_ms": 0,
            }
        )
        ctx = TonRailContext(
            db=db,
            settings=fast,
            payments=PaymentService(db, fast),
            api=api,
            wallet=wallet,
            sign=lambda data: key.sign(data).signature,
            jetton_wallet=jetton_wallet,
            worker_id="w-test",
        )
        yield Rail(net, ctx, api)
        await api.aclose()


@pytest.fixture
async def payer(rail: Rail) -> AsyncIterator[WalletV5R1]:
    client = TonutilsClient(
        NetworkGlobalID.MAINNET, base_url=rail.net.v2, api_key="local", rps_limit=1000
    )
    await client.connect()
    wallet = WalletV5R1.from_private_key(client, PrivateKey(bytes(derive_key("t", "payer"))))
    rail.net.chain.faucet(wallet.address, 50 * TON)
    rail.net.chain.faucet(wallet.address, 1_000 * 10**6, asset="USDT")
    for _ in range(3000):  # the faucet's transfers land in the next blocks
        if await rail.ton_balance(wallet.address.to_str()) > 0:
            break
        await asyncio.sleep(0.02)
    yield wallet
    await client.close()


async def settled(wallet: WalletV5R1, before: int) -> None:
    """Wait until the wallet's seqno passed `before`: its last external was processed."""
    for _ in range(1500):  # up to 30 s on a loaded machine
        await wallet.refresh()
        try:
            [seqno] = await wallet.run_get_method("seqno")
        except Exception:  # not deployed yet
            seqno = 0
        if seqno > before:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the payer's message was not processed")
