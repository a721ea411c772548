"""Provider events are verified, stored first, unique on (source, external id), and
processed idempotently; a provider outage while processing keeps the event for later."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import func, select

from tests.rails.conftest import WEBHOOK_SECRET, rails_of
from tonrail.db import Database
from tonrail.processing.models import ProviderEvent
from tonrail.rails.backup import ProviderEventIn, WebhookRejected
from tonrail.rails.stripe.webhook import sign, verify_signature

NOW = 1_800_000_000


def test_signature_rules() -> None:
    body = b'{"id": "evt_1"}'
    good = f"t={NOW},v1={sign(body, 'whsec_a', NOW)}"
    verify_signature(body, good, ["whsec_a"], NOW + 300, 300)
    verify_signature(body, good, ["whsec_old", "whsec_a"], NOW - 300, 300)
    cases = [
        (None, ["whsec_a"], NOW),
        (good, [], NOW),
        (good, ["whsec_b"], NOW),
        (good, ["whsec_a"], NOW + 301),
        (f"t={NOW}", ["whsec_a"], NOW),
        (f"v1={sign(body, 'whsec_a', NOW)}", ["whsec_a"], NOW),
        (f"t=abc,v1={sign(body, 'whsec_a', NOW)}", ["whsec_a"], NOW),
        (f"t={NOW},v0={sign(body, 'whsec_a', NOW)}", ["whsec_a"], NOW),
        (f"t={NOW + 1},v1={sign(body, 'whsec_a', NOW)}", ["whsec_a"], NOW),
    ]
    for header, secrets, now in cases:
        with pytest.raises(WebhookRejected):
            verify_signature(body, header, secrets, now, 300)
    with pytest.raises(WebhookRejected):
        verify_signature(body + b" ", good, ["whsec_a"], NOW, 300)


async def test_concurrent_duplicates_store_one_row(db: Database, rail_app: Any) -> None:
    service = rail_app.state.provider_webhooks
    event = ProviderEventIn(
        "stripe", "evt_same", "payment_intent.created", None, {"id": "evt_same"}
    )
    results = await asyncio.gather(*(service.store(event) for _ in range(8)))
    assert len({rid for rid, _ in results}) == 1
    assert sorted(dup for _, dup in results) == [False] + [True] * 7
    other_source = ProviderEventIn("paypal", "evt_same", "X", None, {})
    _, dup = await service.store(other_source)
    assert dup is False  # unique per source, not globally
    async with db.transaction() as session:
        count = (
            await session.execute(select(func.count()).select_from(ProviderEvent))
        ).scalar_one()
    assert count == 2


async def test_unknown_object_is_ignored_and_outage_keeps_event(
    db: Database, rail_app: Any, rail_client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    def post(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
        payload = json.dumps(event)
        return payload, {
            "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
                payload, WEBHOOK_SECRET
            )
        }

    payload, headers = post(
        {"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_nobody"}}}
    )
    r = await rail_client.post("/webhooks/stripe", content=payload, headers=headers)
    assert r.json()["outcome"] == "no_matching_attempt"

    inv = (
        await rail_client.post(
            "/v1/invoices", json={"amount": "10.00", "asset": "USD"}, headers=auth
        )
    ).json()["id"]
    pi = (
        await rail_client.post(
            f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth
        )
    ).json()["provider_ref"]
    rail = rails_of(rail_app)["stripe"]
    real = rail.client  # type: ignore[attr-defined]
    rail.client = stripe.StripeClient(  # type: ignore[attr-defined]
        "sk_test_x",
        base_addresses={"api": "http://127.0.0.1:9"},
        http_client=stripe.HTTPXClient(),
        max_network_retries=0,
    )
    payload, headers = post(
        {"id": "evt_y", "type": "payment_intent.processing", "data": {"object": {"id": pi}}}
    )
    r = await rail_client.post("/webhooks/stripe", content=payload, headers=headers)
    assert r.status_code == 503 and r.json()["error"]["code"] == "provider_unavailable"
    async with db.transaction() as session:
        row = (
            await session.execute(select(ProviderEvent).where(ProviderEvent.external_id == "evt_y"))
        ).scalar_one()
        assert (row.status, row.process_count) == ("received", 1)
    rail.client = real  # type: ignore[attr-defined]
    r = await rail_client.post("/webhooks/stripe", content=payload, headers=headers)  # redelivery
    assert r.status_code == 200 and r.json() == {
        "received": True,
        "id": "evt_y",
        "duplicate": True,
        "outcome": "pending",
    }


async def test_unconfigured_rail_webhook_is_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/webhooks/paypal", content=b"{}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "rail_not_configured"
