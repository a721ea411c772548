"""An approver's decision on a deposit screening held, on SQLite and PostgreSQL: bad input
and the wrong role are refused with a code and change nothing; released short of the invoice
amount, the deposit is `underpaid` and the invoice awaits payment again; a second decision
is 409 deposit_not_held. (The watcher's own holding is tested on the local network in
test_deposits_screened.py.)"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import select

from tests.dashboard.conftest import admins, signed_in
from tonrail import clock
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ids import new_id
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books, post
from tonrail.payments.models import Payment
from tonrail.payments.states import PaymentStatus
from tonrail.payments.transitions import move_payment
from tonrail.rails.ton.models import TonDeposit
from tonrail.rails.ton.states import DepositStatus
from tonrail.screening.service import REVIEW_HOLD

__all__ = ["admins", "signed_in"]  # fixtures, used by name
TON = 10**9
SENDER = "0:" + "AB" * 32


async def held_deposit(db: Database, invoice_id: str, amount: int) -> str:
    """A deposit as the watcher holds one for review, with its books and its invoice."""
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
                sender=SENDER,
                comment=invoice.reference,
                payment_id=invoice_id,
                status=DepositStatus.HELD,
                resolution="held by AML/KYC screening for review",
                created_at=clock.now(),
            )
        )
        await post(
            session,
            "deposit.screening_held",
            books.receipt_set_apart(books.SCREENING_HELD, "TON", amount),
            invoice_id,
        )
        if invoice.status == PaymentStatus.AWAITING_PAYMENT:  # else already held for review
            await move_payment(
                session,
                invoice,
                PaymentStatus.PROCESSING,
                actor="system:ton",
                values={"hold_reason": REVIEW_HOLD},
            )
    return dep_id


async def test_decisions_refused_then_released_short_of_the_amount(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    signed_in: Callable[[str], Awaitable[str]],
) -> None:
    r = await client.post("/v1/invoices", json={"amount": "2", "asset": "TON"}, headers=auth)
    inv = r.json()["id"]
    dep = await held_deposit(db, inv, TON)
    url = f"/dashboard/approvals/deposits/{dep}"

    csrf = await signed_in("viewer")
    page = await client.get("/dashboard/approvals")
    assert f'data-deposit="{dep}"' in page.text and "may look, not decide" in page.text
    denied = await client.post(f"{url}/release", data={"csrf_token": csrf})
    assert denied.status_code == 403

    csrf = await signed_in("approver")
    bogus = await client.post(f"{url}/credit", data={"csrf_token": csrf})
    assert bogus.status_code == 400 and "release or freeze" in bogus.text
    no_reason = await client.post(f"{url}/freeze", data={"csrf_token": csrf, "reason": " "})
    assert no_reason.status_code == 400 and "reason_required" in no_reason.text
    unknown = await client.post(
        f"/dashboard/approvals/deposits/{new_id('dep')}/release", data={"csrf_token": csrf}
    )
    assert unknown.status_code == 404
    async with db.transaction() as session:
        row = await session.get(TonDeposit, dep)
        assert row is not None and row.status == DepositStatus.HELD  # nothing changed
        assert await balance(session, books.SCREENING_HELD, "TON") == -TON

    released = await client.post(
        f"{url}/release", data={"csrf_token": csrf}, headers={"HX-Request": "true"}
    )
    assert released.status_code == 200 and "underpaid" in released.text
    assert released.headers["HX-Trigger"] == "approvals-changed"
    got = (await client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert (got["status"], got["hold_reason"]) == ("awaiting_payment", None)
    assert got["amount_received_minor"] == TON and got["amount_remaining"] == "1.000000000"
    again = await client.post(f"{url}/freeze", data={"csrf_token": csrf, "reason": "late"})
    assert again.status_code == 409 and "deposit_not_held" in again.text
    async with db.transaction() as session:
        row = await session.get(TonDeposit, dep)
        assert row is not None and row.status == DepositStatus.UNDERPAID
        assert row.resolution == "released by admin:approver"
        invoice = await session.get(Payment, inv)
        assert invoice is not None
        merchant = books.merchant_account(invoice.account_id)
        assert await balance(session, merchant, "TON") == -TON
        assert await balance(session, books.SCREENING_HELD, "TON") == 0
        assert (await check_books(session)).ok
        events = await session.execute(
            select(OutboxEvent.account_id, OutboxEvent.payload).where(
                OutboxEvent.type == "deposit.screening_released"
            )
        )
        # For operators only (a compliance note is not the merchant's to read).
        [(owner, payload)] = events.all()
        assert owner == "system" and payload["id"] == dep and payload["status"] == "underpaid"


async def test_two_held_deposits_one_frozen_the_invoice_waits_for_the_other(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    signed_in: Callable[[str], Awaitable[str]],
) -> None:
    """Issue #16: freezing one held deposit leaves the invoice in `screening_review` while
    another is held; it fails once that one is decided too (here: released)."""
    r = await client.post("/v1/invoices", json={"amount": "2", "asset": "TON"}, headers=auth)
    inv = r.json()["id"]
    first, second = await held_deposit(db, inv, TON), await held_deposit(db, inv, TON)
    csrf = await signed_in("approver")
    frozen = await client.post(
        f"/dashboard/approvals/deposits/{first}/freeze",
        data={"csrf_token": csrf, "reason": "match confirmed"},
    )
    assert frozen.status_code == 200, frozen.text
    got = (await client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert (got["status"], got["hold_reason"]) == ("processing", "screening_review"), got
    page = await client.get("/dashboard/approvals")
    assert f'data-deposit="{second}"' in page.text and f'data-deposit="{first}"' not in page.text
    released = await client.post(
        f"/dashboard/approvals/deposits/{second}/release", data={"csrf_token": csrf}
    )
    assert released.status_code == 200, released.text
    got = (await client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert (got["status"], got["failure_code"], got["hold_reason"]) == (
        "failed",
        "screening_blocked",
        None,
    ), got
    async with db.transaction() as session:
        invoice = await session.get(Payment, inv)
        assert invoice is not None
        merchant = books.merchant_account(invoice.account_id)
        assert await balance(session, merchant, "TON") == -TON  # the released one
        assert await balance(session, books.SCREENING_FROZEN, "TON") == -TON
        assert await balance(session, books.SCREENING_HELD, "TON") == 0
        assert (await check_books(session)).ok
