"""TON Connect on the checkout page, in Chromium: the transaction the page hands to the wallet
is recorded (a recording wallet stands in for the connected one), checked byte for byte
against the message our deposit watcher credits, then sent from a test wallet on the local
network, and the page turns to paid."""

from __future__ import annotations

import base64
import time
from typing import Any

from playwright.async_api import expect
from ton_core import Address, Cell, begin_cell
from tonutils.contracts import WalletV5R1

from tests.dashboard.conftest import LiveServer
from tests.paypage.test_pay_browser import (
    PHONE,
    WAIT_MS,
    new_invoice,
    offline_noise_removed,
    watch_errors,
)
from tests.rails.ton.rail_fixture import Rail, settled
from tests.rails.ton.test_deposits import drain
from tonrail.localnet.genesis import TON
from tonrail.rails.ton.api import jetton_wallet_of
from tonrail.rails.ton.chain_view import raw

JETTON_TRANSFER = 0x0F8A7EA5
# Replaces the page's TON Connect UI once the script has loaded: a wallet connected as `owner`
# that records what it is asked to send, as a real wallet would receive it.
RECORDING_WALLET = """(owner) => {
  window.__sent = [];
  window.tonrailWallet.ui = {
    connected: true,
    account: { address: owner, chain: "-239" },
    openModal: async () => { throw new Error("the recording wallet is connected"); },
    sendTransaction: async (tx) => {
      window.__sent.push(JSON.parse(JSON.stringify(tx)));
      return { boc: "" };
    },
  };
}"""


def comment(text: str) -> Cell:
    return begin_cell().store_uint(0, 32).store_snake_string(text).end_cell()


def cell(b64: str) -> Cell:
    return Cell.one_from_boc(base64.b64decode(b64))


async def asked_to_send(page: Any, owner: str) -> dict[str, Any]:
    """Click the page's TON Connect button with the recording wallet connected as `owner`."""
    await page.wait_for_function("() => window.tonrailWallet !== undefined", timeout=WAIT_MS)
    await page.evaluate(RECORDING_WALLET, owner)
    await page.click("#ton-connect-send")
    await page.wait_for_function("() => window.__sent.length === 1", timeout=WAIT_MS)
    [tx] = await page.evaluate("() => window.__sent")
    return dict(tx)


async def open_page(browser: Any, server: LiveServer, invoice_id: str) -> tuple[Any, Any, list]:
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(f"{server.url}/pay/{invoice_id}")
    return context, page, errors


async def test_ton_connect_asks_for_the_ton_transfer_that_pays_the_invoice(
    browser: Any,
    shop_server: LiveServer,
    rail: Rail,
    payer: WalletV5R1,
    auth: dict[str, str],
) -> None:
    inv = await new_invoice(shop_server, auth, "2", "TON")
    context, page, errors = await open_page(browser, shop_server, inv["id"])
    await expect(page.locator("#ton-connect-send")).to_be_enabled(timeout=WAIT_MS)
    await expect(page.locator("#ton-connect-send")).to_have_text("Pay 2 TON with TON Connect")
    # @tonconnect/ui drew its own connect button (served by us, styled under our CSP).
    await expect(page.locator("#ton-connect button").first).to_be_visible(timeout=WAIT_MS)

    # 0.5 TON arrives first (a manual transfer): TON Connect then asks for the rest.
    await payer.transfer(rail.ctx.wallet.address, TON // 2, body=inv["reference"], bounce=False)
    await settled(payer, 0)
    await drain(rail, 2)  # the genesis funding, then ours
    await expect(page.locator("#ton-connect-send")).to_have_text(
        "Pay 1.5 TON with TON Connect", timeout=WAIT_MS
    )

    before = int(time.time())
    tx = await asked_to_send(page, raw(payer.address))
    assert set(tx) == {"validUntil", "messages"}  # no `network` on the local network
    assert before + 290 <= tx["validUntil"] <= int(time.time()) + 300
    [msg] = tx["messages"]
    assert set(msg) == {"address", "amount", "payload"}
    assert msg["address"] == inv["pay_to"]  # as configured: non-bounceable, not deployed yet
    assert msg["amount"] == str(3 * TON // 2) == str(inv["amount_minor"] - TON // 2)
    body = cell(msg["payload"])
    assert body.hash == comment(inv["reference"]).hash  # byte for byte
    await expect(page.locator("#ton-connect-send")).to_have_text("Sent: waiting for the network…")

    # The wallet sends exactly that: the invoice is paid and the page says so.
    await payer.transfer(Address(msg["address"]), int(msg["amount"]), body=body, bounce=False)
    await settled(payer, 1)
    await drain(rail, 3)
    await expect(page.locator('[data-show-when="paid"]')).to_be_visible(timeout=WAIT_MS)
    assert offline_noise_removed(errors) == []
    await context.close()


async def test_ton_connect_asks_for_the_usdt_jetton_transfer_that_pays_the_invoice(
    browser: Any,
    shop_server: LiveServer,
    rail: Rail,
    payer: WalletV5R1,
    auth: dict[str, str],
) -> None:
    inv = await new_invoice(shop_server, auth, "7.25", "USDT")
    context, page, errors = await open_page(browser, shop_server, inv["id"])
    await expect(page.locator("#ton-connect-send")).to_be_enabled(timeout=WAIT_MS)
    payer_jetton_wallet = await jetton_wallet_of(
        rail.api, rail.net.genesis.usdt_master.to_str(), raw(payer.address)
    )

    tx = await asked_to_send(page, raw(payer.address))
    [msg] = tx["messages"]
    # To the payer's own USDT wallet (bounceable), 0.05 TON attached for the fees.
    assert raw(Address(msg["address"])) == raw(Address(payer_jetton_wallet))
    assert Address(msg["address"]).is_bounceable
    assert msg["amount"] == "50000000"
    body = cell(msg["payload"])
    expected = (
        begin_cell()
        .store_uint(JETTON_TRANSFER, 32)
        .store_uint(0, 64)
        .store_coins(7_250_000)
        .store_address(Address(inv["pay_to"]))
        .store_address(payer.address)
        .store_bit(0)
        .store_coins(1)
        .store_bit(1)
        .store_ref(comment(inv["reference"]))
        .end_cell()
    )
    assert body.hash == expected.hash  # byte for byte
    s = body.begin_parse()
    assert s.load_uint(32) == JETTON_TRANSFER and s.load_uint(64) == 0
    assert s.load_coins() == 7_250_000 == inv["amount_minor"]

    before = await rail.usdt_balance(rail.ctx.wallet.address.to_str())
    await payer.transfer(Address(msg["address"]), int(msg["amount"]), body=body, bounce=True)
    await settled(payer, 0)
    await drain(rail, 2)
    await expect(page.locator('[data-show-when="paid"]')).to_be_visible(timeout=WAIT_MS)
    assert await rail.usdt_balance(rail.ctx.wallet.address.to_str()) == before + 7_250_000
    assert offline_noise_removed(errors) == []
    await context.close()


async def test_an_unconnected_customer_is_offered_the_wallets_first(
    browser: Any, offline_shop: LiveServer, auth: dict[str, str]
) -> None:
    inv = await new_invoice(offline_shop, auth, "1", "TON")
    context, page, errors = await open_page(browser, offline_shop, inv["id"])
    await expect(page.locator("#ton-connect-send")).to_be_enabled(timeout=WAIT_MS)
    await page.focus("#ton-connect-send")
    await page.keyboard.press("Enter")
    # @tonconnect/ui's own wallet chooser opens (nothing is sent before a wallet connects).
    await expect(page.locator('[data-tc-modal="true"]')).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator('[data-tc-modal="true"]')).to_contain_text("Connect your TON wallet")
    assert await page.locator("#ton-connect-error").text_content() == ""
    assert offline_noise_removed(errors) == []
    await context.close()
