"""What the backup rails (Stripe, PayPal, bank) share: webhook events, errors, quoting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tonrail.errors import TonrailError
from tonrail.rails.base import PaymentView, Quote, RailName
from tonrail.rails.pricing import Conversion, FeeSchedule, RateFeed, convert_for_rail, fee_for


# An error class and plain frozen dataclasses: alike others in shape only.
class WebhookRejected(TonrailError):
    """A provider webhook failed verification: nothing is stored or processed."""

    code = "webhook_signature_invalid"
    status = 400


# Plain frozen dataclasses (fields only): alike others in shape only.
@dataclass(frozen=True, slots=True)
class ProviderEventIn:
    """A verified provider webhook, ready to be stored (unique on source + external_id)."""

    source: RailName
    external_id: str
    type: str
    object_ref: str | None
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RailPricing:
    """A backup rail's currency, fee schedule, rates and ETA, shared by quote and prepare."""

    rail: RailName
    currency: str
    schedule: FeeSchedule
    rates: RateFeed
    eta_in_seconds: int
    eta_out_seconds: int

    def convert(self, payment: PaymentView) -> Conversion:
        return convert_for_rail(
            self.rates, payment.amount, payment.asset, self.currency, payment.direction
        )

    def quote(
        self, payment: PaymentView, unsupported: str | None, international: bool = False
    ) -> Quote:
        """The quote for `payment`; `unsupported` names why the rail cannot take it."""
        eta = self.eta_in_seconds if payment.direction == "in" else self.eta_out_seconds
        try:
            conv = self.convert(payment)
        except ValueError:
            return Quote(self.rail, 0, self.currency, eta, False, "currency_unsupported")
        fee = fee_for(self.schedule, conv.amount, international)
        if unsupported is not None:
            return Quote(self.rail, fee, self.currency, eta, False, unsupported)
        if conv.amount <= 0:
            return Quote(self.rail, fee, self.currency, eta, False, "amount_too_small")
        if conv.amount > self.schedule.max_amount:
            return Quote(self.rail, fee, self.currency, eta, False, "amount_over_max")
        return Quote(self.rail, fee, self.currency, eta, True)


def outcome_kind(direction: Literal["in", "out"]) -> str:
    return "invoice" if direction == "in" else "payout"
