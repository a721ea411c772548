"""Alerts: open, acknowledged and resolved; one alert's history; acknowledge and resolve.

An action changes the alert through monitoring/store.py and writes the audit log in the same
transaction. Its answer is a flash message plus the `alerts-changed` event (HX-Trigger), on
which the lists and the detail view fetch themselves again: no reload, filters kept.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.dashboard.deps import actor, db_of, is_htmx, require, settings_of
from tonrail.dashboard.pages.fees import problem
from tonrail.dashboard.queries import alerts as q
from tonrail.dashboard.queries.fees import ParamInvalid
from tonrail.dashboard.templating import render, when
from tonrail.errors import Conflict, NotFound, TonrailError
from tonrail.monitoring import store
from tonrail.monitoring.models import Alert
from tonrail.monitoring.rules import SEVERITIES
from tonrail.monitoring.states import AlertStatus
from tonrail.security import audit_log
from tonrail.security.admins import Admin

router = APIRouter()
PAGE = {"section": "alerts", "title": "Alerts"}
CHANGED = "alerts-changed"  # the event the lists and the detail view refresh on


async def lists_context(request: Request) -> dict[str, Any]:
    params = request.query_params
    f = q.parse_filters(params)
    before = params.get("before") or None
    async with db_of(request).transaction() as session:
        counts, by_severity = await q.counts(session)
        active = await q.active(session, f)
        resolved = await q.resolved(session, f, settings_of(request).dashboard_page_size, before)
    return {
        **PAGE,
        "filters": f,
        "before": before,
        "counts": counts,
        "open_by_severity": by_severity,
        "active": active,
        "resolved": resolved,
        "severities": SEVERITIES,
        "now": clock.now(),
        "refresh_seconds": settings_of(request).dashboard_refresh_seconds,
    }


@router.get("/dashboard/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    return await _lists(request, "alerts.html", oob=False)


@router.get("/dashboard/alerts/lists", response_class=HTMLResponse)
async def alerts_lists(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    """The polled lists with their counts (and the nav badge, out of band)."""
    return await _lists(request, "fragments/alerts_lists.html", oob=True)


async def _lists(request: Request, template: str, *, oob: bool) -> Response:
    try:
        ctx = await lists_context(request)
    except ParamInvalid as exc:
        return problem(request, exc, dict(PAGE))
    return render(request, template, {**ctx, "oob": oob})


def _missing(request: Request, alert_id: str) -> Response:
    ctx = {
        **PAGE,
        "kind": "error",
        "code": "alert_not_found",
        "message": f"No alert {alert_id[:40]!r}.",
    }
    if is_htmx(request):
        return render(request, "fragments/flash.html", ctx, status_code=404)
    return render(request, "problem_page.html", ctx, status_code=404)


async def _story(request: Request, alert_id: str, template: str) -> Response:
    """One alert's story rendered with `template` (the whole page or its body)."""
    async with db_of(request).transaction() as session:
        found = await q.story(session, alert_id)
    if found is None:
        return _missing(request, alert_id)
    ctx = {
        **PAGE,
        "s": found,
        "a": found.alert,
        "now": clock.now(),
        "refresh_seconds": settings_of(request).dashboard_refresh_seconds,
    }
    return render(request, template, ctx)


@router.get("/dashboard/alerts/{alert_id}", response_class=HTMLResponse)
async def alert_page(
    request: Request, alert_id: str, admin: Admin = Depends(require("view"))
) -> Response:
    """One alert: what it says, its history (events and deliveries), the actions."""
    return await _story(request, alert_id, "alert.html")


@router.get("/dashboard/alerts/{alert_id}/body", response_class=HTMLResponse)
async def alert_body(
    request: Request, alert_id: str, admin: Admin = Depends(require("view"))
) -> Response:
    return await _story(request, alert_id, "fragments/alert_body.html")


async def _act(request: Request, alert_id: str, admin: Admin, action: str) -> Response:
    """Acknowledge or resolve in one transaction with its audit entry; a clear refusal else."""
    who = actor(admin)
    try:
        async with db_of(request).transaction() as session:
            # Lock the row: of two operators acting at once, the second sees the first's change.
            alert = await session.get(Alert, alert_id, with_for_update=True)
            if alert is None:
                raise NotFound(f"No alert {alert_id[:40]!r}.", code="alert_not_found")
            before = alert.status
            if action == "acknowledge":
                if before != "open":
                    raise Conflict(await _refusal(session, alert, action), code="alert_not_open")
                await store.acknowledge(session, alert_id, who)
            else:
                if before not in store.ACTIVE:
                    raise Conflict(await _refusal(session, alert, action), code="alert_not_active")
                await store.resolve_by_id(session, alert_id, who)
            await audit_log.record(
                session,
                who,
                f"alert.{action}",
                alert_id,
                {
                    "rule": alert.rule,
                    "severity": alert.severity,
                    "dedup_key": alert.dedup_key,
                    "status_before": before,
                },
            )
            summary = alert.summary
    except TonrailError as exc:
        return _refused(request, exc, alert_id)
    message = (
        f"Acknowledged: {summary}. No more notifications until it resolves."
        if action == "acknowledge"
        else f"Resolved: {summary}. It opens again if its condition still holds."
    )
    if not is_htmx(request):
        return RedirectResponse(f"/dashboard/alerts/{alert_id}", status_code=303)
    response = render(
        request, "fragments/flash.html", {"kind": "ok", "message": message, "code": action + "d"}
    )
    response.headers["HX-Trigger"] = CHANGED
    return response


async def _refusal(session: AsyncSession, alert: Alert, action: str) -> str:
    if alert.status == AlertStatus.RESOLVED:
        last = await q.last_resolution(session, alert.id)
        by = f" by {last[0]} at {when(last[1])}" if last else ""
        return (
            f"Alert {alert.id} is already resolved{by}: nothing to {action}. "
            "It opens again by itself if its condition comes back."
        )
    by = f" by {alert.acknowledged_by}" if alert.acknowledged_by else ""
    at = f" at {when(alert.acknowledged_at)}" if alert.acknowledged_at else ""
    return f"Alert {alert.id} is already acknowledged{by}{at}."


def _refused(request: Request, exc: TonrailError, alert_id: str) -> Response:
    ctx = {**PAGE, "kind": "error", "message": exc.message, "code": exc.code}
    if is_htmx(request):
        response = render(request, "fragments/flash.html", ctx, status_code=exc.status)
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        # The page may be stale (another operator acted): let it catch up.
        response.headers["HX-Trigger"] = CHANGED
        return response
    return render(request, "problem_page.html", ctx, status_code=exc.status)


@router.post("/dashboard/alerts/{alert_id}/acknowledge", response_class=HTMLResponse)
async def acknowledge(
    request: Request, alert_id: str, admin: Admin = Depends(require("operate"))
) -> Response:
    """An operator has seen it: no more triggers until it resolves (PagerDuty is told)."""
    return await _act(request, alert_id, admin, "acknowledge")


@router.post("/dashboard/alerts/{alert_id}/resolve", response_class=HTMLResponse)
async def resolve(
    request: Request, alert_id: str, admin: Admin = Depends(require("operate"))
) -> Response:
    """Resolve by hand; the channels that were told it fired are told it resolved."""
    return await _act(request, alert_id, admin, "resolve")
