"""The hosted checkout page over HTTP: what it shows, what it hides, its refusals, its states
and its backup rails (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from html import unescape
from typing import Any

import httpx
import pytest

from tests.paypage.conftest import shop_settings
from tests.rails.conftest import OUR_IBAN
from tests.rails.ton.rail_fixture import Rail
from tonrail import clock
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.rails.ton.api import jetton_wallet_of
from tonrail.rails.ton.chain_view import raw
from tonrail.settings import Settings

EMPTY_SHA256 = base64.b64encode(hashlib.sha256(b"").digest()).decode()
HOT = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"  # the test settings' pay_to


async def invoice(
    client: httpx.AsyncClient, auth: dict[str, str], amount: str, asset: str, **extra: Any
) -> dict[str, Any]:
    body = {"amount": amount, "asset": asset, **extra}
    r = await client.post("/v1/invoices", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture
def bank_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "merchant_name": "Ünïcode <Shop> & Co",
            "backup_rails": "bank",
            "bank_account_name": "Shop GmbH",
            "bank_account_iban": OUR_IBAN,
            "bank_account_bic": "COBADEFFXXX",
        }
    )


@pytest.fixture
async def shop(bank_settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(bank_settings, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        yield c


async def test_an_open_invoice_shows_what_to_pay_and_nothing_private(
    shop: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    inv = await invoice(
        shop,
        auth,
        "2.5",
        "TON",
        description='Order <script>alert("x")</script> & more',
        metadata={"customer_email": "secret@example.com"},
    )
    r = await shop.get(f"/pay/{inv['id']}")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    scripts = csp.split("script-src ")[1].split(";")[0].split()
    # Our scripts, and one inline handler: the empty one (@tonconnect/ui's ontouchstart="").
    assert scripts == ["'self'", "'unsafe-hashes'", f"'sha256-{EMPTY_SHA256}'"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert r.headers["cache-control"] == "no-store"
    html = r.text
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)" in html
    assert "Ünïcode &lt;Shop&gt; &amp; Co" in html
    assert "secret@example.com" not in html and "acct_" not in html
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, "an inline script"
    assert 'id="amount">2.5</span> TON' in html
    link = unescape(re.search(r'id="deep-link" class="[^"]*" href="([^"]+)"', html)[1])
    assert link == inv["deep_link"]
    assert link == f"ton://transfer/{HOT}?amount=2500000000&text={inv['reference']}"
    assert f'<code id="pay-comment">{inv["reference"]}</code>' in html
    assert f'<code id="pay-to">{HOT}</code>' in html
    assert 'data-rail="bank"' in html  # the configured backup rail is offered
    qr = await shop.get(f"/pay/{inv['id']}/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
    status = (await shop.get(f"/pay/{inv['id']}/status")).json()
    assert status == {
        "id": inv["id"],
        "state": "open",
        "amount": "2.5",
        "asset": "TON",
        "amount_received": "0",
        "amount_remaining": "2.5",
        "amount_remaining_minor": 2_500_000_000,
        "deep_link": inv["deep_link"],
        "expires_at": inv["expires_at"],
        "seconds_left": status["seconds_left"],
        "paid_at": None,
    }
    assert 3590 <= status["seconds_left"] <= 3600


@pytest.mark.parametrize(
    "path",
    [
        "/pay/pay_00000000000000000000000000",  # well formed, unknown
        "/pay/pay_x",  # malformed
        "/pay/' OR 1=1 --",
        "/pay/%3Cscript%3E",
    ],
)
async def test_a_bad_id_is_the_same_404_that_tells_nothing(
    shop: httpx.AsyncClient, path: str
) -> None:
    r = await shop.get(path)
    assert r.status_code == 404
    assert "Payment not found" in r.text and "pay_" not in r.text.split("<body>")[1]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    s = await shop.get(path + "/status")
    assert s.status_code == 404 and s.json()["error"]["code"] == "not_found"
    assert (await shop.get(path + "/qr.svg")).status_code == 404


async def test_a_payout_id_is_not_a_checkout_page(
    shop: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await shop.post(
        "/v1/payouts",
        json={"amount": "1", "asset": "TON", "destination": HOT},
        headers=auth,
    )
    payout = r.json()["id"]
    unknown = await shop.get("/pay/pay_00000000000000000000000000")
    page = await shop.get(f"/pay/{payout}")
    assert page.status_code == 404 and page.text == unknown.text


async def test_canceled_and_expired_invoices_show_their_state(
    shop: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    canceled = await invoice(shop, auth, "1", "TON")
    await shop.post(f"/v1/invoices/{canceled['id']}/cancel", headers=auth)
    page = (await shop.get(f"/pay/{canceled['id']}")).text
    assert re.search(r'data-show-when="canceled"\s*>', page), "canceled not shown"
    assert 'id="pay-ton"' not in page and 'id="qr"' not in page  # nothing to pay
    assert 'data-rail="bank"' not in page  # nothing to pay: no backup options
    assert (await shop.get(f"/pay/{canceled['id']}/status")).json()["state"] == "canceled"

    late = await invoice(shop, auth, "1", "TON", expires_in_seconds=60)
    later = clock.now() + timedelta(seconds=61)
    clock.set_clock(lambda: later)
    try:
        status = (await shop.get(f"/pay/{late['id']}/status")).json()
        page = (await shop.get(f"/pay/{late['id']}")).text
    finally:
        clock.set_clock(None)
    assert status["state"] == "expired" and status["seconds_left"] == 0
    assert re.search(r'data-show-when="expired"\s*>', page)
    assert 'id="pay-ton"' not in page and "pay-wallet.js" not in page


async def test_bank_transfer_as_the_backup_rail(
    shop: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    inv = await invoice(shop, auth, "100", "USDT")
    r = await shop.post(f"/pay/{inv['id']}/rails/bank")
    assert r.status_code == 303 and r.headers["location"] == f"/pay/{inv['id']}#backup"
    page = (await shop.get(f"/pay/{inv['id']}")).text
    details = page.split('id="bank-details"')[1].split("</dl>")[0]
    assert OUR_IBAN in details and "COBADEFFXXX" in details and "Shop GmbH" in details
    assert inv["reference"] in details
    # Choosing again finds the same checkout; an unknown rail is refused on the page.
    again = await shop.post(f"/pay/{inv['id']}/rails/bank")
    assert again.status_code == 303
    other = await shop.post(f"/pay/{inv['id']}/rails/stripe")
    assert other.status_code == 400 and "stripe is not offered here" in other.text
    attempts = (await shop.get(f"/v1/invoices/{inv['id']}", headers=auth)).json()["attempts"]
    assert [a["rail"] for a in attempts] == ["bank"]


async def test_no_backup_options_when_none_is_configured(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    inv = await invoice(client, auth, "1", "TON")
    page = (await client.get(f"/pay/{inv['id']}")).text
    assert 'id="backup"' not in page
    assert (await client.post(f"/pay/{inv['id']}/rails/bank")).status_code == 400


async def test_the_tonconnect_manifest_names_the_merchant(
    shop: httpx.AsyncClient, bank_settings: Settings, db: Database
) -> None:
    r = await shop.get("/pay/tonconnect-manifest.json")
    assert r.status_code == 200
    assert r.json() == {
        "url": "http://tonrail.test",
        "name": "Ünïcode <Shop> & Co",
        "iconUrl": "http://tonrail.test/pay/static/icon.png",
    }
    icon = await shop.get("/pay/static/icon.png")
    assert icon.status_code == 200 and icon.content.startswith(b"\x89PNG")
    public = bank_settings.model_copy(update={"checkout_base_url": "https://pay.example.com/"})
    transport = httpx.ASGITransport(app=create_app(public, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://internal:8000") as c:
        manifest = (await c.get("/pay/tonconnect-manifest.json")).json()
    assert manifest["url"] == "https://pay.example.com"
    assert manifest["iconUrl"] == "https://pay.example.com/pay/static/icon.png"


async def test_the_wallet_script_is_ours_and_the_page_loads_it(
    shop: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    inv = await invoice(shop, auth, "1", "TON")
    html = (await shop.get(f"/pay/{inv['id']}")).text
    assert '<script src="/pay/static/pay-wallet.js" defer></script>' in html
    assert f'data-pay-to="{HOT}"' in html and 'data-amount-minor="1000000000"' in html
    assert f'data-comment="{inv["reference"]}"' in html
    script = await shop.get("/pay/static/pay-wallet.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert b"tonrailWallet" in script.content and b"sendTransaction" in script.content


async def test_the_jetton_wallet_lookup_refuses_what_it_cannot_answer(
    shop: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    ton = await invoice(shop, auth, "1", "TON")
    unknown = await shop.get("/pay/pay_00000000000000000000000000/jetton-wallet?owner=" + HOT)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    not_usdt = await shop.get(f"/pay/{ton['id']}/jetton-wallet?owner={HOT}")
    assert not_usdt.status_code == 409
    assert not_usdt.json()["error"]["code"] == "invoice_not_payable"
    usdt = await invoice(shop, auth, "1", "USDT")
    bad = await shop.get(f"/pay/{usdt['id']}/jetton-wallet?owner=not-an-address")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "owner"


async def test_the_jetton_wallet_lookup_asks_the_usdt_master(
    rail: Rail, payer: Any, settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    transport = httpx.ASGITransport(app=create_app(shop_settings(settings, rail), db))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as shop:
        usdt = await invoice(shop, auth, "3", "USDT")
        owner = payer.address.to_str()
        r = await shop.get(f"/pay/{usdt['id']}/jetton-wallet", params={"owner": owner})
    assert r.status_code == 200, r.text
    expected = await jetton_wallet_of(
        rail.api, rail.net.genesis.usdt_master.to_str(), raw(payer.address)
    )
    assert r.json()["owner"].upper() == raw(payer.address)
    assert r.json()["jetton_wallet"] == expected


async def test_card_and_paypal_send_the_customer_to_the_provider(
    rail_settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    on_page = rail_settings.model_copy(update={"stripe_incoming_mode": "checkout_session"})
    transport = httpx.ASGITransport(app=create_app(on_page, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as shop:
        card = await invoice(shop, auth, "25", "USDT")
        page = (await shop.get(f"/pay/{card['id']}")).text
        assert re.findall(r'data-rail="(\w+)">([^<]+)<', page) == [
            ("stripe", "Card (Stripe)"),
            ("paypal", "PayPal"),
            ("bank", "Bank transfer"),
        ]
        r = await shop.post(f"/pay/{card['id']}/rails/stripe")
        assert r.status_code == 303
        assert r.headers["location"].startswith("https://checkout.stripe.com/c/pay/cs_")
        # Back on the page (the customer came back without paying): the way on to Stripe.
        page = (await shop.get(f"/pay/{card['id']}")).text
        assert f'href="{r.headers["location"]}">Continue to the card payment' in page
        assert 'data-rail="' not in page  # one checkout at a time

        pp = await invoice(shop, auth, "25", "USDT")
        r = await shop.post(f"/pay/{pp['id']}/rails/paypal")
        assert r.status_code == 303
        assert r.headers["location"].startswith("https://www.sandbox.paypal.com/checkoutnow?token=")


async def test_card_is_not_offered_without_stripe_checkout(
    rail_settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    transport = httpx.ASGITransport(app=create_app(rail_settings, db))  # payment_intent mode
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as shop:
        inv = await invoice(shop, auth, "25", "USDT")
        page = (await shop.get(f"/pay/{inv['id']}")).text
        assert re.findall(r'data-rail="(\w+)"', page) == ["paypal", "bank"]
