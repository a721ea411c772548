"""The Approvals page lists the treasury's multisig orders: open ones first, with what each
pays, its approvals read from the chain and its status (the chain side: tests/treasury)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers import DEST
from tonrail import clock
from tonrail.dashboard.templating import money
from tonrail.db import Database
from tonrail.settings import Settings
from tonrail.treasury.models import OrderPurpose, OrderStatus, TreasuryOrder

SignIn = Callable[[str], Awaitable[str]]
TREASURY = "0:" + "ab" * 32


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database_url,
        data_dir=tmp_path,
        payment_processor_address=DEST,
        treasury_address=TREASURY,
    )


def _order(n: int, payment_id: str | None, status: OrderStatus, approvals: int) -> TreasuryOrder:
    now = clock.now()
    return TreasuryOrder(
        id=f"tord_{n}",
        purpose=OrderPurpose.PAYOUT if payment_id else OrderPurpose.TOPUP,
        payment_id=payment_id,
        asset="TON",
        amount=(n + 1) * 10**9,
        multisig=TREASURY,
        order_seqno=n,
        order_address=f"0:{n:064x}",
        order_hash="00" * 32,
        message_hash="11" * 32,
        expiration_date=1_900_000_000,
        proposal_value=10**8,
        query_seq=n,
        valid_until=1_800_000_000,
        boc="te6c",
        msg_hash_norm=f"{n:064x}",
        status=status,
        approvals=approvals,
        threshold=2,
        send_count=1,
        created_at=now,
        updated_at=now,
    )


async def test_the_approvals_page_lists_treasury_orders(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    r = await client.post(
        "/v1/payouts", json={"amount": "3", "asset": "TON", "destination": DEST}, headers=auth
    )
    pid = r.json()["id"]
    async with db.transaction() as session:
        session.add(_order(0, pid, OrderStatus.PROPOSED, 1))
        session.add(_order(1, None, OrderStatus.CONFIRMED, 2))
    await signed_in("viewer")
    html = (await client.get("/dashboard/approvals")).text
    assert TREASURY in html and "tonrail treasury approve ORDER" in html
    payout_row = html.index('id="treasury-order-tord_0"')
    topup_row = html.index('id="treasury-order-tord_1"')
    assert payout_row < topup_row  # the open order first
    assert f'href="/dashboard/payments/{pid}"' in html[payout_row:topup_row]
    assert "1 of 2" in html[payout_row:topup_row] and "proposed" in html[payout_row:topup_row]
    assert "hot wallet top-up" in html[topup_row:] and money(2 * 10**9, "TON") in html[topup_row:]
    assert "confirmed" in html[topup_row:]
    assert f"0:{0:064x}" in html


async def test_the_wallet_panel_is_offered_to_approvers_under_the_wallet_csp(
    client: httpx.AsyncClient, signed_in: SignIn
) -> None:
    await signed_in("viewer")
    r = await client.get("/dashboard/approvals")
    assert 'id="treasury-wallet"' not in r.text and "treasury-wallet.js" not in r.text
    assert "connect-src 'self';" in r.headers["Content-Security-Policy"]  # the dashboard's own
    await signed_in("approver")
    r = await client.get("/dashboard/approvals")
    assert 'id="treasury-wallet"' in r.text
    assert '<script src="/dashboard/static/treasury-wallet.js" defer></script>' in r.text
    csp = r.headers["Content-Security-Policy"]
    # Scripts still only from us (the one hash: @tonconnect/ui's empty inline handler);
    # TON Connect's bridges and wallet icons are on https hosts.
    assert "script-src 'self' 'unsafe-hashes' 'sha256-47DEQpj8HBSa" in csp
    assert "connect-src 'self' https:;" in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in r.text
    script = await client.get("/dashboard/static/treasury-wallet.js")
    assert script.status_code == 200 and "tonrailTreasuryWallet" in script.text


async def test_approve_messages_need_csrf_the_approve_role_and_a_known_order(
    client: httpx.AsyncClient, signed_in: SignIn, db: Database
) -> None:
    async with db.transaction() as session:
        session.add(_order(0, None, OrderStatus.PROPOSED, 0))
        session.add(_order(1, None, OrderStatus.CONFIRMED, 2))
    wallet = {"wallet": "0:" + "cd" * 32}
    csrf = await signed_in("approver")
    # No CSRF token: refused, nothing asked of the chain.
    r = await client.post("/dashboard/treasury/orders/tord_0/approve-message", data=wallet)
    assert r.status_code == 403
    r = await client.post(
        "/dashboard/treasury/orders/tord_9/approve-message",
        data=wallet,
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await client.post(
        "/dashboard/treasury/orders/tord_1/approve-message",
        data=wallet,
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "order_not_open"
    r = await client.post(
        "/dashboard/treasury/orders/tord_0/approve-message",
        data={"wallet": "not an address"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "wallet"
    viewer_csrf = await signed_in("viewer")
    r = await client.post(
        "/dashboard/treasury/orders/tord_0/approve-message",
        data=wallet,
        headers={"X-CSRF-Token": viewer_csrf},
    )
    assert r.status_code == 403


async def test_a_treasury_payouts_page_shows_its_order(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    """The payment's page shows the order it is paid through: address, status, the signers'
    approvals and the expiration date (UTC, as the Approvals page now shows it too)."""
    from sqlalchemy import update

    from tonrail.payments.models import Payment

    r = await client.post(
        "/v1/payouts", json={"amount": "3", "asset": "TON", "destination": DEST}, headers=auth
    )
    pid = r.json()["id"]
    r = await client.post(
        "/v1/payouts", json={"amount": "1", "asset": "TON", "destination": DEST}, headers=auth
    )
    other = r.json()["id"]
    async with db.transaction() as session:
        await session.execute(update(Payment).where(Payment.id == pid).values(route="treasury"))
        session.add(_order(0, pid, OrderStatus.PROPOSED, 1))
    await signed_in("viewer")
    html = (await client.get(f"/dashboard/payments/{pid}")).text
    shown = html[html.index('id="treasury-order"') :]
    assert f"0:{0:064x}" in shown and "(seqno 0)" in shown
    assert 'data-status="proposed"' in shown and "1 of 2 approvals on chain" in shown
    assert "2030-03-17 17:46:40 UTC" in shown
    assert 'id="treasury-order"' not in (await client.get(f"/dashboard/payments/{other}")).text
    listed = (await client.get("/dashboard/approvals")).text
    assert "2030-03-17 17:46:40" in listed and "1900000000" not in listed
