"""The daily volume limit holds when many payouts race for its last units."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import DEST
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.limits.models import DailyVolume
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
