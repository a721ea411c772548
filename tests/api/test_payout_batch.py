"""POST /v1/payouts/batch: many payouts in one transaction, each as POST /v1/payouts would."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.helpers import DEST, DEST_RAW, row_counts
from tonrail.app import create_app
from tonrail.chain.address import counterparty_key
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.payments.models import Payment
from tonrail.security.lockouts import lock
from tonrail.settings import Settings


def item(amount: str = "1.5", asset: str = "USDT", **more: Any) -> dict[str, Any]:
    return {"amount": amount, "asset": asset, "destination": DEST, **more}


async def batch(
    client: httpx.AsyncClient, auth: dict[str, str], items: list[Any], **headers: str
) -> httpx.Response:
    return await client.post(
        "/v1/payouts/batch", json={"payouts": items}, headers={**auth, **headers}
    )


async def test_batch_creates_each_payout_with_books_events_and_approvals(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    r = await batch(
        client,
        auth,
        [
            item("12.5", metadata={"order": "1"}),
            item("0.25", "TON", destination=DEST_RAW, priority="urgent"),
            item("1000000.01"),  # above the approval threshold of 1M USDT
        ],
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["object"] == "payout_batch"
    assert (body["count"], body["created"], body["replayed"]) == (3, 3, [])
    data = body["data"]
    assert [p["status"] for p in data] == ["queued", "queued", "requires_approval"]
    assert data[0]["amount_minor"] == 12_500_000 and data[0]["metadata"] == {"order": "1"}
    assert data[1]["asset"] == "TON" and data[1]["priority"] == "urgent"
    assert data[1]["target_confirmation_seconds"] == 15
    assert len({p["id"] for p in data}) == 3
    # Each one is a payout like any other: readable, listed, reserved in the books.
    got = await client.get(f"/v1/payouts/{data[0]['id']}", headers=auth)
    assert got.status_code == 200 and got.json()["amount"] == "12.500000"
    async with db.transaction() as session:
        events = (
            await session.execute(select(OutboxEvent.type, func.count()).group_by(OutboxEvent.type))
        ).all()
        assert dict(events) == {"payout.created": 3}
        payable = await balance(session, books.PAYOUTS_PAYABLE, "USDT")
        assert payable == -(12_500_000 + 1_000_000_010_000)
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == -250_000_000
        assert (await check_books(session)).ok


async def test_empty_and_too_large_batches_are_refused(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    app = create_app(settings.model_copy(update={"payouts_batch_max": 3}), db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tonrail.test"
    ) as client:
        before = await row_counts(db)
        r = await batch(client, auth, [])
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "batch_empty"
        assert r.json()["error"]["param"] == "payouts"
        r = await batch(client, auth, [item()] * 4)
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "batch_too_large"
        r = await client.post("/v1/payouts/batch", json={"payout": [item()]}, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_missing"
        assert r.json()["error"]["param"] == "payouts"
        assert await row_counts(db) == before
        r = await batch(client, auth, [item()] * 3)
        assert r.status_code == 201 and r.json()["created"] == 3


async def test_one_bad_item_refuses_the_whole_batch_and_names_it(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    before = await row_counts(db)
    r = await batch(client, auth, [item(), item(), item("1.2345678"), item("-1")])
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "amount_invalid" and error["param"] == "payouts.2.amount"
    # Every bad item is listed, so a client can fix them all at once.
    assert [(e["index"], e["code"], e["param"]) for e in error["items"]] == [
        (2, "amount_invalid", "payouts.2.amount"),
        (3, "amount_invalid", "payouts.3.amount"),
    ]
    r = await batch(client, auth, [item(), item(destination="EQ-not-an-address")])
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "address_invalid"
    assert r.json()["error"]["param"] == "payouts.1.destination"
    r = await batch(client, auth, [item("0.01"), item("5", "USD")])
    assert r.status_code == 400 and r.json()["error"]["code"] == "asset_unsupported"
    assert r.json()["error"]["param"] == "payouts.1.asset"
    r = await batch(client, auth, [item("20000000")])
    assert r.status_code == 422 and r.json()["error"]["code"] == "amount_too_large"
    assert r.json()["error"]["param"] == "payouts.0.amount"
    r = await batch(client, auth, [item(), item(colour="red")])
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_unknown"
    assert r.json()["error"]["param"] == "payouts.1.colour"
    r = await batch(client, auth, [item(), 12])
    assert r.status_code == 400 and r.json()["error"]["param"] == "payouts.1"
    assert await row_counts(db) == before


async def test_daily_limit_applies_per_item_all_or_nothing(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    limited = settings.model_copy(update={"daily_volume_limit_usdt": 10_000_000})  # 10 USDT
    app = create_app(limited, db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tonrail.test"
    ) as client:
        r = await batch(client, auth, [item("3")])
        assert r.status_code == 201
        before = await row_counts(db)
        r = await batch(client, auth, [item("3"), item("3"), item("3")])
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "daily_volume_limit_exceeded"
        assert error["param"] == "payouts.2.amount"
        assert await row_counts(db) == before
        r = await batch(client, auth, [item("3"), item("4")])
        assert r.status_code == 201  # exactly 10 USDT: fits
        async with db.transaction() as session:
            count = (await session.execute(select(func.count()).select_from(Payment))).scalar()
        assert count == 3


async def test_item_keys_make_a_resent_batch_safe(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    items = [item("1", idempotency_key="order-1"), item("2", idempotency_key="order-2")]
    first = await batch(client, auth, items)
    assert first.status_code == 201 and first.json()["replayed"] == []
    ids = [p["id"] for p in first.json()["data"]]
    # The client timed out and re-sends, with one more payout.
    again = await batch(client, auth, [*items, item("3", idempotency_key="order-3")])
    assert again.status_code == 201, again.text
    body = again.json()
    assert body["replayed"] == [0, 1] and body["created"] == 1
    assert [p["id"] for p in body["data"]][:2] == ids
    async with db.transaction() as session:
        count = (await session.execute(select(func.count()).select_from(Payment))).scalar()
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == -6_000_000
    assert count == 3
    # A key reused with other fields is a conflict, naming the item; nothing is written.
    before = await row_counts(db)
    r = await batch(client, auth, [item("9", idempotency_key="order-4"), item("5", **_k(2))])
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "idempotency_conflict"
    assert r.json()["error"]["param"] == "payouts.1.idempotency_key"
    r = await batch(client, auth, [item(idempotency_key="x"), item(idempotency_key="x")])
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "idempotency_key_duplicate"
    assert r.json()["error"]["param"] == "payouts.1.idempotency_key"
    assert await row_counts(db) == before


def _k(n: int) -> dict[str, str]:
    return {"idempotency_key": f"order-{n}"}


async def test_request_key_replays_the_whole_batch(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    first = await batch(client, auth, [item(), item("2")], **{"Idempotency-Key": "b-1"})
    again = await batch(client, auth, [item(), item("2")], **{"Idempotency-Key": "b-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = await batch(client, auth, [item("3")], **{"Idempotency-Key": "b-1"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    async with db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(Payment))).scalar() == 2


async def test_request_key_replays_a_reserialised_batch(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    body = {"payouts": [item(), item("2", **_k(9))]}
    h = {**auth, "Idempotency-Key": "b-2", "Content-Type": "application/json"}
    first = await client.post("/v1/payouts/batch", content=json.dumps(body), headers=h)
    assert first.status_code == 201, first.text
    # The same batch as another client library would write it: keys sorted the other way
    # round, pretty-printed.
    reordered = {"payouts": [dict(sorted(i.items(), reverse=True)) for i in body["payouts"]]}
    again = await client.post(
        "/v1/payouts/batch", content=json.dumps(reordered, indent=4), headers=h
    )
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    reordered["payouts"][1]["amount"] = "2.5"
    other = await client.post("/v1/payouts/batch", content=json.dumps(reordered), headers=h)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    async with db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(Payment))).scalar() == 2


async def test_locked_destination_and_scope_are_checked(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    locked = "0:" + "cd" * 32
    async with db.transaction() as session:
        await lock(session, "counterparty", counterparty_key(locked), 10, "test")
    before = await row_counts(db)
    r = await batch(client, auth, [item(), item("1", "TON", destination=locked)])
    assert r.status_code == 423
    assert r.json()["error"]["code"] == "counterparty_locked"
    assert r.json()["error"]["param"] == "payouts.1.destination"
    assert await row_counts(db) == before

    from tests.conftest import make_key

    reader = await make_key(db, "acct_test", "payments:read")
    r = await batch(client, {"Authorization": f"Bearer {reader}"}, [item()])
    assert r.status_code == 403 and r.json()["error"]["code"] == "scope_missing"


async def test_concurrent_resends_of_a_keyed_batch_pay_each_item_once(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    import asyncio

    items = [item("1", idempotency_key="c-1"), item("2", idempotency_key="c-2")]
    answers = await asyncio.gather(*(batch(client, auth, items) for _ in range(6)))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    ids = {tuple(p["id"] for p in a.json()["data"]) for a in answers}
    assert len(ids) == 1  # every answer names the same two payouts
    assert sum(a.json()["created"] for a in answers) == 2
    async with db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(Payment))).scalar() == 2
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == -3_000_000
