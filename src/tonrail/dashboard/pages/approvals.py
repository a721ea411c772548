"""Approvals: payouts above the approval threshold waiting for approvers; approve or reject.

`/dashboard/approvals` lists them oldest first (the list polls and reloads after every
action). Approving calls `PaymentService.approve_in` with the admin as `admin:<username>`,
so the service's rules apply: distinct approvers, never the requester, the payout queued
once enough approve. Rejecting cancels the payout with the approver's reason. Both need the
`approve` permission and write the audit log in the same transaction.

Deposits AML/KYC screening held for review are listed below the payouts: *Release*
credits the merchant, *Freeze* keeps the money apart and fails the invoice
(`resolutions.decide_held`, once per deposit, audited).
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from tonrail.dashboard import interventions
from tonrail.dashboard.deps import actor, context, db_of, is_htmx, require, settings_of
from tonrail.dashboard.queries import approvals as q
from tonrail.dashboard.routes import CSP
from tonrail.dashboard.templating import render
from tonrail.errors import InvalidRequest, TonrailError
from tonrail.payments.service import PaymentService
from tonrail.payments.states import PaymentStatus
from tonrail.processing.payer_screening import HeldPaymentDecision, decide_held_payment
from tonrail.processing.resolutions import HeldDecision, decide_held
from tonrail.security.admins import Admin

router = APIRouter()

CHANGED = "approvals-changed"  # the HX-Trigger event the list reloads on
# The page with the TON Connect panel (a treasury, and an approver): scripts still only from
# us; TON Connect's wallet list and bridges are on the wallets' https hosts (connect-src), their
# icons too (img-src), and the one hash allows the empty inline handler @tonconnect/ui sets
# (as on the checkout page). Every other dashboard page keeps routes.CSP.
EMPTY_HANDLER = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"  # sha256 of ""
WALLET_CSP = (
    CSP.replace("connect-src 'self'", "connect-src 'self' https:")
    .replace("img-src 'self' data:", "img-src 'self' data: https:")
    .replace("script-src 'self'", f"script-src 'self' 'unsafe-hashes' {EMPTY_HANDLER}")
)


def _payments(request: Request) -> PaymentService:
    service: PaymentService = request.app.state.payments
    return service


async def _list_context(request: Request, after: str | None) -> dict[str, Any]:
    settings = settings_of(request)
    async with db_of(request).transaction() as session:
        page = await q.waiting(session, settings.dashboard_page_size, after)
        decisions = await q.recent_decisions(session)
        held = await q.held_deposits(session)
        held_payments = await q.held_payments(session)
        orders = await q.treasury_orders(session)
    # The names approvals.html reads; alike other pages' contexts in shape only.
    admin = context(request)["admin"]
    return {
        "section": "approvals",
        "page_rows": page,
        "after": after,
        "decisions": decisions,
        "held_deposits": held,
        "held_payments": held_payments,
        "treasury_orders": orders,
        "treasury": settings.treasury_address.strip(),
        "me": actor(admin),
        "may_approve": admin.can("approve"),
        "required": settings.approvals_required,
        "threshold_usdt": settings.approval_threshold_usdt,
    }


@router.get("/dashboard/approvals", response_class=HTMLResponse)
async def approvals_page(
    request: Request,
    after: str | None = Query(None, max_length=64),
    admin: Admin = Depends(require("view")),
) -> HTMLResponse:
    return await _page(request, after)


async def _page(
    request: Request, after: str | None, flash: dict[str, str] | None = None, status: int = 200
) -> HTMLResponse:
    try:
        ctx = await _list_context(request, after)
    except TonrailError as exc:
        if after is None:
            raise
        ctx = await _list_context(request, None)
        flash, status = _flash_of(exc), exc.status
    response = render(request, "approvals.html", {**ctx, "flash": flash}, status_code=status)
    if ctx["treasury"] and ctx["may_approve"]:
        response.headers["Content-Security-Policy"] = WALLET_CSP
    return response


# Same parameters as the page above: a route each, alike in shape only.
@router.get("/dashboard/approvals/list", response_class=HTMLResponse)
async def approvals_list(
    request: Request,
    after: str | None = Query(None, max_length=64),
    admin: Admin = Depends(require("view")),
) -> HTMLResponse:
    try:
        ctx = await _list_context(request, after)
    except TonrailError as exc:
        return render(request, "fragments/flash.html", _flash_of(exc), status_code=exc.status)
    return render(request, "fragments/approvals_list.html", ctx)


def _flash_of(exc: TonrailError) -> dict[str, str]:
    return {"kind": "error", "message": exc.message, "code": exc.code}


async def _answer(request: Request, flash: dict[str, str], status: int) -> Response:
    if is_htmx(request):
        response = render(request, "fragments/flash.html", flash, status_code=status)
        response.headers["HX-Trigger"] = CHANGED
        return response
    return await _page(request, None, flash, status)


@router.post("/dashboard/approvals/{payment_id}/approve", response_class=HTMLResponse)
async def approve(
    request: Request, payment_id: str, admin: Admin = Depends(require("approve"))
) -> Response:
    payments = _payments(request)
    try:
        async with db_of(request).transaction() as session:
            status, count = await interventions.approve(session, payments, actor(admin), payment_id)
    except TonrailError as exc:
        message = exc.message
        if exc.code == "already_approved":
            message = (
                "You have already approved this payout: the same approver counts once; "
                f"{payments.policy.approvals_required} different approvers are needed."
            )
        return await _answer(request, {**_flash_of(exc), "message": message}, exc.status)
    required = payments.policy.approvals_required
    if status == PaymentStatus.QUEUED:
        message = f"Approved {payment_id} ({count} of {required}): it is queued for sending."
    else:
        message = (
            f"Approved {payment_id} ({count} of {required}): it waits for "
            f"{required - count} more approver{'s' if required - count > 1 else ''}."
        )
    return await _answer(request, {"kind": "ok", "message": message, "code": status}, 200)


@router.post("/dashboard/approvals/{payment_id}/reject", response_class=HTMLResponse)
async def reject(
    request: Request,
    payment_id: str,
    reason: str = Form(""),
    admin: Admin = Depends(require("approve")),
) -> Response:
    try:
        why = interventions.clean_reason(reason, required=True)
        assert why is not None
        async with db_of(request).transaction() as session:
            await interventions.reject(session, actor(admin), payment_id, why)
    except TonrailError as exc:
        return await _answer(request, _flash_of(exc), exc.status)
    message = f"Rejected {payment_id}: it is canceled and its reservation released."
    return await _answer(request, {"kind": "ok", "message": message, "code": "canceled"}, 200)


@router.post("/dashboard/approvals/deposits/{deposit_id}/{decision}", response_class=HTMLResponse)
async def decide_deposit(
    request: Request,
    deposit_id: str,
    decision: str,
    reason: str = Form(""),
    admin: Admin = Depends(require("approve")),
) -> Response:
    try:
        if decision not in ("release", "freeze"):
            raise InvalidRequest("decision must be release or freeze", param="decision")
        note = interventions.clean_reason(reason, required=decision == "freeze")
        async with db_of(request).transaction() as session:
            if deposit_id.startswith("att_"):  # a card, PayPal or bank payment held
                held = await decide_held_payment(
                    session, deposit_id, cast(HeldPaymentDecision, decision), actor(admin), note
                )
                status = f"{held.rail} payment of {held.payment_id}"
            else:
                deposit = await decide_held(
                    session, deposit_id, cast(HeldDecision, decision), actor(admin), note
                )
                status = str(deposit.status)
    except TonrailError as exc:
        return await _answer(request, _flash_of(exc), exc.status)
    message = (
        f"Released {deposit_id}: credited to the merchant ({status})."
        if decision == "release"
        else f"Froze {deposit_id}: it is kept apart and its invoice failed."
    )
    return await _answer(request, {"kind": "ok", "message": message, "code": decision}, 200)
