"""`GET /v1/balance`: the calling key's account, per asset (docs/API.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from tonrail.balances.service import balances_of
from tonrail.money import format_minor
from tonrail.security.api_keys import Principal
from tonrail.web import current_principal, database, require_scope, settings_of

router = APIRouter(prefix="/v1", tags=["balance"])


class AssetBalanceOut(BaseModel):
    asset: str
    available: str = Field(description="what payouts may still take, in major units")
    pending: str = Field(description="held by payouts not yet settled (given back if they fail)")
    incoming: str = Field(description="asked for by invoices not yet paid")


class BalanceOut(BaseModel):
    object: str = "balance"
    account: str
    enforced: bool = Field(
        description="false for the house account (HOUSE_ACCOUNT_ID): its payouts draw on "
        "the hot wallet directly and are never refused for the balance"
    )
    data: list[AssetBalanceOut]


@router.get(
    "/balance",
    response_model=BalanceOut,
    responses={code: {"description": "error"} for code in (401, 403)},
)
async def get_balance(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> dict[str, Any]:
    """The account's available, pending and incoming amounts per asset."""
    from tonrail.ledger.rules import draws_on_balance

    require_scope(principal, "payments:read")
    async with database(request).transaction() as session:
        rows = await balances_of(session, principal.account_id)
    return BalanceOut(
        account=principal.account_id,
        enforced=draws_on_balance(settings_of(request).house_account_id, principal.account_id),
        data=[
            AssetBalanceOut(
                asset=b.asset,
                available=format_minor(b.available, b.asset),
                pending=format_minor(b.pending, b.asset),
                incoming=format_minor(b.incoming, b.asset),
            )
            for b in rows
        ],
    ).model_dump(mode="json")
