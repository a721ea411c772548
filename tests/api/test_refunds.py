"""POST /v1/invoices/{id}/refunds: partial and full refunds of what an invoice received, as
payouts to the payer; never more than received, also under concurrency; books and events.

The deposits are written as the deposit watcher writes them (its own tests pay invoices on
the local network; tests/rails/ton/test_refunds.py pays refunds back on it)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import DEST, row_counts
from tonrail import clock
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ids import new_id
from tonrail.ledger import rules as books
from tonrail.ledger.models import JournalEntry
from tonrail.ledger.service import balance, check_books, post
from tonrail.payments.models import Payment, Refund
from tonrail.rails.ton.models import TonDeposit
from tonrail.rails.ton.states import DepositStatus
from tonrail.settings import Settings

TON = 10**9
PAYER = "0:" + "AB" * 32
OTHER_PAYER = "0:" + "CD" * 32


async def paid_invoice(client: httpx.AsyncClient, auth: dict[str, str], amount: str = "5") -> str:
    r = await client.post("/v1/invoices", json={"amount": amount, "asset": "TON"}, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def deposit(
    db: Database,
    invoice_id: str,
    amount: int,
    sender: str = PAYER,
    status: DepositStatus = DepositStatus.CREDITED,
) -> str:
    """A deposit as the watcher records one that credits the invoice, with its books."""
    dep_id = new_id("dep")
    async with db.transaction() as session:
        invoice = await session.get(Payment, invoice_id)
        assert invoice is not None
        session.add(
            TonDeposit(
                id=dep_id,
                wallet="0:" + "00" * 32,
                tx_hash=secrets.token_hex(32),
                lt=secrets.randbits(40),
                asset="TON",
                amount=amount,
                sender=sender,
                comment=invoice.reference,
                payment_id=invoice_id,
                status=status,
                created_at=clock.now(),
            )
        )
        await post(
            session,
            "invoice.received",
            books.payment_received(invoice.account_id, "TON", amount, books.HOT_WALLET),
            invoice_id,
        )
    return dep_id


async def refund(
    client: httpx.AsyncClient, auth: dict[str, str], invoice_id: str, **body: Any
) -> httpx.Response:
    key = body.pop("key", None)
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return await client.post(f"/v1/invoices/{invoice_id}/refunds", json=body, headers=headers)


async def events(db: Database, kind: str) -> list[dict[str, Any]]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(OutboxEvent.payload).where(OutboxEvent.type == kind).order_by(OutboxEvent.seq)
        )
        return [dict(p) for p in rows.scalars()]


async def test_a_full_refund_is_a_payout_to_the_payer_with_books_and_events(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    inv = await paid_invoice(client, auth)
    await deposit(db, inv, 5 * TON)
    r = await refund(client, auth, inv, reason="customer changed their mind")
    assert r.status_code == 201, r.text
    re = r.json()
    assert re["object"] == "refund" and re["status"] == "pending" and re["rail"] == "ton"
    assert re["amount"] == "5.000000000" and re["destination"] == PAYER
    assert re["invoice"] == inv and re["reason"] == "customer changed their mind"
    payout = (await client.get(f"/v1/payouts/{re['payout']}", headers=auth)).json()
    assert payout["status"] == "queued" and payout["amount_minor"] == 5 * TON
    assert payout["destination"] == PAYER
    assert payout["metadata"] == {"refund": re["id"], "invoice": inv}
    got = (await client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert got["amount_received"] == "5.000000000" and got["amount_refunded"] == "5.000000000"
    assert (await client.get(f"/v1/refunds/{re['id']}", headers=auth)).json() == re
    listed = (await client.get(f"/v1/invoices/{inv}/refunds", headers=auth)).json()
    assert listed["data"] == [re]
    assert [e["id"] for e in await events(db, "refund.created")] == [re["id"]]
    assert [e["id"] for e in await events(db, "payout.created")] == [re["payout"]]
    async with db.transaction() as session:
        kinds = (
            await session.execute(
                select(JournalEntry.kind).where(JournalEntry.payment_id == re["payout"])
            )
        ).scalars()
        assert list(kinds) == ["refund.reserved"]
        # The merchant owed 5 TON for the invoice; the refund's reservation takes it back.
        assert await balance(session, books.merchant_account("acct_test"), "TON") == 0
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == -5 * TON
        assert (await check_books(session)).ok


async def test_partial_refunds_never_pass_what_was_received(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    inv = await paid_invoice(client, auth)
    await deposit(db, inv, 3 * TON, status=DepositStatus.UNDERPAID)
    await deposit(db, inv, 3 * TON, status=DepositStatus.OVERPAID)  # 6 of 5 arrived
    assert (await refund(client, auth, inv, amount="1")).status_code == 201  # the excess
    assert (await refund(client, auth, inv, amount="2.5")).status_code == 201
    before = await row_counts(db)
    too_much = await refund(client, auth, inv, amount="2.500000001")
    assert too_much.status_code == 422
    assert too_much.json()["error"] == {
        "code": "refund_exceeds_received",
        "message": "at most 2.500000000 TON of what this payer sent is left to refund",
        "param": "amount",
    }
    assert await row_counts(db) == before
    rest = await refund(client, auth, inv)  # no amount: all that is left
    assert rest.status_code == 201 and rest.json()["amount"] == "2.500000000"
    again = await refund(client, auth, inv)
    assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_refund"
    got = (await client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert got["amount_received"] == got["amount_refunded"] == "6.000000000"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"amount": "abc"}, 400, "amount_invalid"),
        ({"amount": "0"}, 400, "amount_invalid"),
        ({"amount": 1}, 400, "amount_invalid"),
        ({"amount": "1.0000000001"}, 400, "amount_invalid"),
        ({"amount": "-1"}, 400, "amount_invalid"),
        ({"amount": "6"}, 422, "refund_exceeds_received"),
        ({"amount": "0.0000001"}, 422, "amount_too_small"),  # below the payout minimum
        ({"deposit": "dep_nope"}, 400, "deposit_invalid"),
        ({"surprise": "1"}, 400, "parameter_unknown"),
        ({"reason": "x" * 501}, 400, "parameter_invalid"),
        # a rule of the invoice's rail, not a malformed field (the schema allows both)
        ({"bank_iban": "DE89370400440532013000"}, 400, "bank_account_not_applicable"),
    ],
)
async def test_bad_refunds_are_refused_and_write_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    inv = await paid_invoice(client, auth)
    await deposit(db, inv, 5 * TON)
    before = await row_counts(db)
    r = await refund(client, auth, inv, **body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert await row_counts(db) == before


async def test_refunds_of_what_cannot_be_refunded(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    from tests.conftest import make_key

    unpaid = await paid_invoice(client, auth)
    two_payers = await paid_invoice(client, auth)
    await deposit(db, two_payers, 2 * TON, sender=PAYER, status=DepositStatus.UNDERPAID)
    second = await deposit(db, two_payers, 3 * TON, sender=OTHER_PAYER)
    late = await paid_invoice(client, auth)
    await deposit(db, late, 5 * TON, status=DepositStatus.LATE)
    payout = await client.post(
        "/v1/payouts", json={"amount": "1", "asset": "TON", "destination": DEST}, headers=auth
    )
    other = {"Authorization": f"Bearer {await make_key(db, 'acct_other')}"}
    before = await row_counts(db)
    cases = [
        (unpaid, auth, {}, 409, "nothing_to_refund"),
        (late, auth, {}, 409, "nothing_to_refund"),  # a late deposit paid nothing: resolve it
        (two_payers, auth, {}, 409, "refund_payer_ambiguous"),
        (payout.json()["id"], auth, {}, 404, "not_found"),
        ("pay_nope", auth, {}, 404, "not_found"),
        (unpaid, other, {}, 404, "not_found"),
    ]
    for invoice_id, who, body, status, code in cases:
        r = await refund(client, who, invoice_id, **body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), invoice_id
    assert await row_counts(db) == before
    # Naming the deposit picks its payer, and bounds the refund by what that payer sent.
    r = await refund(client, auth, two_payers, deposit=second, amount="3.5")
    assert r.status_code == 422 and r.json()["error"]["code"] == "refund_exceeds_received"
    r = await refund(client, auth, two_payers, deposit=second)
    assert r.status_code == 201 and r.json()["destination"] == OTHER_PAYER
    assert r.json()["amount"] == "3.000000000"
    read_only = {"Authorization": f"Bearer {await make_key(db, 'acct_test', 'payments:read')}"}
    r = await refund(client, read_only, two_payers, deposit=second)
    assert r.status_code == 403 and r.json()["error"]["code"] == "scope_missing"


async def test_idempotency_key_replays_a_refund(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    inv = await paid_invoice(client, auth)
    await deposit(db, inv, 5 * TON)
    first = await refund(client, auth, inv, amount="1", key="refund-1")
    again = await refund(client, auth, inv, amount="1", key="refund-1")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    other = await refund(client, auth, inv, amount="2", key="refund-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    async with db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(Refund))).scalar() == 1


async def test_concurrent_refunds_never_pass_what_was_received(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    inv = await paid_invoice(client, auth, "10")
    await deposit(db, inv, 10 * TON)
    results = await asyncio.gather(
        *(refund(client, auth, inv, amount="1", key=f"r-{i}") for i in range(30))
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 10 + [422] * 20, [r.text for r in results if r.status_code >= 500]
    # Everything left, asked for many times at once: one wins.
    inv2 = await paid_invoice(client, auth, "10")
    await deposit(db, inv2, 10 * TON)
    await refund(client, auth, inv2, amount="4")
    rest = await asyncio.gather(*(refund(client, auth, inv2) for _ in range(12)))
    assert sorted(r.status_code for r in rest) == [201] + [409] * 11
    async with db.transaction() as session:
        totals = dict(
            (
                await session.execute(
                    select(Refund.invoice_id, func.sum(Refund.amount)).group_by(Refund.invoice_id)
                )
            ).all()
        )
        payouts = (
            await session.execute(
                select(func.count()).select_from(Payment).where(Payment.direction == "out")
            )
        ).scalar()
        assert (await check_books(session)).ok
    assert totals == {inv: 10 * TON, inv2: 10 * TON}
    assert payouts == 12


async def test_a_refund_follows_its_payout(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    inv = await paid_invoice(client, auth)
    await deposit(db, inv, 5 * TON)
    re = (await refund(client, auth, inv, amount="4")).json()
    canceled = await client.post(f"/v1/payouts/{re['payout']}/cancel", headers=auth)
    assert canceled.status_code == 200, canceled.text
    got = (await client.get(f"/v1/refunds/{re['id']}", headers=auth)).json()
    assert got["status"] == "failed" and got["failure_code"] == "canceled"
    [failed] = await events(db, "refund.failed")
    assert failed["id"] == re["id"] and failed["status"] == "failed"
    # Nothing went back, so all of it can be refunded again.
    again = await refund(client, auth, inv)
    assert again.status_code == 201 and again.json()["amount"] == "5.000000000"
    async with db.transaction() as session:
        assert await balance(session, books.merchant_account("acct_test"), "TON") == 0
        assert (await check_books(session)).ok


async def test_a_large_refund_waits_for_approvers(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    low = settings.model_copy(update={"approval_threshold_usdt": 10 * 10**6})
    transport = httpx.ASGITransport(app=create_app(low, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as client:
        inv = await paid_invoice(client, auth, "5")
        await deposit(db, inv, 5 * TON)  # 25 USDT at the static rate: above the threshold
        re = (await refund(client, auth, inv)).json()
        payout = (await client.get(f"/v1/payouts/{re['payout']}", headers=auth)).json()
    assert payout["status"] == "requires_approval" and re["status"] == "pending"
