"""Operator decisions on deposits that paid no invoice in full."""

from __future__ import annotations

import httpx
import pytest

from tonrail import clock
from tonrail.db import Database
from tonrail.errors import Conflict
from tonrail.ids import new_id
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books, post
from tonrail.payments.service import PaymentService
from tonrail.processing.resolutions import OWNER_FUNDING, REFUNDS_PAYABLE, resolve
from tonrail.rails.ton.models import TonDeposit
from tonrail.settings import Settings

TON = 10**9


async def unmatched(
    db: Database, amount: int, status: str = "unmatched", payment_id: str | None = None
) -> str:
    """A deposit as the watcher records one it cannot apply (books included)."""
    dep_id = new_id("dep")
    async with db.transaction() as session:
        session.add(
            TonDeposit(
                id=dep_id,
                wallet="0:AA",
                tx_hash=new_id("tx"),
                lt=1,
                asset="TON",
                amount=amount,
                sender="0:BB",
                comment="oops",
                payment_id=payment_id,
                status=status,
                created_at=clock.now(),
            )
        )
        await post(session, "receipt.unapplied", books.receipt_unapplied("TON", amount))
    return dep_id


async def test_owner_funding_and_refund(db: Database, settings: Settings) -> None:
    service = PaymentService(db, settings)
    a, b = await unmatched(db, 5 * TON), await unmatched(db, 2 * TON)
    async with db.transaction() as session:
        await resolve(session, service, a, "owner_funding", "admin:alice", note="top-up")
        await resolve(session, service, b, "refund", "admin:alice")
    async with db.transaction() as session:
        assert await balance(session, OWNER_FUNDING, "TON") == -5 * TON
        assert await balance(session, REFUNDS_PAYABLE, "TON") == -2 * TON
        assert await balance(session, books.UNAPPLIED_RECEIPTS, "TON") == 0
        assert (await check_books(session)).ok
        dep = await session.get(TonDeposit, a)
        assert dep is not None and dep.status == "resolved"
        assert dep.resolution == "owner_funding by admin:alice: top-up"
    with pytest.raises(Conflict) as again:
        async with db.transaction() as session:
            await resolve(session, service, a, "refund", "admin:bob")
    assert again.value.code == "already_resolved"


async def test_apply_pays_the_invoice(
    db: Database, settings: Settings, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    inv = (
        await client.post("/v1/invoices", json={"amount": "3", "asset": "TON"}, headers=auth)
    ).json()
    dep = await unmatched(db, 3 * TON)
    async with db.transaction() as session:
        await resolve(
            session, PaymentService(db, settings), dep, "apply", "admin:alice", invoice_id=inv["id"]
        )
    got = (await client.get(f"/v1/invoices/{inv['id']}", headers=auth)).json()
    assert got["status"] == "succeeded"
    async with db.transaction() as session:
        assert await balance(session, books.merchant_account("acct_test"), "TON") == -3 * TON
        assert (await check_books(session)).ok


async def test_decisions_that_do_not_fit_are_refused(
    db: Database, settings: Settings, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    service = PaymentService(db, settings)
    usdt = (
        await client.post("/v1/invoices", json={"amount": "3", "asset": "USDT"}, headers=auth)
    ).json()
    dep = await unmatched(db, 3 * TON)
    for decision, kwargs, code in (
        ("apply", {"invoice_id": usdt["id"]}, "asset_mismatch"),
        ("accept", {}, "resolution_not_allowed"),
    ):
        with pytest.raises(Conflict) as err:
            async with db.transaction() as session:
                await resolve(session, service, dep, decision, "admin:x", **kwargs)  # type: ignore[arg-type]
        assert err.value.code == code
    async with db.transaction() as session:
        row = await session.get(TonDeposit, dep)
        assert row is not None and row.status == "unmatched"


async def test_cli_lists_and_resolves(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from typer.testing import CliRunner

    from tonrail.cli import app
    from tonrail.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    dep = await unmatched(db, TON)
    runner = CliRunner()
    listed = await asyncio.to_thread(runner.invoke, app, ["deposits", "list"])
    assert listed.exit_code == 0 and dep in listed.output and "unmatched" in listed.output
    bad = await asyncio.to_thread(
        runner.invoke, app, ["deposits", "resolve", "dep_nope", "--as", "refund"]
    )
    assert bad.exit_code == 2 and "no deposit" in bad.output
    ok = await asyncio.to_thread(
        runner.invoke, app, ["deposits", "resolve", dep, "--as", "owner_funding"]
    )
    assert ok.exit_code == 0 and "resolved" in ok.output
    get_settings.cache_clear()


async def test_refund_of_an_underpaid_or_overpaid_deposit_pays_it_back(
    db: Database, settings: Settings, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    from tests.api.test_refunds import PAYER, deposit
    from tonrail.rails.ton.states import DepositStatus

    service = PaymentService(db, settings)
    short = (
        await client.post("/v1/invoices", json={"amount": "5", "asset": "TON"}, headers=auth)
    ).json()["id"]
    over = (
        await client.post("/v1/invoices", json={"amount": "5", "asset": "TON"}, headers=auth)
    ).json()["id"]
    under_dep = await deposit(db, short, 2 * TON, status=DepositStatus.UNDERPAID)
    await deposit(db, over, 4 * TON, status=DepositStatus.UNDERPAID)
    over_dep = await deposit(db, over, 3 * TON, status=DepositStatus.OVERPAID)  # 7 of 5
    async with db.transaction() as session:
        await resolve(session, service, under_dep, "refund", "admin:alice", note="too little")
        await resolve(session, service, over_dep, "refund", "admin:alice")
    refunds = {}
    for inv in (short, over):
        [r] = (await client.get(f"/v1/invoices/{inv}/refunds", headers=auth)).json()["data"]
        refunds[inv] = r
    assert refunds[short]["amount"] == "2.000000000" and refunds[short]["reason"] == "too little"
    assert refunds[over]["amount"] == "2.000000000"  # the excess, not the whole deposit
    for r in refunds.values():
        assert r["destination"] == PAYER and r["status"] == "pending"
        payout = (await client.get(f"/v1/payouts/{r['payout']}", headers=auth)).json()
        assert payout["status"] == "queued" and payout["destination"] == PAYER
    async with db.transaction() as session:
        dep = await session.get(TonDeposit, over_dep)
        # It still paid the invoice; the refund is what went back.
        assert dep is not None and dep.status == "overpaid"
        assert dep.resolution == f"refund {refunds[over]['id']} by admin:alice"
        assert (await check_books(session)).ok
    # The excess is refunded: another refund of it finds none left.
    with pytest.raises(Conflict) as again:
        async with db.transaction() as session:
            await resolve(session, service, over_dep, "refund", "admin:bob")
    assert again.value.code == "nothing_to_refund"
