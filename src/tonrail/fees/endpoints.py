"""HTTP: GET /v1/fees/status, what the fee optimizer sees and did."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tonrail.errors import PermissionDenied
from tonrail.fees.service import fees_status
from tonrail.payments.schemas import FeeDecisionOut
from tonrail.security.api_keys import Principal
from tonrail.web import current_principal, database, settings_of

router = APIRouter(prefix="/v1/fees", tags=["fees"])

PrincipalDep = Annotated[Principal, Depends(current_principal)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Congestion(_Strict):
    pct: float | None = Field(description="smoothed congestion, 0-100; null: not known yet")
    raw_pct: float | None = Field(description="the latest sample's unsmoothed congestion")
    latency_ms: int | None = Field(description="p90 of our recent toncenter requests")
    queue_size: int | None = Field(description="the outbound message queue")
    api_calls: int
    api_errors: int
    api_rate_limited: int
    unavailable: dict[str, Any] = Field(description="signal -> why it was not available")


class FeeKindStats(_Strict):
    """One kind of fee (nanoton) over the history window."""

    count: int
    latest: int
    p50: int
    p90: int
    ewma: int
    unusually_high: bool


class FeeModelOut(_Strict):
    source: str = Field(description="estimate+history+fit | estimate | history | ...")
    overhead_nanoton: int
    per_payout_nanoton: dict[str, int]
    jetton_spend_p90_nanoton: int | None


class StatusDecision(FeeDecisionOut):
    """A recent decision of this account's payouts."""

    model_config = ConfigDict(extra="forbid")

    payment_id: str
    priority: str
    asset: str


class Savings(_Strict):
    payouts: int
    fee_paid_nanoton: int
    alone_fee_nanoton: int
    saved_nanoton: int = Field(description="alone_fee_nanoton - fee_paid_nanoton")


class FeeStatusOut(_Strict):
    object: Literal["fees.status"] = "fees.status"
    at: datetime
    sampled_at: datetime | None
    congestion: Congestion
    config_params: dict[str, dict[str, Any]] = Field(description="params 20/21/24/25 as read")
    fees: dict[str, FeeKindStats | None] = Field(description="by kind; null: no samples yet")
    fee_model: FeeModelOut | None
    queue: dict[str, int] = Field(description="payouts waiting, by priority")
    arrivals_per_min: dict[str, float] = Field(description="`asset/priority` -> per minute")
    decisions: list[StatusDecision]
    savings: Savings


@router.get("/status", response_model=FeeStatusOut)
async def get_fee_status(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    """Congestion (0-100 %, with the signals behind it and those unavailable), config
    params 20/21/24/25, fee statistics per kind (nanoton: p50, p90, EWMA, unusually high),
    the fee model, payouts waiting by priority, this account's latest decisions and what
    they saved against sending each payout alone."""
    if "payments:read" not in principal.scopes:
        raise PermissionDenied("this API key lacks the scope payments:read", code="scope_missing")
    return await fees_status(database(request), settings_of(request), principal.account_id)
