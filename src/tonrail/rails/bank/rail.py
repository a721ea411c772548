"""The bank transfer rail. Nothing is pushed by a bank: payment files go out by hand (an
operator uploads the pain.001 file) and settlement comes back in a CAMT.053 statement
(`tonrail bank import-statement`). `processing` for 1-3 business days is normal."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from tonrail.errors import InvalidRequest
from tonrail.money import format_minor
from tonrail.rails.backup import ProviderEventIn, RailPricing
from tonrail.rails.base import AttemptView, PaymentView, PollResult, Quote, SubmitResult
from tonrail.rails.pricing import FeeSchedule, RateFeed
from tonrail.settings import Settings
from tonrail.states import AttemptStatus, PollStatus


def valid_iban(text: str) -> str | None:
    """The IBAN in its compact form, or None when it is not a valid IBAN."""
    try:
        return str(IBAN(text).compact)
    except (SchwiftyException, ValueError):
        return None


def valid_bic(text: str) -> str | None:
    try:
        return str(BIC(text).compact)
    except (SchwiftyException, ValueError):
        return None


def settles_by(start: datetime, business_days: int) -> date:
    """The date by which a transfer started at `start` should settle (Mon-Fri days)."""
    day = start.date()
    left = business_days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


class BankRail:
    """`tonrail.rails.base.Rail` for bank transfers (ISO 20022)."""

    name = "bank"

    def __init__(self, settings: Settings, rates: RateFeed):
        self.settings = settings
        iban = valid_iban(settings.bank_account_iban)
        if iban is None:
            raise ValueError("BANK_ACCOUNT_IBAN is not a valid IBAN")
        if settings.bank_account_bic and valid_bic(settings.bank_account_bic) is None:
            raise ValueError("BANK_ACCOUNT_BIC is not a valid BIC")
        self.iban = iban
        self.pricing = RailPricing(
            rail="bank",
            currency=settings.bank_currency.upper(),
            schedule=FeeSchedule(0, settings.bank_fee_fixed, settings.bank_max_amount),
            rates=rates,
            eta_in_seconds=settings.bank_settlement_business_days * 86_400,
            eta_out_seconds=settings.bank_settlement_business_days * 86_400,
        )

    async def quote(self, payment: PaymentView) -> Quote:
        """$5 flat, 1-3 business days; payouts need a valid `metadata.bank_iban` and
        `metadata.bank_name` (optional `metadata.bank_bic`)."""
        unsupported = None
        if payment.direction == "out":
            if valid_iban(payment.metadata.get("bank_iban", "")) is None:
                unsupported = "counterparty_iban_invalid"
            elif not payment.metadata.get("bank_name", "").strip():
                unsupported = "counterparty_name_missing"
            elif (
                payment.metadata.get("bank_bic") and valid_bic(payment.metadata["bank_bic"]) is None
            ):
                unsupported = "counterparty_bic_invalid"
        return self.pricing.quote(payment, unsupported)

    async def prepare(self, payment: PaymentView, attempt: AttemptView) -> dict[str, Any]:
        """Instructions for the payer (in) or the credit transfer for the next file (out)."""
        conv = self.pricing.convert(payment)
        details: dict[str, Any] = dict(conv.as_details())
        if payment.direction == "in":
            details["mode"] = "instructions"
            details["reference"] = payment.reference or attempt.id
            details["bank_instructions"] = {
                "account_name": self.settings.bank_account_name,
                "iban": self.iban,
                "bic": self.settings.bank_account_bic or None,
                "amount": format_minor(conv.amount, conv.asset),
                "currency": conv.asset,
                "reference": details["reference"],
            }
        else:
            iban = valid_iban(payment.metadata.get("bank_iban", ""))
            if iban is None:
                raise InvalidRequest("the payee's IBAN is not valid", param="metadata.bank_iban")
            details["mode"] = "credit_transfer"
            details["reference"] = attempt.id  # EndToEndId: max 35 characters
            details["creditor"] = {
                "name": payment.metadata["bank_name"],
                "iban": iban,
                "bic": payment.metadata.get("bank_bic") or None,
            }
            details["exported_file"] = None
        return details

    async def submit(self, payment: PaymentView, attempt: AttemptView) -> SubmitResult:
        """Incoming: the instructions are live. Outgoing: queued for the next pain.001 file."""
        ref = str(attempt.details["reference"])
        return SubmitResult(AttemptStatus.SUBMITTED, ref)

    async def poll(self, payment: PaymentView, attempt: AttemptView) -> PollResult:
        """Only a statement settles a transfer: until then the attempt is pending, which is
        normal for `BANK_SETTLEMENT_BUSINESS_DAYS` business days."""
        return PollResult(PollStatus.PENDING, details={"provider_status": "awaiting_statement"})

    async def verify_webhook(self, body: bytes, headers: dict[str, str]) -> ProviderEventIn:
        raise InvalidRequest("banks send statements, not webhooks", code="rail_has_no_webhooks")
