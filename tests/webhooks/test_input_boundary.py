"""Provider webhooks behind the input boundary: a validly signed Stripe event that nests too
deep, holds NUL or repeats a key is refused with a code (never a 500) and stores nothing; the
provider's own control characters (a newline in a description) are stored as given."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import select

from tests.helpers import row_counts
from tests.rails.conftest import WEBHOOK_SECRET
from tonrail.db import Database
from tonrail.processing.models import ProviderEvent


def signed(payload: str) -> dict[str, str]:
    return {
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
            payload, WEBHOOK_SECRET
        ),
        "Content-Type": "application/json; charset=utf-8",
    }


def event(obj: dict[str, Any], event_id: str = "evt_boundary") -> dict[str, Any]:
    return {"id": event_id, "type": "payment_intent.succeeded", "data": {"object": obj}}


@pytest.mark.parametrize("depth", [40, 900, 100_000])
async def test_a_signed_event_nested_too_deep_is_refused(
    depth: int, rail_client: httpx.AsyncClient, db: Database
) -> None:
    before = await row_counts(db)
    payload = json.dumps(event({"id": "pi_x"}))[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    r = await rail_client.post("/webhooks/stripe", content=payload, headers=signed(payload))
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["code"] == "body_too_deep"
    assert await row_counts(db) == before


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (json.dumps(event({"id": "pi_x", "description": "nul\u0000"})), "parameter_invalid"),
        (json.dumps(event({"id": "pi_x", "description": "half \ud83d"})), "parameter_invalid"),
        (json.dumps(event({"id": "pi_x"}))[:-1] + ', "id": "evt_other"}', "body_duplicate_key"),
        ('{"id": "evt_1", "amount": NaN}', "body_invalid_json"),
    ],
)
async def test_a_signed_event_with_bad_content_is_refused(
    payload: str, code: str, rail_client: httpx.AsyncClient, db: Database
) -> None:
    before = await row_counts(db)
    r = await rail_client.post("/webhooks/stripe", content=payload, headers=signed(payload))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code
    assert await row_counts(db) == before


async def test_provider_control_characters_are_stored_as_given(
    rail_client: httpx.AsyncClient, db: Database
) -> None:
    text = "line one\nline two\ttab \x1b escape"
    payload = json.dumps(event({"id": "pi_nobody", "description": text}, "evt_text"))
    r = await rail_client.post("/webhooks/stripe", content=payload, headers=signed(payload))
    assert r.status_code == 200, r.text
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(ProviderEvent).where(ProviderEvent.external_id == "evt_text")
            )
        ).scalar_one()
    assert row.payload["data"]["object"]["description"] == text
