"""HTTP endpoint to pay an invoice on a backup rail."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from tonrail.errors import PermissionDenied
from tonrail.processing.checkout import BackupCheckout
from tonrail.security.api_keys import Principal
from tonrail.web import current_principal

router = APIRouter(prefix="/v1", tags=["payments"])


class CheckoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rail: Literal["stripe", "paypal", "bank"]


@router.post("/invoices/{invoice_id}/checkout", status_code=201)
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
