"""Balances: what each merchant account holds per asset; operator top-ups (approver role).

A top-up credits an account's balance (money received outside invoices, or credit the
operator extends) with a reason, in the audit log in the same transaction, as
`tonrail accounts top-up` does. Viewing needs `view`, topping up `approve`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from tonrail.balances.service import all_balances, top_up
from tonrail.dashboard.deps import actor, context, db_of, require, settings_of
from tonrail.dashboard.templating import render
from tonrail.errors import TonrailError
from tonrail.money import format_minor
from tonrail.security.admins import Admin

router = APIRouter()


async def _page(
    request: Request, flash: dict[str, str] | None = None, status: int = 200
) -> HTMLResponse:
    async with db_of(request).transaction() as session:
        accounts = await all_balances(session)
    house = settings_of(request).house_account_id
    ctx = {
        "section": "balances",
        "accounts": accounts,
        "house": house,
        "may_top_up": context(request)["admin"].can("approve"),
        "flash": flash,
    }
    return render(request, "balances.html", ctx, status_code=status)


@router.get("/dashboard/balances", response_class=HTMLResponse)
async def balances_page(request: Request, admin: Admin = Depends(require("view"))) -> HTMLResponse:
    return await _page(request)


@router.post("/dashboard/balances/top-up", response_class=HTMLResponse)
async def balances_top_up(
    request: Request,
    account: str = Form(..., max_length=64),
    amount: str = Form(..., max_length=40),
    asset: str = Form(..., max_length=8),
    reason: str = Form(..., max_length=500),
    admin: Admin = Depends(require("approve")),
) -> HTMLResponse:
    try:
        async with db_of(request).transaction() as session:
            left = await top_up(session, account, amount, asset, reason, actor(admin))
    except TonrailError as exc:
        flash = {"kind": "error", "message": exc.message, "code": exc.code}
        return await _page(request, flash, exc.status)
    message = f"{account} now holds {format_minor(left, asset)} {asset} available."
    return await _page(request, {"kind": "ok", "message": message, "code": "topped_up"})
