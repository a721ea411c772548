"""The Approvals page's TON Connect approve button, in Chromium, on the local network.

A TON Connect wallet is injected into the page in place of the connected one (as the checkout
page's browser test does): what the page asks it to send is handed through a Playwright binding
to a real signer wallet (v5r1, the approver's test key), which signs it and sends it through
the local network's toncenter. The order gets the approval on chain; a second approval from
`tonrail treasury approve --key-file` executes it and the payout confirms. A wallet that is
not a signer is refused: a clear message, no button offered, nothing sent."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from playwright.async_api import expect
from sqlalchemy import select
from ton_core import Address, Cell
from typer.testing import CliRunner

from tests.conftest import make_key
from tests.dashboard.conftest import admins, browser_sign_in
from tests.live_server import LiveServer
from tests.paypage.conftest import browser
from tests.paypage.test_pay_browser import offline_noise_removed, watch_errors
from tests.rails.ton.rail_fixture import Rail, rail
from tests.treasury.test_payouts import (
    SIGNERS,
    _rounds_until,
    _seed,
    funded_treasury,
    settings,
    signers,
)
from tonrail.cli import app as cli_app
from tonrail.db import Database
from tonrail.ledger.service import check_books
from tonrail.rails.ton.chain_view import raw
from tonrail.settings import Settings, get_settings
from tonrail.treasury.models import OrderStatus, TreasuryOrder
from tonrail.treasury.multisig import approve_body
from tonrail.treasury.reader import order_state
from tonrail.treasury.service import APPROVE_VALUE, wait_for
from tonrail.treasury.wallets import SignerWallet

__all__ = ["admins", "browser", "rail", "settings", "signers"]  # fixtures used here

WAIT_MS = 30_000
# Replaces the page's TON Connect UI: a wallet connected as `owner` whose sendTransaction
# hands the transaction, as a wallet receives it, to the test's signer (window.walletSigns).
INJECTED_WALLET = """(owner) => {
  window.__asked = [];
  window.tonrailTreasuryWallet.ui = {
    connected: true,
    account: { address: owner, chain: "-239" },
    openModal: async () => { throw new Error("the injected wallet is connected"); },
    sendTransaction: async (tx) => {
      window.__asked.push(JSON.parse(JSON.stringify(tx)));
      return { boc: await window.walletSigns(tx) };
    },
  };
  return window.tonrailTreasuryWallet.connected(owner);
}"""


@pytest.fixture
def approve_server(settings: Settings, rail: Rail) -> Iterator[LiveServer]:
    """The app on a free port, reading the local network (the dashboard's chain reads)."""
    if not settings.effective_database_url.startswith("sqlite"):
        pytest.skip("browser tests run on SQLite (the chain side runs on both in tests/treasury)")
    live = LiveServer(
        settings.model_copy(update={"ton_api_url": rail.net.v2, "ton_api_v3_url": rail.net.v3})
    )
    live.start()
    yield live
    live.stop()


@pytest.fixture
def cli_env(rail: Rail, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("TON_NETWORK", "localnet")
    monkeypatch.setenv("TON_API_URL", rail.net.v2)
    monkeypatch.setenv("TON_API_V3_URL", rail.net.v3)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.delenv("TON_MASTER_KEY", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _proposed_payout(
    rail: Rail,
    signers: list[SignerWallet],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
) -> tuple[str, TreasuryOrder, Address]:
    """A 2.5 TON payout through the in-app gate, its treasury order proposed on chain."""
    treasury = await funded_treasury(rail, signers[3])
    assert treasury == rail.ctx.settings.treasury_address
    payee = Address((0, b"\x66" * 32))
    r = await client.post(
        "/v1/payouts",
        json={
            "amount": "2.5",
            "asset": "TON",
            "destination": payee.to_str(is_user_friendly=True, is_bounceable=False),
        },
        headers=auth,
    )
    assert r.status_code == 201 and r.json()["status"] == "requires_approval", r.text
    pid = r.json()["id"]
    for _ in range(2):
        h = {"Authorization": f"Bearer {await make_key(db, 'acct_test', 'payouts:approve')}"}
        assert (await client.post(f"/v1/payouts/{pid}/approve", headers=h)).status_code == 200

    async def proposed() -> bool:
        row = await _order(db)
        return row is not None and row.status == OrderStatus.PROPOSED

    await _rounds_until(rail, proposed)
    row = await _order(db)
    assert row is not None
    return pid, row, payee


async def _order(db: Database) -> TreasuryOrder | None:
    async with db.transaction() as session:
        return (await session.execute(select(TreasuryOrder))).scalar_one_or_none()


async def _approvals_page(browser: Any, server: LiveServer, signer: SignerWallet) -> Any:
    """The Approvals page signed in as an approver, with `signer`'s wallet injected."""
    context = await browser.new_context()
    page = await context.new_page()
    page.console_errors = watch_errors(page)  # a CSP violation is a console error

    async def wallet_signs(tx: dict[str, Any]) -> str:
        """The wallet's side: sign each message with the signer's key and send it."""
        assert tx["validUntil"] > time.time()
        for m in tx["messages"]:
            body = Cell.one_from_boc(base64.b64decode(m["payload"]))
            await signer.send(Address(m["address"]), int(m["amount"]), body)
        return ""

    await page.expose_function("walletSigns", wallet_signs)
    await browser_sign_in(page, server, "approver")
    await page.goto(f"{server.url}/dashboard/approvals")
    await page.wait_for_function(
        "() => window.tonrailTreasuryWallet !== undefined", timeout=WAIT_MS
    )
    # @tonconnect/ui drew its connect button (our bundle, under the page's CSP).
    await expect(page.locator("#treasury-ton-connect button").first).to_be_visible(timeout=WAIT_MS)
    await page.evaluate(INJECTED_WALLET, raw(signer.address))
    return context, page


async def test_a_signer_approves_from_the_dashboard_and_the_order_executes(
    browser: Any,
    approve_server: LiveServer,
    rail: Rail,
    signers: list[SignerWallet],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    admins: dict[str, str],
    cli_env: None,
    tmp_path: Path,
) -> None:
    pid, row, payee = await _proposed_payout(rail, signers, client, auth, db)
    bob = signers[1]  # signer 1 approves through the dashboard
    context, page = await _approvals_page(browser, approve_server, bob)
    await expect(page.locator("#treasury-wallet-status")).to_contain_text(
        "signer 1 of 3", timeout=WAIT_MS
    )
    assert await page.locator("#treasury-wallet").get_attribute("data-signer") == "1"
    button = page.locator(f'button.treasury-approve[data-order="{row.id}"]')
    await expect(button).to_be_enabled()
    await expect(page.locator(f"#treasury-order-{row.id} .order-approvals")).to_have_text("0 of 2")

    await button.click()
    await page.wait_for_function("() => window.__asked.length === 1", timeout=WAIT_MS)
    [tx] = await page.evaluate("() => window.__asked")
    # Exactly the CLI's approve message: to the order, 0.1 TON, `approve` with index 1.
    [msg] = tx["messages"]
    assert set(msg) == {"address", "amount", "payload"}
    assert raw(Address(msg["address"])) == row.order_address
    assert Address(msg["address"]).is_bounceable
    assert msg["amount"] == str(APPROVE_VALUE)
    body = Cell.one_from_boc(base64.b64decode(msg["payload"]))
    assert body.hash == approve_body(1).hash
    await expect(page.locator("#treasury-wallet-status")).to_contain_text(
        "Approval sent from signer 1", timeout=WAIT_MS
    )

    async def approved_by_bob() -> bool:
        return (await order_state(rail.api, row.order_address)).approved_by(1)

    assert await wait_for(approved_by_bob, timeout_s=30, poll_s=0.1)
    state = await order_state(rail.api, row.order_address)
    assert state.approvals == 1 and not state.executed

    # The treasury loop reads the approval; the page shows it (the list polls).
    async def one_read() -> bool:
        got = await _order(db)
        return got is not None and got.approvals == 1

    await _rounds_until(rail, one_read)
    await expect(page.locator(f"#treasury-order-{row.id} .order-approvals")).to_have_text(
        "1 of 2", timeout=WAIT_MS
    )
    # Approving again from the same wallet is refused before the wallet is asked.
    await button.click()
    await expect(page.locator("#treasury-wallet-error")).to_contain_text(
        "approved order", timeout=WAIT_MS
    )
    assert await page.locator("#treasury-wallet-error").get_attribute("data-code") == (
        "already_approved"
    )
    assert len(await page.evaluate("() => window.__asked")) == 1

    # The second approval from the CLI with carol's key file executes the order.
    key_file = tmp_path / "carol.key"
    key_file.write_text(_seed(SIGNERS[2]).hex() + "\n")
    result: Result = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["treasury", "approve", row.order_address, "--key-file", str(key_file)],
    )
    assert result.exit_code == 0, result.output
    assert "approvals 2 of 2, executed" in result.output

    async def succeeded() -> bool:
        got = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
        return bool(got["status"] == "succeeded")

    await _rounds_until(rail, succeeded)
    assert rail.net.chain.account(payee).balance == 2_500_000_000
    await expect(page.locator(f"#treasury-order-{row.id}")).to_contain_text(
        "confirmed", timeout=WAIT_MS
    )
    await expect(page.locator(f'button.treasury-approve[data-order="{row.id}"]')).to_have_count(0)
    async with db.transaction() as session:
        assert (await check_books(session)).ok
    # The one refusal above answered 409; nothing else (no CSP violation) went wrong.
    refused = "the server responded with a status of 409"
    assert [e for e in offline_noise_removed(page.console_errors) if refused not in e] == []
    await context.close()


async def test_a_wallet_that_is_not_a_signer_is_refused(
    browser: Any,
    approve_server: LiveServer,
    rail: Rail,
    signers: list[SignerWallet],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    admins: dict[str, str],
) -> None:
    _, row, _ = await _proposed_payout(rail, signers, client, auth, db)
    operator = signers[3]  # deployed the multisig; not one of its signers
    context, page = await _approvals_page(browser, approve_server, operator)
    await expect(page.locator("#treasury-wallet-error")).to_contain_text(
        "is not a signer of the treasury", timeout=WAIT_MS
    )
    assert await page.locator("#treasury-wallet").get_attribute("data-signer") == ""
    button = page.locator(f'button.treasury-approve[data-order="{row.id}"]')
    await expect(button).to_be_disabled()
    # Asked directly (a page that skipped the check), the server refuses too: no message.
    answer = await page.evaluate(
        """async ([order, wallet]) => {
          const token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"];
          const r = await fetch(`/dashboard/treasury/orders/${order}/approve-message`, {
            method: "POST", headers: {"X-CSRF-Token": token},
            body: new URLSearchParams({wallet}),
          });
          return [r.status, await r.json()];
        }""",
        [row.id, raw(operator.address)],
    )
    assert answer[0] == 403 and answer[1]["error"]["code"] == "not_a_signer"
    assert "transaction" not in answer[1]
    # And the page's own approve refuses before asking the wallet.
    await page.evaluate(f"() => window.tonrailTreasuryWallet.approve('{row.id}').catch(() => 0)")
    assert await page.evaluate("() => window.__asked") == []
    state = await order_state(rail.api, row.order_address)
    assert state.approvals == 0 and not state.executed
    # The refusals above answered 403 (a console error each); nothing else went wrong.
    refused = "the server responded with a status of 403"
    assert [e for e in offline_noise_removed(page.console_errors) if refused not in e] == []
    await context.close()
