"""Payment instructions for invoices: `ton://transfer` deep links and their QR codes."""

from __future__ import annotations

import io
from urllib.parse import quote, urlencode

import segno


def transfer_link(
    pay_to: str, asset: str, amount: int, comment: str, usdt_master: str | None
) -> str | None:
    """The deep link wallets open: TON in nanoton; USDT via `jetton=<master>` in its units."""
    params: dict[str, str] = {"amount": str(amount), "text": comment}
    if asset == "USDT":
        if not usdt_master:
            return None
        params = {"jetton": usdt_master, **params}
    elif asset != "TON":
        return None
    return f"ton://transfer/{pay_to}?{urlencode(params, quote_via=quote)}"


def qr_svg(link: str) -> str:
    """An SVG QR code of the link (error correction M, the wallets' usual)."""
    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="svg", scale=6, border=2)
    return out.getvalue().decode()
