"""Backup payments: attempts and success by rail, fallbacks with their reasons, breakers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tonrail import clock
from tonrail.dashboard.deps import db_of, require, settings_of
from tonrail.dashboard.pages.fees import problem
from tonrail.dashboard.queries import backup as q
from tonrail.dashboard.queries.fees import ParamInvalid, Range, parse_choice, parse_range
from tonrail.dashboard.shared import shared_figures
from tonrail.dashboard.templating import render
from tonrail.rails.registry import configured_backup_rails, routing_policy
from tonrail.security.admins import Admin

router = APIRouter()
PAGE = {"section": "backup", "title": "Backup payments"}


def _direction(request: Request) -> str | None:
    return parse_choice(request.query_params.get("direction"), q.DIRECTIONS, "direction")


def _fallback_filters(request: Request) -> q.FallbackFilters:
    params = request.query_params
    return q.FallbackFilters(
        rail=parse_choice(params.get("rail"), q.BACKUPS, "rail"),
        reason=q.parse_reason(params.get("reason")),
        status=parse_choice(params.get("status"), q.ATTEMPT_STATUSES, "status"),
        direction=_direction(request),
    )


async def live_context(request: Request, r: Range, direction: str | None) -> dict[str, Any]:
    settings = settings_of(request)
    db = db_of(request)
    at, figures = await shared_figures(request).get(
        ("backup", r.key, direction),
        r.cache_seconds,
        clock.now(),
        lambda now: q.rail_figures(db, r, now, direction),
    )
    now = clock.now()
    async with db.transaction() as session:  # the state now: never shared
        waiting = await q.waiting_for_backup(session)
        breakers = await q.breakers(
            session, now, routing_policy(settings).breaker, configured_backup_rails(settings)
        )
    return {
        "range": r,
        "direction": direction or "",
        "now": now,
        "figures_at": at,
        "stats": figures.stats,
        "totals": q.totals(figures.stats),
        "reasons": figures.reasons,
        "waiting": waiting,
        "no_rail": figures.no_rail,
        "breakers": breakers,
        "open_seconds": settings.circuit_open_seconds,
        "failure_threshold": settings.circuit_failure_threshold,
        "backup_order": [r.strip() for r in settings.backup_rails.split(",") if r.strip()],
        "charts": {
            "backup-chart-attempts": q.attempts_chart(r, at, figures.series),
            "backup-chart-success": q.success_chart(r, at, figures.series),
        },
        "refresh_seconds": settings.dashboard_refresh_seconds,
    }


async def fallbacks_context(request: Request, r: Range) -> dict[str, Any]:
    f = _fallback_filters(request)
    before = request.query_params.get("before") or None
    now = clock.now()
    async with db_of(request).transaction() as session:
        page = await q.fallbacks(
            session, f, r.since(now), now, settings_of(request).dashboard_page_size, before
        )
    return {
        "range": r,
        "ffilters": f,
        "fallbacks": page,
        "before": before,
        "fchoices": {
            "rail": q.BACKUPS,
            "status": q.ATTEMPT_STATUSES,
            "direction": q.DIRECTIONS,
        },
    }


@router.get("/dashboard/backup", response_class=HTMLResponse)
async def backup_page(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    ctx: dict[str, Any] = dict(PAGE)
    try:
        r = parse_range(request.query_params.get("range"))
        direction = _direction(request)
        ctx.update(await fallbacks_context(request, r))
    except ParamInvalid as exc:
        return problem(request, exc, ctx)
    ctx.update(await live_context(request, r, direction))
    return render(request, "backup.html", ctx)


@router.get("/dashboard/backup/live", response_class=HTMLResponse)
async def backup_live(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    try:
        r = parse_range(request.query_params.get("range"))
        direction = _direction(request)
    except ParamInvalid as exc:
        return problem(request, exc, dict(PAGE))
    return render(request, "fragments/backup_live.html", await live_context(request, r, direction))


@router.get("/dashboard/backup/fallbacks", response_class=HTMLResponse)
async def backup_fallbacks(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    try:
        r = parse_range(request.query_params.get("range"))
        ctx = await fallbacks_context(request, r)
    except ParamInvalid as exc:
        return problem(request, exc, dict(PAGE))
    return render(request, "fragments/backup_fallbacks.html", ctx)
