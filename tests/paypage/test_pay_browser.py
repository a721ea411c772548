"""The hosted checkout page in Chromium (mobile size): the QR code and the deep link carry the
exact payment, the page follows the chain (partly paid, then paid) without a reload, and the
backup rails are there. Any console error (a CSP violation is one) fails the test."""

from __future__ import annotations

import io
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import zxingcpp
from PIL import Image
from playwright.async_api import expect
from tonutils.contracts import WalletV5R1

from tests.dashboard.conftest import LiveServer
from tests.paypage.conftest import MERCHANT
from tests.rails.ton.rail_fixture import Rail, settled
from tests.rails.ton.test_deposits import drain
from tonrail.localnet.genesis import TON

WAIT_MS = 20_000
PHONE = {"width": 390, "height": 844}


def watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def offline_noise_removed(errors: list[str]) -> list[str]:
    """The console errors but those of TON Connect failing to reach its wallet list, bridges
    and icons: outside host names do not resolve in these tests (conftest's `browser`)."""
    return [
        e
        for e in errors
        if "net::ERR_NAME_NOT_RESOLVED" not in e
        and not (e.startswith("[TON_CONNECT_SDK]") and "Failed to fetch" in e)
    ]


async def new_invoice(
    server: LiveServer, auth: dict[str, str], amount: str, asset: str
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post("/v1/invoices", json={"amount": amount, "asset": asset}, headers=auth)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def decoded_qr(page: Any) -> str:
    """What a phone's camera reads from the QR code as the page shows it."""
    png = await page.locator("#qr").screenshot()
    [code] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert code.format == zxingcpp.BarcodeFormat.QRCode
    return str(code.text)


async def test_the_page_follows_the_chain_from_open_to_paid(
    browser: Any,
    shop_server: LiveServer,
    rail: Rail,
    payer: WalletV5R1,
    auth: dict[str, str],
) -> None:
    inv = await new_invoice(shop_server, auth, "3", "TON")
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(f"{shop_server.url}/pay/{inv['id']}")
    await expect(page.locator(".merchant")).to_have_text(MERCHANT)
    await expect(page.locator("h1")).to_have_text("Pay 3 TON")
    await expect(page.locator('[data-show-when="open"]').first).to_be_visible()
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^(59|60):\d\d$"))

    hot = rail.ctx.wallet.address.to_str(is_bounceable=False)
    link = await page.locator("#deep-link").get_attribute("href")
    assert link == await decoded_qr(page)
    url = urlsplit(link)
    assert (url.scheme, url.netloc, url.path) == ("ton", "transfer", f"/{hot}")
    assert parse_qs(url.query) == {"amount": [str(3 * TON)], "text": [inv["reference"]]}
    await expect(page.locator("#pay-comment")).to_have_text(inv["reference"])
    await expect(page.locator("#pay-to")).to_have_text(hot)
    await expect(page.locator('button[data-rail="bank"]')).to_be_visible()

    # 1 TON of 3 arrives: the page says so without a reload.
    await page.evaluate("() => { window.__same_page = 1; }")
    await payer.transfer(rail.ctx.wallet.address, 1 * TON, body=inv["reference"], bounce=False)
    await settled(payer, 0)
    await drain(rail, 2)  # the genesis funding, then ours
    partial = page.locator('[data-show-when="partially_paid"]')
    await expect(partial).to_be_visible(timeout=WAIT_MS)
    await expect(partial).to_contain_text("Received 1 of 3 TON")
    await expect(partial).to_contain_text("remaining 2 TON")
    await expect(page.locator('button[data-rail="bank"]')).to_be_hidden()
    # The link, its QR code and the amount to send now ask for the rest: 2 TON.
    rest = f"ton://transfer/{hot}?amount={2 * TON}&text={inv['reference']}"
    await expect(page.locator("#deep-link")).to_have_attribute("href", rest)
    await expect(page.locator("#pay-amount")).to_have_text("2")
    await expect(page.locator("#qr")).to_have_attribute("src", re.compile(f"remaining={2 * TON}$"))
    await page.wait_for_function("() => document.getElementById('qr').complete")
    assert await decoded_qr(page) == rest

    # The rest arrives: paid, and nothing left to pay with.
    await payer.transfer(rail.ctx.wallet.address, 2 * TON, body=inv["reference"], bounce=False)
    await settled(payer, 1)
    await drain(rail, 3)
    await expect(page.locator('[data-show-when="paid"]')).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#checkout")).to_have_attribute("data-state", "paid")
    await expect(page.locator("#pay-ton")).to_be_hidden()
    await expect(page.locator("#time-left")).to_be_hidden()
    assert await page.evaluate("() => window.__same_page") == 1
    # A reload shows the same state.
    await page.reload()
    await expect(page.locator('[data-show-when="paid"]')).to_be_visible()
    assert offline_noise_removed(errors) == []
    await context.close()


async def test_bank_transfer_by_keyboard(
    browser: Any, offline_shop: LiveServer, auth: dict[str, str]
) -> None:
    inv = await new_invoice(offline_shop, auth, "25", "USDT")
    context = await browser.new_context(viewport=PHONE, is_mobile=True)
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(f"{offline_shop.url}/pay/{inv['id']}")
    await expect(page.locator("#backup h2")).to_have_text("Other ways to pay")
    bank = page.locator('button[data-rail="bank"]')
    await expect(bank).to_have_text("Bank transfer")
    await bank.focus()
    await page.keyboard.press("Enter")
    details = page.locator("#bank-details")
    await expect(details).to_be_visible(timeout=WAIT_MS)
    await expect(details).to_contain_text("Shop GmbH")
    await expect(details).to_contain_text(inv["reference"])
    assert offline_noise_removed(errors) == []
    await context.close()


async def test_a_bad_link_shows_the_not_found_page(browser: Any, offline_shop: LiveServer) -> None:
    page = await browser.new_page()
    errors = watch_errors(page)
    response = await page.goto(f"{offline_shop.url}/pay/pay_00000000000000000000000000")
    assert response.status == 404
    await expect(page.locator("h1")).to_have_text("Payment not found")
    await page.close()
    assert all("404" in e for e in errors)  # Chromium logs the 404 of the document itself
