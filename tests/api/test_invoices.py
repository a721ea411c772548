"""Incoming payments (invoices) through the API, and their expiry by the worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.helpers import row_counts
from tonrail import clock
from tonrail.db import Database
from tonrail.payments.service import PaymentService
from tonrail.processing.loops import WorkerContext, expire_invoices
from tonrail.settings import Settings


async def test_create_invoice(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post(
        "/v1/invoices",
        json={"amount": "25", "asset": "TON", "expires_in_seconds": 600},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["object"] == "invoice" and body["status"] == "awaiting_payment"
    assert body["reference"].startswith("TR-") and len(body["reference"]) == 13
    assert body["pay_to"] == "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
    assert body["amount_minor"] == 25 * 10**9
    got = await client.get(f"/v1/invoices/{body['id']}", headers=auth)
    assert got.json()["reference"] == body["reference"]
    # An invoice is not a payout: the other collection does not know it.
    assert (await client.get(f"/v1/payouts/{body['id']}", headers=auth)).status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount": "1", "asset": "XYZ"}, "asset_unknown"),
        ({"amount": 1, "asset": "TON"}, "amount_invalid"),
        ({"amount": "1", "asset": "TON", "expires_in_seconds": 5}, "parameter_invalid"),
        ({"amount": "0.0000000001", "asset": "TON"}, "amount_invalid"),
    ],
)
async def test_bad_invoices(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    body: dict[str, object],
    code: str,
) -> None:
    before = await row_counts(db)
    r = await client.post("/v1/invoices", json=body, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == code
    assert await row_counts(db) == before


async def test_worker_expires_unpaid_invoices(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> None:
    r = await client.post(
        "/v1/invoices",
        json={"amount": "1", "asset": "USDT", "expires_in_seconds": 60},
        headers=auth,
    )
    pid = r.json()["id"]
    ctx = WorkerContext(db, settings, PaymentService(db, settings), "w1")
    assert await expire_invoices(ctx) == 0
    later = datetime.now(UTC) + timedelta(seconds=61)
    clock.set_clock(lambda: later)
    assert await expire_invoices(ctx) == 1
    assert (await client.get(f"/v1/invoices/{pid}", headers=auth)).json()["status"] == "expired"
    assert await expire_invoices(ctx) == 0


async def test_cancel_invoice(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    pid = (
        await client.post("/v1/invoices", json={"amount": "1", "asset": "USDT"}, headers=auth)
    ).json()["id"]
    r = await client.post(f"/v1/invoices/{pid}/cancel", headers=auth)
    assert r.json()["status"] == "canceled"


async def test_payment_instructions_and_qr(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    from urllib.parse import parse_qs, urlparse

    ton = (
        await client.post("/v1/invoices", json={"amount": "2.5", "asset": "TON"}, headers=auth)
    ).json()
    assert ton["comment"] == ton["reference"]
    link = urlparse(ton["deep_link"])
    assert link.scheme == "ton" and link.netloc == "transfer"
    assert link.path == "/EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
    assert parse_qs(link.query) == {"amount": ["2500000000"], "text": [ton["reference"]]}
    qr = await client.get(f"/v1/invoices/{ton['id']}/qr.svg", headers=auth)
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.lstrip().startswith("<?xml") and "<svg" in qr.text
    # Localnet has no USDT master unless configured: no link rather than a wrong one.
    usdt = (
        await client.post("/v1/invoices", json={"amount": "1", "asset": "USDT"}, headers=auth)
    ).json()
    assert usdt["deep_link"] is None
    missing = await client.get(f"/v1/invoices/{usdt['id']}/qr.svg", headers=auth)
    assert missing.status_code == 404
