"""HTTP endpoint to pay an invoice on a backup rail."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tonrail.errors import PermissionDenied
from tonrail.processing.checkout import BackupCheckout
from tonrail.security.api_keys import Principal
from tonrail.states import AttemptStatus
from tonrail.web import current_principal

router = APIRouter(prefix="/v1", tags=["payments"])


class CheckoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rail: Literal["stripe", "paypal", "bank"]


class BankInstructions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_name: str
    iban: str
    bic: str | None
    amount: str = Field(description="decimal, in the currency's major units")
    currency: str
    reference: str = Field(description="the transfer's remittance information")


class CheckoutOut(BaseModel):
    """The invoice's checkout on a backup rail; the rail's keys are present only for it."""

    model_config = ConfigDict(extra="forbid")

    object: Literal["checkout"] = "checkout"
    invoice: str
    rail: Literal["stripe", "paypal", "bank"]
    attempt: str
    status: AttemptStatus = Field(description="the rail attempt's status")
    provider_ref: str | None
    amount: int | None = Field(description="in minor units of `currency`, charged on the rail")
    currency: str | None
    error_code: str | None
    client_secret: str | None = Field(default=None, description="stripe: for Stripe.js")
    publishable_key: str | None = Field(default=None, description="stripe")
    checkout_url: str | None = Field(default=None, description="stripe Checkout")
    approve_url: str | None = Field(default=None, description="paypal: the payer approves")
    bank_instructions: BankInstructions | None = Field(default=None, description="bank")


@router.post(
    "/invoices/{invoice_id}/checkout",
    status_code=201,
    response_model=CheckoutOut,
    response_model_exclude_unset=True,  # a rail's own keys only where the rail gave them
)
async def checkout(
    invoice_id: str,
    body: CheckoutCreate,
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
) -> dict[str, Any]:
    """Let the customer pay the invoice on a backup rail: returns the Stripe client secret
    or Checkout URL, the PayPal approve URL, or the bank transfer instructions."""
    if "payments:write" not in principal.scopes:
        raise PermissionDenied("this API key lacks the scope payments:write", code="scope_missing")
    service: BackupCheckout = request.app.state.backup_checkout
    return await service.checkout(principal, invoice_id, body.rail)
