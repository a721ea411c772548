"""Refunds of invoices paid through a Stripe Checkout Session: a Stripe Refund of the
PaymentIntent the session completed with (a real one in localstripe), made by the backup loop
from a payout routed to Stripe."""

from __future__ import annotations

import json
from typing import Any

import httpx
import stripe
from sqlalchemy import select

from tests.helpers import row_counts
from tests.rails.conftest import WEBHOOK_SECRET, books_ok, poll_once
from tests.rails.providers import StripeExtras
from tests.rails.test_stripe import invoice, sdk
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger import rules as books
from tonrail.payments.models import Attempt
from tonrail.processing.backup_loop import BackupContext, backup_round
from tonrail.rails.registry import routing_policy


async def paid_by_session(
    rail_app: Any,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    stripe_extras: tuple[StripeExtras, str],
) -> tuple[str, str, str]:
    """A 25.00 USD invoice whose Checkout Session the customer completed (a PaymentIntent
    made and confirmed in localstripe); (invoice, session, that intent). Not yet recorded."""
    rail = rail_app.state.backup_rails["stripe"]
    rail.settings = rail.settings.model_copy(update={"stripe_incoming_mode": "checkout_session"})
    inv = await invoice(client, auth, "25.00", "USD")
    r = await client.post(f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth)
    assert r.status_code == 201, r.text
    sid = r.json()["provider_ref"]
    assert sid.startswith("cs_")
    extras, base = stripe_extras
    async with httpx.AsyncClient() as http:
        done = await http.post(f"{base}/_test/checkout/sessions/{sid}/complete")
    assert done.status_code == 200, done.text
    pi = extras.sessions[sid]["payment_intent"]
    assert pi.startswith("pi_")
    return inv, sid, pi


async def attempt_of(db: Database, invoice_id: str) -> Attempt:
    async with db.transaction() as session:
        [att] = (
            await session.execute(select(Attempt).where(Attempt.payment_id == invoice_id))
        ).scalars()
        return att


def loop(rail_app: Any, db: Database) -> BackupContext:
    return BackupContext(
        db,
        rail_app.state.settings,
        rail_app.state.payments,
        rail_app.state.backup_rails,
        routing_policy(rail_app.state.settings),
        "w-session-refunds",
    )


async def test_session_paid_invoices_refund_through_the_sessions_payment_intent(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    stripe_extras: tuple[StripeExtras, str],
    localstripe_url: str,
) -> None:
    inv, sid, pi = await paid_by_session(rail_app, rail_client, auth, stripe_extras)
    # Stripe's webhook for the session: we ask Stripe, which names the session's intent.
    extras, _ = stripe_extras
    event = json.dumps(
        {
            "id": "evt_cs_refund",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {"object": extras.sessions[sid]},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(event, WEBHOOK_SECRET)
    r = await rail_client.post(
        "/webhooks/stripe", content=event, headers={"Stripe-Signature": header}
    )
    assert r.status_code == 200 and r.json()["outcome"] == "succeeded", r.text
    att = await attempt_of(db, inv)
    assert (att.provider_ref, att.details["payment_intent"]) == (sid, pi)

    first = await rail_client.post(
        f"/v1/invoices/{inv}/refunds", json={"amount": "5.00", "reason": "one item"}, headers=auth
    )
    assert first.status_code == 201, first.text
    re = first.json()
    assert (re["rail"], re["destination"], re["status"]) == ("stripe", pi, "pending")
    payout = (await rail_client.get(f"/v1/payouts/{re['payout']}", headers=auth)).json()
    assert payout["metadata"]["stripe_refund_of"] == pi
    too_much = await rail_client.post(
        f"/v1/invoices/{inv}/refunds", json={"amount": "20.01"}, headers=auth
    )
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "refund_exceeds_received"

    ctx = loop(rail_app, db)
    for _ in range(3):  # start and submit, then poll
        await backup_round(ctx)
    assert (await rail_client.get(f"/v1/refunds/{re['id']}", headers=auth)).json()[
        "status"
    ] == "succeeded"
    [refund_att] = (await rail_client.get(f"/v1/payouts/{re['payout']}", headers=auth)).json()[
        "attempts"
    ]
    client = sdk(localstripe_url)
    refunds = await client.v1.refunds.list_async({"payment_intent": pi})
    assert [(r.amount, r.currency, r.id) for r in refunds.data] == [
        (500, "usd", refund_att["provider_ref"])
    ]

    rest = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert rest.status_code == 201 and rest.json()["amount"] == "20.00", rest.text
    for _ in range(3):
        await backup_round(ctx)
    assert (await rail_client.get(f"/v1/refunds/{rest.json()['id']}", headers=auth)).json()[
        "status"
    ] == "succeeded"
    refunds = await client.v1.refunds.list_async({"payment_intent": pi})
    assert sorted(r.amount for r in refunds.data) == [500, 2_000]
    none_left = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert none_left.json()["error"]["code"] == "nothing_to_refund"

    balances = await books_ok(db)
    assert balances.get((books.merchant_account("acct_test"), "USD"), 0) == 0
    assert balances[(books.PROVIDER_FEES, "USD")] == 103  # Stripe keeps the charge's fee
    assert balances[(books.PROVIDER_CLEARING, "USD")] == -103
    async with db.transaction() as session:
        kinds = (
            await session.execute(select(OutboxEvent.type).where(OutboxEvent.type.like("refund.%")))
        ).scalars()
        assert sorted(kinds) == ["refund.created"] * 2 + ["refund.succeeded"] * 2


async def test_sessions_confirmed_before_the_intent_was_kept_ask_stripe_at_refund_time(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    stripe_extras: tuple[StripeExtras, str],
    localstripe_url: str,
) -> None:
    inv, sid, pi = await paid_by_session(rail_app, rail_client, auth, stripe_extras)
    att = await attempt_of(db, inv)
    assert await poll_once(db, rail_app, att.id) == "succeeded"  # the backup loop's path
    async with db.transaction() as session:  # as confirmed by a release that did not keep it
        row = await session.get(Attempt, att.id)
        assert row is not None and row.details["payment_intent"] == pi
        row.details = {k: v for k, v in row.details.items() if k != "payment_intent"}
    extras, _ = stripe_extras
    before = await row_counts(db)

    extras.fail_next = 1  # Stripe cannot be reached: try again later, nothing written
    r = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert r.status_code == 503 and r.json()["error"]["code"] == "provider_unavailable", r.text
    extras.sessions[sid]["payment_intent"] = None  # Stripe names no intent: nothing to refund
    r = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "refund_payment_intent_unknown"
    assert await row_counts(db) == before

    extras.sessions[sid]["payment_intent"] = pi
    r = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert r.status_code == 201, r.text
    re = r.json()
    assert (re["destination"], re["amount"]) == (pi, "25.00")
    assert (await attempt_of(db, inv)).details["payment_intent"] == pi  # learned for good
    for _ in range(3):
        await backup_round(loop(rail_app, db))
    assert (await rail_client.get(f"/v1/refunds/{re['id']}", headers=auth)).json()[
        "status"
    ] == "succeeded"
    refunds = await sdk(localstripe_url).v1.refunds.list_async({"payment_intent": pi})
    assert [r.amount for r in refunds.data] == [2_500]
    balances = await books_ok(db)
    assert balances.get((books.merchant_account("acct_test"), "USD"), 0) == 0
