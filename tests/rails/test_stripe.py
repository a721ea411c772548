"""The Stripe rail against localstripe (PaymentIntents, payouts, its own signed webhooks)
and the local server for Checkout Sessions and Connect transfers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import stripe

from tests.rails.conftest import (
    STRIPE_KEY,
    WEBHOOK_SECRET,
    books_ok,
    new_payout,
    poll_once,
    rails_of,
    start_on_rail,
    state,
)
from tests.rails.providers import StripeExtras
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.worker import LOOPS, worker_context


def sdk(base: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        STRIPE_KEY,
        base_addresses={"api": base},
        http_client=stripe.HTTPXClient(),
        max_network_retries=0,
    )


async def invoice(
    client: httpx.AsyncClient, auth: dict[str, str], amount: str = "20", asset: str = "TON"
) -> str:
    r = await client.post("/v1/invoices", json={"amount": amount, "asset": asset}, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def wait_status(
    client: httpx.AsyncClient, auth: dict[str, str], path: str, status: str
) -> dict[str, Any]:
    for _ in range(100):
        body: dict[str, Any] = (await client.get(path, headers=auth)).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never became {status}: {body}")


async def test_invoice_paid_with_payment_intent_via_localstripe_webhook(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    served: str,
    auth: dict[str, str],
    localstripe_url: str,
) -> None:
    # localstripe signs its webhooks with the secret we register, like a Stripe endpoint.
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{localstripe_url}/_config/webhooks/tonrail",
            data={"url": f"{served}/webhooks/stripe", "secret": WEBHOOK_SECRET},
        )
    assert r.status_code == 200
    inv = await invoice(rail_client, auth)  # 20 TON = 100.00 USD at the static rate
    r = await rail_client.post(
        f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth
    )
    assert r.status_code == 201, r.text
    checkout = r.json()
    assert checkout["client_secret"].startswith(checkout["provider_ref"] + "_secret_")
    assert checkout["publishable_key"] == "pk_test_tonrail"  # STRIPE_PUBLISHABLE_KEY
    assert (checkout["amount"], checkout["currency"], checkout["status"]) == (
        10_000,
        "USD",
        "submitted",
    )
    again = await rail_client.post(
        f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth
    )
    assert again.json()["provider_ref"] == checkout["provider_ref"]  # same attempt, same intent

    # The customer pays on the checkout page (Stripe.js): card attached and confirmed.
    client = sdk(localstripe_url)
    pm = await client.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        }
    )
    await client.v1.payment_intents.update_async(
        checkout["provider_ref"], {"payment_method": pm.id}
    )
    await client.v1.payment_intents.confirm_async(checkout["provider_ref"])

    body = await wait_status(rail_client, auth, f"/v1/invoices/{inv}", "succeeded")
    [att] = body["attempts"]
    assert (att["rail"], att["status"], att["reason"], att["fee"]) == (
        "stripe",
        "confirmed",
        "customer_choice",
        "3.20",
    )
    balances = await books_ok(db)
    assert balances[(books.merchant_account("acct_test"), "TON")] == -20 * 10**9
    assert balances[(books.PROVIDER_CLEARING, "USD")] == 10_000 - 320
    assert balances[(books.PROVIDER_FEES, "USD")] == 320


async def test_checkout_session_and_webhook_signed_with_sdk_helper(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    stripe_extras: tuple[StripeExtras, str],
) -> None:
    rail_app.state.backup_rails["stripe"].settings = rail_app.state.backup_rails[
        "stripe"
    ].settings.model_copy(update={"stripe_incoming_mode": "checkout_session"})
    inv = await invoice(rail_client, auth, "25.00", "USD")
    r = await rail_client.post(
        f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth
    )
    assert r.status_code == 201, r.text
    sid = r.json()["provider_ref"]
    assert r.json()["checkout_url"].endswith(sid)
    extras, base = stripe_extras
    async with httpx.AsyncClient() as http:
        await http.post(f"{base}/_test/checkout/sessions/{sid}/complete")
    event = json.dumps(
        {
            "id": "evt_cs_1",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {"object": extras.sessions[sid]},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(event, WEBHOOK_SECRET)
    r = await rail_client.post(
        "/webhooks/stripe", content=event, headers={"Stripe-Signature": header}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "received": True,
        "id": "evt_cs_1",
        "duplicate": False,
        "outcome": "succeeded",
    }
    dup = await rail_client.post(
        "/webhooks/stripe", content=event, headers={"Stripe-Signature": header}
    )
    assert dup.json()["duplicate"] is True and dup.json()["outcome"] == "succeeded"
    body = (await rail_client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert body["status"] == "succeeded" and len(body["attempts"]) == 1
    balances = await books_ok(db)
    assert balances[(books.merchant_account("acct_test"), "USD")] == -2500
    assert balances[(books.PROVIDER_FEES, "USD")] == 103  # 72.5 -> 73 + 30


async def test_bad_signatures_stale_timestamps_and_out_of_order_events(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    localstripe_url: str,
) -> None:
    inv = await invoice(rail_client, auth)
    pi = (
        await rail_client.post(
            f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth
        )
    ).json()["provider_ref"]
    client = sdk(localstripe_url)
    obj = (await client.v1.payment_intents.retrieve_async(pi)).to_dict()

    def signed(
        event_id: str, type_: str, secret: str = WEBHOOK_SECRET, ts: int | None = None
    ) -> tuple[str, str]:
        payload = json.dumps({"id": event_id, "type": type_, "data": {"object": obj}})
        return payload, stripe.WebhookSignature.generate_signature_header(payload, secret, ts)

    payload, header = signed("evt_bad", "payment_intent.succeeded", secret="whsec_wrong")
    r = await rail_client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "webhook_signature_invalid"
    import time as _time

    payload, header = signed("evt_old", "payment_intent.succeeded", ts=int(_time.time()) - 301)
    r = await rail_client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
    )
    assert r.status_code == 400
    payload, header = signed("evt_tamper", "payment_intent.succeeded")
    r = await rail_client.post(
        "/webhooks/stripe",
        content=payload.replace("payment_intent", "payment_intenx"),
        headers={"Stripe-Signature": header},
    )
    assert r.status_code == 400
    # Rotation: Stripe sends one v1 per active secret; ours is the second one.
    payload, header = signed("evt_rot", "payment_intent.created")
    t, v1 = header.split(",")
    _, other = signed("evt_rot", "payment_intent.created", secret="whsec_someone_else")
    rotated = f"{t},{other.split(',')[1]},{v1}"
    r = await rail_client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": rotated}
    )
    assert r.status_code == 200 and r.json()["outcome"] == "pending"

    # "succeeded" arrives before the payment happened: we ask Stripe, which says not yet.
    payload, header = signed("evt_early", "payment_intent.succeeded")
    r = await rail_client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
    )
    assert r.json()["outcome"] == "pending"
    assert (await state(db, inv))[0] == "awaiting_payment"
    pm = await client.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        }
    )
    await client.v1.payment_intents.update_async(pi, {"payment_method": pm.id})
    await client.v1.payment_intents.confirm_async(pi)
    payload, header = signed("evt_late_created", "payment_intent.processing")
    r = await rail_client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
    )
    assert r.json()["outcome"] == "succeeded"
    payload, header = signed("evt_early", "payment_intent.succeeded")  # redelivery
    r = await rail_client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
    )
    assert r.json()["duplicate"] is True
    payload, header = signed("evt_after", "payment_intent.succeeded")
    r = await rail_client.post(
        "/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
    )
    assert r.json()["outcome"] == "attempt_already_confirmed"
    await books_ok(db)
    balances = await books_ok(db)
    assert balances[(books.merchant_account("acct_test"), "TON")] == -20 * 10**9  # credited once


async def test_payout_by_connect_transfer_with_idempotency(
    db: Database, rail_app: Any, stripe_extras: tuple[StripeExtras, str]
) -> None:
    pid = await new_payout(db, rail_app, {"stripe_account": "acct_1PayeeConnected"})
    att = await start_on_rail(db, rail_app, pid, "stripe", "ton_congested")
    extras, _ = stripe_extras
    [tr] = [t for t in extras.transfers.values() if t["transfer_group"] == pid]
    assert (tr["amount"], tr["currency"], tr["destination"]) == (
        10_000,
        "usd",
        "acct_1PayeeConnected",
    )
    # A re-submit after a crash sends the same Idempotency-Key: no second transfer.
    from tonrail.payments.attempts import attempt_view, payment_view
    from tonrail.payments.models import Attempt, Payment

    async with db.transaction() as session:
        a = await session.get(Attempt, att)
        p = await session.get(Payment, pid)
        assert a is not None and p is not None
        again = await rails_of(rail_app)["stripe"].submit(payment_view(p), attempt_view(a))
    assert again.provider_ref == tr["id"]
    assert len([t for t in extras.transfers.values() if t["transfer_group"] == pid]) == 1
    assert await poll_once(db, rail_app, att) == "succeeded"
    assert await state(db, pid) == ("succeeded", [("stripe", "confirmed")])
    balances = await books_ok(db)
    assert balances.get((books.PAYOUTS_PAYABLE, "TON"), 0) == 0
    assert balances[(books.PROVIDER_CLEARING, "USD")] == -(10_000 + 320)


async def test_payout_mode_on_localstripe_and_5xx_is_unknown(
    db: Database, rail_app: Any, rail_settings: Any, stripe_extras: tuple[StripeExtras, str]
) -> None:
    rail = rails_of(rail_app)["stripe"]
    rail.settings = rail_settings.model_copy(
        update={"stripe_payout_mode": "payout", "stripe_currency": "EUR"}
    )  # type: ignore[attr-defined]
    rail.pricing = type(rail.pricing)(  # type: ignore[attr-defined]
        "stripe",
        "EUR",
        rail.pricing.schedule,
        rail.pricing.rates,
        60,
        172_800,  # type: ignore[attr-defined]
    )
    pid = await new_payout(
        db, rail_app, {"stripe_account": "acct_1PayeeConnected"}, amount=54 * 10**9
    )
    att = await start_on_rail(db, rail_app, pid, "stripe", "fee_diverted")
    assert (await state(db, pid))[1] == [("stripe", "submitted")]
    assert await poll_once(db, rail_app, att) == "pending"  # localstripe payouts stay pending
    # localstripe payouts are EUR only: 54 TON * 5 USDT / 1.08 = 250.00 EUR.
    from tonrail.payments.models import Attempt

    async with db.transaction() as session:
        a = await session.get(Attempt, att)
        assert (
            a is not None
            and a.details["rail_amount"] == 25_000
            and a.provider_ref.startswith("po_")
        )

    extras, _ = stripe_extras
    rail.settings = rail.settings.model_copy(update={"stripe_payout_mode": "transfer"})  # type: ignore[attr-defined]
    pid2 = await new_payout(db, rail_app, {"stripe_account": "acct_1PayeeConnected"})
    extras.fail_next = 1
    att2 = await start_on_rail(db, rail_app, pid2, "stripe", "fee_diverted")
    assert (await state(db, pid2))[1] == [("stripe", "unknown")]
    # Polling an unknown attempt re-sends the same idempotent create and learns the outcome.
    assert await poll_once(db, rail_app, att2) == "succeeded"
    await books_ok(db)


async def test_missed_webhooks_are_caught_up_from_the_events_api(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    localstripe_url: str,
) -> None:
    inv = await invoice(rail_client, auth, "12.34", "USD")
    r = await rail_client.post(
        f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth
    )
    pi = r.json()["provider_ref"]
    client = sdk(localstripe_url)
    pm = await client.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        }
    )
    await client.v1.payment_intents.update_async(pi, {"payment_method": pm.id})
    await client.v1.payment_intents.confirm_async(pi)
    assert (await state(db, inv))[0] == "awaiting_payment"  # no webhook reached us
    service = rail_app.state.provider_webhooks
    # The worker's stripe_catch_up loop does it, every STRIPE_CATCH_UP_SECONDS.
    ctx = worker_context(
        db, rail_app.state.settings, rail_app.state.payments, "w-stripe", None, service.rails
    )
    catch_up = LOOPS["stripe_catch_up"]
    assert await catch_up.run(ctx) >= 1
    assert await state(db, inv) == ("succeeded", [("stripe", "confirmed")])
    assert await catch_up.run(ctx) == 0  # not due again yet
    second = await service.catch_up_stripe()
    assert second["new"] == 0  # every event was stored already
    balances = await books_ok(db)
    assert balances[(books.merchant_account("acct_test"), "USD")] == -1234
