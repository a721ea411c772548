"""Payments: the filtered history, its CSV export, and one payment's detail page."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from tonrail import clock
from tonrail.dashboard.deps import db_of, is_htmx, require, settings_of
from tonrail.dashboard.explorer import explorer_for
from tonrail.dashboard.queries import payments as queries
from tonrail.dashboard.queries.payments import (
    AttemptStory,
    ExportRow,
    FilterInvalid,
    PaymentFilters,
)
from tonrail.dashboard.templating import render
from tonrail.money import ASSET_DECIMALS, format_minor
from tonrail.payments.states import TERMINAL_PAYMENT_STATES
from tonrail.security.admins import Admin

router = APIRouter()

RESULTS_ID = "payments-results"
CSV_COLUMNS = (
    "id",
    "created_at",
    "direction",
    "status",
    "asset",
    "amount",
    "amount_minor",
    "usdt_equivalent",
    "rail",
    "counterparty",
    "reference",
    "priority",
    "failure_code",
    "description",
    "metadata",
    "completed_at",
    "account_id",
    "requested_by",
)
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _filter_choices() -> dict[str, Any]:
    return {
        "statuses": queries.STATUSES,
        "rails": queries.RAILS,
        "assets": queries.ASSETS,
        "directions": queries.DIRECTIONS,
    }


@router.get("/dashboard/payments", response_class=HTMLResponse)
async def payments_page(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    """The history: full page, or only the results when htmx asks (filters, pager, polling)."""
    settings = settings_of(request)
    params = request.query_params
    fragment = is_htmx(request) and request.headers.get("hx-history-restore-request") != "true"
    template = "fragments/payments_results.html" if fragment else "payments.html"
    ctx: dict[str, Any] = {
        "section": "payments",
        "results_id": RESULTS_ID,
        "form": {k: params.get(k, "") for k in queries.FILTER_KEYS},
        **_filter_choices(),
    }
    try:
        filters = queries.parse_filters(params)
        after, before = params.get("after") or None, params.get("before") or None
        async with db_of(request).transaction() as session:
            result = await queries.page(
                session, filters, settings.dashboard_page_size, after=after, before=before
            )
    except FilterInvalid as exc:
        ctx.update(error=exc, filters=None, result=None, live=False, here="")
        return render(request, template, ctx, status_code=400)
    here = filters.query(**({"after": after} if after else {"before": before} if before else {}))
    ctx.update(
        error=None,
        filters=filters,
        result=result,
        # Only the first page follows new payments; a later page must hold still to be read.
        live=not after and not before,
        here=here,
        count_cap=queries.COUNT_CAP,
        now=clock.now(),
    )
    response = render(request, template, ctx)
    if fragment and request.headers.get("hx-trigger") != RESULTS_ID:
        # A clean URL in the address bar (no empty fields), without pushing on every poll.
        response.headers["HX-Push-Url"] = "/dashboard/payments" + (f"?{here}" if here else "")
    return response


def csv_cell(value: object) -> str:
    """One CSV cell: text that a spreadsheet would run as a formula gets a leading `'`."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_record(item: ExportRow) -> list[str]:
    p = item.row
    values: Iterable[object] = (
        p.id,
        p.created_at.isoformat(),
        p.direction,
        p.status,
        p.asset,
        format_minor(p.amount, p.asset),
        p.amount,
        format_minor(p.usdt_equivalent, "USDT"),
        item.rail,
        p.counterparty,
        p.reference,
        p.priority,
        p.failure_code,
        p.description,
        json.dumps(p.metadata or {}, ensure_ascii=False, sort_keys=True),
        p.completed_at.isoformat() if p.completed_at else None,
        p.account_id,
        p.requested_by,
    )
    return [csv_cell(v) for v in values]


@router.get("/dashboard/payments.csv")
async def payments_csv(request: Request, admin: Admin = Depends(require("view"))) -> Response:
    """The filtered history as CSV, streamed in keyset batches (exact decimal amounts)."""
    try:
        filters = queries.parse_filters(request.query_params)
    except FilterInvalid as exc:
        return JSONResponse({"error": exc.to_dict()}, status_code=400)
    db = db_of(request)

    async def lines(f: PaymentFilters) -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        yield out.getvalue()
        async for batch in queries.export_batches(db, f):
            out.seek(0)
            out.truncate()
            writer.writerows(csv_record(r) for r in batch)
            yield out.getvalue()

    name = f"payments-{clock.now().strftime('%Y%m%dT%H%M%SZ')}.csv"
    return StreamingResponse(
        lines(filters),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


# What a provider or the chain identifies an attempt by, in the order an operator looks for it.
TON_TRACE_TXS = (
    ("destination_tx", "destination transaction"),
    ("our_jetton_wallet_tx", "our jetton wallet transaction"),
    ("recipient_jetton_wallet_tx", "recipient jetton wallet transaction"),
    ("excess_tx", "excess returned"),
    ("bounce_tx", "bounce transaction"),
)
BACKUP_DETAILS = (
    ("reason", "routed because"),
    ("mode", "mode"),
    ("provider_status", "provider status"),
    ("reference", "reference"),
    ("capture_id", "capture id"),
    ("international", "international"),
)


def attempt_refs(story: AttemptStory) -> list[tuple[str, str, str]]:
    """(label, value, kind) rows of an attempt; kind `tx` and `address` become explorer links."""
    a, t, r = story.attempt, story.transfer, story.request
    details = a.details or {}
    refs: list[tuple[str, str, str]] = []
    if a.rail == "ton":
        if a.provider_ref:
            refs.append(("external message", a.provider_ref, "tx"))
        if r is not None:
            refs.append(("query_id", str(r.query_id), "text"))
            if r.ext_tx_hash:
                refs.append(("wallet transaction", r.ext_tx_hash, "tx"))
        if t is not None:
            refs.append(("transfer status", t.status, "text"))
            if t.out_msg_hash:
                refs.append(("outgoing message", t.out_msg_hash, "tx"))
        trace = {**(t.trace if t is not None else {}), **details}
        refs.extend(
            (label, str(trace[key]), "tx") for key, label in TON_TRACE_TXS if trace.get(key)
        )
        if trace.get("recipient_jetton_wallet"):
            refs.append(
                ("recipient jetton wallet", str(trace["recipient_jetton_wallet"]), "address")
            )
        if trace.get("delivery") == "non_bounceable":
            refs.append(
                ("confirmed by", "our wallet's send (non-bounceable: cannot return)", "text")
            )
        if details.get("reason"):
            refs.append(("routed because", str(details["reason"]), "text"))
        return refs
    if a.provider_ref:
        refs.append(("provider reference", a.provider_ref, "text"))
    refs.extend(
        (label, str(details[key]), "text") for key, label in BACKUP_DETAILS if key in details
    )
    asset, amount = details.get("rail_asset"), details.get("rail_amount")
    if isinstance(asset, str) and asset in ASSET_DECIMALS and str(amount).isdigit():
        refs.append(
            ("amount on the rail", f"{format_minor(int(str(amount)), asset)} {asset}", "text")
        )
    return refs


@router.get("/dashboard/payments/{payment_id}", response_class=HTMLResponse)
async def payment_page(
    request: Request, payment_id: str, admin: Admin = Depends(require("view"))
) -> Response:
    """One payment: facts, attempt timeline, ledger lines, fee decision, events, approvals."""
    settings = settings_of(request)
    async with db_of(request).transaction() as session:
        found = await queries.detail(session, payment_id)
    fragment = is_htmx(request) and request.headers.get("hx-history-restore-request") != "true"
    if found is None:
        return render(
            request,
            "fragments/flash.html" if fragment else "payments_missing.html",
            {
                "section": "payments",
                "kind": "error",
                "code": "payment_not_found",
                "message": f"No payment {payment_id[:40]!r}.",
            },
            status_code=404,
        )
    return render(
        request,
        "fragments/payment_detail_body.html" if fragment else "payment_detail.html",
        {
            "section": "payments",
            "d": found,
            "p": found.payment,
            "explorer": explorer_for(settings),
            "attempt_refs": attempt_refs,
            "as_json": lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str),
            "approvals_required": settings.approvals_required,
            "live": found.payment.status not in TERMINAL_PAYMENT_STATES,
            "now": clock.now(),
        },
    )
