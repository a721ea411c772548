"""API key limits: per payout, per day (atomic under concurrency), assets, destinations."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.helpers import DEST, DEST_RAW, row_counts
from tonrail.app import create_app
from tonrail.cli import app as cli
from tonrail.db import Database
from tonrail.limits.models import KeyDailyVolume
from tonrail.payments.models import Payment
from tonrail.security.api_keys import KeyLimits, create_key
from tonrail.settings import Settings, get_settings

OTHER = "EQCrq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq8Uk"  # 0:abab...


async def _key(db: Database, limits: KeyLimits) -> dict[str, str]:
    async with db.transaction() as session:
        _, secret = await create_key(
            session, "acct_test", "limited", ("payments:read", "payments:write"), limits
        )
    return {"Authorization": f"Bearer {secret}"}


def _client(settings: Settings, db: Database) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, db))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


def _payout(amount: str, asset: str = "USDT", destination: str = DEST) -> dict[str, str]:
    return {"amount": amount, "asset": asset, "destination": destination}


async def test_a_key_pays_out_only_within_its_amount_assets_and_destinations(
    settings: Settings, db: Database
) -> None:
    limits = KeyLimits.parse("10", None, ["usdt"], [DEST])
    auth = await _key(db, limits)
    async with _client(settings, db) as client:
        before = await row_counts(db)
        refusals = {
            "key_payout_limit_exceeded": (_payout("10.01"), 422, "amount"),
            "key_asset_not_allowed": (_payout("1", "TON"), 403, "asset"),
            "key_destination_not_allowed": (_payout("1", destination=OTHER), 403, "destination"),
        }
        for code, (body, status, param) in refusals.items():
            r = await client.post("/v1/payouts", json=body, headers=auth)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
            assert r.json()["error"]["param"] == param
        batch = {"payouts": [_payout("1"), _payout("11")]}
        r = await client.post("/v1/payouts/batch", json=batch, headers=auth)
        assert r.status_code == 422 and r.json()["error"]["param"] == "payouts.1.amount"
        assert await row_counts(db) == before
        ok = await client.post(
            "/v1/payouts", json=_payout("10", destination=DEST_RAW), headers=auth
        )
        assert ok.status_code == 201, ok.text
        [key] = (await client.get("/v1/api_keys", headers=auth)).json()["data"]
    assert key["limits"] == {
        "max_payout_usdt": "10.000000",
        "max_daily_usdt": None,
        "assets": ["USDT"],
        "destinations": [DEST_RAW.upper()],
    }


async def test_a_rolled_key_keeps_its_limits(db: Database) -> None:
    from datetime import timedelta

    from tonrail.security.api_keys import limits_of
    from tonrail.security.key_rotation import roll_key
    from tonrail.security.models import ApiKey

    limits = KeyLimits.parse("5", "50", ["TON"], [DEST])
    async with db.transaction() as session:
        old, _ = await create_key(session, "acct_test", "shop", ("payments:write",), limits)
        successor = await roll_key(session, old.id, "admin:test", timedelta(hours=1))
    async with db.transaction() as session:
        new = await session.get(ApiKey, successor.new_id)
        assert new is not None and limits_of(new) == limits


@pytest.mark.parametrize("workers", [64])
async def test_concurrent_payouts_never_pass_the_keys_daily_limit(
    settings: Settings, db: Database, workers: int
) -> None:
    auth = await _key(db, KeyLimits.parse(None, "100"))
    async with _client(settings, db) as client:
        results = await asyncio.gather(
            *(client.post("/v1/payouts", json=_payout("3"), headers=auth) for _ in range(workers))
        )
        codes = [r.status_code for r in results]
        assert codes.count(201) == 33
        refused = {r.json()["error"]["code"] for r in results if r.status_code != 201}
        assert refused == {"key_daily_limit_exceeded"}
        async with db.transaction() as session:
            total = (await session.execute(select(func.sum(Payment.usdt_equivalent)))).scalar_one()
            used = (await session.execute(select(KeyDailyVolume.used_usdt))).scalar_one()
        assert total == used == 99 * 10**6
        # A canceled payout gives the key its volume back; a batch counts as its items.
        first = next(r.json()["id"] for r in results if r.status_code == 201)
        await client.post(f"/v1/payouts/{first}/cancel", headers=auth)
        over = {"payouts": [_payout("2"), _payout("3")]}  # 96 + 5 > 100
        r = await client.post("/v1/payouts/batch", json=over, headers=auth)
        assert r.status_code == 422 and r.json()["error"]["code"] == "key_daily_limit_exceeded"
        fits = {"payouts": [_payout("2")]}
        assert (await client.post("/v1/payouts/batch", json=fits, headers=auth)).status_code == 201
    async with db.transaction() as session:
        assert (await session.execute(select(KeyDailyVolume.used_usdt))).scalar_one() == 98 * 10**6


def test_keys_create_sets_limits_and_keys_show_shows_them(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        args = ["keys", "create", "--account", "acct_cli", "--max-per-payout", "250"]
        args += ["--max-per-day", "1000", "--asset", "USDT", "--destination", DEST]
        made = CliRunner().invoke(cli, args)
        assert made.exit_code == 0, made.output
        key_id = made.output.split("key id: ")[1].split()[0]
        shown = CliRunner().invoke(cli, ["keys", "show", key_id])
        assert shown.exit_code == 0, shown.output
        assert "max_payout_usdt=250.000000, max_daily_usdt=1000.000000" in shown.output
        assert f"assets=['USDT'], destinations=['{DEST_RAW.upper()}']" in shown.output
        bad = CliRunner().invoke(cli, ["keys", "create", "--destination", "nowhere"])
        assert bad.exit_code == 2
    finally:
        get_settings.cache_clear()
