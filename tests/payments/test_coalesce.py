"""Group commit of concurrent single payouts on PostgreSQL (payments/coalesce.py): payouts
that wait for a write in flight are written together in one transaction, and any failure of
that transaction lets each of them write alone and get the answer it gets alone.

A test holds the day's volume row locked (as a long write would) so that the first payout's
write stays in flight while the others queue behind it, then lets it go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, literal_column, select

from tests.helpers import DEST
from tonrail import clock
from tonrail import db as db_module
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger.service import check_books
from tonrail.limits.models import DailyVolume
from tonrail.payments.coalesce import GroupCommit
from tonrail.payments.models import Payment
from tonrail.security.models import IdempotencyRecord
from tonrail.settings import Settings

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

USDT = 10**6
Post = Callable[..., Awaitable[httpx.Response]]


@asynccontextmanager
async def payouts_client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def groups_of(client: httpx.AsyncClient) -> GroupCommit:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    groups = transport.app.state.payments.groups  # type: ignore[attr-defined]
    assert isinstance(groups, GroupCommit)
    return groups


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def payout(client: httpx.AsyncClient, auth: dict[str, str], amount: str, key: str | None) -> Any:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    body = {"amount": amount, "asset": "USDT", "destination": DEST}
    return client.post("/v1/payouts", json=body, headers=headers)


async def queued_together(
    db: Database,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    amounts: Sequence[tuple[str, str | None]],
) -> tuple[httpx.Response, list[httpx.Response]]:
    """A first payout of 1 USDT whose write stays in flight (the day's volume row is held
    by another transaction) while `amounts` (amount, idempotency key) queue behind it; then
    the row is let go. Needs the day's volume row to exist. Returns every answer."""
    groups = groups_of(client)
    day = clock.now().date().isoformat()
    async with db.engine.connect() as blocker:
        await blocker.execute(
            select(DailyVolume.used_usdt).where(DailyVolume.day == day).with_for_update()
        )
        first = asyncio.ensure_future(payout(client, auth, "1", None))
        await until(lambda: groups.in_flight)
        rest = [asyncio.ensure_future(payout(client, auth, a, k)) for a, k in amounts]
        keys = [k for _, k in amounts if k is not None]
        alone = len(keys) - len(set(keys))  # a key's second request does not queue
        await until(lambda: groups.queued == len(amounts) - alone)
        await asyncio.sleep(0.05)
        await blocker.rollback()
    return await first, list(await asyncio.gather(*rest))


async def books_and_rows(db: Database) -> tuple[int, int, int, int]:
    async with db.transaction() as session:
        assert (await check_books(session)).ok
        payments = (await session.execute(select(func.count(Payment.id)))).scalar_one()
        distinct = (
            await session.execute(select(func.count(func.distinct(Payment.id))))
        ).scalar_one()
        assert payments == distinct
        events = (
            await session.execute(
                select(func.count(OutboxEvent.id)).where(OutboxEvent.type == "payout.created")
            )
        ).scalar_one()
        records = (await session.execute(select(func.count(IdempotencyRecord.key)))).scalar_one()
        used = (await session.execute(select(DailyVolume.used_usdt))).scalar_one()
    return payments, events, records, used


async def test_concurrent_payouts_are_written_in_groups(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    async with payouts_client(settings, db) as client:
        assert (await payout(client, auth, "1", None)).status_code == 201
        first, answers = await queued_together(
            db, client, auth, [("2", f"order-{n}") for n in range(40)]
        )
        groups = groups_of(client)
        # 40 at once through the app, not held: they group too.
        more = await asyncio.gather(*(payout(client, auth, "1", f"more-{n}") for n in range(40)))
        counted = (groups.groups, groups.grouped, groups.fallbacks)
        # (The API key's rate limit allows 100 writes at once: 10 replays.)
        replays = await asyncio.gather(
            *(payout(client, auth, "2", f"order-{n}") for n in range(10))
        )
    assert first.status_code == 201
    assert [r.status_code for r in answers + list(more)] == [201] * 80
    # The 40 held ones in one group, and groups among the 50 sent at once.
    assert counted[0] >= 2 and counted[1] >= 42 and counted[2] == 0
    # Each key's replay is its payout's first answer.
    assert [r.json() for r in replays] == [r.json() for r in answers[:10]]
    assert all(r.headers.get("Idempotent-Replayed") == "true" for r in replays)
    ids = {r.json()["id"] for r in answers + list(more)}
    assert len(ids) == 80
    payments, events, records, used = await books_and_rows(db)
    assert (payments, events, records) == (82, 82, 80)
    assert used == (1 + 1 + 40 * 2 + 40) * USDT


async def test_member_over_the_daily_limit_gets_its_own_refusal(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    limited = settings.model_copy(update={"daily_volume_limit_usdt": 100 * USDT})
    async with payouts_client(limited, db) as client:
        assert (await payout(client, auth, "50", None)).status_code == 201
        first, answers = await queued_together(
            db, client, auth, [("1", "a"), ("1", "b"), ("60", "big"), ("1", "c"), ("1", "d")]
        )
        groups = groups_of(client)
        big_again = await payout(client, auth, "60", "big")
    assert first.status_code == 201
    assert [r.status_code for r in answers] == [201, 201, 422, 201, 201]
    assert answers[2].json()["error"]["code"] == "daily_volume_limit_exceeded"
    assert big_again.status_code == 422  # nothing saved under its key
    assert groups.fallbacks == 1 and groups.groups == 0
    payments, events, records, used = await books_and_rows(db)
    assert (payments, events, records) == (6, 6, 4)
    assert used == 55 * USDT


async def test_same_idempotency_key_twice_never_shares_a_group(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    async with payouts_client(settings, db) as client:
        assert (await payout(client, auth, "1", None)).status_code == 201
        first, answers = await queued_together(
            db, client, auth, [("3", "twin"), ("1", "x"), ("3", "twin"), ("1", "y")]
        )
    assert first.status_code == 201
    assert [r.status_code for r in answers] == [201] * 4
    assert answers[0].json() == answers[2].json()
    async with db.transaction() as session:
        twins = (
            await session.execute(select(func.count()).where(Payment.amount == 3 * USDT))
        ).scalar_one()
    assert twins == 1
    payments, events, records, _ = await books_and_rows(db)
    assert (payments, events, records) == (5, 5, 3)


async def test_fault_in_the_group_write_lets_every_member_write_alone(
    settings: Settings, db: Database, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The group's one statement fails on the server after its writes ran (a division by
    # zero read after every write's count): nothing of it may stay.
    real = db_module._together_statement
    calls = 0

    def fails_after_writing(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args).add_columns(select(literal_column("1 / 0")).scalar_subquery())

    monkeypatch.setattr(db_module, "_together_statement", fails_after_writing)
    monkeypatch.setattr(db_module, "_DRIVER_STATEMENTS", {})  # built anew, with the fault
    async with payouts_client(settings, db) as client:
        assert (await payout(client, auth, "1", None)).status_code == 201
        first, answers = await queued_together(
            db, client, auth, [("2", f"k-{n}") for n in range(8)]
        )
        groups = groups_of(client)
        replays = await asyncio.gather(*(payout(client, auth, "2", f"k-{n}") for n in range(8)))
    assert calls >= 1
    assert first.status_code == 201
    assert [r.status_code for r in answers] == [201] * 8
    assert groups.fallbacks >= 1 and groups.groups == 0
    assert [r.json() for r in replays] == [r.json() for r in answers]
    payments, events, records, used = await books_and_rows(db)
    assert (payments, events, records) == (10, 10, 8)
    assert used == (1 + 1 + 8 * 2) * USDT


async def test_cancelled_queued_payout_is_not_written_and_its_retry_is(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    async with payouts_client(settings, db) as client:
        assert (await payout(client, auth, "1", None)).status_code == 201
        groups = groups_of(client)
        day = clock.now().date().isoformat()
        async with db.engine.connect() as blocker:
            await blocker.execute(
                select(DailyVolume.used_usdt).where(DailyVolume.day == day).with_for_update()
            )
            first = asyncio.ensure_future(payout(client, auth, "1", None))
            await until(lambda: groups.in_flight)
            gone = asyncio.ensure_future(payout(client, auth, "7", "gone"))
            kept = asyncio.ensure_future(payout(client, auth, "2", "kept"))
            await until(lambda: groups.queued == 2)
            gone.cancel()
            await until(lambda: groups.queued == 1)
            await blocker.rollback()
        assert (await first).status_code == 201 and (await kept).status_code == 201
        with pytest.raises(asyncio.CancelledError):
            await gone
        retried = await payout(client, auth, "7", "gone")
        again = await payout(client, auth, "7", "gone")
    assert retried.status_code == 201 and again.json() == retried.json()
    payments, events, records, _ = await books_and_rows(db)
    assert (payments, events, records) == (4, 4, 2)
