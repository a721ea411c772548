"""Rate limits of the hosted checkout page: token buckets per client address on `/pay/`.

The page is public (no API key), so its buckets are per address only (client_ip.py, behind
TRUSTED_PROXIES), drawn from the same limiter as the API's (shared through Redis when
REDIS_URL is set, per process otherwise). Two buckets: `pay` for the page, its status polls,
its QR code and backup-rail starts; the tighter `pay_lookup` for the jetton-wallet lookup,
which may ask toncenter. Static files and the TON Connect manifest are not limited (public,
cached). Past a bucket: 429 with `Retry-After`, an HTML page where the customer looks at one,
the API's JSON error shape where the page's script reads JSON. docs/CHECKOUT.md.
"""

from __future__ import annotations

import json

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tonrail.api_limits import headers_of
from tonrail.paypage.endpoints import env
from tonrail.security.client_ip import client_ip
from tonrail.security.rate_limits import Decision, RateLimited, RateLimiter
from tonrail.settings import Settings

UNLIMITED = ("/pay/static/", "/pay/tonconnect-manifest.json")
LOOKUP = "/jetton-wallet"
JSON_ENDS = ("/status", "/qr.svg", LOOKUP)


def refusal(decision: Decision, lookup: bool) -> RateLimited:
    what = "wallet lookups" if lookup else "checkout page requests"
    return RateLimited(
        f"too many {what} from this address ({decision.limit} at once, then refilled over "
        f"time); retry after {decision.retry_after_seconds} s"
    )


class PayLimits:
    """Draw one token from the client address's `/pay/` bucket before the page runs."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, settings: Settings) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted = settings.trusted_proxies
        self.merchant = settings.merchant_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/pay/") or path.startswith(UNLIMITED):
            await self.app(scope, receive, send)
            return
        ip = client_ip(scope, self.trusted)
        lookup = path.endswith(LOOKUP)
        charge = self.limiter.rules.for_pay(ip, lookup) if ip is not None else None
        decision = await self.limiter.hit([charge])
        if decision is None:
            await self.app(scope, receive, send)
            return
        if not decision.allowed:
            await self._refuse(decision, lookup, path.endswith(JSON_ENDS), send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in headers_of(decision):
                    headers.append(name.decode(), value.decode())
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, decision: Decision, lookup: bool, as_json: bool, send: Send) -> None:
        if as_json:
            body = json.dumps({"error": refusal(decision, lookup).to_dict()}).encode()
            content_type = b"application/json"
        else:
            page = env.get_template("pay_limited.html")
            html = page.render(merchant=self.merchant, retry=decision.retry_after_seconds)
            body = html.encode()
            content_type = b"text/html; charset=utf-8"
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *headers_of(decision),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
