"""Payouts through the public API: create, read, list, cancel, books and events."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import make_key
from tests.helpers import DEST, DEST_RAW, row_counts
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger.models import LedgerLine
from tonrail.ledger.service import check_books
from tonrail.settings import Settings


async def test_create_get_and_list_payout(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post(
        "/v1/payouts",
        json={"amount": "12.5", "asset": "USDT", "destination": DEST, "metadata": {"order": "42"}},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["object"] == "payout"
    assert body["id"].startswith("pay_")
    assert body["status"] == "queued"
    assert body["amount"] == "12.500000" and body["amount_minor"] == 12_500_000
    assert body["usdt_equivalent"] == "12.500000"
    assert body["priority"] == "normal" and body["target_confirmation_seconds"] == 60
    assert body["metadata"] == {"order": "42"}

    got = await client.get(f"/v1/payouts/{body['id']}", headers=auth)
    assert got.status_code == 200 and got.json()["id"] == body["id"]

    listed = await client.get("/v1/payouts", headers=auth)
    assert [p["id"] for p in listed.json()["data"]] == [body["id"]]


async def test_raw_address_and_ton_asset(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post(
        "/v1/payouts",
        json={"amount": "1.000000001", "asset": "TON", "destination": DEST_RAW},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["amount_minor"] == 1_000_000_001
    # Default static rate 5 USDT per TON, rounded up to whole micro-USDT.
    assert r.json()["usdt_equivalent"] == "5.000001"


async def test_payout_posts_balanced_reservation_and_event(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    r = await client.post(
        "/v1/payouts", json={"amount": "3", "asset": "USDT", "destination": DEST}, headers=auth
    )
    pid = r.json()["id"]
    async with db.transaction() as session:
        lines = (await session.execute(select(LedgerLine))).scalars().all()
        events = (await session.execute(select(OutboxEvent))).scalars().all()
        report = await check_books(session)
    assert sorted((ln.account, ln.amount) for ln in lines) == [
        ("liability:merchant:acct_test", 3_000_000),
        ("liability:payouts_payable", -3_000_000),
    ]
    assert [(e.type, e.payment_id) for e in events] == [("payout.created", pid)]
    assert report.ok


async def test_cancel_releases_reservation(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    pid = (
        await client.post(
            "/v1/payouts", json={"amount": "3", "asset": "USDT", "destination": DEST}, headers=auth
        )
    ).json()["id"]
    r = await client.post(f"/v1/payouts/{pid}/cancel", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    again = await client.post(f"/v1/payouts/{pid}/cancel", headers=auth)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "illegal_transition"
    async with db.transaction() as session:
        report = await check_books(session)
    assert report.ok
    assert report.balances[("liability:payouts_payable", "USDT")] == 0
    assert report.balances[("liability:merchant:acct_test", "USDT")] == 0


async def test_pagination_with_starting_after(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    ids = []
    for i in range(5):
        r = await client.post(
            "/v1/payouts",
            json={"amount": f"{i + 1}", "asset": "USDT", "destination": DEST},
            headers=auth,
        )
        ids.append(r.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"starting_after": cursor} if cursor else {})}
        page = (await client.get("/v1/payouts", params=params, headers=auth)).json()
        seen += [p["id"] for p in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert seen == list(reversed(ids))


async def test_accounts_cannot_see_each_other(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    pid = (
        await client.post(
            "/v1/payouts", json={"amount": "3", "asset": "USDT", "destination": DEST}, headers=auth
        )
    ).json()["id"]
    other = {"Authorization": f"Bearer {await make_key(db, 'acct_other')}"}
    r = await client.get(f"/v1/payouts/{pid}", headers=other)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (await client.get("/v1/payouts", headers=other)).json()["data"] == []
    bad_cursor = await client.get("/v1/payouts", params={"starting_after": pid}, headers=other)
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["error"]["code"] == "cursor_invalid"


BAD_PAYOUTS = [
    ({"amount": 12.5, "asset": "USDT", "destination": DEST}, "amount_invalid", "amount"),
    ({"amount": 12, "asset": "USDT", "destination": DEST}, "amount_invalid", "amount"),
    ({"amount": "-1", "asset": "USDT", "destination": DEST}, "amount_invalid", "amount"),
    ({"amount": "1.0000001", "asset": "USDT", "destination": DEST}, "amount_invalid", "amount"),
    ({"amount": "1e3", "asset": "USDT", "destination": DEST}, "amount_invalid", "amount"),
    ({"amount": " 1", "asset": "USDT", "destination": DEST}, "amount_invalid", "amount"),
    ({"amount": "0", "asset": "USDT", "destination": DEST}, "amount_invalid", "amount"),
    ({"amount": "NaN", "asset": "USDT", "destination": DEST}, "amount_invalid", "amount"),
    ({"amount": "10000001", "asset": "USDT", "destination": DEST}, "amount_too_large", "amount"),
    ({"amount": "0.000001", "asset": "USDT", "destination": DEST}, "amount_too_small", "amount"),
    ({"amount": "1", "asset": "DOGE", "destination": DEST}, "asset_unknown", "asset"),
    ({"amount": "1", "asset": "USD", "destination": DEST}, "asset_unsupported", "asset"),
    ({"amount": "1", "asset": "USDT", "destination": "EQbad"}, "address_invalid", "destination"),
    (
        {"amount": "1", "asset": "USDT", "destination": DEST[:-1] + "t"},
        "address_invalid",
        "destination",
    ),
    ({"amount": "1", "asset": "USDT"}, "parameter_missing", "destination"),
    ({"amount": "1", "asset": "USDT", "destination": DEST, "foo": 1}, "parameter_unknown", "foo"),
    (
        {"amount": "1", "asset": "USDT", "destination": DEST, "priority": "asap"},
        "parameter_invalid",
        "priority",
    ),
    (
        {"amount": "1", "asset": "USDT", "destination": DEST, "metadata": {"k": "v" * 501}},
        "metadata_invalid",
        "metadata[k]",
    ),
    (
        {
            "amount": "1",
            "asset": "USDT",
            "destination": DEST,
            "metadata": {f"k{i}": "v" for i in range(51)},
        },
        "metadata_invalid",
        "metadata",
    ),
    (
        {
            "amount": "1",
            "asset": "USDT",
            "destination": DEST,
            "metadata": {f"k{i}": "v" * 400 for i in range(30)},
        },
        "metadata_invalid",
        "metadata",
    ),
]


@pytest.mark.parametrize(("body", "code", "param"), BAD_PAYOUTS)
async def test_bad_payouts_are_refused_and_write_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    body: dict[str, object],
    code: str,
    param: str,
) -> None:
    before = await row_counts(db)
    r = await client.post("/v1/payouts", json=body, headers=auth)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["param"] == param
    assert await row_counts(db) == before


async def test_malformed_json_is_refused(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post(
        "/v1/payouts", content=b"{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "body_invalid_json"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "api_key_missing"),
        ({"Authorization": "Bearer trk_nope"}, "api_key_invalid"),
        ({"Authorization": "Basic abc"}, "api_key_invalid"),
        ({"Authorization": "Bearer "}, "api_key_invalid"),
    ],
)
async def test_missing_or_wrong_api_key(
    client: httpx.AsyncClient, db: Database, headers: dict[str, str], code: str
) -> None:
    before = await row_counts(db)
    r = await client.post(
        "/v1/payouts", json={"amount": "1", "asset": "USDT", "destination": DEST}, headers=headers
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == code
    assert (await client.get("/v1/payouts", headers=headers)).status_code == 401
    after = await row_counts(db)
    # Nothing is written but the refusals of a well-formed key that does not exist (a guess),
    # counted per address so that repeated guessing locks it (security/lockouts.py).
    guessed = 2 if headers.get("Authorization") == "Bearer trk_nope" else 0
    assert after.pop("security_failures") == before.pop("security_failures") + guessed
    assert after == before


async def test_read_only_key_cannot_create(client: httpx.AsyncClient, db: Database) -> None:
    key = await make_key(db, "acct_test", "payments:read")
    r = await client.post(
        "/v1/payouts",
        json={"amount": "1", "asset": "USDT", "destination": DEST},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "scope_missing"


async def test_revoked_key_is_refused(client: httpx.AsyncClient, db: Database) -> None:
    from tonrail.security.api_keys import authenticate, hash_secret, revoke_key
    from tonrail.security.models import ApiKey

    secret = await make_key(db)
    async with db.transaction() as session:
        key = (
            await session.execute(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
        ).scalar_one()
        assert await revoke_key(session, key.id)
    r = await client.get("/v1/payouts", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_invalid"
    assert authenticate  # imported for the type of the call above


async def test_limit_out_of_range(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for bad in ("0", "101", "x"):
        r = await client.get("/v1/payouts", params={"limit": bad}, headers=auth)
        assert r.status_code == 400, bad
        assert r.json()["error"]["param"] == "limit"


async def test_unknown_payout_is_404(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.get("/v1/payouts/pay_nope", headers=auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_revocation_takes_effect_within_the_access_recheck(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    from datetime import UTC, datetime, timedelta

    from tonrail import clock
    from tonrail.security.api_keys import hash_secret, revoke_key
    from tonrail.security.models import ApiKey

    now = datetime.now(UTC)
    clock.set_clock(lambda: now)
    secret = await make_key(db)
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/v1/payouts", headers=headers)).status_code == 200  # now cached
    async with db.transaction() as session:
        key = (
            await session.execute(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
        ).scalar_one()
        assert await revoke_key(session, key.id)
    # ACCESS_RECHECK_MS later (not API_KEY_CACHE_SECONDS) this process has seen it.
    later = now + timedelta(milliseconds=settings.access_recheck_ms)
    clock.set_clock(lambda: later)
    r = await client.get("/v1/payouts", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_invalid"
