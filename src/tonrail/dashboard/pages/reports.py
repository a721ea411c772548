"""Reports: pick a month and download its compliance report as CSV or PDF (viewer or above),
or an ISO week's large-transaction list."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tonrail import clock
from tonrail.dashboard.deps import db_of, require, settings_of
from tonrail.dashboard.pages.fees import problem
from tonrail.dashboard.queries.fees import ParamInvalid
from tonrail.dashboard.templating import render
from tonrail.errors import InvalidRequest
from tonrail.money import format_minor
from tonrail.reports import contents, periods
from tonrail.reports.render import FORMATS
from tonrail.reports.render import render as render_report
from tonrail.security.admins import Admin

router = APIRouter()
PAGE = {"section": "reports", "title": "Reports"}
MEDIA = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@router.get("/dashboard/reports", response_class=HTMLResponse)
async def reports_page(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    now = clock.now()
    year, week, _ = now.isocalendar()
    ctx = {
        **PAGE,
        "default_month": periods.previous_month(now),
        "default_week": f"{year:04d}-W{week:02d}",
        "large_threshold_text": format_minor(
            contents.large_threshold(settings_of(request)), "USDT"
        ),
        "formats": FORMATS,
    }
    return render(request, "reports.html", ctx)


@router.get("/dashboard/reports/download")
async def reports_download(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    """`?period=YYYY-MM` (monthly report) or `?week=YYYY-Www` (large transactions),
    `&format=csv|pdf`; answered as an attachment."""
    params = request.query_params
    fmt = params.get("format", "csv")
    try:
        if fmt not in FORMATS:
            raise ParamInvalid("format must be csv or pdf", param="format")
        if "week" in params:
            span = periods.iso_week(params["week"])
        else:
            span = periods.month(params.get("period", ""))
    except InvalidRequest as exc:
        bad = exc if isinstance(exc, ParamInvalid) else ParamInvalid(exc.message, param=exc.param)
        return problem(request, bad, dict(PAGE))
    settings = settings_of(request)
    async with db_of(request).transaction() as session:
        if "week" in params:
            report = await contents.weekly_large(session, settings, span, clock.now())
            name = f"tonrail-large-transactions-{span.label}.{fmt}"
        else:
            report = await contents.monthly(session, settings, span, clock.now())
            name = f"tonrail-report-{span.label}.{fmt}"
    return Response(
        render_report(report, fmt),
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
