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
from tonrail.chain.address import check_network, raw_form
from tonrail.chain.links import qr_svg
from tonrail.errors import TonrailError
from tonrail.payments.service import PaymentService
from tonrail.paypage.jetton_wallets import JettonWallets
from tonrail.paypage.rules import (
    is_invoice_id,
    page_state,
    pay_link,
    public_status,
    remaining_minor,
    shown,
)
from tonrail.processing.checkout import BackupCheckout
from tonrail.settings import Settings

HERE = Path(__file__).parent
STATIC = {"pay.css": "text/css", "pay.js": "text/javascript", "icon.png": "image/png"}
# The TON Connect script: entry.js bundled with its npm packages (scripts/vendor_assets.py).
BUNDLED = Path(__file__).resolve().parents[1] / "vendor" / "pay-wallet.js"
# TON Connect's `network` of a transaction (the chain's global id); the local network: none.
CHAIN_IDS = {"mainnet": "-239", "testnet": "-3"}
# Autoescape on every template: the description is the merchant's text, shown to anyone.
env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["shown"] = shown
# Scripts only from us (no inline script, no CDN). The one hash allows the empty inline handler
# @tonconnect/ui sets (ontouchstart="", for iOS :active styles) and nothing else. Its wallet
# list, wallet icons and bridges are on the wallets' own https hosts; its widget styles itself
# with style elements.
EMPTY_HANDLER = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"  # sha256 of ""
CSP = (
    f"default-src 'none'; script-src 'self' 'unsafe-hashes' {EMPTY_HANDLER}; "
    "style-src 'self' 'unsafe-inline'; "
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


def _error(code: str, message: str, status: int, param: str | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "param": param}}
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def base_url(request: Request) -> str:
    """The public origin of the page: CHECKOUT_BASE_URL, else the request's own."""
    configured = _settings(request).checkout_base_url.strip().rstrip("/")
    return configured or str(request.base_url).rstrip("/")


def wallet_request(request: Request, invoice: dict[str, Any]) -> dict[str, str] | None:
    """What the TON Connect script needs to build the invoice's message (None: no TON
    payment on this page, e.g. PAYMENT_PROCESSOR_ADDRESS unset or a USD invoice)."""
    if not invoice.get("deep_link"):
        return None
    settings = _settings(request)
    wallets: JettonWallets = request.app.state.jetton_wallets
    return {
        "asset": invoice["asset"],
        "pay_to": invoice["pay_to"],
        "amount_minor": str(remaining_minor(invoice)),
        "comment": invoice["comment"],
        "network": CHAIN_IDS.get(wallets.network.name, ""),
        "attach_nanoton": str(settings.checkout_jetton_attach_nanoton),
        "forward_nanoton": str(settings.checkout_jetton_forward_nanoton),
    }


def _usdt_master(request: Request) -> str | None:
    wallets: JettonWallets = request.app.state.jetton_wallets
    return wallets.network.usdt_master


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
    status = public_status(invoice, now, _usdt_master(request))
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
            "wallet": wallet_request(request, invoice),
            "started": await backup.started(invoice["id"]),
            "error": error,
        },
        status_code,
    )


@router.get("/pay/tonconnect-manifest.json")
async def tonconnect_manifest(request: Request) -> JSONResponse:
    """The app manifest TON Connect wallets read: who asks them to pay."""
    base = base_url(request)
    return JSONResponse(
        {
            "url": base,
            "name": _settings(request).merchant_name,
            "iconUrl": f"{base}/pay/static/icon.png",
        },
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


@router.get("/pay/static/{name}")
async def static_file(name: str) -> Response:
    if name == BUNDLED.name:
        if not BUNDLED.is_file():
            return Response(
                "// pay-wallet.js is not built: run `make assets` (make setup)\n",
                status_code=503,
                media_type="text/javascript",
            )
        return FileResponse(
            BUNDLED,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )
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
    return JSONResponse(
        public_status(invoice, clock.now(), _usdt_master(request)), headers=NO_STORE
    )


@router.get("/pay/{invoice_id}/jetton-wallet")
async def pay_jetton_wallet(invoice_id: str, owner: str, request: Request) -> Response:
    """The customer's USDT jetton wallet (the TON Connect script sends its jetton transfer
    there); asked only for an open USDT invoice."""
    invoice = await _invoice(request, invoice_id)
    if invoice is None:
        return _error("not_found", "no such invoice", 404, "id")
    if invoice["asset"] != "USDT" or page_state(invoice, clock.now()) not in (
        "open",
        "partially_paid",
    ):
        return _error("invoice_not_payable", "this invoice takes no USDT payment now", 409)
    wallets: JettonWallets = request.app.state.jetton_wallets
    try:
        address = check_network(owner, wallets.network, "owner")
        wallet = await wallets.of(raw_form(address))
    except TonrailError as exc:
        return _error(exc.code, exc.message, exc.status, exc.param)
    except ValueError as exc:
        return _error("jetton_wallet_unknown", str(exc), 502)
    return JSONResponse({"owner": raw_form(address), "jetton_wallet": wallet}, headers=NO_STORE)


@router.get("/pay/{invoice_id}/qr.svg")
async def pay_qr(invoice_id: str, request: Request) -> Response:
    """The QR code of what is left to pay (the page asks again, `?remaining=`, after a
    partial payment)."""
    invoice = await _invoice(request, invoice_id)
    link = None if invoice is None else pay_link(invoice, _usdt_master(request))
    if link is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(qr_svg(link), media_type="image/svg+xml", headers=NO_STORE)


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
