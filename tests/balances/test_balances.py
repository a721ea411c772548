"""Per-account balances: payouts only within what the account holds, atomically."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import make_key
from tests.helpers import DEST, row_counts
from tonrail.app import create_app
from tonrail.balances.service import top_up
from tonrail.db import Database
from tonrail.errors import PermissionDenied
from tonrail.ledger import rules as books
from tonrail.ledger.models import AccountBalance
from tonrail.ledger.service import balance, check_books, post
from tonrail.payments.models import Payment
from tonrail.security.admins import create_admin, with_permission
from tonrail.settings import Settings

PASSWORD = "correct horse battery staple"


def _client(settings: Settings, db: Database) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, db))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


def _enforced(settings: Settings, house: str = "") -> Settings:
    return settings.model_copy(update={"house_account_id": house})


async def _top_up(db: Database, account: str, amount: str, asset: str = "USDT") -> int:
    async with db.transaction() as session:
        return await top_up(session, account, amount, asset, "wire received", "admin:test")


async def _available(db: Database, account: str, asset: str) -> int:
    async with db.transaction() as session:
        row = await session.get(AccountBalance, (account, asset))
        return 0 if row is None else row.available


@pytest.mark.parametrize("workers", [64])
async def test_concurrent_payouts_never_pass_the_balance(
    settings: Settings, db: Database, auth: dict[str, str], workers: int
) -> None:
    # 100 USDT held; 64 concurrent payouts of 3 USDT: exactly 33 fit (99 USDT).
    await _top_up(db, "acct_test", "100")
    async with _client(_enforced(settings), db) as client:
        results = await asyncio.gather(
            *(
                client.post(
                    "/v1/payouts",
                    json={"amount": "3", "asset": "USDT", "destination": DEST},
                    headers=auth,
                )
                for _ in range(workers)
            )
        )
    codes = [r.status_code for r in results]
    assert codes.count(201) == 33
    refused = {r.json()["error"]["code"] for r in results if r.status_code != 201}
    assert refused == {"insufficient_balance"} and set(codes) == {201, 422}
    async with db.transaction() as session:
        total = (await session.execute(select(func.sum(Payment.amount)))).scalar_one()
        owed = await balance(session, books.merchant_account("acct_test"), "USDT")
        assert (await check_books(session)).ok
    assert total == 99 * 10**6
    assert await _available(db, "acct_test", "USDT") == -owed == 1 * 10**6


async def test_a_refused_payout_writes_nothing_and_a_cancel_gives_the_balance_back(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    await _top_up(db, "acct_test", "10")
    body = {"amount": "6", "asset": "USDT", "destination": DEST}
    async with _client(_enforced(settings), db) as client:
        first = await client.post("/v1/payouts", json=body, headers=auth)
        assert first.status_code == 201
        before = await row_counts(db)
        h = {**auth, "Idempotency-Key": "after-the-top-up"}
        refused = await client.post("/v1/payouts", json=body, headers=h)
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "insufficient_balance" and error["param"] == "amount"
        assert "4.000000 USDT" in error["message"]
        assert await row_counts(db) == before  # no payment, entry, event or idempotency record
        shown = (await client.get("/v1/balance", headers=auth)).json()
        assert shown["enforced"] is True
        assert shown["data"] == [
            {
                "asset": "USDT",
                "available": "4.000000",
                "pending": "6.000000",
                "incoming": "0.000000",
            }
        ]
        await client.post(f"/v1/payouts/{first.json()['id']}/cancel", headers=auth)
        assert await _available(db, "acct_test", "USDT") == 10 * 10**6
        again = await client.post("/v1/payouts", json=body, headers=h)
        assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers


async def test_a_batch_beyond_the_balance_names_the_first_item_it_cannot_cover(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    await _top_up(db, "acct_test", "10")
    await _top_up(db, "acct_test", "1", "TON")
    items = [
        {"amount": "4", "asset": "USDT", "destination": DEST},
        {"amount": "0.5", "asset": "TON", "destination": DEST},
        {"amount": "4", "asset": "USDT", "destination": DEST},
        {"amount": "4", "asset": "USDT", "destination": DEST},
    ]
    async with _client(_enforced(settings), db) as client:
        before = await row_counts(db)
        refused = await client.post("/v1/payouts/batch", json={"payouts": items}, headers=auth)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("insufficient_balance", "payouts.3.amount")
        assert await row_counts(db) == before
        ok = await client.post("/v1/payouts/batch", json={"payouts": items[:3]}, headers=auth)
        assert ok.status_code == 201
    assert await _available(db, "acct_test", "USDT") == 2 * 10**6
    assert await _available(db, "acct_test", "TON") == 5 * 10**8


async def test_the_house_account_draws_on_the_hot_wallet(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    body = {"amount": "6", "asset": "USDT", "destination": DEST}
    other = {"Authorization": f"Bearer {await make_key(db, 'acct_other')}"}
    async with _client(_enforced(settings, house="acct_test"), db) as client:
        house = await client.post("/v1/payouts", json=body, headers=auth)
        assert house.status_code == 201
        assert (await client.get("/v1/balance", headers=auth)).json()["enforced"] is False
        merchant = await client.post("/v1/payouts", json=body, headers=other)
        assert merchant.status_code == 422
        assert merchant.json()["error"]["code"] == "insufficient_balance"
    # The default, "*": every account is the house (one company), as before balances.
    async with _client(settings, db) as client:
        assert (await client.post("/v1/payouts", json=body, headers=other)).status_code == 201
    assert await _available(db, "acct_test", "USDT") == -6 * 10**6


async def test_invoices_credit_and_every_post_keeps_the_balance_equal_to_the_books(
    db: Database,
) -> None:
    async with db.transaction() as session:
        await post(session, "invoice.paid", books.payment_received("acct_a", "TON", 7, "x"))
        await post(session, "payout.reserved", books.payout_reserved("acct_a", "TON", 5))
        await post(session, "payout.fee", books.fee_charged("acct_a", "TON", 4))
        await post(session, "payout.failed", books.payout_released("acct_a", "TON", 5))
        owed = await balance(session, books.merchant_account("acct_a"), "TON")
    # A fee charged after the payout may take the balance below zero; a covered hold never.
    assert await _available(db, "acct_a", "TON") == -owed == 3


async def test_top_ups_need_an_approver_and_are_audited(db: Database) -> None:
    from tonrail.security.audit_log import AuditEntry

    async with db.transaction() as session:
        await create_admin(session, "olga", PASSWORD, "operator")
        await create_admin(session, "anna", PASSWORD, "approver")
    with pytest.raises(PermissionDenied):
        async with db.transaction() as session:
            await with_permission(session, "olga", "approve")
    async with db.transaction() as session:
        admin = await with_permission(session, "anna", "approve")
        left = await top_up(session, "acct_a", "12.5", "USDT", "wire 2026-12-04", "admin:anna")
    assert admin.username == "anna" and left == 12_500_000
    async with db.transaction() as session:
        entry = (
            await session.execute(select(AuditEntry).where(AuditEntry.action == "account.top_up"))
        ).scalar_one()
    assert entry.actor == "admin:anna" and entry.subject == "acct_a"
    assert entry.details["reason"] == "wire 2026-12-04"


async def test_the_balance_is_documented_with_the_shared_error(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/balance"]["get"]
    error = {"$ref": "#/components/schemas/Error"}
    for code in ("401", "403"):
        assert operation["responses"][code]["content"]["application/json"]["schema"] == error
    assert "BalanceOut" in str(operation["responses"]["200"])
    assert (await client.get("/v1/balance")).json()["error"]["code"] == "api_key_missing"


async def test_a_paid_invoice_credits_and_a_refund_needs_the_balance(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    from tests.api.test_refunds import deposit, paid_invoice, refund

    async with _client(_enforced(settings), db) as client:
        invoice = await paid_invoice(client, auth, "5")
        await deposit(db, invoice, 5 * 10**9)
        assert await _available(db, "acct_test", "TON") == 5 * 10**9
        body = {"amount": "4", "asset": "TON", "destination": DEST}
        assert (await client.post("/v1/payouts", json=body, headers=auth)).status_code == 201
        before = await row_counts(db)
        refused = await refund(client, auth, invoice, reason="returned")
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "insufficient_balance"
        assert await row_counts(db) == before
        partial = await refund(client, auth, invoice, amount="1", reason="returned")
        assert partial.status_code == 201, partial.text
    assert await _available(db, "acct_test", "TON") == 0


async def test_a_payout_the_daily_limit_refuses_leaves_the_balance_alone(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    await _top_up(db, "acct_test", "100")
    tight = _enforced(settings).model_copy(update={"daily_volume_limit_usdt": 5 * 10**6})
    async with _client(tight, db) as client:
        body = {"amount": "4", "asset": "USDT", "destination": DEST}
        assert (await client.post("/v1/payouts", json=body, headers=auth)).status_code == 201
        refused = await client.post("/v1/payouts", json=body, headers=auth)
    assert refused.json()["error"]["code"] == "daily_volume_limit_exceeded"
    # The second hold ran before the day's row refused, in the same write: undone with it.
    assert await _available(db, "acct_test", "USDT") == 96 * 10**6
