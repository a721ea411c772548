"""The Webhooks page over HTTP, on SQLite and PostgreSQL: endpoints, deliveries with their
attempts (answers escaped), and Resend: operators only, CSRF-checked, audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import DEST
from tests.notify.conftest import Receiver, receiver, run_rounds, subscribe
from tonrail.db import Database
from tonrail.notify.models import WebhookDelivery
from tonrail.security import audit_log
from tonrail.security.audit_log import AuditEntry
from tonrail.settings import Settings

__all__ = ["receiver"]  # the fixture, used by name
HX = {"HX-Request": "true"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allowed_hosts": "127.0.0.1"})


@pytest.fixture
async def failing_delivery(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    receiver: Receiver,
) -> str:
    """A delivery whose one attempt got a 500 with a hostile body; returns its id."""
    await subscribe(client, auth, receiver.url, ["payout.*"])
    r = await client.post(
        "/v1/payouts", json={"amount": "2", "asset": "USDT", "destination": DEST}, headers=auth
    )
    assert r.status_code == 201
    receiver.answers = [(500, "<script>alert('answer')</script>", 0.0)]
    await run_rounds(db, settings)
    async with db.transaction() as session:
        (delivery,) = (await session.execute(select(WebhookDelivery))).scalars().all()
    return delivery.id


async def test_the_page_shows_endpoints_deliveries_and_attempts(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    failing_delivery: str,
) -> None:
    await signed_in("viewer")
    page = await client.get("/dashboard/webhooks")
    assert page.status_code == 200
    html = page.text
    assert 'href="/dashboard/webhooks" class="active"' in html
    assert 'data-status="enabled"' in html and f'data-delivery="{failing_delivery}"' in html
    assert "payout.created" in html and 'data-attempt="1"' in html
    assert "<script>alert(" not in html and "&lt;script&gt;alert(" in html
    assert 'data-action="resend"' not in html  # a viewer may not resend
    failed = await client.get("/dashboard/webhooks?status=failed")
    assert f'data-delivery="{failing_delivery}"' not in failed.text
    bad = await client.get("/dashboard/webhooks?status=lost")
    assert bad.status_code == 400 and "status must be one of" in bad.text


async def test_an_operator_resends_and_it_is_audited(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    signed_in: Callable[[str], Awaitable[str]],
    failing_delivery: str,
    receiver: Receiver,
) -> None:
    csrf = await signed_in("operator")
    page = await client.get("/dashboard/webhooks")
    assert f'data-action="resend" data-delivery="{failing_delivery}"' in page.text
    assert "hx-confirm=" in page.text
    path = f"/dashboard/webhooks/deliveries/{failing_delivery}/resend"

    forged = await client.post(path, headers=HX)
    assert forged.status_code == 403
    r = await client.post(path, headers={**HX, "X-CSRF-Token": csrf})
    assert r.status_code == 200 and 'data-code="resent"' in r.text
    assert r.headers["HX-Trigger"] == "webhooks-changed"
    await run_rounds(db, settings)  # due now, not after the 5 s retry wait
    assert len(receiver.got) == 2

    async with db.transaction() as session:
        delivery = await session.get(WebhookDelivery, failing_delivery)
        entries = (
            await session.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.subject))
        ).all()
        chain = await audit_log.verify(session)
    assert delivery is not None and delivery.status == "delivered"
    assert ("admin:operator", "webhook.resend", failing_delivery) in [tuple(e) for e in entries]
    assert chain.ok
    listed = await client.get("/dashboard/webhooks/deliveries", headers=HX)
    assert "resend by admin:operator" in listed.text

    missing = await client.post(
        "/dashboard/webhooks/deliveries/whd_nope/resend", headers={**HX, "X-CSRF-Token": csrf}
    )
    assert missing.status_code == 404 and 'data-code="not_found"' in missing.text
    plain = await client.post(path, data={"csrf_token": csrf})  # without JavaScript
    assert plain.status_code == 303 and plain.headers["location"] == "/dashboard/webhooks"


async def test_viewers_may_not_resend(
    client: httpx.AsyncClient,
    db: Database,
    signed_in: Callable[[str], Awaitable[str]],
    failing_delivery: str,
) -> None:
    csrf = await signed_in("viewer")
    r = await client.post(
        f"/dashboard/webhooks/deliveries/{failing_delivery}/resend",
        headers={**HX, "X-CSRF-Token": csrf},
    )
    assert r.status_code == 403
    async with db.transaction() as session:
        delivery = await session.get(WebhookDelivery, failing_delivery)
        assert delivery is not None and delivery.resend_by is None
