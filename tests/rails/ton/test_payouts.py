"""TON and USDT payouts end to end on the local network, through the public API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from nacl.signing import SigningKey
from sqlalchemy import select
from ton_core import Address

from tests.tonnet import Localnet, running_localnet
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import HOT_SUBWALLET, HOT_TIMEOUT
from tonrail.payments.service import PaymentService
from tonrail.rails.ton.api import ToncenterTonApi, address_slice, jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.highload import HighloadWallet
from tonrail.rails.ton.models import TonTransfer
from tonrail.rails.ton.payouts import TonRailContext, assemble, send_due, track_open
from tonrail.settings import Settings


@dataclass
class Rail:
    net: Localnet
    ctx: TonRailContext
    api: ToncenterTonApi

    async def run_until_final(
        self, ids: list[str], client: httpx.AsyncClient, auth: dict[str, str], rounds: int = 200
    ) -> dict[str, dict]:
        """Drive the loops as a worker would until every payout is final."""
        for _ in range(rounds):
            state, _ = await self.api.account_state(self.ctx.wallet.address.to_str())
            await assemble(self.ctx, deploy=state != "active")
            await send_due(self.ctx)
            await track_open(self.ctx)
            got = {i: (await client.get(f"/v1/payouts/{i}", headers=auth)).json() for i in ids}
            if all(p["status"] in ("succeeded", "failed") for p in got.values()):
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"payouts not final: {[p['status'] for p in got.values()]}")

    async def ton_balance(self, address: str) -> int:
        return (await self.api.account_state(address))[1]

    async def usdt_balance(self, owner: str) -> int:
        wallet = await jetton_wallet_of(self.api, self.net.genesis.usdt_master.to_str(), owner)
        code, stack = await self.api.run_get_method(wallet, "get_wallet_data", [])
        return int(stack[0][1], 16) if code == 0 else 0


@pytest.fixture
async def rail(db: Database, settings: Settings) -> AsyncIterator[Rail]:
    async with running_localnet() as net:
        hot = net.genesis.wallet("hot")
        key = SigningKey(bytes.fromhex(hot.to_json()["private_key"]))
        wallet = HighloadWallet(bytes(key.verify_key), HOT_SUBWALLET, HOT_TIMEOUT)
        api = ToncenterTonApi(net.v2, net.v3)
        jetton_wallet = await jetton_wallet_of(
            api, net.genesis.usdt_master.to_str(), raw(wallet.address)
        )
        fast = settings.model_copy(update={"ton_resend_seconds": 1, "ton_max_attempts": 1})
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


async def test_ton_and_usdt_payouts_confirmed_with_exact_fees(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    customer = rail.net.genesis.wallet("customer").address
    # The customer wallet is not deployed yet: pay it non-bounceable, as its owner would ask.
    payee = customer.to_str(is_user_friendly=True, is_bounceable=False)
    hot = rail.ctx.wallet.address.to_str()
    ton_before = await rail.ton_balance(hot)
    cust_before = await rail.ton_balance(payee)
    usdt_before = await rail.usdt_balance(raw(customer))
    ids = []
    for amount, asset in (("1.5", "TON"), ("2.25", "TON"), ("12.5", "USDT")):
        r = await client.post(
            "/v1/payouts",
            json={"amount": amount, "asset": asset, "destination": payee},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    final = await rail.run_until_final(ids, client, auth)
    assert [p["status"] for p in final.values()] == ["succeeded"] * 3
    for p in final.values():
        [attempt] = p["attempts"]
        assert attempt["rail"] == "ton" and attempt["status"] == "confirmed"
        assert attempt["fee_asset"] == "TON" and int(attempt["fee"].replace(".", "")) > 0

    assert await rail.ton_balance(payee) - cust_before == 3_750_000_000
    assert await rail.usdt_balance(raw(customer)) - usdt_before == 12_500_000
    # Exactness: what left the hot wallet is the principal plus the fees we booked.
    async with db.transaction() as session:
        fees = (await session.execute(select(TonTransfer.fee))).scalars().all()
        report = await check_books(session)
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == 0
    assert report.ok
    spent = ton_before - await rail.ton_balance(hot)
    assert spent == 3_750_000_000 + sum(f or 0 for f in fees)


async def test_bounced_payout_fails_with_money_back_in_the_ledger(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    missing = Address("0:" + "ab" * 32).to_str(is_user_friendly=True, is_bounceable=True)
    hot = rail.ctx.wallet.address.to_str()
    before = await rail.ton_balance(hot)
    r = await client.post(
        "/v1/payouts", json={"amount": "3", "asset": "TON", "destination": missing}, headers=auth
    )
    pid = r.json()["id"]
    final = await rail.run_until_final([pid], client, auth)
    p = final[pid]
    assert p["status"] == "failed" and p["failure_code"] == "ton_bounced"
    assert p["attempts"][0]["status"] == "failed" and p["attempts"][0]["error_code"] == "bounced"
    async with db.transaction() as session:
        fee = (await session.execute(select(TonTransfer.fee))).scalar_one()
        report = await check_books(session)
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
        assert await balance(session, books.merchant_account("acct_test"), "TON") == 0
        assert await balance(session, books.HOT_WALLET, "TON") == -fee
    assert report.ok
    # Only fees are gone: the 3 TON came back.
    assert before - await rail.ton_balance(hot) == fee
    assert 0 < fee < 100_000_000
    assert address_slice  # the helper used by jetton_wallet_of
