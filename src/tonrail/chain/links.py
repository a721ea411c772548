"""Payment instructions for invoices (`ton://transfer` deep links and their QR codes), and
links to transactions in an explorer of the network in use."""

from __future__ import annotations

import io
from urllib.parse import quote, urlencode

import segno

from tonrail.chain.network import TonNetwork

# Public explorers by network; the local network's own toncenter v3 shows a transaction.
EXPLORERS = {
    "mainnet": "https://tonviewer.com/transaction/{hash}",
    "testnet": "https://testnet.tonviewer.com/transaction/{hash}",
}


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


def explorer_template(network: TonNetwork, configured: str = "") -> str | None:
    """The link to a transaction with `{hash}` in it: TON_EXPLORER_URL when set, else the
    network's explorer (tonviewer), else (localnet) its toncenter v3 `/transactions?hash=`."""
    if configured.strip():
        return configured.strip()
    if network.name in EXPLORERS:
        return EXPLORERS[network.name]
    if network.v3_urls:
        return network.v3_urls[0] + "/transactions?hash={hash}"
    return None


def explorer_link(template: str | None, tx_hash: str | None) -> str | None:
    """The explorer's page of the transaction (hex hash), or None when either is missing."""
    if not template or not tx_hash:
        return None
    return template.replace("{hash}", quote(tx_hash, safe=""))
