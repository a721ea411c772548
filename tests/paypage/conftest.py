"""The hosted checkout page served for Chromium, paying to the local network's hot wallet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.rails.conftest import (  # noqa: F401  (the providers' fixtures)
    OUR_IBAN,
    localstripe_url,
    paypal,
    rail_settings,
    stripe_extras,
)
from tests.rails.ton.conftest import chain, server  # noqa: F401  (the local network fixtures)
from tests.rails.ton.rail_fixture import Rail, payer, rail  # noqa: F401
from tonrail.settings import Settings

MERCHANT = "Ünïcode <Shop> & Co"


def shop_settings(settings: Settings, rail: Rail | None = None) -> Settings:  # noqa: F811
    """The merchant's settings: bank transfer as a backup rail and, with a local network, its
    hot wallet (non-bounceable form: it is not deployed before its first payout) and USDT."""
    update: dict[str, object] = {
        "merchant_name": MERCHANT,
        "backup_rails": "bank",
        "bank_account_name": "Shop GmbH",
        "bank_account_iban": OUR_IBAN,
        "bank_account_bic": "COBADEFFXXX",
    }
    if rail is not None:
        update |= {
            "payment_processor_address": rail.ctx.wallet.address.to_str(is_bounceable=False),
            "usdt_jetton_master": rail.net.genesis.usdt_master.to_str(),
            "ton_api_url": rail.net.v2,
            "ton_api_v3_url": rail.net.v3,
        }
    return settings.model_copy(update=update)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Chromium as the dashboard's tests start it, with every host name but the test
    servers' unresolvable: TON Connect's wallet list, bridges and wallet icons (outside
    addresses) are never reached."""
    from playwright.async_api import async_playwright

    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make setup` installs Debian's chromium package")
    offline = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, offline]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


def _serve(settings: Settings) -> Iterator[LiveServer]:
    if not settings.effective_database_url.startswith("sqlite"):
        pytest.skip("browser tests run on SQLite (the page's reads are tested on both backends)")
    live = LiveServer(settings)
    live.start()
    yield live
    live.stop()


@pytest.fixture
def shop_server(settings: Settings, rail: Rail) -> Iterator[LiveServer]:  # noqa: F811
    """The app on a free port with the local network's hot wallet as pay_to."""
    yield from _serve(shop_settings(settings, rail))


@pytest.fixture
def offline_shop(settings: Settings) -> Iterator[LiveServer]:
    """The app on a free port without a local network (pages that need no chain)."""
    yield from _serve(shop_settings(settings))
