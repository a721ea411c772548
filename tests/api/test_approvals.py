"""Payouts above the threshold wait for two distinct approvers, neither the requester."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import make_key
from tests.helpers import DEST
from tonrail.db import Database

BIG = {"amount": "1000000.000001", "asset": "USDT", "destination": DEST}


@pytest.fixture
async def approvers(db: Database) -> list[dict[str, str]]:
    keys = [await make_key(db, "acct_test", "payments:read", "payouts:approve") for _ in range(3)]
    return [{"Authorization": f"Bearer {k}"} for k in keys]


async def test_threshold_is_exclusive(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    at = await client.post("/v1/payouts", json={**BIG, "amount": "1000000"}, headers=auth)
    assert at.json()["status"] == "queued"
    above = await client.post("/v1/payouts", json=BIG, headers=auth)
    assert above.json()["status"] == "requires_approval"


async def test_ton_threshold_uses_usdt_equivalent(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # 200,001 TON at 5 USDT/TON is above 1M USDT.
    r = await client.post(
        "/v1/payouts", json={"amount": "200001", "asset": "TON", "destination": DEST}, headers=auth
    )
    assert r.json()["status"] == "requires_approval"


async def test_two_distinct_approvers_queue_it(
    client: httpx.AsyncClient, auth: dict[str, str], approvers: list[dict[str, str]]
) -> None:
    pid = (await client.post("/v1/payouts", json=BIG, headers=auth)).json()["id"]
    one = await client.post(f"/v1/payouts/{pid}/approve", headers=approvers[0])
    assert one.status_code == 200 and one.json()["status"] == "requires_approval"
    assert len(one.json()["approvals"]) == 1
    dup = await client.post(f"/v1/payouts/{pid}/approve", headers=approvers[0])
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "already_approved"
    two = await client.post(f"/v1/payouts/{pid}/approve", headers=approvers[1])
    assert two.status_code == 200 and two.json()["status"] == "queued"
    late = await client.post(f"/v1/payouts/{pid}/approve", headers=approvers[2])
    assert late.status_code == 409 and late.json()["error"]["code"] == "not_awaiting_approval"


async def test_requester_cannot_approve(client: httpx.AsyncClient, db: Database) -> None:
    requester = await make_key(db, "acct_test", "payments:write", "payouts:approve")
    h = {"Authorization": f"Bearer {requester}"}
    pid = (await client.post("/v1/payouts", json=BIG, headers=h)).json()["id"]
    r = await client.post(f"/v1/payouts/{pid}/approve", headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "approver_is_requester"


async def test_key_without_scope_cannot_approve(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    pid = (await client.post("/v1/payouts", json=BIG, headers=auth)).json()["id"]
    other = {"Authorization": f"Bearer {await make_key(db)}"}
    r = await client.post(f"/v1/payouts/{pid}/approve", headers=other)
    assert r.status_code == 403 and r.json()["error"]["code"] == "scope_missing"


async def test_other_account_cannot_approve(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    pid = (await client.post("/v1/payouts", json=BIG, headers=auth)).json()["id"]
    foreign = await make_key(db, "acct_x", "payouts:approve")
    r = await client.post(
        f"/v1/payouts/{pid}/approve", headers={"Authorization": f"Bearer {foreign}"}
    )
    assert r.status_code == 404


async def test_waiting_payout_can_be_canceled(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    pid = (await client.post("/v1/payouts", json=BIG, headers=auth)).json()["id"]
    r = await client.post(f"/v1/payouts/{pid}/cancel", headers=auth)
    assert r.json()["status"] == "canceled"
