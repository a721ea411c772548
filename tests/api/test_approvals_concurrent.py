"""Approvals under real concurrency, on both databases: each approval is one atomic step.

Requests run at the same moment through the HTTP app (asyncio.gather; on PostgreSQL each has
its own connection, so their transactions really overlap). Whatever the interleaving, the
payout is queued exactly when the second distinct approver arrives, once, and a repeated
approval by the same approver answers 409 `already_approved`, never 5xx.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import make_key
from tests.helpers import DEST
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.payments.models import Approval

BIG = {"amount": "1000000.000001", "asset": "USDT", "destination": DEST}
ROUNDS = 8


async def _approvers(db: Database, n: int) -> list[dict[str, str]]:
    keys = [await make_key(db, "acct_test", "payments:read", "payouts:approve") for _ in range(n)]
    return [{"Authorization": f"Bearer {k}"} for k in keys]


async def _payout(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    r = await client.post("/v1/payouts", json=BIG, headers=auth)
    assert r.status_code == 201 and r.json()["status"] == "requires_approval", r.text
    return str(r.json()["id"])


async def _recorded(db: Database, pid: str) -> tuple[int, int]:
    """(approval rows, payout.queued events) of a payout."""
    async with db.transaction() as session:
        approvals = await session.scalar(
            select(func.count()).select_from(Approval).where(Approval.payment_id == pid)
        )
        queued = await session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.payment_id == pid, OutboxEvent.type == "payout.queued")
        )
    return int(approvals or 0), int(queued or 0)


async def test_two_distinct_approvers_at_once_queue_it_every_time(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    approvers = await _approvers(db, 2)
    for _ in range(ROUNDS):
        pid = await _payout(client, auth)
        answers = await asyncio.gather(
            *(client.post(f"/v1/payouts/{pid}/approve", headers=h) for h in approvers)
        )
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        # Exactly one of the two saw itself as the second approver.
        assert sorted(a.json()["status"] for a in answers) == ["queued", "requires_approval"]
        got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "queued" and len(got["approvals"]) == 2
        assert await _recorded(db, pid) == (2, 1)


async def test_three_approvers_at_once_one_is_late(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    approvers = await _approvers(db, 3)
    for _ in range(ROUNDS):
        pid = await _payout(client, auth)
        answers = await asyncio.gather(
            *(client.post(f"/v1/payouts/{pid}/approve", headers=h) for h in approvers)
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 200, 409], [a.text for a in answers]
        late = next(a for a in answers if a.status_code == 409)
        assert late.json()["error"]["code"] == "not_awaiting_approval"
        assert await _recorded(db, pid) == (2, 1)


async def test_ten_approvals_by_one_key_at_once_count_once(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    (one,) = await _approvers(db, 1)
    for _ in range(ROUNDS // 2):
        pid = await _payout(client, auth)
        answers = await asyncio.gather(
            *(client.post(f"/v1/payouts/{pid}/approve", headers=one) for _ in range(10))
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200] + [409] * 9, [a.text for a in answers]
        assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {
            "already_approved"
        }
        got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
        assert got["status"] == "requires_approval" and len(got["approvals"]) == 1
        assert await _recorded(db, pid) == (1, 0)


async def test_repeated_approval_with_its_idempotency_key_replays_200(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    (one,) = await _approvers(db, 1)
    pid = await _payout(client, auth)
    headers = {**one, "Idempotency-Key": f"approve-{pid}"}
    answers = await asyncio.gather(
        *(client.post(f"/v1/payouts/{pid}/approve", headers=headers) for _ in range(6))
    )
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 5
    assert await _recorded(db, pid) == (1, 0)


async def test_many_payouts_each_approved_by_two_at_once(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    """Approvals of different payouts do not wait for each other's outcome."""
    approvers = await _approvers(db, 2)
    pids = [await _payout(client, auth) for _ in range(6)]
    answers = await asyncio.gather(
        *(client.post(f"/v1/payouts/{p}/approve", headers=h) for p in pids for h in approvers)
    )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    for pid in pids:
        assert await _recorded(db, pid) == (2, 1)


@pytest.mark.parametrize("requester_first", [True, False])
async def test_the_requester_among_concurrent_approvers_never_counts(
    client: httpx.AsyncClient, db: Database, requester_first: bool
) -> None:
    secret = await make_key(db, "acct_test", "payments:write", "payments:read", "payouts:approve")
    requester = {"Authorization": f"Bearer {secret}"}
    (other,) = await _approvers(db, 1)
    pid = await _payout(client, requester)
    order = [requester, other] if requester_first else [other, requester]
    answers = await asyncio.gather(
        *(client.post(f"/v1/payouts/{pid}/approve", headers=h) for h in order)
    )
    by_requester = answers[0 if requester_first else 1]
    assert by_requester.status_code == 403
    assert by_requester.json()["error"]["code"] == "approver_is_requester"
    assert await _recorded(db, pid) == (1, 0)
