"""Idempotency-Key with Stripe's semantics."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
from sqlalchemy import select

from tests.helpers import DEST, row_counts
from tonrail import clock
from tonrail.db import Database
from tonrail.payments.service import PaymentService
from tonrail.security.models import IdempotencyRecord
from tonrail.security.switches import set_switch
from tonrail.settings import Settings
from tonrail.worker import LOOPS, WorkerContext

BODY = {"amount": "7", "asset": "USDT", "destination": DEST}


async def test_same_key_same_body_replays(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    h = {**auth, "Idempotency-Key": "order-1"}
    first = await client.post("/v1/payouts", json=BODY, headers=h)
    counts = await row_counts(db)
    second = await client.post("/v1/payouts", json=BODY, headers=h)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await row_counts(db) == counts


async def test_same_key_other_body_conflicts(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    h = {**auth, "Idempotency-Key": "order-2"}
    assert (await client.post("/v1/payouts", json=BODY, headers=h)).status_code == 201
    counts = await row_counts(db)
    r = await client.post("/v1/payouts", json={**BODY, "amount": "8"}, headers=h)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_conflict"
    assert await row_counts(db) == counts


async def test_a_reserialised_body_replays(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    """The fingerprint is of the parsed request: key order, whitespace and escapes that
    spell the same JSON replay; a changed value still conflicts."""
    h = {**auth, "Idempotency-Key": "order-reformatted", "Content-Type": "application/json"}
    compact = json.dumps(BODY, separators=(",", ":")).encode()
    first = await client.post("/v1/payouts", content=compact, headers=h)
    assert first.status_code == 201, first.text
    counts = await row_counts(db)
    spaced = json.dumps(dict(reversed(list(BODY.items()))), indent=2, ensure_ascii=True)
    escaped = spaced.replace('"asset"', '"\\u0061sset"')  # the same key, escaped
    for body in (spaced, escaped, "\n  " + spaced + "\n"):
        again = await client.post("/v1/payouts", content=body.encode(), headers=h)
        assert again.status_code == 201, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
    changed = json.dumps({**BODY, "amount": "7.0"}, indent=2)
    conflict = await client.post("/v1/payouts", content=changed.encode(), headers=h)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert await row_counts(db) == counts


async def test_key_is_scoped_per_endpoint(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    h = {**auth, "Idempotency-Key": "shared"}
    assert (await client.post("/v1/payouts", json=BODY, headers=h)).status_code == 201
    r = await client.post("/v1/invoices", json={"amount": "7", "asset": "USDT"}, headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_conflict"


async def test_concurrent_same_key_creates_one_payout(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    h = {**auth, "Idempotency-Key": "burst"}
    results = await asyncio.gather(
        *(client.post("/v1/payouts", json=BODY, headers=h) for _ in range(8))
    )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    listed = (await client.get("/v1/payouts", headers=auth)).json()["data"]
    assert len(listed) == 1


async def test_failed_request_is_not_saved(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    h = {**auth, "Idempotency-Key": "fix-and-retry"}
    bad = await client.post("/v1/payouts", json={**BODY, "amount": "1.1234567"}, headers=h)
    assert bad.status_code == 400
    good = await client.post("/v1/payouts", json=BODY, headers=h)
    assert good.status_code == 201


async def test_invalid_key_header(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post("/v1/payouts", json=BODY, headers={**auth, "Idempotency-Key": "x" * 256})
    assert r.status_code == 400 and r.json()["error"]["code"] == "idempotency_key_invalid"


async def test_keys_of_different_accounts_do_not_collide(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    from tests.conftest import make_key

    other = {"Authorization": f"Bearer {await make_key(db, 'acct_b')}", "Idempotency-Key": "k"}
    a = await client.post("/v1/payouts", json=BODY, headers={**auth, "Idempotency-Key": "k"})
    b = await client.post("/v1/payouts", json=BODY, headers=other)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


async def test_a_replay_answers_even_in_maintenance(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    h = {**auth, "Idempotency-Key": "before-maintenance"}
    first = await client.post("/v1/payouts", json=BODY, headers=h)
    assert first.status_code == 201
    async with db.transaction() as session:
        await set_switch(session, "maintenance", True, "test")
    again = await client.post("/v1/payouts", json=BODY, headers=h)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    fresh = await client.post("/v1/payouts", json=BODY, headers={**auth, "Idempotency-Key": "new"})
    assert fresh.status_code == 503 and fresh.json()["error"]["code"] == "maintenance"


async def test_records_expire_after_the_ttl_and_the_key_is_new_again(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> None:
    """IDEMPOTENCY_TTL_HOURS: within it a replay; after it the same key is a new request
    (on every write path), and the worker's batched cleanup deletes what expired."""
    start = clock.now()
    clock.set_clock(lambda: start)
    h = {**auth, "Idempotency-Key": "order-ttl"}
    invoice_h = {**auth, "Idempotency-Key": "invoice-ttl"}
    first = await client.post("/v1/payouts", json=BODY, headers=h)
    inv = await client.post("/v1/invoices", json={"amount": "3", "asset": "TON"}, headers=invoice_h)
    other = await client.post(
        "/v1/payouts", json=BODY, headers={**auth, "Idempotency-Key": "order-ttl-2"}
    )
    assert first.status_code == inv.status_code == other.status_code == 201
    ttl = timedelta(hours=settings.idempotency_ttl_hours)
    clock.set_clock(lambda: start + ttl - timedelta(seconds=1))
    assert (await client.post("/v1/payouts", json=BODY, headers=h)).json() == first.json()
    clock.set_clock(lambda: start + ttl + timedelta(seconds=1))
    again = await client.post("/v1/payouts", json=BODY, headers=h)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    inv2 = await client.post(
        "/v1/invoices", json={"amount": "3", "asset": "TON"}, headers=invoice_h
    )
    assert inv2.status_code == 201 and inv2.json()["id"] != inv.json()["id"]
    # The new request's record replays from now on.
    assert (await client.post("/v1/payouts", json=BODY, headers=h)).json() == again.json()
    # The worker's loop deletes the expired record nobody asked for again ("order-ttl-2").
    ctx = WorkerContext(db, settings, PaymentService(db, settings), "w-ttl")
    await LOOPS["expire_invoices"].run(ctx)  # (it expires the first invoice too)
    async with db.transaction() as session:
        keys = sorted((await session.execute(select(IdempotencyRecord.key))).scalars())
    assert keys == ["invoice-ttl", "order-ttl"]
