"""Paying an invoice on a backup rail: the customer picks Stripe, PayPal or bank transfer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from tonrail.db import Database
from tonrail.errors import Conflict, InvalidRequest, NotFound
from tonrail.payments.attempts import attempt_view, payment_view
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import AttemptStatus, PaymentStatus
from tonrail.payments.transitions import live_attempt, start_attempt
from tonrail.processing.outcomes import record_submit
from tonrail.rails.registry import BackupRail
from tonrail.security.api_keys import Principal
from tonrail.settings import Settings

PUBLIC_DETAILS = (
    "client_secret",
    "publishable_key",
    "checkout_url",
    "approve_url",
    "bank_instructions",
)


class BackupCheckout:
    """Starts (or returns) the attempt that lets a customer pay an invoice on a backup rail."""

    def __init__(self, db: Database, settings: Settings, rails: Mapping[str, BackupRail]):
        self.db = db
        self.settings = settings
        self.rails = rails

    async def checkout(
        self, principal: Principal, invoice_id: str, rail_name: str
    ) -> dict[str, Any]:
        """Create the provider object for the invoice; repeating the call returns the same one."""
        return await self.checkout_for(principal.account_id, invoice_id, rail_name)

    async def checkout_for(
        self, account_id: str | None, invoice_id: str, rail_name: str
    ) -> dict[str, Any]:
        """`checkout` for the invoice of `account_id`, or (None: the hosted checkout page,
        where the customer holds the invoice's id) of whatever account it belongs to."""
        rail = self.rails.get(rail_name)
        if rail is None:
            raise InvalidRequest(
                f"the {rail_name} rail is not available", param="rail", code="rail_unavailable"
            )
        async with self.db.transaction() as session:
            query = select(Payment).where(Payment.id == invoice_id)
            if account_id is not None:
                query = query.where(Payment.account_id == account_id)
            payment = (await session.execute(query)).scalar_one_or_none()
            if payment is None or payment.direction != "in":
                raise NotFound(f"no invoice {invoice_id!r}", param="id")
            if payment.status != PaymentStatus.AWAITING_PAYMENT:
                raise Conflict(f"invoice is {payment.status}", code="invoice_not_payable")
            live = await live_attempt(session, payment.id)
            if (
                live is not None
                and live.rail == rail_name
                and live.status == AttemptStatus.SUBMITTED
            ):
                return self._body(payment.id, live)
            if live is not None:
                raise Conflict(
                    f"invoice has a {live.status} {live.rail} attempt; resolve it first",
                    code="attempt_live",
                )
            pview = payment_view(payment)
            quote = await rail.quote(pview)
            if not quote.available:
                raise InvalidRequest(
                    f"the {rail_name} rail cannot take this invoice: {quote.reason}",
                    param="rail",
                    code="rail_unavailable",
                )
            attempt = await start_attempt(
                session, payment, rail_name, {"reason": "customer_choice"}
            )
            prepared = await rail.prepare(pview, attempt_view(attempt))
            attempt.details = {**attempt.details, **prepared, "quoted_fee": quote.fee}
            await session.flush()
            aview = attempt_view(attempt)
        result = await rail.submit(pview, aview)
        async with self.db.transaction() as session:
            locked = await session.get(Attempt, aview.id, with_for_update=True)
            assert locked is not None
            await record_submit(session, self.settings, locked, result)
            return self._body(pview.id, locked)

    async def started(self, invoice_id: str) -> dict[str, Any] | None:
        """The invoice's submitted backup-rail checkout (as `checkout` returned it), if any:
        what the hosted page shows again on a reload (bank details, the provider's link)."""
        async with self.db.transaction() as session:
            live = await live_attempt(session, invoice_id)
            if live is None or live.rail not in self.rails:
                return None
            if live.status != AttemptStatus.SUBMITTED:
                return None
            return self._body(invoice_id, live)

    @staticmethod
    def _body(payment_id: str, attempt: Attempt) -> dict[str, Any]:
        details = attempt.details or {}
        return {
            "object": "checkout",
            "invoice": payment_id,
            "rail": attempt.rail,
            "attempt": attempt.id,
            "status": attempt.status,
            "provider_ref": attempt.provider_ref,
            "amount": details.get("rail_amount"),
            "currency": details.get("rail_asset"),
            "error_code": attempt.error_code,
            **{k: details[k] for k in PUBLIC_DETAILS if k in details},
        }
