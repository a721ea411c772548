"""The Balances page over HTTP, on both databases: the table, and top-ups by approvers only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import select

from tests.helpers import DEST, row_counts
from tonrail.db import Database
from tonrail.ledger.models import AccountBalance
from tonrail.security.audit_log import AuditEntry

SignIn = Callable[[str], Awaitable[str]]


def _form(csrf: str, amount: str = "250.5") -> dict[str, str]:
    return {
        "csrf_token": csrf,
        "account": "acct_test",
        "amount": amount,
        "asset": "USDT",
        "reason": "wire 2026-12-04",
    }


async def test_an_approver_tops_up_and_the_page_shows_the_balance(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    body = {"amount": "50", "asset": "USDT", "destination": DEST}
    assert (await client.post("/v1/payouts", json=body, headers=auth)).status_code == 201
    csrf = await signed_in("operator")
    before = await row_counts(db)
    refused = await client.post("/dashboard/balances/top-up", data=_form(csrf))
    assert refused.status_code == 403 and await row_counts(db) == before
    csrf = await signed_in("approver")
    before = await row_counts(db)  # signing in writes a session and an audit entry
    bad = await client.post("/dashboard/balances/top-up", data=_form(csrf, "-1"))
    assert bad.status_code == 400 and await row_counts(db) == before
    done = await client.post("/dashboard/balances/top-up", data=_form(csrf))
    assert done.status_code == 200 and 'data-code="topped_up"' in done.text
    page = (await client.get("/dashboard/balances")).text
    # 250.5 topped up, 50 held by the payout (the default house `*` let it through).
    assert "acct_test" in page and "200.500000" in page and "50.000000" in page
    async with db.transaction() as session:
        row = await session.get(AccountBalance, ("acct_test", "USDT"))
        audited = (
            await session.execute(
                select(AuditEntry.actor, AuditEntry.subject).where(
                    AuditEntry.action == "account.top_up"
                )
            )
        ).all()
    assert row is not None and row.available == 200_500_000
    assert [tuple(a) for a in audited] == [("admin:approver", "acct_test")]
