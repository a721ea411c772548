"""The daily volume limit holds when many payouts race for its last units."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from tests.helpers import DEST, row_counts
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.limits.models import WITHIN_LIMIT, DailyVolume
from tonrail.payments.models import Payment
from tonrail.settings import Settings


@pytest.mark.parametrize("workers", [48])
async def test_concurrent_payouts_never_pass_the_limit(
    settings: Settings, db: Database, auth: dict[str, str], workers: int
) -> None:
    # 100 USDT limit; 48 concurrent payouts of 3 USDT: exactly 33 fit (99 USDT).
    limited = settings.model_copy(update={"daily_volume_limit_usdt": 100 * 10**6})
    app = create_app(limited, db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
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
    refused = [r.json()["error"]["code"] for r in results if r.status_code != 201]
    assert set(refused) == {"daily_volume_limit_exceeded"}
    async with db.transaction() as session:
        total = (await session.execute(select(func.sum(Payment.usdt_equivalent)))).scalar_one()
        used = (await session.execute(select(DailyVolume.used_usdt))).scalar_one()
    assert total == used == 99 * 10**6


async def test_cancel_gives_volume_back(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    limited = settings.model_copy(update={"daily_volume_limit_usdt": 10 * 10**6})
    transport = httpx.ASGITransport(app=create_app(limited, db))
    body = {"amount": "6", "asset": "USDT", "destination": DEST}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = await client.post("/v1/payouts", json=body, headers=auth)
        refused = await client.post("/v1/payouts", json=body, headers=auth)
        assert refused.status_code == 422
        await client.post(f"/v1/payouts/{first.json()['id']}/cancel", headers=auth)
        again = await client.post("/v1/payouts", json=body, headers=auth)
        assert again.status_code == 201


async def test_a_refused_payout_writes_nothing_and_leaves_its_key_free(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    body = {"amount": "6", "asset": "USDT", "destination": DEST}
    ten = settings.model_copy(update={"daily_volume_limit_usdt": 10 * 10**6})
    async with _client(ten, db) as client:
        assert (await client.post("/v1/payouts", json=body, headers=auth)).status_code == 201
        before = await row_counts(db)
        h = {**auth, "Idempotency-Key": "retry-tomorrow"}
        refused = await client.post("/v1/payouts", json=body, headers=h)
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "daily_volume_limit_exceeded"
        assert await row_counts(db) == before  # no payment, entry, event or idempotency record
    twenty = settings.model_copy(update={"daily_volume_limit_usdt": 20 * 10**6})
    async with _client(twenty, db) as client:
        accepted = await client.post("/v1/payouts", json=body, headers=h)
        assert accepted.status_code == 201 and "Idempotent-Replayed" not in accepted.headers
    async with db.transaction() as session:
        row = (await session.execute(select(DailyVolume))).scalar_one()
    assert (row.used_usdt, row.limit_usdt) == (12 * 10**6, 20 * 10**6)


async def test_a_replay_answers_when_the_day_is_full(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    six = settings.model_copy(update={"daily_volume_limit_usdt": 6 * 10**6})
    h = {**auth, "Idempotency-Key": "fills-the-day"}
    body = {"amount": "6", "asset": "USDT", "destination": DEST}
    async with _client(six, db) as client:
        first = await client.post("/v1/payouts", json=body, headers=h)
        again = await client.post("/v1/payouts", json=body, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"


async def test_the_database_refuses_a_total_above_the_limit(
    settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    limited = settings.model_copy(update={"daily_volume_limit_usdt": 10 * 10**6})
    async with _client(limited, db) as client:
        body = {"amount": "4", "asset": "USDT", "destination": DEST}
        assert (await client.post("/v1/payouts", json=body, headers=auth)).status_code == 201
    with pytest.raises(IntegrityError, match=WITHIN_LIMIT):
        async with db.transaction() as session:
            await session.execute(update(DailyVolume).values(used_usdt=DailyVolume.limit_usdt + 1))


def _client(settings: Settings, db: Database) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, db))
    return httpx.AsyncClient(transport=transport, base_url="http://t")
