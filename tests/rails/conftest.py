"""Provider fixtures: localstripe (subprocess), the Stripe extras and PayPal local servers,
our app served over HTTP for provider webhooks, and a driver doing what the loop does."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from tests.rails.providers import PayPalServer, StripeExtras, ThreadServer, free_port
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.ledger.service import check_books
from tonrail.money import format_minor
from tonrail.payments.attempts import attempt_view, payment_view
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.transitions import move_payment, start_attempt
from tonrail.processing.outcomes import record_poll, record_submit
from tonrail.processing.payer_screening import screen_payer
from tonrail.rails.base import PollResult
from tonrail.rails.registry import BackupRail
from tonrail.settings import Settings

STRIPE_KEY = "sk_test_tonrail"
WEBHOOK_SECRET = "whsec_tonrail_test"
OUR_IBAN = "DE89370400440532013000"
PAYEE_IBAN = "GB33BUKB20201555555555"


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """localstripe from PyPI in a subprocess on a free port (it runs on Python 3.11)."""
    port = free_port()
    exe = Path(sys.executable).parent / "localstripe"
    log = (tmp_path_factory.mktemp("localstripe") / "log").open("w")
    proc = subprocess.Popen(
        [str(exe), "--port", str(port), "--from-scratch"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path_factory.getbasetemp(),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/v1/balance", headers={"Authorization": f"Bearer {STRIPE_KEY}"})
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="session")
def stripe_extras(localstripe_url: str) -> Iterator[tuple[StripeExtras, str]]:
    extras = StripeExtras(localstripe_url, STRIPE_KEY)
    server = ThreadServer(extras.app()).start()
    yield extras, server.url
    server.stop()


@pytest.fixture
def paypal() -> Iterator[tuple[PayPalServer, str]]:
    fake = PayPalServer()
    server = ThreadServer(fake.app()).start()
    yield fake, server.url
    server.stop()


@pytest.fixture
def rail_settings(
    settings: Settings,
    stripe_extras: tuple[StripeExtras, str],
    paypal: tuple[PayPalServer, str],
    tmp_path: Path,
) -> Settings:
    return settings.model_copy(
        update={
            "stripe_secret_key": type(settings.stripe_secret_key)(STRIPE_KEY),
            "stripe_publishable_key": "pk_test_tonrail",
            "stripe_webhook_secret": type(settings.stripe_webhook_secret)(
                f"whsec_old_rotated,{WEBHOOK_SECRET}"
            ),
            "stripe_api_base": stripe_extras[1],
            "paypal_client_id": paypal[0].client_id,
            "paypal_client_secret": type(settings.paypal_client_secret)(paypal[0].client_secret),
            "paypal_api_base": paypal[1],
            "paypal_webhook_id": "WH-TEST-1",
            "bank_account_name": "Tonrail Operations Ltd",
            "bank_account_iban": OUR_IBAN,
            "bank_account_bic": "COBADEFFXXX",
        }
    )


@pytest.fixture
def rail_app(rail_settings: Settings, db: Database) -> Any:
    return create_app(rail_settings, db)


@pytest.fixture
async def rail_client(rail_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=rail_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        yield c


@pytest.fixture
async def served(rail_app: Any) -> AsyncIterator[str]:
    """Our app on a real port, so that localstripe's own signed webhooks reach it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(rail_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


def rails_of(app: Any) -> dict[str, BackupRail]:
    rails: dict[str, BackupRail] = app.state.backup_rails
    return rails


async def new_payout(
    db: Database, app: Any, metadata: dict[str, str], amount: int = 20 * 10**9
) -> str:
    """A queued TON payout (20 TON = 100 USD at the default static rate) with payee details."""
    from tests.helpers import DEST
    from tonrail.payments.schemas import PayoutCreate
    from tonrail.security.api_keys import Principal

    service: PaymentService = app.state.payments
    principal = Principal(
        key_id="key_loop", account_id="acct_test", scopes=frozenset({"payments:write"})
    )
    req = PayoutCreate(
        amount=format_minor(amount, "TON"), asset="TON", destination=DEST, metadata=metadata
    )
    res = await service.create_payout(principal, req, None)
    return str(res.body["id"])


async def start_on_rail(db: Database, app: Any, payment_id: str, rail: str, reason: str) -> str:
    """What the processing loop does for a backup rail: processing, attempt, prepare, submit."""
    impl = rails_of(app)[rail]
    async with db.transaction() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        if payment.status == "queued":
            await move_payment(session, payment, "processing", actor="test-loop")
        attempt = await start_attempt(session, payment, rail, {"reason": reason})
        pview = payment_view(payment)
        quote = await impl.quote(pview)
        assert quote.available, quote
        attempt.details = {**attempt.details, **await impl.prepare(pview, attempt_view(attempt))}
        await session.flush()
        aview = attempt_view(attempt)
    result = await impl.submit(pview, aview)
    async with db.transaction() as session:
        att = await session.get(Attempt, aview.id)
        assert att is not None
        await record_submit(session, app.state.settings, att, result)
    return aview.id


async def poll_once(db: Database, app: Any, attempt_id: str) -> str:
    async with db.transaction() as session:
        att = await session.get(Attempt, attempt_id)
        assert att is not None
        payment = await session.get(Payment, att.payment_id)
        assert payment is not None
        pview, aview, rail = payment_view(payment), attempt_view(att), att.rail
    result: PollResult = await rails_of(app)[rail].poll(pview, aview)
    # As the loop does: an invoice's payer is screened before the transaction.
    screened = await screen_payer(
        app.state.payments, pview.direction, pview.asset, pview.amount, rail, result.details
    )
    async with db.transaction() as session:
        att = await session.get(Attempt, attempt_id)
        assert att is not None
        return await record_poll(session, app.state.payments, att, result, screened=screened)


async def state(db: Database, payment_id: str) -> tuple[str, list[tuple[str, str]]]:
    async with db.transaction() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        rows = (
            await session.execute(
                select(Attempt).where(Attempt.payment_id == payment_id).order_by(Attempt.number)
            )
        ).scalars()
        return payment.status, [(a.rail, a.status) for a in rows]


async def books_ok(db: Database) -> dict[tuple[str, str], int]:
    async with db.transaction() as session:
        report = await check_books(session)
    assert report.ok, report
    return report.balances
