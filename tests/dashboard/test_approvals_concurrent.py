"""The Approvals page under real concurrency, on both databases: approvers clicking at the
same moment (each with their own signed-in client), alone or together with API approvers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import make_key
from tests.dashboard.conftest import sign_in
from tests.helpers import DEST
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.payments.models import Approval
from tonrail.security.audit_log import AuditEntry

ROUNDS = 6


@pytest.fixture
async def clients(app: Any, admins: dict[str, str]) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One client per approver, each with its own session cookie."""
    opened: dict[str, httpx.AsyncClient] = {}
    for name in ("approver", "approver2", "admin"):
        opened[name] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tonrail.test"
        )
    try:
        yield opened
    finally:
        for c in opened.values():
            await c.aclose()


async def _payout(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    body = {"amount": "1500000", "asset": "USDT", "destination": DEST}
    r = await client.post("/v1/payouts", json=body, headers=auth)
    assert r.status_code == 201 and r.json()["status"] == "requires_approval", r.text
    return str(r.json()["id"])


async def _recorded(db: Database, pid: str) -> tuple[int, int, int]:
    """(approvals, payout.queued events, payout.approve audit entries) of a payout."""
    async with db.transaction() as session:
        approvals = await session.scalar(
            select(func.count()).select_from(Approval).where(Approval.payment_id == pid)
        )
        queued = await session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.payment_id == pid, OutboxEvent.type == "payout.queued")
        )
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.subject == pid, AuditEntry.action == "payout.approve")
        )
    return int(approvals or 0), int(queued or 0), int(audited or 0)


async def test_two_approvers_clicking_at_once_queue_it_every_time(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    clients: dict[str, httpx.AsyncClient],
    db: Database,
) -> None:
    one, two = clients["approver"], clients["approver2"]
    csrf = [await sign_in(one, "approver"), await sign_in(two, "approver2")]
    for _ in range(ROUNDS):
        pid = await _payout(client, auth)
        answers = await asyncio.gather(
            *(
                c.post(
                    f"/dashboard/approvals/{pid}/approve",
                    headers={"HX-Request": "true", "X-CSRF-Token": t},
                )
                for c, t in zip((one, two), csrf, strict=True)
            )
        )
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert sum("queued for sending" in a.text for a in answers) == 1
        assert sum("waits for 1 more approver" in a.text for a in answers) == 1
        got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "queued"
        assert await _recorded(db, pid) == (2, 1, 2)


async def test_one_approver_clicking_ten_times_at_once_counts_once(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    clients: dict[str, httpx.AsyncClient],
    db: Database,
) -> None:
    one = clients["approver"]
    csrf = await sign_in(one, "approver")
    pid = await _payout(client, auth)
    answers = await asyncio.gather(
        *(
            one.post(
                f"/dashboard/approvals/{pid}/approve",
                headers={"HX-Request": "true", "X-CSRF-Token": csrf},
            )
            for _ in range(10)
        )
    )
    assert sorted(a.status_code for a in answers) == [200] + [409] * 9
    assert sum('data-code="already_approved"' in a.text for a in answers) == 9
    assert await _recorded(db, pid) == (1, 0, 1)


async def test_dashboard_and_api_approvers_at_once(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    clients: dict[str, httpx.AsyncClient],
    db: Database,
) -> None:
    admin = clients["admin"]
    csrf = await sign_in(admin, "admin")
    key = await make_key(db, "acct_test", "payments:read", "payouts:approve")
    for _ in range(ROUNDS):
        pid = await _payout(client, auth)
        by_page, by_api = await asyncio.gather(
            admin.post(
                f"/dashboard/approvals/{pid}/approve",
                headers={"HX-Request": "true", "X-CSRF-Token": csrf},
            ),
            client.post(f"/v1/payouts/{pid}/approve", headers={"Authorization": f"Bearer {key}"}),
        )
        assert by_page.status_code == 200 and by_api.status_code == 200
        got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "queued" and len(got["approvals"]) == 2
        assert await _recorded(db, pid) == (2, 1, 1)
