"""The Overview page: the state of the payment system over 1 h, 24 h or 7 d, live.

`/dashboard/overview?range=1h|24h|7d` renders the page; its live panel (figures and the data
of the charts) polls `/dashboard/overview/live` every DASHBOARD_REFRESH_SECONDS and is swapped
in place, so the page never reloads. The canvases stay put and app.js updates their charts
from the swapped JSON (no chart is re-created on a poll).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from tonrail.dashboard.deps import db_of, is_htmx, require, settings_of
from tonrail.dashboard.queries import overview as q
from tonrail.dashboard.queries.ranges import RANGES, RangeInvalid, range_spec
from tonrail.dashboard.shared import shared_figures
from tonrail.dashboard.templating import render
from tonrail.errors import UnknownAsset
from tonrail.money import decimals_of
from tonrail.monitoring.signals import API_LATENCY_BUCKETS_MS
from tonrail.security.admins import Admin
from tonrail.settings import Settings

router = APIRouter()

STATUS_COLORS = {
    "succeeded": "#16a34a",
    "failed": "#dc2626",
    "processing": "#d97706",
    "queued": "#f59e0b",
    "requires_approval": "#6366f1",
    "awaiting_payment": "#0ea5e9",
    "canceled": "#94a3b8",
    "expired": "#cbd5e1",
}
SERIES_COLORS = ("#0098ea", "#16a34a", "#a855f7", "#f97316", "#0f766e", "#e11d48")


RangeParam = Query(None, alias="range", description="1h, 24h (default) or 7d")


@router.get("/dashboard/overview", response_class=HTMLResponse)
async def overview_page(
    request: Request,
    range_: str | None = RangeParam,
    admin: Admin = Depends(require("view")),
) -> HTMLResponse:
    return await _respond(request, range_, live=False)


# Same parameters as the page above: a route each, alike in shape only.
@router.get("/dashboard/overview/live", response_class=HTMLResponse)
async def overview_live(
    request: Request,
    range_: str | None = RangeParam,
    admin: Admin = Depends(require("view")),
) -> HTMLResponse:
    return await _respond(request, range_, live=True)


async def _respond(request: Request, range_value: str | None, *, live: bool) -> HTMLResponse:
    try:
        spec = range_spec(range_value)
    except RangeInvalid as exc:
        flash = {"kind": "error", "message": exc.message, "code": exc.code}
        if live or is_htmx(request):
            return render(request, "fragments/flash.html", flash, status_code=400)
        context = {"section": "overview", "ranges": RANGES, "range": None, "error": flash}
        return render(request, "overview.html", context, status_code=400)
    settings = settings_of(request)
    figures = await q.overview(db_of(request), settings, spec, range_cache(request))
    template = "fragments/overview_live.html" if live else "overview.html"
    return render(request, template, {**page_context(figures, settings), "oob": live})


def range_cache(request: Request) -> q.RangeCache:
    """One cache of range figures per app (so per process and per database)."""
    return q.RangeCache(shared_figures(request))


def duration(ms: int | None) -> str:
    """`850 ms`, `12.3 s`, `4.2 min`, `3.1 h`: a confirmation time or an age."""
    if ms is None:
        return "-"
    if ms < 1_000:
        return f"{ms} ms"
    seconds = ms / 1000
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def objective_ms(ms: float) -> str:
    """A latency objective's value: the bucket bound, or above the largest bucket."""
    if math.isinf(ms):
        return f"> {API_LATENCY_BUCKETS_MS[-1]:,} ms"
    return f"≤ {int(ms):,} ms"


def figure(amount: int, asset: str) -> str:
    """A tile's amount: thousands grouped, 2 decimals (4 for TON); the exact one is its title.
    Display only: the figures themselves stay integers in minor units."""
    try:
        decimals = decimals_of(asset)
    except UnknownAsset:
        return f"{amount:,} {asset}"
    places = min(decimals, 4 if asset == "TON" else 2)
    value = (Decimal(amount) / (Decimal(10) ** decimals)).quantize(
        Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN
    )
    return f"{value:,.{places}f} {asset}"


def congestion_class(pct: float | None, settings: Settings) -> str:
    """warn once payouts may divert to a backup rail, bad once normal payouts are held."""
    if pct is None:
        return ""
    if pct >= settings.fees_hold_congestion_normal_pct:
        return "bad"
    return "warn" if pct >= settings.fees_divert_congestion_pct else "ok"


def page_context(o: q.Overview, settings: Settings) -> dict[str, Any]:
    return {
        "section": "overview",
        "ranges": RANGES,
        "range": o.window.spec,
        "o": o,
        "error": None,
        "now": o.now,
        "success_min_pct": settings.alert_success_rate_min_pct,
        "success_min_sample": settings.alert_success_rate_min_sample,
        "stuck_seconds": settings.alert_stuck_seconds,
        "pending_max": settings.alert_pending_max,
        "congestion_class": congestion_class(o.congestion.pct, settings),
        "duration": duration,
        "objective_ms": objective_ms,
        "figure": figure,
        "charts": charts(o),
    }


# ------------------------------------------------------------------ charts (Chart.js configs)
def _major(amount: int, asset: str) -> float:
    """A chart's y value: minor units to major units (display only, never money math)."""
    try:
        return amount / float(10 ** decimals_of(asset))
    except UnknownAsset:
        return float(amount)


def _labels(o: q.Overview) -> list[str]:
    fmt = o.window.spec.bucket_label
    return [start.strftime(fmt) for start in o.window.bucket_starts()]


def _bar(labels: list[str], datasets: list[dict[str, Any]], y_title: str) -> dict[str, Any]:
    return {
        "type": "bar",
        "data": {"labels": labels, "datasets": datasets},
        "options": {
            "responsive": True,
            "plugins": {"legend": {"position": "bottom"}},
            "scales": {
                "x": {"stacked": True, "ticks": {"maxTicksLimit": 12}},
                "y": {
                    "stacked": True,
                    "beginAtZero": True,
                    "title": {"display": True, "text": y_title},
                },
            },
        },
    }


def charts(o: q.Overview) -> dict[str, dict[str, Any]]:
    labels = _labels(o)
    status = _bar(
        labels,
        [
            {
                "label": name,
                "data": o.created_by_status[name],
                "backgroundColor": STATUS_COLORS.get(name, "#64748b"),
            }
            for name in q.statuses_in(o.created_by_status)
        ],
        "payments created",
    )
    volume = _bar(
        labels,
        [
            {
                "label": f"{'payouts' if direction == 'out' else 'invoices'} {asset}",
                "data": [round(v / 10**6, 6) for v in series],
                "backgroundColor": SERIES_COLORS[i % len(SERIES_COLORS)],
            }
            for i, ((direction, asset), series) in enumerate(
                sorted(o.finished.bucket_volume.items())
            )
        ],
        "succeeded, USDT equivalent",
    )
    fee_assets = sorted(o.fees.bucket_paid)
    fees = _bar(
        labels,
        [
            {
                "label": f"fees {asset}",
                "data": [_major(v, asset) for v in o.fees.bucket_paid[asset]],
                "backgroundColor": SERIES_COLORS[i % len(SERIES_COLORS)],
                "yAxisID": "y" if i == 0 else f"y{asset}",
            }
            for i, asset in enumerate(fee_assets)
        ],
        f"fees paid ({fee_assets[0]})" if fee_assets else "fees paid",
    )
    for asset in fee_assets[1:]:  # one axis per fee asset: no mixed units
        fees["options"]["scales"][f"y{asset}"] = {
            "stacked": True,
            "beginAtZero": True,
            "position": "right",
            "grid": {"drawOnChartArea": False},
            "title": {"display": True, "text": f"fees paid ({asset})"},
        }
    congestion = {
        "type": "line",
        "data": {
            "labels": labels,
            "datasets": [
                {
                    "label": "average %",
                    "data": o.figures.congestion_avg_pct,
                    "borderColor": "#0098ea",
                    "backgroundColor": "#0098ea",
                    "spanGaps": False,
                    "pointRadius": 0,
                },
                {
                    "label": "peak %",
                    "data": o.figures.congestion_peak_pct,
                    "borderColor": "#dc2626",
                    "backgroundColor": "#dc2626",
                    "borderDash": [4, 3],
                    "spanGaps": False,
                    "pointRadius": 0,
                },
            ],
        },
        "options": {
            "responsive": True,
            "plugins": {"legend": {"position": "bottom"}},
            "scales": {
                "x": {"ticks": {"maxTicksLimit": 12}},
                "y": {"min": 0, "max": 100, "title": {"display": True, "text": "congestion %"}},
            },
        },
    }
    return {
        "chart-status": status,
        "chart-volume": volume,
        "chart-fees": fees,
        "chart-congestion": congestion,
    }
