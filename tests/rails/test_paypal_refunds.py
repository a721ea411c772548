"""Refunds of invoices paid with PayPal: a capture refund (Payments v2), made by the backup
loop from a payout routed to PayPal, against the local PayPal server."""

from __future__ import annotations

from typing import Any

import httpx

from tests.rails.conftest import books_ok, poll_once
from tests.rails.providers import PayPalServer
from tests.rails.test_paypal import paypal_invoice
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.processing.backup_loop import BackupContext, backup_round
from tonrail.rails.registry import routing_policy


async def test_paypal_capture_refunds(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    paypal: tuple[PayPalServer, str],
) -> None:
    server, _ = paypal
    co = await paypal_invoice(rail_client, auth)  # 50.00 USD
    server.approve(co["provider_ref"])  # the buyer approves; polling captures
    assert await poll_once(db, rail_app, co["attempt"]) == "succeeded"
    inv = co["invoice"]
    [capture] = server.orders[co["provider_ref"]]["purchase_units"][0]["payments"]["captures"]
    ctx = BackupContext(
        db,
        rail_app.state.settings,
        rail_app.state.payments,
        rail_app.state.backup_rails,
        routing_policy(rail_app.state.settings),
        "w-refunds",
    )
    first = await rail_client.post(
        f"/v1/invoices/{inv}/refunds", json={"amount": "20"}, headers=auth
    )
    assert first.status_code == 201, first.text
    re = first.json()
    assert (re["rail"], re["destination"]) == ("paypal", capture["id"])
    for _ in range(3):
        await backup_round(ctx)
    assert (await rail_client.get(f"/v1/refunds/{re['id']}", headers=auth)).json()[
        "status"
    ] == "succeeded"
    rest = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert rest.status_code == 201 and rest.json()["amount"] == "30.00"
    for _ in range(3):
        await backup_round(ctx)
    assert (await rail_client.get(f"/v1/refunds/{rest.json()['id']}", headers=auth)).json()[
        "status"
    ] == "succeeded"
    refunds = sorted(
        (r["amount"]["value"], r["capture_id"], r["invoice_id"]) for r in server.refunds.values()
    )
    assert refunds == [
        ("20.00", capture["id"], re["payout"]),
        ("30.00", capture["id"], rest.json()["payout"]),
    ]
    over = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert over.status_code == 409 and over.json()["error"]["code"] == "nothing_to_refund"
    balances = await books_ok(db)
    assert balances.get((books.merchant_account("acct_test"), "USD"), 0) == 0
    # PayPal kept its fee of the capture (2.24): clearing is short by exactly that.
    assert balances[(books.PROVIDER_CLEARING, "USD")] == -224


async def test_a_refund_paypal_refuses_fails_without_another_rail(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    paypal: tuple[PayPalServer, str],
) -> None:
    server, _ = paypal
    co = await paypal_invoice(rail_client, auth)
    server.approve(co["provider_ref"])
    assert await poll_once(db, rail_app, co["attempt"]) == "succeeded"
    # Refunded already in PayPal's own dashboard: PayPal refuses ours.
    [capture] = server.orders[co["provider_ref"]]["purchase_units"][0]["payments"]["captures"]
    server.refunds["OUTSIDE"] = {
        "id": "OUTSIDE",
        "status": "COMPLETED",
        "amount": capture["amount"],
        "capture_id": capture["id"],
    }
    re = (
        await rail_client.post(f"/v1/invoices/{co['invoice']}/refunds", json={}, headers=auth)
    ).json()
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
    payout = (await rail_client.get(f"/v1/payouts/{re['payout']}", headers=auth)).json()
    assert payout["status"] == "failed" and payout["failure_code"] == "refund_refused"
    assert [(a["rail"], a["error_code"]) for a in payout["attempts"]] == [
        ("paypal", "paypal_unprocessable_entity")
    ]
    got = (await rail_client.get(f"/v1/refunds/{re['id']}", headers=auth)).json()
    assert got["status"] == "failed"
    await books_ok(db)
