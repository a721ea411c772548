"""Screened deposits exactly once across a crash, on SQLite and PostgreSQL: a worker
SIGKILLed after screening and before its commit leaves nothing (no deposit, no decision,
no books); the restarted worker screens again and holds the deposit once, with one decision.
Two approvers releasing it at the same moment credit the merchant once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
from sqlalchemy import func, select

from tests.rails.ton.test_crash import net, run_worker, worker_env
from tests.tonnet import Localnet
from tonrail.chain.address import counterparty_key
from tonrail.db import Database
from tonrail.errors import Conflict
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.payments.models import Payment
from tonrail.processing.resolutions import decide_held
from tonrail.rails.ton.models import TonDeposit
from tonrail.screening.models import ScreeningDecision
from tonrail.settings import Settings

__all__ = ["net"]  # fixture, used by name


async def _held(db: Database, invoice_id: str) -> list[TonDeposit]:
    async with db.transaction() as session:
        found = await session.execute(select(TonDeposit).where(TonDeposit.payment_id == invoice_id))
        return list(found.scalars())


async def test_a_held_deposit_is_recorded_and_released_once(
    net: Localnet,
    settings: Settings,
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    from ton_core import NetworkGlobalID, PrivateKey
    from tonutils.clients import ToncenterClient as TonutilsClient
    from tonutils.contracts import WalletV5R1

    from tonrail.localnet.genesis import TON, derive_key

    inv = (
        await client.post("/v1/invoices", json={"amount": "2", "asset": "TON"}, headers=auth)
    ).json()
    tc = TonutilsClient(NetworkGlobalID.MAINNET, base_url=net.v2, api_key="x", rps_limit=1000)
    await tc.connect()
    payer = WalletV5R1.from_private_key(tc, PrivateKey(bytes(derive_key("screen", "payer"))))
    net.chain.faucet(payer.address, 10 * TON)
    for _ in range(1200):  # up to a minute on a loaded machine
        await payer.refresh()
        if payer.balance:
            break
        await asyncio.sleep(0.05)
    await payer.transfer(
        net.genesis.wallet("hot").address, 2 * TON, body=inv["reference"], bounce=False
    )
    await tc.close()
    listed = tmp_path / "sanctions.csv"
    raw = counterparty_key(payer.address.to_str())
    listed.write_text(f"kind,value,outcome,reason\naddress,{raw},review,PEP\n")

    env = {
        **worker_env(net, settings, tmp_path, "ton.deposit_before_commit"),
        "SCREENING_LIST_FILE": str(listed),
    }
    first = await run_worker(env, "ton_deposits")
    assert await asyncio.wait_for(first.wait(), timeout=60) == -signal.SIGKILL
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(ScreeningDecision)) == 0
    assert await _held(db, inv["id"]) == []
    second = await run_worker({**env, "CRASH_AT": ""}, "ton_deposits")
    try:
        for _ in range(1200):
            deps = await _held(db, inv["id"])
            if deps:
                break
            await asyncio.sleep(0.05)
    finally:
        second.kill()
        await second.wait()
    [dep] = await _held(db, inv["id"])
    assert dep.status == "held"
    async with db.transaction() as session:
        rows = (await session.execute(select(ScreeningDecision))).scalars().all()
        assert [(d.deposit_id, d.outcome) for d in rows] == [(dep.id, "review")]

    async def release(who: str) -> str:
        try:
            async with db.transaction() as session:
                await decide_held(session, dep.id, "release", who)
            return "released"
        except Conflict as exc:
            return exc.code

    outcomes = await asyncio.gather(release("admin:ann"), release("admin:bob"))
    assert sorted(outcomes) == ["deposit_not_held", "released"]
    got = (await client.get(f"/v1/invoices/{inv['id']}", headers=auth)).json()
    assert got["status"] == "succeeded" and got["amount_received_minor"] == 2 * TON
    async with db.transaction() as session:
        invoice = await session.get(Payment, inv["id"])
        assert invoice is not None
        merchant = books.merchant_account(invoice.account_id)
        assert await balance(session, merchant, "TON") == -2 * TON  # credited once
        assert await balance(session, books.SCREENING_HELD, "TON") == 0
        released = await session.scalar(
            select(func.count())
            .select_from(ScreeningDecision)
            .where(ScreeningDecision.provider == "approver")
        )
        assert released == 1
        assert (await check_books(session)).ok
