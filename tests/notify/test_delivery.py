"""Delivering the outbox to a real local HTTP receiver: signed per Standard Webhooks (checked
with the `standardwebhooks` package), the payment as the API returns it, in order per
payment, retried on the schedule, 410 and long failures disabling the endpoint, every
attempt on record, the SSRF guard at send time, several workers."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.helpers import DEST
from tests.notify.conftest import Receiver, run_rounds, subscribe
from tonrail import clock
from tonrail.db import Database
from tonrail.monitoring.jobs import take_snapshot
from tonrail.monitoring.rules import Thresholds, evaluate
from tonrail.notify.delivery import deliver_round
from tonrail.notify.models import WebhookDelivery, WebhookEndpoint
from tonrail.notify.publish import publish_round
from tonrail.notify.schedule import RETRY_DELAYS
from tonrail.payments.service import PaymentService
from tonrail.settings import Settings


async def _payout(client: httpx.AsyncClient, auth: dict[str, str], amount: str = "3") -> str:
    r = await client.post(
        "/v1/payouts", json={"amount": amount, "asset": "USDT", "destination": DEST}, headers=auth
    )
    assert r.status_code == 201, r.text
    payout_id: str = r.json()["id"]
    return payout_id


def _later(seconds: float) -> None:
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    clock.set_clock(lambda: at)


async def test_deliveries_verify_as_a_receiver_would_and_carry_the_api_object(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await subscribe(client, auth, receiver.url, ["payout.*"])
    payout_id = await _payout(client, auth)
    assert (await client.post(f"/v1/payouts/{payout_id}/cancel", headers=auth)).status_code == 200
    invoice = await client.post("/v1/invoices", json={"amount": "5", "asset": "TON"}, headers=auth)
    assert invoice.status_code == 201
    assert await run_rounds(db, settings) == 2  # the invoice's event is not subscribed

    verifier = Webhook(endpoint["secret"])
    bodies = [verifier.verify(r.body, r.headers) for r in receiver.got]
    assert [b["type"] for b in bodies] == ["payout.created", "payout.canceled"]
    api_view = (await client.get(f"/v1/payouts/{payout_id}", headers=auth)).json()
    assert all(b["data"] == api_view for b in bodies)
    assert all(set(b) == {"type", "timestamp", "data"} for b in bodies)
    first = receiver.got[0]
    assert first.headers["webhook-id"].startswith("evt_")
    assert first.headers["content-type"] == "application/json"

    # As the receiver would: a changed body or someone else's secret is refused.
    with pytest.raises(WebhookVerificationError):
        verifier.verify(first.body.replace(b"payout.created", b"payout.canceled"), first.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook((await subscribe(client, auth, receiver.url))["secret"]).verify(
            first.body, first.headers
        )


async def test_a_stale_delivery_is_refused_by_the_receiver(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await subscribe(client, auth, receiver.url)
    await _payout(client, auth)
    _later(-600)  # signed ten minutes ago (the spec's receivers allow five)
    await run_rounds(db, settings)
    clock.set_clock(None)
    (got,) = receiver.got
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(endpoint["secret"]).verify(got.body, got.headers)


async def test_rotation_signs_deliveries_with_both_secrets(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await subscribe(client, auth, receiver.url)
    path = f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret"
    rotated = (await client.post(path, json={"overlap_seconds": 60}, headers=auth)).json()
    await _payout(client, auth)
    await run_rounds(db, settings)
    (got,) = receiver.got
    assert got.headers["webhook-signature"].count("v1,") == 2
    for secret in (endpoint["secret"], rotated["secret"]):
        Webhook(secret).verify(got.body, got.headers)
    _later(120)  # the overlap is over: only the new secret signs
    await _payout(client, auth)
    await run_rounds(db, settings)
    late = receiver.got[-1]
    assert late.headers["webhook-signature"].count("v1,") == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(late.body, late.headers)
    clock.set_clock(None)
    Webhook(rotated["secret"]).verify(late.body, late.headers)


async def test_failures_retry_on_the_schedule_and_every_attempt_is_kept(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await subscribe(client, auth, receiver.url)
    await _payout(client, auth)
    receiver.answers = [(500, "database down " + "x" * 3000, 0.0)]
    await run_rounds(db, settings)
    assert len(receiver.got) == 1  # the retry is not due yet
    path = f"/v1/webhook_endpoints/{endpoint['id']}/deliveries"
    (pending,) = (await client.get(path, headers=auth)).json()["data"]
    assert pending["status"] == "pending" and pending["last_response_status"] == 500
    (attempt,) = pending["attempts"]
    assert attempt["response_status"] == 500 and not attempt["succeeded"]
    assert (
        attempt["response_body"].startswith("database down")
        and len(attempt["response_body"]) == 1024
    )
    due = datetime.fromisoformat(pending["next_attempt_at"])
    last = datetime.fromisoformat(attempt["attempted_at"])
    assert RETRY_DELAYS[0] * 0.9 <= (due - last).total_seconds() <= RETRY_DELAYS[0] * 1.1 + 1

    _later(RETRY_DELAYS[0] * 1.1 + 1)
    await run_rounds(db, settings)
    assert len(receiver.got) == 2 and receiver.ids()[0] == receiver.ids()[1]
    (done,) = (await client.get(path, headers=auth)).json()["data"]
    assert done["status"] == "delivered" and [a["response_status"] for a in done["attempts"]] == [
        500,
        200,
    ]
    assert done["attempts"][1]["response_body"] == "thanks"
    got = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=auth)).json()
    assert got["failing_since"] is None


async def test_a_later_event_of_a_payment_waits_for_an_earlier_one(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    await subscribe(client, auth, receiver.url)
    payout_id = await _payout(client, auth)
    other_id = await _payout(client, auth, "4")
    await client.post(f"/v1/payouts/{payout_id}/cancel", headers=auth)
    receiver.answers = [(503, "busy", 0.0)]  # the first payout's created event fails
    # One at a time, so the first request to arrive is the first payout's (with several at
    # once the two created events race to the receiver and either may get the 503).
    settings = settings.model_copy(update={"webhook_concurrency": 1})
    await run_rounds(db, settings)
    types = [(json.loads(r.body)["data"]["id"], json.loads(r.body)["type"]) for r in receiver.got]
    # The other payout is not held up; the canceled event waits for the created one.
    assert types == [(payout_id, "payout.created"), (other_id, "payout.created")]
    _later(60)
    await run_rounds(db, settings)
    types = [(json.loads(r.body)["data"]["id"], json.loads(r.body)["type"]) for r in receiver.got]
    assert types[2:] == [(payout_id, "payout.created"), (payout_id, "payout.canceled")]


async def test_410_disables_the_endpoint_and_raises_an_alert(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await subscribe(client, auth, receiver.url)
    await _payout(client, auth)
    receiver.answers = [(410, "gone", 0.0)]
    await run_rounds(db, settings)
    await _payout(client, auth)
    await run_rounds(db, settings)
    assert len(receiver.got) == 1  # nothing more goes to a disabled endpoint
    got = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=auth)).json()
    assert got["status"] == "disabled" and got["disabled_reason"] == "gone"
    findings = evaluate(await take_snapshot(db, settings), Thresholds.from_settings(settings))
    assert [f.dedup_key for f in findings if f.rule == "webhook_endpoint_disabled"] == [
        f"webhook_endpoint_disabled:{endpoint['id']}"
    ]
    # Enabled again by its owner: the alert's condition is gone.
    await client.patch(
        f"/v1/webhook_endpoints/{endpoint['id']}", json={"status": "enabled"}, headers=auth
    )
    findings = evaluate(await take_snapshot(db, settings), Thresholds.from_settings(settings))
    assert not [f for f in findings if f.rule == "webhook_endpoint_disabled"]


async def test_an_endpoint_failing_for_three_days_is_disabled(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await subscribe(client, auth, receiver.url)
    receiver.default = (500, "no", 0.0)
    await _payout(client, auth)
    await run_rounds(db, settings)
    _later(2 * 86_400)
    await run_rounds(db, settings)
    got = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=auth)).json()
    assert got["status"] == "enabled" and got["failing_since"] is not None
    _later(3 * 86_400 + 60)
    await run_rounds(db, settings)
    got = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=auth)).json()
    assert got["status"] == "disabled" and got["disabled_reason"] == "failing"
    assert len(receiver.got) == 3


async def test_timeouts_and_refused_addresses_are_recorded_attempts(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await subscribe(client, auth, receiver.url)
    await _payout(client, auth)
    receiver.answers = [(200, "late", 5.0)]
    await run_rounds(db, settings.model_copy(update={"webhook_timeout_seconds": 0.5}))
    _later(60)
    # The allow-list no longer names 127.0.0.1: the send-time check refuses the address.
    await run_rounds(db, settings.model_copy(update={"webhook_allowed_hosts": ""}))
    clock.set_clock(None)
    path = f"/v1/webhook_endpoints/{endpoint['id']}/deliveries"
    (delivery,) = (await client.get(path, headers=auth)).json()["data"]
    errors = [a["error"] for a in delivery["attempts"]]
    assert errors[0] == "timeout after 0.5 s"
    assert errors[1].startswith("refused: url points to 127.0.0.1, a private, loopback")
    assert len(receiver.got) == 1 and delivery["status"] == "pending"


async def test_two_workers_deliver_each_event_once(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    await subscribe(client, auth, receiver.url)
    await subscribe(client, auth, receiver.url.replace("/hooks", "/second"))
    for i in range(12):
        await _payout(client, auth, str(i + 1))
    payments = PaymentService(db, settings)
    await asyncio.gather(*(publish_round(db, settings, payments, w) for w in ("w1", "w2", "w3")))
    await run_rounds(db, settings, "w0")  # whatever is left
    receiver.got.clear()
    async with db.transaction() as session:
        deliveries = (await session.execute(select(WebhookDelivery))).scalars().all()
        for d in deliveries:
            d.status = d.status.__class__("pending")
    # Now two workers race for the same 24 due deliveries.
    sent = await asyncio.gather(*(deliver_round(db, settings, w) for w in ("a", "b")))
    assert sum(sent) == 24 and len(deliveries) == 24
    pairs = [(r.headers["webhook-id"], r.path) for r in receiver.got]
    assert len(pairs) == len(set(pairs)) == 24


async def test_resend_sends_a_delivery_again(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await subscribe(client, auth, receiver.url)
    await _payout(client, auth)
    await run_rounds(db, settings)
    path = f"/v1/webhook_endpoints/{endpoint['id']}/deliveries"
    (delivery,) = (await client.get(path, headers=auth)).json()["data"]
    r = await client.post(f"{path}/{delivery['id']}/resend", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "pending"
    await run_rounds(db, settings)
    assert receiver.ids() == [delivery["event_id"]] * 2
    (again,) = (await client.get(path, headers=auth)).json()["data"]
    assert again["status"] == "delivered"
    assert [a["trigger"].split(" by ")[0] for a in again["attempts"]] == ["schedule", "resend"]
    r = await client.post(f"{path}/whd_nope/resend", headers=auth)
    assert r.status_code == 404


async def test_deleting_an_endpoint_cancels_what_was_pending(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    endpoint = await subscribe(client, auth, receiver.url)
    receiver.default = (500, "no", 0.0)
    await _payout(client, auth)
    await run_rounds(db, settings)
    await client.delete(f"/v1/webhook_endpoints/{endpoint['id']}", headers=auth)
    _later(3600)
    await run_rounds(db, settings)
    assert len(receiver.got) == 1
    async with db.transaction() as session:
        (d,) = (await session.execute(select(WebhookDelivery))).scalars().all()
        row = await session.get(WebhookEndpoint, endpoint["id"])
        assert d.status == "canceled" and row is not None and row.deleted_at is not None


def _bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.got]


async def test_refund_events_carry_the_refund_and_operator_events_stay_internal(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    from tonrail.events.service import emit

    endpoint = await subscribe(client, auth, receiver.url, ["refund.*"])
    refund = {"object": "refund", "id": "re_1", "status": "pending", "amount": "1"}
    async with db.transaction() as session:
        emit(session, "refund.created", "acct_test", refund, "pay_invoice")
        emit(session, "ops.maintenance.on", "system", {"switch": "maintenance"})
        emit(session, "refund.created", "acct_other", {"id": "re_2"}, "pay_other")
    await run_rounds(db, settings)
    (got,) = receiver.got
    body = Webhook(endpoint["secret"]).verify(got.body, got.headers)
    assert body["type"] == "refund.created" and body["data"] == refund
    events = (await client.get("/v1/events", headers=auth)).json()["data"]
    assert [e["type"] for e in events] == ["refund.created"]


async def test_a_disabled_endpoint_alerts_through_the_slack_channel(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    """The whole path: 410 -> disabled -> evaluate_alerts opens the alert -> the alert
    channel (Slack's incoming webhook, here the local receiver) gets the message."""
    from pydantic import SecretStr

    from tonrail.monitoring.channels.registry import configured_channels
    from tonrail.monitoring.delivery import deliver_due
    from tonrail.monitoring.jobs import evaluate_once

    endpoint = await subscribe(client, auth, receiver.url)
    await _payout(client, auth)
    receiver.answers = [(410, "gone", 0.0)]
    await run_rounds(db, settings)
    slack = settings.model_copy(
        update={
            "slack_webhook_url": SecretStr(receiver.url.replace("/hooks", "/slack")),
            "alert_routes": "error=slack",
        }
    )
    receiver.default = (200, "ok", 0.0)  # what Slack answers
    async with httpx.AsyncClient() as http:
        channels = configured_channels(slack, http)
        assert await evaluate_once(db, slack, channels) >= 1
        assert await deliver_due(db, slack, channels, "w1") >= 1
    (message,) = [r for r in receiver.got if r.path == "/slack"]
    assert endpoint["id"] in message.body.decode() and b"was disabled (gone)" in message.body


async def test_the_registered_loops_deliver_and_report_the_backlog(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> None:
    from tonrail.monitoring import signals
    from tonrail.processing.loops import LOOPS, WorkerContext

    await subscribe(client, auth, receiver.url)
    receiver.default = (500, "no", 0.0)
    await _payout(client, auth)
    ctx = WorkerContext(db, settings, PaymentService(db, settings), "w1")
    assert await LOOPS["publish_events"].run(ctx) == 1
    assert await LOOPS["deliver_webhooks"].run(ctx) == 1  # failed: pending, retried later
    assert len(receiver.got) == 1
    await signals.persist_signals(db)
    text = (await client.get("/metrics")).text
    assert "tonrail_webhook_backlog 1.0" in text
    assert "tonrail_webhook_endpoints_disabled 0.0" in text


async def test_an_event_that_cannot_be_read_holds_only_its_payment(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await subscribe(client, auth, receiver.url)
    broken = await _payout(client, auth)
    await client.post(f"/v1/payouts/{broken}/cancel", headers=auth)
    fine = await _payout(client, auth, "4")
    view = PaymentService.view

    async def failing(self: PaymentService, session: Any, payment_id: str) -> Any:
        if payment_id == broken:
            raise RuntimeError("cannot render")
        return await view(self, session, payment_id)

    monkeypatch.setattr(PaymentService, "view", failing)
    await run_rounds(db, settings)
    assert [json.loads(r.body)["data"]["id"] for r in receiver.got] == [fine]
    monkeypatch.setattr(PaymentService, "view", view)
    _later(settings.worker_lease_seconds + 1)  # its lease ends: tried again
    await run_rounds(db, settings)
    types = [(json.loads(r.body)["data"]["id"], json.loads(r.body)["type"]) for r in receiver.got]
    assert types[1:] == [(broken, "payout.created"), (broken, "payout.canceled")]
