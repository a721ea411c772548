"""GET /v1/api_keys: the caller's account's keys (never their secrets), so a merchant sees
which key was rolled and when it stops working (`expires_at`), and each key's payout
`limits`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from tonrail.db import Database
from tonrail.security.api_keys import Principal, limits_of
from tonrail.security.models import ApiKey
from tonrail.web import current_principal, require_scope

router = APIRouter(prefix="/v1", tags=["api keys"])


class ApiKeyLimitsOut(BaseModel):
    """The key's payout limits, set at creation (`tonrail keys create`); null: no limit."""

    max_payout_usdt: str | None = Field(description="USDT equivalent one payout may move")
    max_daily_usdt: str | None = Field(description="USDT equivalent per UTC day")
    assets: list[str] | None
    destinations: list[str] | None = Field(description="raw addresses (wc:HEX) it may pay")


class ApiKeyOut(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None  # set when the key was rolled: refused from then on
    revoked_at: datetime | None
    successor_id: str | None
    limits: ApiKeyLimitsOut


class ApiKeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ApiKeyOut]


@router.get("/api_keys", response_model=ApiKeyList)
async def list_api_keys(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> ApiKeyList:
    """The keys of the caller's account, newest first (payments:read)."""
    require_scope(principal, "payments:read")
    db: Database = request.app.state.db
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(ApiKey)
                .where(ApiKey.account_id == principal.account_id)
                .order_by(ApiKey.created_at.desc(), ApiKey.id)
            )
        ).scalars()
        return ApiKeyList(
            data=[
                ApiKeyOut(
                    id=k.id,
                    name=k.name,
                    prefix=k.prefix,
                    scopes=list(k.scopes),
                    created_at=k.created_at,
                    expires_at=k.expires_at,
                    revoked_at=k.revoked_at,
                    successor_id=k.successor_id,
                    limits=ApiKeyLimitsOut(**limits_of(k).describe()),
                )
                for k in rows
            ]
        )
