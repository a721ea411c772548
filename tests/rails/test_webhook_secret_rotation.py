"""Webhook secrets of the backup rails during a rotation (`tonrail keys rotate-secret`):
Stripe's signing secret and PayPal's webhook id as `new,old@<expiry>`: both verify until the
expiry, then only the new one does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from pydantic import SecretStr

from tests.rails.providers import PayPalServer
from tests.rails.test_paypal import webhook
from tonrail import clock
from tonrail.rails.backup import WebhookRejected
from tonrail.rails.registry import build_backup_rails
from tonrail.security.secret_rotation import rotated_value
from tonrail.settings import Settings

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def rails(tmp_path: Path, **values: Any) -> Any:
    s = Settings(_env_file=None, data_dir=tmp_path, environment="test", **values)  # type: ignore[call-arg]
    return build_backup_rails(s)


async def test_stripe_accepts_the_old_secret_until_its_expiry(tmp_path: Path) -> None:
    now = [T0]
    clock.set_clock(lambda: now[0])
    value = rotated_value("whsec_old", "whsec_new", T0, timedelta(hours=1))
    rail = rails(
        tmp_path,
        backup_rails="stripe",
        stripe_secret_key=SecretStr("sk_test_x"),
        stripe_webhook_secret=SecretStr(value),
    )["stripe"]
    event = json.dumps({"id": "evt_1", "type": "customer.created", "data": {"object": {}}})

    def signed(secret: str) -> dict[str, str]:
        ts = int(now[0].timestamp())
        return {
            "stripe-signature": stripe.WebhookSignature.generate_signature_header(event, secret, ts)
        }

    for secret in ("whsec_new", "whsec_old"):
        assert (await rail.verify_webhook(event.encode(), signed(secret))).external_id == "evt_1"
    now[0] = T0 + timedelta(hours=1)
    assert (await rail.verify_webhook(event.encode(), signed("whsec_new"))).external_id
    with pytest.raises(WebhookRejected):
        await rail.verify_webhook(event.encode(), signed("whsec_old"))


async def test_paypal_accepts_the_old_webhook_id_until_its_expiry(
    tmp_path: Path, paypal: tuple[PayPalServer, str]
) -> None:
    server, base = paypal
    # The test PayPal's signing certificate is valid from a day before the real now, so this
    # clock starts at the real now (a fixed date fell outside it a day after it was written).
    t0 = datetime.now(UTC).replace(microsecond=0)
    now = [t0]
    clock.set_clock(lambda: now[0])
    rail = rails(
        tmp_path,
        backup_rails="paypal",
        paypal_client_id=server.client_id,
        paypal_client_secret=SecretStr(server.client_secret),
        paypal_api_base=base,
        paypal_verify_mode="certificate",
        paypal_cert_url_prefixes=f"{base}/v1/notifications/certs/",
        paypal_webhook_id=rotated_value("WH-OLD", "WH-NEW", t0, timedelta(hours=1)),
    )["paypal"]
    body, headers = webhook("WH-C1", "CHECKOUT.ORDER.APPROVED", {"id": "ORDER-1"})
    headers["PAYPAL-CERT-URL"] = f"{base}/v1/notifications/certs/CERT-360caa42"

    def signed(webhook_id: str) -> dict[str, str]:
        sig = server.sign_webhook(
            headers["PAYPAL-TRANSMISSION-ID"], headers["PAYPAL-TRANSMISSION-TIME"], webhook_id, body
        )
        return {**headers, "PAYPAL-TRANSMISSION-SIG": sig}

    for webhook_id in ("WH-NEW", "WH-OLD"):
        assert (await rail.verify_webhook(body, signed(webhook_id))).external_id == "WH-C1"
    with pytest.raises(WebhookRejected):
        await rail.verify_webhook(body, signed("WH-OTHER"))
    now[0] = t0 + timedelta(hours=1)
    assert (await rail.verify_webhook(body, signed("WH-NEW"))).external_id == "WH-C1"
    with pytest.raises(WebhookRejected):
        await rail.verify_webhook(body, signed("WH-OLD"))
