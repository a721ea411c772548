"""The Stripe rail, with the official SDK (async, httpx) against a configurable base URL.

Incoming: a PaymentIntent (its client secret goes to the merchant's checkout page) or a
Checkout Session (its URL is where the customer is redirected; once complete, its
`payment_intent` is kept on the attempt for refunds). Outgoing: a Connect
transfer to the payee's connected account (`metadata.stripe_account`), or a payout on
that account; a refund of an invoice paid by card is a Refund of its PaymentIntent
(`metadata.stripe_refund_of`). Every create carries Idempotency-Key `{payment_id}:{attempt}`.
"""

from __future__ import annotations

import json
from typing import Any, cast

import stripe
import structlog

from tonrail import clock
from tonrail.errors import ServiceUnavailable
from tonrail.rails.backup import ProviderEventIn, RailPricing
from tonrail.rails.base import (
    PAYER,
    STRIPE_REFUND_OF,
    AttemptView,
    PaymentView,
    PollResult,
    Quote,
    SubmitResult,
    payer_of,
)
from tonrail.rails.pricing import FeeSchedule, RateFeed, fee_for
from tonrail.rails.stripe.webhook import parse_event, verify_signature
from tonrail.settings import Settings, active_values
from tonrail.states import AttemptStatus, PollStatus

log = structlog.get_logger(__name__)


def stripe_client(settings: Settings) -> stripe.StripeClient:
    base = settings.stripe_api_base.rstrip("/")
    return stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        base_addresses={"api": base, "connect": base, "files": base},
        http_client=stripe.HTTPXClient(timeout=settings.provider_timeout_seconds),
        max_network_retries=0,  # retries are new polls/submits with the same idempotency key
    )


class StripeRail:
    """`tonrail.rails.base.Rail` on Stripe."""

    name = "stripe"

    def __init__(self, settings: Settings, rates: RateFeed, client: stripe.StripeClient):
        self.settings = settings
        self.client = client
        self.pricing = RailPricing(
            rail="stripe",
            currency=settings.stripe_currency.upper(),
            schedule=FeeSchedule(
                settings.stripe_fee_bps, settings.stripe_fee_fixed, settings.stripe_max_amount
            ),
            rates=rates,
            eta_in_seconds=60,
            eta_out_seconds=60 if settings.stripe_payout_mode == "transfer" else 2 * 86_400,
        )

    # ---------------------------------------------------------------- protocol
    async def quote(self, payment: PaymentView) -> Quote:
        """Fee and ETA; payouts need the payee's connected account in `metadata.stripe_account`."""
        unsupported = None
        refund = payment.metadata.get(STRIPE_REFUND_OF, "").startswith("pi_")
        if (
            payment.direction == "out"
            and not refund
            and not payment.metadata.get("stripe_account", "").startswith("acct_")
        ):
            unsupported = "counterparty_unsupported"
        return self.pricing.quote(payment, unsupported)

    async def prepare(self, payment: PaymentView, attempt: AttemptView) -> dict[str, Any]:
        """The exact Stripe request for this attempt, with the conversion it used."""
        conv = self.pricing.convert(payment)
        currency = conv.asset.lower()
        meta = {"payment_id": payment.id, "attempt_id": attempt.id}
        details: dict[str, Any] = dict(conv.as_details())
        if payment.direction == "in" and self.settings.stripe_incoming_mode == "payment_intent":
            details["mode"] = "payment_intent"
            details["request"] = {
                "amount": conv.amount,
                "currency": currency,
                "metadata": meta,
                "payment_method_types": ["card"],
            }
        elif payment.direction == "out" and payment.metadata.get(STRIPE_REFUND_OF):
            details["mode"] = "refund"
            details["request"] = {
                "payment_intent": payment.metadata[STRIPE_REFUND_OF],
                "amount": conv.amount,
                "metadata": meta,
            }
        elif payment.direction == "in":
            details["mode"] = "checkout_session"
            details["request"] = {
                "mode": "payment",
                "client_reference_id": payment.id,
                "success_url": self.settings.stripe_checkout_success_url,
                "cancel_url": self.settings.stripe_checkout_cancel_url,
                "line_items": [
                    {
                        "price_data": {
                            "currency": currency,
                            "unit_amount": conv.amount,
                            "product_data": {"name": f"Invoice {payment.reference or payment.id}"},
                        },
                        "quantity": 1,
                    }
                ],
                "metadata": meta,
            }
        elif self.settings.stripe_payout_mode == "transfer":
            details["mode"] = "transfer"
            details["request"] = {
                "amount": conv.amount,
                "currency": currency,
                "destination": payment.metadata["stripe_account"],
                "transfer_group": payment.id,
                "metadata": meta,
            }
        else:
            details["mode"] = "payout"
            details["stripe_account"] = payment.metadata["stripe_account"]
            details["request"] = {"amount": conv.amount, "currency": currency, "metadata": meta}
        return details

    async def submit(self, payment: PaymentView, attempt: AttemptView) -> SubmitResult:
        """Create the Stripe object; a repeat returns the same object (Idempotency-Key)."""
        try:
            obj = await self._create(attempt)
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
            log.warning("stripe.submit_unknown", payment_id=payment.id, error=type(exc).__name__)
            return SubmitResult(
                AttemptStatus.UNKNOWN,
                error_code="provider_unreachable",
                error_message=str(exc)[:500],
            )
        except stripe.StripeError as exc:
            log.warning("stripe.submit_refused", payment_id=payment.id, error=type(exc).__name__)
            return SubmitResult(
                AttemptStatus.FAILED,
                error_code=f"stripe_{exc.code or type(exc).__name__}",
                error_message=(exc.user_message or str(exc))[:500],
            )
        details = self._public_details(obj)
        if "client_secret" in details and self.settings.stripe_publishable_key:
            # Stripe.js on the merchant's page needs both to confirm the payment.
            details["publishable_key"] = self.settings.stripe_publishable_key
        return SubmitResult(AttemptStatus.SUBMITTED, str(obj["id"]), details)

    async def poll(self, payment: PaymentView, attempt: AttemptView) -> PollResult:
        """Stripe's current view: PaymentIntent, Checkout Session, Transfer or Payout status."""
        mode = attempt.details["mode"]
        ref = attempt.provider_ref
        if ref is None:
            # We never learned the id (crash or timeout): the same idempotent create returns it.
            obj = await self._create(attempt)
        else:
            obj = await self._retrieve(mode, ref, attempt.details.get("stripe_account"))
        amount = int(attempt.details["rail_amount"])
        fee = fee_for(self.pricing.schedule, amount)
        currency = self.pricing.currency
        details: dict[str, Any] = {
            "provider_ref": str(obj["id"]),
            "provider_status": str(obj.get("status")),
        }
        if mode == "payment_intent":
            status = obj["status"]
            if status == "succeeded":
                details[PAYER] = _card_payer(obj.get("payment_method"))
                return PollResult(PollStatus.CONFIRMED, fee, currency, details)
            if status == "canceled":
                return PollResult(PollStatus.EXPIRED, details=details, error_code="stripe_canceled")
            return PollResult(PollStatus.PENDING, details=details)
        if mode == "checkout_session":
            intent = _intent_id(obj.get("payment_intent"))
            if intent is not None:
                details["payment_intent"] = intent  # what a refund of this invoice refunds
            if obj.get("status") == "complete" and obj.get("payment_status") in (
                "paid",
                "no_payment_required",
            ):
                customer = obj.get("customer_details") or {}
                details[PAYER] = payer_of(customer.get("name"), customer.get("email"))
                return PollResult(PollStatus.CONFIRMED, fee, currency, details)
            if obj.get("status") == "expired":
                return PollResult(
                    PollStatus.EXPIRED, details=details, error_code="checkout_expired"
                )
            return PollResult(PollStatus.PENDING, details=details)
        if mode == "refund":
            # Stripe keeps the fee of the original charge; a refund costs nothing more.
            if obj.get("status") == "succeeded":
                return PollResult(PollStatus.CONFIRMED, 0, currency, details)
            if obj.get("status") in ("failed", "canceled"):
                return PollResult(
                    PollStatus.FAILED,
                    details=details,
                    error_code=f"refund_{obj.get('failure_reason') or obj['status']}",
                )
            return PollResult(PollStatus.PENDING, details=details)
        if mode == "transfer":
            if obj.get("reversed") or int(obj.get("amount_reversed") or 0) > 0:
                return PollResult(
                    PollStatus.FAILED, details=details, error_code="transfer_reversed"
                )
            return PollResult(PollStatus.CONFIRMED, fee, currency, details)
        status = obj["status"]
        if status == "paid":
            return PollResult(PollStatus.CONFIRMED, fee, currency, details)
        if status in ("failed", "canceled"):
            return PollResult(
                PollStatus.FAILED,
                details=details,
                error_code=f"payout_{obj.get('failure_code') or status}",
                error_message=obj.get("failure_message"),
            )
        return PollResult(PollStatus.PENDING, details=details)

    async def session_payment_intent(self, session_id: str) -> str | None:
        """The PaymentIntent that paid a Checkout Session, as Stripe reports it now (None:
        Stripe has none for it); for sessions confirmed before attempts recorded it."""
        try:
            obj = await self._retrieve("checkout_session", session_id, None)
        except stripe.InvalidRequestError:
            log.warning("stripe.session_unknown", session=session_id)
            return None
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
            log.warning("stripe.session_unreachable", session=session_id, error=repr(exc))
            raise ServiceUnavailable(
                f"Stripe could not be reached to read Checkout Session {session_id}; try again",
                code="provider_unavailable",
            ) from exc
        return _intent_id(obj.get("payment_intent"))

    # ---------------------------------------------------------------- webhooks
    async def verify_webhook(self, body: bytes, headers: dict[str, str]) -> ProviderEventIn:
        """Verify `Stripe-Signature` with every configured secret (rotation), then parse."""
        # Several during a rotation; a retired one until its `@expiry` (settings.rotating_values).
        secrets = active_values(self.settings.stripe_webhook_secret.get_secret_value(), clock.now())
        verify_signature(
            body,
            headers.get("stripe-signature"),
            secrets,
            int(clock.now().timestamp()),
            self.settings.stripe_webhook_tolerance_seconds,
        )
        return parse_event(body)

    async def recent_events(self, limit: int = 100) -> list[ProviderEventIn]:
        """Stripe's latest events from `GET /v1/events`, to catch up on missed webhooks
        (already authenticated: they come from the API with our secret key)."""
        page = await self.client.v1.events.list_async({"limit": limit})
        return [parse_event(json.dumps(e.to_dict()).encode()) for e in page.data]

    # ---------------------------------------------------------------- Stripe calls
    async def _create(self, attempt: AttemptView) -> dict[str, Any]:
        mode = attempt.details["mode"]
        params = attempt.details["request"]
        options: dict[str, Any] = {"idempotency_key": attempt.idempotency_key}
        v1 = self.client.v1
        obj: Any
        if mode == "payment_intent":
            obj = await v1.payment_intents.create_async(params, options)  # type: ignore[arg-type]
        elif mode == "checkout_session":
            obj = await v1.checkout.sessions.create_async(params, options)  # type: ignore[arg-type]
        elif mode == "transfer":
            obj = await v1.transfers.create_async(params, options)  # type: ignore[arg-type]
        elif mode == "refund":
            obj = await v1.refunds.create_async(params, options)  # type: ignore[arg-type]
        else:
            options["stripe_account"] = attempt.details["stripe_account"]
            obj = await v1.payouts.create_async(params, options)  # type: ignore[arg-type]
        return cast(dict[str, Any], obj.to_dict())

    async def _retrieve(self, mode: str, ref: str, account: str | None) -> dict[str, Any]:
        v1 = self.client.v1
        obj: Any
        if mode == "payment_intent":
            # The card's billing details (who paid) are screened before the invoice is credited.
            obj = await v1.payment_intents.retrieve_async(ref, {"expand": ["payment_method"]})
        elif mode == "checkout_session":
            obj = await v1.checkout.sessions.retrieve_async(ref)
        elif mode == "transfer":
            obj = await v1.transfers.retrieve_async(ref)
        elif mode == "refund":
            obj = await v1.refunds.retrieve_async(ref)
        else:
            obj = await v1.payouts.retrieve_async(ref, options={"stripe_account": account})
        return cast(dict[str, Any], obj.to_dict())

    @staticmethod
    def _public_details(obj: dict[str, Any]) -> dict[str, Any]:
        """What the API returns to the merchant: client secret or checkout URL."""
        out: dict[str, Any] = {}
        if obj.get("client_secret"):
            out["client_secret"] = obj["client_secret"]
        if obj.get("url"):
            out["checkout_url"] = obj["url"]
        return out


def _card_payer(method: Any) -> dict[str, str]:
    """Who paid with the card: the expanded PaymentMethod's billing details."""
    billing = (method.get("billing_details") or {}) if isinstance(method, dict) else {}
    return payer_of(billing.get("name"), billing.get("email"))


def _intent_id(value: Any) -> str | None:
    """A session's `payment_intent`: an id, or the object itself when expanded."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value.startswith("pi_") else None
