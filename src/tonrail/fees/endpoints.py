"""HTTP: GET /v1/fees/status, what the fee optimizer sees and did."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from tonrail.errors import PermissionDenied
from tonrail.fees.service import fees_status
from tonrail.security.api_keys import Principal
from tonrail.web import current_principal, database, settings_of

router = APIRouter(prefix="/v1/fees", tags=["fees"])

PrincipalDep = Annotated[Principal, Depends(current_principal)]


@router.get("/status")
async def get_fee_status(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    """Congestion (0-100 %, with the signals behind it and those unavailable), config
    params 20/21/24/25, fee statistics per kind (nanoton: p50, p90, EWMA, unusually high),
    the fee model, payouts waiting by priority, this account's latest decisions and what
    they saved against sending each payout alone."""
    if "payments:read" not in principal.scopes:
        raise PermissionDenied("this API key lacks the scope payments:read", code="scope_missing")
    return await fees_status(database(request), settings_of(request), principal.account_id)
