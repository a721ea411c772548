"""Operations: pause/resume payments, maintenance mode, retry or cancel a stuck payment,
unlock a locked subject, the audit log with its chain check, and (admins) the emergency
rotation of every API key.

The state panel (`/dashboard/operations/live`) polls and reloads after every action. Each
action needs the `operate` permission and the session's CSRF token, asks for confirmation
in the browser, is validated again here (interventions.py holds the rules), and appends to
the audit log in the transaction that makes the change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.dashboard import interventions
from tonrail.dashboard.deps import actor, context, db_of, is_htmx, require, settings_of
from tonrail.dashboard.queries import operations as q
from tonrail.dashboard.templating import render
from tonrail.errors import InvalidRequest, NotFound, TonrailError
from tonrail.monitoring.rules import Thresholds
from tonrail.security import audit_log, key_rotation
from tonrail.security.admins import Admin
from tonrail.security.switches import is_on

router = APIRouter()
T = TypeVar("T")

CHANGED = "ops-changed"  # the HX-Trigger event the panels reload on
STUCK_SHOWN = 25
ACTION_FILTER_MAX = 64


def _verdicts(p: q.PendingPayment, paused: bool) -> dict[str, interventions.Verdict]:
    return {
        "retry": interventions.retry_verdict(p, clock.now(), paused),
        "cancel": interventions.cancel_verdict(p),
    }


async def _live_context(request: Request) -> dict[str, Any]:
    settings = settings_of(request)
    now = clock.now()
    async with db_of(request).transaction() as session:
        switches = await q.switches(session)
        paused = any(s.enabled for s in switches if s.name == "payments_paused")
        held = await q.held_by_pause(session) if paused else None
        stuck, stuck_count = await q.stuck(
            session, now, Thresholds.from_settings(settings), STUCK_SHOWN
        )
        locks = await q.lockouts(session)
    # The names operations.html reads; alike other pages' contexts in shape only.
    admin = context(request)["admin"]
    return {
        "section": "operations",
        "switch_states": switches,
        "paused": paused,
        "held": held,
        "stuck": stuck,
        "stuck_count": stuck_count,
        "stuck_looked_at": q.STUCK_LOOKED_AT,
        "stuck_seconds": settings.alert_stuck_seconds,
        "verdicts": {p.id: _verdicts(p, paused) for p in stuck},
        "lockouts": locks,
        "now": now,
        "may_operate": admin.can("operate"),
        "may_administer": admin.can("administer"),
        "rotation_phrase": key_rotation.CONFIRMATION,
    }


async def _audit_context(
    request: Request, before: int | None = None, action: str | None = None
) -> dict[str, Any]:
    settings = settings_of(request)
    async with db_of(request).transaction() as session:
        page = await q.audit_entries(session, settings.dashboard_page_size, before, action)
    return {"audit": page, "audit_action": action or "", "audit_before": before}


async def _page(
    request: Request, flash: dict[str, str] | None = None, status: int = 200
) -> HTMLResponse:
    ctx = {**await _live_context(request), **await _audit_context(request)}
    return render(request, "operations.html", {**ctx, "flash": flash}, status_code=status)


@router.get("/dashboard/operations", response_class=HTMLResponse)
async def operations_page(
    request: Request, admin: Admin = Depends(require("view"))
) -> HTMLResponse:
    return await _page(request)


@router.get("/dashboard/operations/live", response_class=HTMLResponse)
async def operations_live(
    request: Request, admin: Admin = Depends(require("view"))
) -> HTMLResponse:
    return render(request, "fragments/ops_live.html", await _live_context(request))


@router.get("/dashboard/operations/payment", response_class=HTMLResponse)
async def lookup_payment(
    request: Request,
    id: str = Query("", max_length=64),
    admin: Admin = Depends(require("view")),
) -> HTMLResponse:
    """One payment by id, with what may be done to it now and why."""
    payment_id = id.strip()
    if not payment_id:
        return _flash(request, InvalidRequest("enter a payment id", param="id", code="id_required"))
    async with db_of(request).transaction() as session:
        found = await q.payment(session, payment_id)
        switches = await q.switches(session)
    if found is None:
        return _flash(
            request, NotFound(f"no payment {payment_id!r}", param="id", code="payment_not_found")
        )
    paused = any(s.enabled for s in switches if s.name == "payments_paused")
    return render(
        request,
        "fragments/ops_payment.html",
        {
            "p": found,
            "v": _verdicts(found, paused),
            "now": clock.now(),
            "may_operate": context(request)["admin"].can("operate"),
        },
    )


def _flash(request: Request, exc: TonrailError) -> HTMLResponse:
    return render(
        request,
        "fragments/flash.html",
        {"kind": "error", "message": exc.message, "code": exc.code},
        status_code=exc.status,
    )


@router.get("/dashboard/operations/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    before: str | None = Query(None, max_length=20),
    action: str | None = Query(None, max_length=ACTION_FILTER_MAX),
    admin: Admin = Depends(require("view")),
) -> HTMLResponse:
    cursor: int | None = None
    if before:
        if not before.isdigit():
            return _flash(
                request,
                InvalidRequest(
                    "before must be an entry number", param="before", code="cursor_invalid"
                ),
            )
        cursor = int(before)
    ctx = await _audit_context(request, cursor, (action or "").strip() or None)
    return render(request, "fragments/ops_audit.html", ctx)


@router.get("/dashboard/operations/audit/verify", response_class=HTMLResponse)
async def audit_verify(request: Request, admin: Admin = Depends(require("view"))) -> HTMLResponse:
    """Walk the hash chain now (as `tonrail audit verify` does) and show the result."""
    async with db_of(request).transaction() as session:
        result = await audit_log.verify(session)
    return render(
        request,
        "fragments/ops_verify.html",
        {"result": result, "checked_at": clock.now()},
        status_code=200,
    )


# ------------------------------------------------------------------ actions
async def _act(
    request: Request,
    run: Callable[[AsyncSession], Awaitable[T]],
    ok_message: Callable[[T], str],
    *,
    refresh_page: bool = False,
) -> Response:
    """Run one action in one transaction; answer with a flash (htmx) or the whole page."""
    try:
        async with db_of(request).transaction() as session:
            outcome = await run(session)
    except TonrailError as exc:
        flash, status = {"kind": "error", "message": exc.message, "code": exc.code}, exc.status
    else:
        flash, status = {"kind": "ok", "message": ok_message(outcome), "code": "ok"}, 200
    if not is_htmx(request):
        return await _page(request, flash, status)
    response = render(request, "fragments/flash.html", flash, status_code=status)
    if refresh_page and status == 200:
        # The banners of every page show the switches: reload so none is stale.
        response.headers["HX-Refresh"] = "true"
    else:
        response.headers["HX-Trigger"] = CHANGED
    return response


@router.post("/dashboard/operations/switches/{name}", response_class=HTMLResponse)
async def flip_switch(
    request: Request,
    name: str,
    enabled: str = Form(""),
    reason: str = Form(""),
    admin: Admin = Depends(require("operate")),
) -> Response:
    async def run(session: AsyncSession) -> bool:
        if enabled not in ("on", "off"):
            raise InvalidRequest(
                "enabled must be on or off", param="enabled", code="enabled_invalid"
            )
        on = enabled == "on"
        why = interventions.clean_reason(reason, required=on)
        await interventions.flip_switch(session, actor(admin), name, on, why)
        return on

    def said(on: bool) -> str:
        if name == "payments_paused":
            return (
                "Payments paused: nothing is signed or sent until they are resumed."
                if on
                else "Payments resumed: queued payouts are signed and sent again."
            )
        return (
            "Maintenance mode on: new payments are refused (HTTP 503)."
            if on
            else "Maintenance mode off: new payments are accepted."
        )

    return await _act(request, run, said, refresh_page=True)


@router.post("/dashboard/operations/payments/{payment_id}/retry", response_class=HTMLResponse)
async def retry_payment(
    request: Request,
    payment_id: str,
    reason: str = Form(""),
    admin: Admin = Depends(require("operate")),
) -> Response:
    async def run(session: AsyncSession) -> None:
        why = interventions.clean_reason(reason, required=False)
        paused = await is_on(session, "payments_paused")
        await interventions.retry(session, actor(admin), payment_id, paused, why)

    return await _act(
        request, run, lambda _: f"Retry of {payment_id}: a worker takes it on its next round."
    )


# Each action route declares its own form; alike in shape, their shared part is _act.
@router.post("/dashboard/operations/payments/{payment_id}/cancel", response_class=HTMLResponse)
async def cancel_payment(
    request: Request,
    payment_id: str,
    reason: str = Form(""),
    admin: Admin = Depends(require("operate")),
) -> Response:
    async def run(session: AsyncSession) -> str:
        why = interventions.clean_reason(reason, required=True)
        assert why is not None
        return await interventions.cancel(session, actor(admin), payment_id, why)

    return await _act(
        request, run, lambda was: f"Canceled {payment_id} (it was {was}); nothing was sent."
    )


# Each action route declares its own form; alike in shape, their shared part is _act.
@router.post("/dashboard/operations/lockouts/{lockout_id}/unlock", response_class=HTMLResponse)
async def unlock(
    request: Request,
    lockout_id: str,
    reason: str = Form(""),
    admin: Admin = Depends(require("operate")),
) -> Response:
    async def run(session: AsyncSession) -> str:
        why = interventions.clean_reason(reason, required=False)
        return await interventions.unlock(session, actor(admin), lockout_id, why)

    return await _act(request, run, lambda what: f"Unlocked {what}.")


# The incident procedure (security/key_rotation.py): admins only, the phrase typed in full.
@router.post("/dashboard/operations/api-keys/rotate-all", response_class=HTMLResponse)
async def rotate_all_api_keys(
    request: Request,
    reason: str = Form(""),
    confirm: str = Form(""),
    admin: Admin = Depends(require("administer")),
) -> Response:
    """Revoke every API key and issue successors, written to a 0600 file on the server."""
    settings = settings_of(request)
    try:
        if confirm.strip() != key_rotation.CONFIRMATION:
            raise InvalidRequest(
                f'type "{key_rotation.CONFIRMATION}" to confirm',
                param="confirm",
                code="confirmation_mismatch",
            )
        why = interventions.clean_reason(reason, required=True)
        assert why is not None
        path = key_rotation.default_rotation_file(settings.data_dir)
        done = await key_rotation.rotate_all_to_file(db_of(request), actor(admin), why, path)
    except TonrailError as exc:
        flash, status = {"kind": "error", "message": exc.message, "code": exc.code}, exc.status
    else:
        accounts = len({s.account_id for s in done})
        flash = {
            "kind": "ok",
            "code": "ok",
            "message": f"Revoked {len(done)} API keys of {accounts} accounts. Their successors "
            f"are in {path} on the server (mode 0600, readable by the service user only): "
            "hand them to the merchants, then delete the file.",
        }
        status = 200
    return await _page(request, flash, status)
