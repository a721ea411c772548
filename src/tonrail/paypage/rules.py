"""What the hosted checkout page shows of an invoice: pure functions over the invoice as the
API renders it (payments/schemas.py PaymentOut), so the page and its status endpoint agree."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from tonrail.chain.links import transfer_link
from tonrail.payments.states import PaymentStatus

# ids.new_id("pay"): 9 base-36 characters of time, 16 of randomness. Anything else is not an
# invoice: answered with the same 404 as an unknown id, without reading the database.
INVOICE_ID_RE = re.compile(r"pay_[0-9a-z]{25}")

PageState = Literal["open", "partially_paid", "processing", "paid", "expired", "canceled", "failed"]


def is_invoice_id(value: str) -> bool:
    return INVOICE_ID_RE.fullmatch(value) is not None


def page_state(invoice: dict[str, Any], now: datetime) -> PageState:
    """The state the customer sees. An open invoice whose time is up is `expired` at once
    (the deposit watcher credits nothing that arrives after `expires_at`), before the
    worker's expiry loop marks it."""
    status = invoice["status"]
    if status == PaymentStatus.SUCCEEDED:
        return "paid"
    if status == PaymentStatus.EXPIRED:
        return "expired"
    if status == PaymentStatus.CANCELED:
        return "canceled"
    if status == PaymentStatus.PROCESSING:
        return "processing"  # a backup rail (card, PayPal, bank) is taking the payment
    if status != PaymentStatus.AWAITING_PAYMENT:
        return "failed"
    if seconds_left(invoice, now) == 0:
        return "expired"
    return "partially_paid" if (invoice.get("amount_received_minor") or 0) > 0 else "open"


def seconds_left(invoice: dict[str, Any], now: datetime) -> int | None:
    """Whole seconds until the invoice expires (0 once it has); None when it never does."""
    expires = invoice.get("expires_at")
    if expires is None:
        return None
    at = datetime.fromisoformat(expires) if isinstance(expires, str) else expires
    return max(int((at - now).total_seconds()), 0)


def remaining_minor(invoice: dict[str, Any]) -> int:
    return max(int(invoice["amount_minor"]) - int(invoice.get("amount_received_minor") or 0), 0)


def pay_link(invoice: dict[str, Any], usdt_master: str | None) -> str | None:
    """The `ton://transfer` link for what is left to pay (after a partial payment, the rest),
    or None when the invoice has no TON payment or nothing is left."""
    remaining = remaining_minor(invoice)
    if not invoice.get("deep_link") or not invoice.get("pay_to") or remaining == 0:
        return None
    return transfer_link(
        invoice["pay_to"], invoice["asset"], remaining, invoice["comment"] or "", usdt_master
    )


def public_status(
    invoice: dict[str, Any], now: datetime, usdt_master: str | None = None
) -> dict[str, Any]:
    """The status endpoint's body: only what the page shows (never metadata, account or
    attempts' provider details)."""
    state = page_state(invoice, now)
    return {
        "id": invoice["id"],
        "state": state,
        "amount": shown(invoice["amount"]),
        "asset": invoice["asset"],
        "amount_received": shown(invoice["amount_received"]),
        "amount_remaining": shown(invoice["amount_remaining"]),
        "amount_remaining_minor": remaining_minor(invoice),
        "deep_link": pay_link(invoice, usdt_master)
        if state in ("open", "partially_paid")
        else None,
        "expires_at": invoice["expires_at"],
        "seconds_left": seconds_left(invoice, now) if state in ("open", "partially_paid") else 0,
        "paid_at": invoice["paid_at"],
    }


def shown(amount: str | None) -> str:
    """A canonical decimal string as a customer reads it: `3.500000000` -> `3.5`."""
    if amount is None:
        return "0"
    if "." in amount:
        amount = amount.rstrip("0").rstrip(".")
    return amount or "0"
