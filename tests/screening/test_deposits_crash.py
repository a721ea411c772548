"""Screened deposits exactly once across a crash, on SQLite and PostgreSQL: a worker
SIGKILLed after screening and before its commit leaves nothing (no deposit, no decision,
no books); the restarted worker screens again and holds the deposit once, with one decision.
Two approvers releasing it at the same moment credit the merchant once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import func, select

from tests.crash_support import crash, net, pay_hot_wallet, running_worker, worker_env
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
    from tonrail.localnet.genesis import TON

    inv = (
        await client.post("/v1/invoices", json={"amount": "2", "asset": "TON"}, headers=auth)
    ).json()
    payer = await pay_hot_wallet(net, ("screen", "payer"), 2 * TON, inv["reference"])
    listed = tmp_path / "sanctions.csv"
    raw = counterparty_key(payer)
    listed.write_text(f"kind,value,outcome,reason\naddress,{raw},review,PEP\n")

    env = {
        **worker_env(net, settings, tmp_path, "ton.deposit_before_commit"),
        "SCREENING_LIST_FILE": str(listed),
    }
    await crash(env, "ton_deposits")
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(ScreeningDecision)) == 0
    assert await _held(db, inv["id"]) == []
    async with running_worker({**env, "CRASH_AT": ""}, "ton_deposits"):
        for _ in range(1200):
            deps = await _held(db, inv["id"])
            if deps:
                break
            await asyncio.sleep(0.05)
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
