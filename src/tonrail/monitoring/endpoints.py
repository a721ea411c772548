"""HTTP: `/metrics` for Prometheus."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from tonrail.errors import AuthenticationFailed
from tonrail.monitoring.jobs import active_alert_counts, take_snapshot
from tonrail.monitoring.prometheus import CONTENT_TYPE, render
from tonrail.web import database, settings_of

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format; with METRICS_TOKEN set it wants `Authorization: Bearer`."""
    settings = settings_of(request)
    token = settings.metrics_token.get_secret_value()
    if token:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise AuthenticationFailed("metrics need the METRICS_TOKEN bearer token")
    db = database(request)
    snap = await take_snapshot(db, settings)
    return Response(render(snap, await active_alert_counts(db)), media_type=CONTENT_TYPE)
