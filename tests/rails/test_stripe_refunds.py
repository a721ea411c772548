"""Refunds of invoices paid by card: a Stripe Refund of the PaymentIntent, made by the backup
loop from a payout routed to Stripe, against localstripe."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from tests.helpers import DEST, row_counts
from tests.rails.conftest import books_ok
from tests.rails.test_stripe import invoice, sdk
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger import rules as books
from tonrail.payments.attempts import attempt_view, payment_view
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import PaymentStatus
from tonrail.processing.backup_loop import BackupContext, backup_round
from tonrail.processing.outcomes import record_poll
from tonrail.processing.payer_screening import screen_payer
from tonrail.rails.registry import routing_policy

TON = 10**9


async def paid_by_card(
    db: Database, app: Any, client: httpx.AsyncClient, auth: dict[str, str], base: str
) -> tuple[str, str]:
    """A 20 TON invoice (100.00 USD) paid with a card on localstripe; (invoice, intent)."""
    inv = await invoice(client, auth)
    r = await client.post(f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth)
    assert r.status_code == 201, r.text
    pi = r.json()["provider_ref"]
    stripe = sdk(base)
    pm = await stripe.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        }
    )
    await stripe.v1.payment_intents.update_async(pi, {"payment_method": pm.id})
    await stripe.v1.payment_intents.confirm_async(pi)
    # What the webhook or the poller does: the rail's view of the attempt, recorded.
    async with db.transaction() as session:
        [att] = (await session.execute(select(Attempt).where(Attempt.payment_id == inv))).scalars()
        payment = await session.get(Payment, inv)
        assert payment is not None
        pview, aview = payment_view(payment), attempt_view(att)
    result = await app.state.backup_rails["stripe"].poll(pview, aview)
    payments = app.state.payments
    screened = await screen_payer(
        payments, "in", pview.asset, pview.amount, "stripe", result.details
    )
    async with db.transaction() as session:
        att = await session.get(Attempt, aview.id)
        assert att is not None
        outcome = await record_poll(session, payments, att, result, screened=screened)
        assert outcome == "succeeded"
    return inv, pi


async def test_card_refunds_are_stripe_refunds_of_the_payment_intent(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    localstripe_url: str,
) -> None:
    inv, pi = await paid_by_card(db, rail_app, rail_client, auth, localstripe_url)
    ctx = BackupContext(
        db,
        rail_app.state.settings,
        rail_app.state.payments,
        rail_app.state.backup_rails,
        routing_policy(rail_app.state.settings),
        "w-refunds",
    )
    first = await rail_client.post(
        f"/v1/invoices/{inv}/refunds", json={"amount": "5", "reason": "one item"}, headers=auth
    )
    assert first.status_code == 201, first.text
    re = first.json()
    assert (re["rail"], re["destination"], re["status"]) == ("stripe", pi, "pending")
    payout = (await rail_client.get(f"/v1/payouts/{re['payout']}", headers=auth)).json()
    assert payout["status"] == "queued" and payout["metadata"]["stripe_refund_of"] == pi
    too_much = await rail_client.post(
        f"/v1/invoices/{inv}/refunds", json={"amount": "15.000000001"}, headers=auth
    )
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "refund_exceeds_received"

    for _ in range(3):  # start and submit, then poll
        await backup_round(ctx)
    got = (await rail_client.get(f"/v1/refunds/{re['id']}", headers=auth)).json()
    assert got["status"] == "succeeded", got
    payout = (await rail_client.get(f"/v1/payouts/{re['payout']}", headers=auth)).json()
    [att] = payout["attempts"]
    assert (att["rail"], att["status"], att["reason"]) == ("stripe", "confirmed", "refund")
    # Stripe holds exactly one refund of the intent: 5 TON = 25.00 USD at the static rate.
    stripe = sdk(localstripe_url)
    refunds = await stripe.v1.refunds.list_async({"payment_intent": pi})
    assert [(r.amount, r.currency, r.id) for r in refunds.data] == [
        (2_500, "usd", att["provider_ref"])
    ]
    # The rest, without an amount: everything not refunded yet.
    rest = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert rest.status_code == 201 and rest.json()["amount"] == "15.000000000"
    for _ in range(3):
        await backup_round(ctx)
    assert (await rail_client.get(f"/v1/refunds/{rest.json()['id']}", headers=auth)).json()[
        "status"
    ] == "succeeded"
    refunds = await stripe.v1.refunds.list_async({"payment_intent": pi})
    assert sorted(r.amount for r in refunds.data) == [2_500, 7_500]
    none_left = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert none_left.json()["error"]["code"] == "nothing_to_refund"
    balances = await books_ok(db)
    # The merchant gave back all 20 TON; the clearing account paid out 100.00 USD again.
    assert balances.get((books.merchant_account("acct_test"), "TON"), 0) == 0
    assert balances[(books.PROVIDER_CLEARING, "USD")] == -320
    async with db.transaction() as session:
        kinds = (
            await session.execute(select(OutboxEvent.type).where(OutboxEvent.type.like("refund.%")))
        ).scalars()
        assert sorted(kinds) == ["refund.created"] * 2 + ["refund.succeeded"] * 2
        inv_row = await session.get(Payment, inv)
        assert inv_row is not None and inv_row.status == PaymentStatus.SUCCEEDED


async def test_merchants_cannot_aim_a_payout_at_a_payment_intent(
    db: Database, rail_client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    before = await row_counts(db)
    r = await rail_client.post(
        "/v1/payouts",
        json={
            "amount": "1",
            "asset": "TON",
            "destination": DEST,
            "metadata": {"stripe_refund_of": "pi_someone_else"},
        },
        headers=auth,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "metadata_invalid"
    assert await row_counts(db) == before


async def test_a_refund_stripe_refuses_fails_and_goes_to_no_other_rail(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    localstripe_url: str,
) -> None:
    inv, _ = await paid_by_card(db, rail_app, rail_client, auth, localstripe_url)
    re = (await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)).json()
    # The intent is gone at Stripe (as if refunded in Stripe's dashboard and deleted).
    async with db.transaction() as session:
        payout = await session.get(Payment, re["payout"])
        assert payout is not None
        payout.metadata_ = {**payout.metadata_, "stripe_refund_of": "pi_gone"}
    ctx = BackupContext(
        db,
        rail_app.state.settings,
        rail_app.state.payments,
        rail_app.state.backup_rails,
        routing_policy(rail_app.state.settings),
        "w-refunds",
    )
    for _ in range(3):
        await backup_round(ctx)
    got = (await rail_client.get(f"/v1/payouts/{re['payout']}", headers=auth)).json()
    assert got["status"] == "failed" and got["failure_code"] == "refund_refused"
    assert [a["rail"] for a in got["attempts"]] == ["stripe"]
    refund = (await rail_client.get(f"/v1/refunds/{re['id']}", headers=auth)).json()
    assert refund["status"] == "failed" and refund["failure_code"] == "refund_refused"
    balances = await books_ok(db)
    assert balances[(books.merchant_account("acct_test"), "TON")] == -20 * TON  # given back
