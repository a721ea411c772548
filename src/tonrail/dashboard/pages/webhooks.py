"""Webhooks: merchants' webhook endpoints and recent deliveries with every attempt; an
operator resends a delivery (audited, in one transaction with the change)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tonrail import clock
from tonrail.dashboard.deps import actor, db_of, is_htmx, require, settings_of
from tonrail.dashboard.pages.fees import problem
from tonrail.dashboard.queries import webhooks as q
from tonrail.dashboard.queries.fees import ParamInvalid
from tonrail.dashboard.templating import render
from tonrail.errors import TonrailError
from tonrail.notify.service import resend as resend_delivery
from tonrail.notify.states import DeliveryStatus
from tonrail.security import audit_log
from tonrail.security.admins import Admin

router = APIRouter()
PAGE = {"section": "webhooks", "title": "Webhooks"}
CHANGED = "webhooks-changed"


@router.get("/dashboard/webhooks", response_class=HTMLResponse)
async def webhooks_page(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    return await _page(request, admin, "webhooks.html")


@router.get("/dashboard/webhooks/deliveries", response_class=HTMLResponse)
async def webhooks_deliveries(
    request: Request, admin: Admin = Depends(require("view"))
) -> Response:
    """The deliveries list alone (refreshed after a resend)."""
    return await _page(request, admin, "fragments/webhook_deliveries.html")


async def _page(request: Request, admin: Admin, template: str) -> Response:
    try:
        f = q.parse_filters(request.query_params)
    except ParamInvalid as exc:
        return problem(request, exc, dict(PAGE))
    async with db_of(request).transaction() as session:
        endpoints = await q.endpoints(session)
        deliveries = await q.deliveries(session, f, settings_of(request).dashboard_page_size)
    ctx = {
        **PAGE,
        "filters": f,
        "endpoints": endpoints,
        "deliveries": deliveries,
        "statuses": list(DeliveryStatus),
        "may_operate": admin.can("operate"),
        "now": clock.now(),
    }
    return render(request, template, ctx)


@router.post("/dashboard/webhooks/deliveries/{delivery_id}/resend", response_class=HTMLResponse)
async def resend(
    request: Request, delivery_id: str, admin: Admin = Depends(require("operate"))
) -> Response:
    """Send a delivery again now, with a fresh retry schedule; written to the audit log."""
    who = actor(admin)
    try:
        async with db_of(request).transaction() as session:
            delivery = await resend_delivery(session, delivery_id, who)
            await audit_log.record(
                session,
                who,
                "webhook.resend",
                delivery.id,
                {"endpoint": delivery.endpoint_id, "event": delivery.event_id},
            )
            event_type, endpoint_id = delivery.event_type, delivery.endpoint_id
    except TonrailError as exc:
        ctx = {**PAGE, "kind": "error", "message": exc.message, "code": exc.code}
        if is_htmx(request):
            response = render(request, "fragments/flash.html", ctx, status_code=exc.status)
            response.headers["HX-Retarget"] = "#flash"
            response.headers["HX-Reswap"] = "innerHTML"
            return response
        return render(request, "problem_page.html", ctx, status_code=exc.status)
    if not is_htmx(request):
        return RedirectResponse("/dashboard/webhooks", status_code=303)
    message = f"Resending {event_type} to {endpoint_id} now ({delivery_id})."
    response = render(
        request, "fragments/flash.html", {"kind": "ok", "message": message, "code": "resent"}
    )
    response.headers["HX-Trigger"] = CHANGED
    return response
