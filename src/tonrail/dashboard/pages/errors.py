"""Errors: failures by error code, by rail and over time, and the payees that fail most."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tonrail import clock
from tonrail.dashboard.deps import db_of, is_htmx, require
from tonrail.dashboard.queries import errors as queries
from tonrail.dashboard.shared import shared_figures
from tonrail.dashboard.templating import render
from tonrail.security.admins import Admin

router = APIRouter()

DEFAULT_RANGE = "24h"
# One colour per error code in the chart, in order; "other" is grey.
PALETTE = ("#dc2626", "#d97706", "#2563eb", "#7c3aed", "#0d9488", "#db2777")
OTHER_COLOUR = "#94a3b8"


def chart_config(report: queries.ErrorsReport) -> dict[str, Any]:
    """A Chart.js stacked bar config: failures per time bucket, one dataset per error code."""
    fmt = "%m-%d %H:%M" if report.bucket_seconds >= 3600 * 6 else "%H:%M"
    labels = [datetime.fromtimestamp(b, UTC).strftime(fmt) for b in report.buckets]
    datasets = [
        {
            "label": code,
            "data": counts,
            "backgroundColor": OTHER_COLOUR if code == "other" else PALETTE[i % len(PALETTE)],
            "stack": "failures",
        }
        for i, (code, counts) in enumerate(report.series.items())
    ]
    return {
        "type": "bar",
        "data": {"labels": labels, "datasets": datasets},
        "options": {
            "responsive": True,
            "scales": {
                "x": {"stacked": True, "ticks": {"maxTicksLimit": 12}},
                "y": {"stacked": True, "beginAtZero": True, "ticks": {"precision": 0}},
            },
            "plugins": {"legend": {"position": "bottom"}},
        },
    }


def report_cache(request: Request) -> queries.ReportCache:
    """One cache of reports per app (so per process and per database)."""
    return queries.ReportCache(shared_figures(request))


@router.get("/dashboard/errors", response_class=HTMLResponse)
async def errors_page(
    request: Request, range: str = DEFAULT_RANGE, admin: Admin = Depends(require("view"))
) -> Response:
    """The whole page, or its live panel when htmx polls it."""
    fragment = is_htmx(request) and request.headers.get("hx-history-restore-request") != "true"
    template = "fragments/errors_panel.html" if fragment else "errors.html"
    ctx: dict[str, Any] = {"section": "errors", "ranges": list(queries.RANGES), "range": range}
    if range not in queries.RANGES:
        ctx.update(
            report=None,
            chart=None,
            kind="error",
            code="range_invalid",
            message=f"range must be one of {', '.join(queries.RANGES)}; got {range[:20]!r}",
        )
        return render(request, template, ctx, status_code=400)
    now = clock.now()
    report = await report_cache(request).report(db_of(request), range, now)
    ctx.update(report=report, chart=chart_config(report), now=now)
    return render(request, template, ctx)
