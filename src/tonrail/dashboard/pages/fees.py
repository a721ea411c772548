"""Fees: congestion and fees over time, the optimizer's decisions and what batching saved."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tonrail import clock
from tonrail.dashboard.deps import db_of, is_htmx, require, settings_of
from tonrail.dashboard.queries import fees as q
from tonrail.dashboard.shared import shared_figures
from tonrail.dashboard.templating import render
from tonrail.fees.service import fees_status
from tonrail.security.admins import Admin

router = APIRouter()

GAS_PRICE_UNIT = 1 << 16  # config params 20/21 price gas in 1/65536 nanoton


def problem(request: Request, exc: q.ParamInvalid, page_ctx: dict[str, Any]) -> Response:
    """A bad query parameter: 400, as a flash fragment to htmx or a page with the message."""
    ctx = {**page_ctx, "kind": "error", "message": exc.message, "code": exc.code}
    if is_htmx(request):
        response = render(request, "fragments/flash.html", ctx, status_code=400)
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "problem_page.html", ctx, status_code=400)


async def live_context(request: Request, r: q.Range) -> dict[str, Any]:
    """Everything the live part of the page shows: status tiles and the chart data."""
    settings = settings_of(request)
    db = db_of(request)
    # The status is shared by every viewer for one polling interval: N open pages polling
    # every 2 s cost one status read per interval, not N.
    _, status = await shared_figures(request).get(
        ("fees", "status"),
        max(1, settings.dashboard_refresh_seconds),
        clock.now(),
        lambda _now: fees_status(db, settings, None),
    )
    at, figures = await shared_figures(request).get(
        ("fees", r.key), r.cache_seconds, clock.now(), lambda now: q.fee_figures(db, r, now)
    )
    congestion = status["congestion"]
    gas = (status["config_params"].get("21") or {}).get("gas_price")
    return {
        "range": r,
        "now": clock.now(),
        "figures_at": at,
        "status": status,
        "congestion": congestion,
        "gas_price_nanoton": None if gas is None else gas / GAS_PRICE_UNIT,
        "high": [k for k, v in status["fees"].items() if v and v["unusually_high"]],
        "savings": q.savings_of(figures.paid),
        "outcomes": figures.outcomes,
        "charts": {
            "fees-chart-congestion": q.congestion_chart(r, at, figures.samples),
            "fees-chart-fee": q.fee_chart(r, at, figures.paid, figures.samples),
            "fees-chart-savings": q.savings_chart(r, at, figures.paid),
        },
        "refresh_seconds": settings.dashboard_refresh_seconds,
        "history_seconds": settings.fees_history_seconds,
    }


async def decisions_context(request: Request) -> dict[str, Any]:
    params = request.query_params
    f = q.parse_decision_filters(params)
    before = params.get("before") or None
    async with db_of(request).transaction() as session:
        page = await q.decisions(
            session, f, settings_of(request).dashboard_page_size, before=before
        )
    return {
        "filters": f,
        "decisions": page,
        "before": before,
        "choices": {"outcome": q.OUTCOMES, "asset": q.FEE_ASSETS, "priority": q.PRIORITIES},
    }


@router.get("/dashboard/fees", response_class=HTMLResponse)
async def fees_page(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    """The whole page: live status and charts over a range, and the decisions table."""
    ctx: dict[str, Any] = {"section": "fees", "title": "Fees"}
    try:
        r = q.parse_range(request.query_params.get("range"))
        ctx.update(await decisions_context(request))
    except q.ParamInvalid as exc:
        return problem(request, exc, ctx)
    ctx.update(await live_context(request, r))
    return render(request, "fees.html", ctx)


@router.get("/dashboard/fees/live", response_class=HTMLResponse)
async def fees_live(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    """The polled part: status tiles and the charts' data (the canvases stay in place)."""
    try:
        r = q.parse_range(request.query_params.get("range"))
    except q.ParamInvalid as exc:
        return problem(request, exc, {"section": "fees", "title": "Fees"})
    return render(request, "fragments/fees_live.html", await live_context(request, r))


@router.get("/dashboard/fees/decisions", response_class=HTMLResponse)
async def fees_decisions(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    """The decisions table alone: filters and pages without reloading the charts."""
    try:
        ctx = await decisions_context(request)
    except q.ParamInvalid as exc:
        return problem(request, exc, {"section": "fees", "title": "Fees"})
    return render(request, "fragments/fees_decisions.html", ctx)
