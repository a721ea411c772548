"""The PayPal rail against a local server shaped like PayPal's REST API: OAuth token
caching and expiry, 401 retry, 5xx, orders (create, approve, capture), payouts, and
verified, stored-first, duplicate-safe webhooks."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx

from tests.rails.conftest import books_ok, new_payout, poll_once, rails_of, start_on_rail, state
from tests.rails.providers import PayPalServer
from tonrail import clock
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.payments.models import Attempt


async def paypal_invoice(
    client: httpx.AsyncClient, auth: dict[str, str], amount: str = "50.00"
) -> dict[str, Any]:
    r = await client.post("/v1/invoices", json={"amount": amount, "asset": "USD"}, headers=auth)
    inv = r.json()["id"]
    r = await client.post(f"/v1/invoices/{inv}/checkout", json={"rail": "paypal"}, headers=auth)
    assert r.status_code == 201, r.text
    return {"invoice": inv, **r.json()}


def webhook(
    event_id: str, event_type: str, resource: dict[str, Any], sig: str = "good-sig"
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": event_id,
            "event_version": "1.0",
            "create_time": "2026-11-27T12:00:00Z",
            "resource_type": "checkout-order",
            "event_type": event_type,
            "resource": resource,
        }
    ).encode()
    headers = {
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        "PAYPAL-CERT-URL": "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42",
        "PAYPAL-TRANSMISSION-ID": "69cd13f0-d67a-11e5-baa3-778b53f4ae55",
        "PAYPAL-TRANSMISSION-SIG": sig,
        "PAYPAL-TRANSMISSION-TIME": "2026-11-27T12:00:01Z",
        "Content-Type": "application/json",
    }
    return body, headers


async def test_order_approved_webhook_captures_and_duplicates_are_harmless(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    paypal: tuple[PayPalServer, str],
) -> None:
    server, _ = paypal
    server.valid_signatures.add("good-sig")
    co = await paypal_invoice(rail_client, auth)
    order_id = co["provider_ref"]
    assert co["approve_url"].endswith(f"token={order_id}")
    unit = server.orders[order_id]["purchase_units"][0]
    assert unit["amount"] == {"currency_code": "USD", "value": "50.00"}

    body, headers = webhook("WH-BAD", "CHECKOUT.ORDER.APPROVED", {"id": order_id}, sig="forged")
    r = await rail_client.post("/webhooks/paypal", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "webhook_signature_invalid"

    server.approve(order_id)  # the buyer approves at the PayPal page
    body, headers = webhook("WH-1", "CHECKOUT.ORDER.APPROVED", {"id": order_id})
    r = await rail_client.post("/webhooks/paypal", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "succeeded"
    for _ in range(2):  # PayPal redelivers
        r = await rail_client.post("/webhooks/paypal", content=body, headers=headers)
        assert r.json()["duplicate"] is True
    capture_event, headers = webhook(
        "WH-2",
        "PAYMENT.CAPTURE.COMPLETED",
        {"id": "CAP1", "supplementary_data": {"related_ids": {"order_id": order_id}}},
    )
    r = await rail_client.post("/webhooks/paypal", content=capture_event, headers=headers)
    assert r.json()["outcome"] == "attempt_already_confirmed"
    assert server.captures == 1
    inv = (await rail_client.get(f"/v1/invoices/{co['invoice']}", headers=auth)).json()
    assert inv["status"] == "succeeded"
    # PayPal's actual fee from the capture's seller_receivable_breakdown: 3.49 % + 0.49.
    assert inv["attempts"][0]["fee"] == "2.24"
    balances = await books_ok(db)
    assert balances[(books.PROVIDER_FEES, "USD")] == 224
    assert balances[(books.merchant_account("acct_test"), "USD")] == -5000


async def test_token_cached_refreshed_on_expiry_and_on_401(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    paypal: tuple[PayPalServer, str],
) -> None:
    server, _ = paypal
    rail = rails_of(rail_app)["paypal"]
    await paypal_invoice(rail_client, auth)
    await paypal_invoice(rail_client, auth)
    assert server.token_requests == 1  # cached
    server.revoke_tokens_once = True  # PayPal invalidates the token early: 401, refetch, retry
    await paypal_invoice(rail_client, auth)
    assert server.token_requests == 2
    # Our clock passes the token's expiry: a new one is fetched before the call.
    real = clock.now()
    clock.set_clock(lambda: real.replace(year=real.year + 1))
    await paypal_invoice(rail_client, auth)
    assert server.token_requests == 3
    assert rail.token_fetches == 3  # type: ignore[attr-defined]


async def test_5xx_on_create_is_unknown_and_poll_resolves_with_same_request_id(
    db: Database, rail_app: Any, paypal: tuple[PayPalServer, str]
) -> None:
    server, _ = paypal
    pid = await new_payout(
        db, rail_app, {"paypal_receiver": "payee@example.com", "paypal_country": "DE"}
    )
    server.fail_5xx = 1
    att = await start_on_rail(db, rail_app, pid, "paypal", "ton_failed_after_retries")
    assert (await state(db, pid))[1] == [("paypal", "unknown")]
    assert await poll_once(db, rail_app, att) == "pending"
    assert len(server.batches) == 1
    async with db.transaction() as session:
        a = await session.get(Attempt, att)
        assert a is not None
        assert a.details["international"] is True and a.details["rail_amount"] == 10_000
        batch_id = a.details["provider_ref"]
    server.settle_payout(batch_id)
    assert await poll_once(db, rail_app, att) == "succeeded"
    assert len(server.batches) == 1  # PayPal-Request-Id made the re-send the same batch
    status, attempts = await state(db, pid)
    assert status == "succeeded" and attempts == [("paypal", "confirmed")]
    balances = await books_ok(db)
    assert balances[(books.PROVIDER_FEES, "USD")] == 25  # PayPal's payout_item_fee


async def test_payout_failure_and_quote_rules(
    db: Database, rail_app: Any, paypal: tuple[PayPalServer, str]
) -> None:
    server, _ = paypal
    rail = rails_of(rail_app)["paypal"]
    pid = await new_payout(db, rail_app, {"paypal_receiver": "nobody@example.com"})
    att = await start_on_rail(db, rail_app, pid, "paypal", "fee_diverted")
    async with db.transaction() as session:
        a = await session.get(Attempt, att)
        assert a is not None
        server.settle_payout(a.provider_ref or "", "UNCLAIMED")
    assert await poll_once(db, rail_app, att) == "pending"  # unclaimed: PayPal holds it 30 days
    async with db.transaction() as session:
        a = await session.get(Attempt, att)
        assert a is not None
        server.settle_payout(a.provider_ref or "", "FAILED")
    assert await poll_once(db, rail_app, att) == "failed"
    status, attempts = await state(db, pid)
    assert status == "processing" and attempts == [("paypal", "failed")]

    from tonrail.payments.attempts import payment_view
    from tonrail.payments.models import Payment

    async with db.transaction() as session:
        p = await session.get(Payment, pid)
        assert p is not None
        view = payment_view(p)
    q = await rail.quote(view)
    assert q.available and q.fee == 320 and q.fee_asset == "USD"
    intl = await rail.quote(
        replace(view, metadata={"paypal_receiver": "x@y.z", "paypal_country": "FR"})
    )
    assert intl.fee == 370
    none = await rail.quote(replace(view, metadata={}))
    assert not none.available and none.reason == "counterparty_unsupported"
    big = await rail.quote(replace(view, amount=20_001 * 10**9))
    assert not big.available and big.reason == "amount_over_max"  # 100,005 USD


async def test_certificate_verification_with_crc32_of_the_raw_body(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    paypal: tuple[PayPalServer, str],
) -> None:
    server, base = paypal
    rail = rails_of(rail_app)["paypal"]
    rail.settings = rail.settings.model_copy(  # type: ignore[attr-defined]
        update={
            "paypal_verify_mode": "certificate",
            "paypal_cert_url_prefixes": f"{base}/v1/notifications/certs/",
        }
    )
    co = await paypal_invoice(rail_client, auth)
    server.approve(co["provider_ref"])
    body, headers = webhook("WH-C1", "CHECKOUT.ORDER.APPROVED", {"id": co["provider_ref"]})
    headers["PAYPAL-CERT-URL"] = f"{base}/v1/notifications/certs/CERT-360caa42"
    headers["PAYPAL-TRANSMISSION-SIG"] = server.sign_webhook(
        headers["PAYPAL-TRANSMISSION-ID"], headers["PAYPAL-TRANSMISSION-TIME"], "WH-TEST-1", body
    )
    tampered = body.replace(b"1.0", b"1.1")
    r = await rail_client.post("/webhooks/paypal", content=tampered, headers=headers)
    assert r.status_code == 400  # CRC32 of the body changed
    other = {**headers, "PAYPAL-CERT-URL": "https://evil.example/v1/notifications/certs/X"}
    r = await rail_client.post("/webhooks/paypal", content=body, headers=other)
    assert r.status_code == 400
    wrong_hook = {
        **headers,
        "PAYPAL-TRANSMISSION-SIG": server.sign_webhook(
            headers["PAYPAL-TRANSMISSION-ID"], headers["PAYPAL-TRANSMISSION-TIME"], "WH-OTHER", body
        ),
    }
    r = await rail_client.post("/webhooks/paypal", content=body, headers=wrong_hook)
    assert r.status_code == 400
    r = await rail_client.post("/webhooks/paypal", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "succeeded"
    await books_ok(db)
