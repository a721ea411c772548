"""Payouts addressed to our own hot wallet or jetton wallet: refused, never sent."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from ton_core import Address

from tests.helpers import DEST, row_counts
from tests.rails.ton.rail_fixture import Rail
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.processing.ton_loop import assemble
from tonrail.processing.ton_runtime import register_own_accounts
from tonrail.rails.ton.models import TonRequest


def _spellings(rail: Rail) -> list[str]:
    """Our hot wallet and jetton wallet, each as user-friendly and as raw text."""
    hot = rail.ctx.wallet.address
    jetton = Address(rail.ctx.jetton_wallet or "")
    return [
        hot.to_str(is_user_friendly=True, is_bounceable=True),
        hot.to_str(is_user_friendly=True, is_bounceable=False),
        hot.to_str(is_user_friendly=False).lower(),
        jetton.to_str(is_user_friendly=True, is_bounceable=True),
        rail.ctx.jetton_wallet or "",
    ]


async def test_api_refuses_payouts_to_our_own_wallets(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    # What the worker records when it opens the TON rail (ton_runtime.open_ton_rail).
    await register_own_accounts(db, rail.ctx.wallet_raw, rail.ctx.jetton_wallet)
    before = await row_counts(db)
    for destination in _spellings(rail):
        for asset in ("TON", "USDT"):
            r = await client.post(
                "/v1/payouts",
                json={"amount": "1", "asset": asset, "destination": destination},
                headers=auth,
            )
            assert r.status_code == 400, (destination, r.text)
            assert r.json()["error"]["code"] == "destination_own_wallet"
            assert r.json()["error"]["param"] == "destination"
    ok = {"amount": "1", "asset": "TON", "destination": DEST}
    own = {**ok, "destination": _spellings(rail)[0]}
    r = await client.post("/v1/payouts/batch", json={"payouts": [ok, own]}, headers=auth)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "destination_own_wallet"
    assert r.json()["error"]["param"] == "payouts.1.destination"
    assert await row_counts(db) == before
    # Another destination still passes.
    assert (await client.post("/v1/payouts", json=ok, headers=auth)).status_code == 201


async def test_worker_fails_an_older_payout_to_our_wallet_without_sending_it(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    # Created before any worker recorded our accounts: the API could not know it yet.
    ids = []
    for asset, destination in (("TON", _spellings(rail)[0]), ("USDT", _spellings(rail)[3])):
        r = await client.post(
            "/v1/payouts",
            json={"amount": "1", "asset": asset, "destination": destination},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    assert await assemble(rail.ctx, deploy=False) is None
    for payout_id in ids:
        p = (await client.get(f"/v1/payouts/{payout_id}", headers=auth)).json()
        assert p["status"] == "failed" and p["failure_code"] == "destination_own_wallet"
        assert p["attempts"] == []
    async with db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(TonRequest))).scalar() == 0
        # The reservations went back to the merchant.
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == 0
        assert (await check_books(session)).ok
