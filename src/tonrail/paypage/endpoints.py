"""The hosted checkout page: public, no API key; the invoice's unguessable id is the key.

GET /pay/{id} renders the invoice (amount, QR code, ton:// link, TON Connect, backup rails);
GET /pay/{id}/status is what the page polls; POST /pay/{id}/rails/{rail} starts a backup-rail
checkout. An id that is malformed, unknown or a payout's gets the same 404 page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tonrail import clock
from tonrail.chain.links import qr_svg
from tonrail.errors import TonrailError
from tonrail.payments.service import PaymentService
from tonrail.paypage.rules import is_invoice_id, page_state, public_status, shown
from tonrail.processing.checkout import BackupCheckout
from tonrail.settings import Settings

HERE = Path(__file__).parent
STATIC = {"pay.css": "text/css", "pay.js": "text/javascript"}
# Autoescape on every template: the description is the merchant's text, shown to anyone.
env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["shown"] = shown
# Scripts only from us (no inline script, no CDN). TON Connect's wallet list, wallet icons and
# bridges are on the wallets' own https hosts; its widget styles itself with style elements.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; connect-src 'self' https:; font-src 'self'; "
    "form-action 'self' https:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
RAIL_LABELS = {"stripe": "Card (Stripe)", "paypal": "PayPal", "bank": "Bank transfer"}
NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter(include_in_schema=False)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def backup_options(request: Request) -> list[dict[str, str]]:
    """The backup rails a customer may choose here, in the configured order. Stripe only in
    Checkout Session mode: the page sends the customer to Stripe's own hosted page."""
    settings = _settings(request)
    out = []
    for name in request.app.state.backup_rails:
        if name == "stripe" and settings.stripe_incoming_mode != "checkout_session":
            continue
        out.append({"rail": name, "label": RAIL_LABELS.get(name, name)})
    return out


def _page(template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    html = env.get_template(template).render(context)
    return HTMLResponse(html, status_code=status_code, headers=NO_STORE)


def _missing(request: Request) -> HTMLResponse:
    return _page("pay_missing.html", {"merchant": _settings(request).merchant_name}, 404)


async def _invoice(request: Request, invoice_id: str) -> dict[str, Any] | None:
    if not is_invoice_id(invoice_id):
        return None
    payments: PaymentService = request.app.state.payments
    return await payments.invoice_by_id(invoice_id)


async def _render(
    request: Request,
    invoice: dict[str, Any],
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = _settings(request)
    now = clock.now()
    backup: BackupCheckout = request.app.state.backup_checkout
    state = page_state(invoice, now)
    status = public_status(invoice, now)
    return _page(
        "pay.html",
        {
            "merchant": settings.merchant_name,
            "invoice": invoice,
            "state": state,
            "status": status,
            "now": now.isoformat(),
            "poll_ms": settings.checkout_poll_ms,
            "options": backup_options(request) if state == "open" else [],
            "started": await backup.started(invoice["id"]),
            "error": error,
        },
        status_code,
    )


@router.get("/pay/static/{name}")
async def static_file(name: str) -> Response:
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/pay/{invoice_id}")
async def pay_page(invoice_id: str, request: Request) -> Response:
    invoice = await _invoice(request, invoice_id)
    if invoice is None:
        return _missing(request)
    return await _render(request, invoice)


@router.get("/pay/{invoice_id}/status")
async def pay_status(invoice_id: str, request: Request) -> Response:
    invoice = await _invoice(request, invoice_id)
    if invoice is None:
        return JSONResponse(
            {"error": {"code": "not_found", "message": "no such invoice", "param": "id"}},
            status_code=404,
            headers=NO_STORE,
        )
    return JSONResponse(public_status(invoice, clock.now()), headers=NO_STORE)


@router.get("/pay/{invoice_id}/qr.svg")
async def pay_qr(invoice_id: str, request: Request) -> Response:
    invoice = await _invoice(request, invoice_id)
    if invoice is None or not invoice.get("deep_link"):
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(
        qr_svg(invoice["deep_link"]),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.post("/pay/{invoice_id}/rails/{rail}")
async def pay_with(invoice_id: str, rail: str, request: Request) -> Response:
    """Start (or find again) the invoice's checkout on a backup rail: off to the provider's
    page (Stripe Checkout, PayPal approval), or back here with the bank details shown."""
    invoice = await _invoice(request, invoice_id)
    if invoice is None:
        return _missing(request)
    if rail not in {o["rail"] for o in backup_options(request)}:
        return await _render(request, invoice, f"{rail} is not offered here", 400)
    backup: BackupCheckout = request.app.state.backup_checkout
    try:
        started = await backup.checkout_for(None, invoice_id, rail)
    except TonrailError as exc:
        return await _render(request, invoice, f"{exc.message} ({exc.code})", exc.status)
    link = started.get("checkout_url") or started.get("approve_url")
    if isinstance(link, str) and link.startswith("https://"):
        return RedirectResponse(link, status_code=303)
    return RedirectResponse(f"/pay/{invoice_id}#backup", status_code=303)
