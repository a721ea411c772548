"""The PayPal rail over its REST API (httpx): Orders v2 in, Payouts out.

OAuth2 client credentials with the token cached until shortly before it expires, and
fetched again once on a 401. Every write carries `PayPal-Request-Id` derived from the
attempt's idempotency key, so a repeat after a timeout returns the original result.
Incoming: create order -> customer approves at the returned URL -> we capture (on the
webhook or the next poll). Webhooks are verified with PayPal's verify-webhook-signature
API, or offline with PayPal's certificate and the CRC32 of the raw body
(PAYPAL_VERIFY_MODE=certificate).
"""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tonrail import clock
from tonrail.money import format_minor, parse_minor
from tonrail.rails.backup import ProviderEventIn, RailPricing, WebhookRejected
from tonrail.rails.base import (
    PAYER,
    PAYPAL_REFUND_OF,
    AttemptView,
    PaymentView,
    PollResult,
    Quote,
    SubmitResult,
    payer_of,
)
from tonrail.rails.pricing import FeeSchedule, RateFeed, fee_for
from tonrail.settings import Settings, active_values
from tonrail.states import AttemptStatus, PollStatus

log = structlog.get_logger(__name__)
TOKEN_MARGIN = timedelta(seconds=60)
VERIFY_HEADERS = {
    "auth_algo": "paypal-auth-algo",
    "cert_url": "paypal-cert-url",
    "transmission_id": "paypal-transmission-id",
    "transmission_sig": "paypal-transmission-sig",
    "transmission_time": "paypal-transmission-time",
}


class PayPalError(Exception):
    """A PayPal answer we could not use; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, name: str, message: str):
        super().__init__(f"{status} {name}: {message}")
        self.status = status
        self.name = name


@dataclass
class _Token:
    value: str
    expires_at: datetime


class PayPalRail:
    """`tonrail.rails.base.Rail` on PayPal."""

    name = "paypal"

    def __init__(self, settings: Settings, rates: RateFeed, http: httpx.AsyncClient | None = None):
        self.settings = settings
        self.http = http or httpx.AsyncClient(
            base_url=settings.paypal_api_base.rstrip("/"),
            timeout=settings.provider_timeout_seconds,
        )
        self.pricing = RailPricing(
            rail="paypal",
            currency=settings.paypal_currency.upper(),
            schedule=FeeSchedule(
                settings.paypal_fee_bps,
                settings.paypal_fee_fixed,
                settings.paypal_max_amount,
                settings.paypal_international_fee_bps,
            ),
            rates=rates,
            eta_in_seconds=300,
            eta_out_seconds=1800,
        )
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0
        self._certs: dict[str, x509.Certificate] = {}

    # ---------------------------------------------------------------- protocol
    def _international(self, payment: PaymentView) -> bool:
        country = payment.metadata.get("paypal_country", self.settings.paypal_home_country)
        return country.upper() != self.settings.paypal_home_country.upper()

    async def quote(self, payment: PaymentView) -> Quote:
        """Fee (+0.5 % when `metadata.paypal_country` is abroad) and ETA; payouts need
        `metadata.paypal_receiver` (the payee's PayPal email)."""
        unsupported = None
        if (
            payment.direction == "out"
            and not payment.metadata.get(PAYPAL_REFUND_OF)
            and "@" not in payment.metadata.get("paypal_receiver", "")
        ):
            unsupported = "counterparty_unsupported"
        return self.pricing.quote(payment, unsupported, self._international(payment))

    async def prepare(self, payment: PaymentView, attempt: AttemptView) -> dict[str, Any]:
        """The exact PayPal request for this attempt, with the conversion it used."""
        conv = self.pricing.convert(payment)
        value = format_minor(conv.amount, conv.asset)
        details: dict[str, Any] = dict(conv.as_details())
        details["international"] = self._international(payment)
        if payment.direction == "in":
            details["mode"] = "order"
            details["request"] = {
                "intent": "CAPTURE",
                "purchase_units": [
                    {
                        "reference_id": payment.id,
                        "custom_id": attempt.id,
                        "invoice_id": payment.reference or payment.id,
                        "amount": {"currency_code": conv.asset, "value": value},
                    }
                ],
                "payment_source": {
                    "paypal": {
                        "experience_context": {
                            "return_url": self.settings.paypal_return_url,
                            "cancel_url": self.settings.paypal_cancel_url,
                            "user_action": "PAY_NOW",
                        }
                    }
                },
            }
        elif payment.metadata.get(PAYPAL_REFUND_OF):
            details["mode"] = "refund"
            details["capture_id"] = payment.metadata[PAYPAL_REFUND_OF]
            details["request"] = {
                "amount": {"currency_code": conv.asset, "value": value},
                "invoice_id": payment.id,
                "note_to_payer": f"Refund {payment.metadata.get('refund', payment.id)}",
            }
        else:
            details["mode"] = "payout"
            details["request"] = {
                "sender_batch_header": {
                    "sender_batch_id": attempt.idempotency_key,
                    "email_subject": "You have a payment",
                },
                "items": [
                    {
                        "recipient_type": "EMAIL",
                        "receiver": payment.metadata["paypal_receiver"],
                        "amount": {"currency": conv.asset, "value": value},
                        "sender_item_id": attempt.id,
                        "note": f"Payment {payment.id}",
                    }
                ],
            }
        return details

    async def submit(self, payment: PaymentView, attempt: AttemptView) -> SubmitResult:
        """Create the order or payout batch; repeatable thanks to PayPal-Request-Id."""
        try:
            ref, body = await self._create(attempt)
        except httpx.TransportError as exc:
            log.warning("paypal.submit_unknown", payment_id=payment.id, error=repr(exc))
            return SubmitResult(
                AttemptStatus.UNKNOWN, error_code="provider_unreachable", error_message=str(exc)
            )
        except PayPalError as exc:
            if exc.status >= 500 or exc.status in (401, 429):
                log.warning("paypal.submit_unknown", payment_id=payment.id, error=str(exc))
                return SubmitResult(
                    AttemptStatus.UNKNOWN,
                    error_code=f"paypal_{exc.status}",
                    error_message=str(exc)[:500],
                )
            log.warning("paypal.submit_refused", payment_id=payment.id, error=str(exc))
            return SubmitResult(
                AttemptStatus.FAILED,
                error_code=f"paypal_{exc.name.lower()}",
                error_message=str(exc)[:500],
            )
        details: dict[str, Any] = {}
        for link in body.get("links", []):
            if link.get("rel") in ("approve", "payer-action"):
                details["approve_url"] = link["href"]
        return SubmitResult(AttemptStatus.SUBMITTED, ref, details)

    async def poll(self, payment: PaymentView, attempt: AttemptView) -> PollResult:
        """PayPal's current view; an approved order is captured here (idempotently)."""
        ref = attempt.provider_ref
        if ref is None:
            ref, _ = await self._create(attempt)
        details: dict[str, Any] = {"provider_ref": ref}
        if attempt.details["mode"] == "order":
            return await self._poll_order(attempt, ref, details)
        if attempt.details["mode"] == "refund":
            refund = await self._call("GET", f"/v2/payments/refunds/{ref}")
            details["provider_status"] = refund["status"]
            if refund["status"] == "COMPLETED":
                # PayPal keeps (part of) the capture's fee; the refund itself costs nothing.
                return PollResult(PollStatus.CONFIRMED, 0, self.pricing.currency, details)
            if refund["status"] in ("FAILED", "CANCELLED"):
                return PollResult(
                    PollStatus.FAILED,
                    details=details,
                    error_code=f"paypal_refund_{refund['status'].lower()}",
                )
            return PollResult(PollStatus.PENDING, details=details)
        batch = await self._call("GET", f"/v1/payments/payouts/{ref}")
        header = batch["batch_header"]
        items = batch.get("items", [])
        item_status = items[0].get("transaction_status") if items else None
        details["provider_status"] = item_status or header.get("batch_status")
        if item_status == "SUCCESS":
            fee = self._paypal_amount(items[0].get("payout_item_fee"))
            if fee is None:
                fee = fee_for(
                    self.pricing.schedule,
                    int(attempt.details["rail_amount"]),
                    bool(attempt.details.get("international")),
                )
            return PollResult(PollStatus.CONFIRMED, fee, self.pricing.currency, details)
        if item_status in ("FAILED", "RETURNED", "BLOCKED", "REFUNDED", "REVERSED") or header.get(
            "batch_status"
        ) in ("DENIED", "CANCELED"):
            error = (items[0].get("errors") or {}).get("name") if items else None
            return PollResult(
                PollStatus.FAILED,
                details=details,
                error_code=f"paypal_{(error or item_status or header['batch_status']).lower()}",
            )
        return PollResult(PollStatus.PENDING, details=details)

    async def _poll_order(
        self, attempt: AttemptView, ref: str, details: dict[str, Any]
    ) -> PollResult:
        order = await self._call("GET", f"/v2/checkout/orders/{ref}")
        if order["status"] == "APPROVED":
            order = await self._call(
                "POST",
                f"/v2/checkout/orders/{ref}/capture",
                json={},
                request_id=f"{attempt.idempotency_key}:capture",
            )
        details["provider_status"] = order["status"]
        if order["status"] == "COMPLETED":
            capture = order["purchase_units"][0]["payments"]["captures"][0]
            details["capture_id"] = capture["id"]
            payer = order.get("payer") or {}
            name = payer.get("name") or {}
            details[PAYER] = payer_of(
                f"{name.get('given_name') or ''} {name.get('surname') or ''}",
                payer.get("email_address"),
            )
            if capture["status"] != "COMPLETED":
                return PollResult(PollStatus.PENDING, details=details)
            fee = self._paypal_amount(
                capture.get("seller_receivable_breakdown", {}).get("paypal_fee")
            )
            if fee is None:
                fee = fee_for(self.pricing.schedule, int(attempt.details["rail_amount"]))
            return PollResult(PollStatus.CONFIRMED, fee, self.pricing.currency, details)
        if order["status"] == "VOIDED":
            return PollResult(PollStatus.EXPIRED, details=details, error_code="paypal_order_voided")
        return PollResult(PollStatus.PENDING, details=details)

    # ---------------------------------------------------------------- webhooks
    async def verify_webhook(self, body: bytes, headers: dict[str, str]) -> ProviderEventIn:
        """Verify (PayPal's API or its certificate, per PAYPAL_VERIFY_MODE), then parse."""
        # Several during a rotation; a retired one until its `@expiry` (settings.rotating_values).
        webhook_ids = active_values(self.settings.paypal_webhook_id, clock.now())
        if not webhook_ids:
            raise WebhookRejected(
                "PAYPAL_WEBHOOK_ID is not configured", code="webhook_not_configured"
            )
        lowered = {k.lower(): v for k, v in headers.items()}
        missing = [h for h in VERIFY_HEADERS.values() if not lowered.get(h)]
        if missing:
            raise WebhookRejected(f"missing PayPal headers: {', '.join(missing)}")
        try:
            event = json.loads(body)
            event_id = str(event["id"])
            event_type = str(event["event_type"])
        except (ValueError, KeyError, TypeError):
            raise WebhookRejected(
                "the body is not a PayPal event", code="webhook_body_invalid"
            ) from None
        if self.settings.paypal_verify_mode == "certificate":
            await self._verify_with_certificate(body, lowered, webhook_ids)
        else:
            await self._verify_with_api(body, lowered, webhook_ids)
        return ProviderEventIn("paypal", event_id, event_type, _object_ref(event), event)

    async def _verify_with_api(
        self, body: bytes, headers: dict[str, str], webhook_ids: list[str]
    ) -> None:
        for webhook_id in webhook_ids:
            request = {k: headers[h] for k, h in VERIFY_HEADERS.items()}
            request["webhook_id"] = webhook_id
            # PayPal verifies the event exactly as it sent it: pass the raw JSON through.
            payload = json.dumps(request)[:-1] + ', "webhook_event": ' + body.decode() + "}"
            answer = await self._call(
                "POST", "/v1/notifications/verify-webhook-signature", content=payload.encode()
            )
            if answer.get("verification_status") == "SUCCESS":
                return
        raise WebhookRejected("PayPal did not verify the webhook signature")

    async def _verify_with_certificate(
        self, body: bytes, headers: dict[str, str], webhook_ids: list[str]
    ) -> None:
        """PayPal's offline method: RSA-SHA256 over
        `transmission_id|transmission_time|webhook_id|crc32(raw body)` with the certificate
        at PAYPAL-CERT-URL, which must be on a PayPal host (PAYPAL_CERT_URL_PREFIXES)."""
        if headers["paypal-auth-algo"] != "SHA256withRSA":
            raise WebhookRejected("unsupported PAYPAL-AUTH-ALGO")
        cert_url = headers["paypal-cert-url"]
        prefixes = [p.strip() for p in self.settings.paypal_cert_url_prefixes.split(",") if p]
        if not any(cert_url.startswith(p) for p in prefixes):
            raise WebhookRejected("PAYPAL-CERT-URL is not a PayPal certificate URL")
        cert = self._certs.get(cert_url)
        if cert is None:
            async with httpx.AsyncClient(timeout=self.settings.provider_timeout_seconds) as http:
                response = await http.get(cert_url)
            if response.status_code != 200:
                raise WebhookRejected("PayPal's signing certificate could not be fetched")
            cert = x509.load_pem_x509_certificate(response.content)
            self._certs[cert_url] = cert
        now = clock.now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise WebhookRejected("PayPal's signing certificate is not valid now")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookRejected("PayPal's signing certificate is not an RSA certificate")
        try:
            signature = base64.b64decode(headers["paypal-transmission-sig"], validate=True)
        except ValueError:
            raise WebhookRejected("the PayPal webhook signature does not verify") from None
        for webhook_id in webhook_ids:
            message = "|".join(
                (
                    headers["paypal-transmission-id"],
                    headers["paypal-transmission-time"],
                    webhook_id,
                    str(zlib.crc32(body)),
                )
            ).encode()
            try:
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
                return
            except InvalidSignature:
                continue
        raise WebhookRejected("the PayPal webhook signature does not verify")

    # ---------------------------------------------------------------- HTTP
    async def _create(self, attempt: AttemptView) -> tuple[str, dict[str, Any]]:
        request = attempt.details["request"]
        if attempt.details["mode"] == "order":
            body = await self._call(
                "POST", "/v2/checkout/orders", json=request, request_id=attempt.idempotency_key
            )
            return str(body["id"]), body
        if attempt.details["mode"] == "refund":
            capture = attempt.details["capture_id"]
            body = await self._call(
                "POST",
                f"/v2/payments/captures/{capture}/refund",
                json=request,
                request_id=attempt.idempotency_key,
            )
            return str(body["id"]), body
        body = await self._call(
            "POST", "/v1/payments/payouts", json=request, request_id=attempt.idempotency_key
        )
        return str(body["batch_header"]["payout_batch_id"]), body

    async def _access_token(self, force: bool = False) -> str:
        async with self._token_lock:
            now = clock.now()
            if not force and self._token is not None and now < self._token.expires_at:
                return self._token.value
            response = await self.http.post(
                "/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(
                    self.settings.paypal_client_id,
                    self.settings.paypal_client_secret.get_secret_value(),
                ),
                headers={"Accept": "application/json"},
            )
            self.token_fetches += 1
            if response.status_code != 200:
                raise PayPalError(response.status_code, "AUTHENTICATION_FAILURE", "token refused")
            body = response.json()
            expires = now + timedelta(seconds=int(body["expires_in"])) - TOKEN_MARGIN
            self._token = _Token(str(body["access_token"]), expires)
            return self._token.value

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        content: bytes | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """One API call with the cached token; a 401 refreshes the token and retries once."""
        for attempt in (1, 2):
            token = await self._access_token(force=attempt == 2)
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Prefer": "return=representation",
            }
            if request_id is not None:
                headers["PayPal-Request-Id"] = request_id
            response = await self.http.request(
                method, path, json=json, content=content, headers=headers
            )
            if response.status_code == 401 and attempt == 1:
                continue
            if response.status_code >= 400:
                try:
                    err = response.json()
                except ValueError:
                    err = {}
                raise PayPalError(
                    response.status_code,
                    str(err.get("name") or "HTTP_ERROR"),
                    str(err.get("message") or response.reason_phrase),
                )
            result: dict[str, Any] = response.json()
            return result
        raise AssertionError("unreachable")

    def _paypal_amount(self, money: dict[str, Any] | None) -> int | None:
        if not money:
            return None
        currency = money.get("currency_code") or money.get("currency")
        if currency != self.pricing.currency:
            return None
        return parse_minor(str(money["value"]), self.pricing.currency)


def _object_ref(event: dict[str, Any]) -> str | None:
    """The PayPal object our attempt refers to: the order id or the payout batch id."""
    resource = event.get("resource") or {}
    type_ = str(event.get("event_type", ""))
    if type_.startswith("CHECKOUT.ORDER."):
        return resource.get("id")
    if type_.startswith("PAYMENT.CAPTURE."):
        related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
        return related.get("order_id")
    if type_.startswith("PAYMENT.PAYOUTSBATCH."):
        return (resource.get("batch_header") or {}).get("payout_batch_id")
    if type_.startswith("PAYMENT.PAYOUTS-ITEM."):
        return resource.get("payout_batch_id")
    return None
