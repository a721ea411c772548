"""Local provider servers for tests: localstripe (a real stateful fake of Stripe) plus a
server for the Stripe endpoints localstripe lacks, and a PayPal server. Both follow the
providers' documented request and response shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """An aiohttp app served on 127.0.0.1 from its own thread and event loop."""

    def __init__(self, app: web.Application):
        self.app = app
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        ready = threading.Event()
        self._ready = ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._runner = web.AppRunner(self.app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self.loop.run_until_complete(start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ThreadServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def stop() -> None:
            assert self._runner is not None
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


# ---------------------------------------------------------------- Stripe (what localstripe lacks)
@dataclass
class StripeExtras:
    """Checkout Sessions and Connect transfers as documented (api/checkout/sessions,
    api/transfers), with Idempotency-Key replay; everything else goes to localstripe."""

    localstripe: str
    secret_key: str = "sk_test_tonrail"  # the key the sessions' PaymentIntents are made with
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    replays: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: int = 0  # the next creates and session reads answer 500

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._idem(self.create_session))
        app.router.add_get("/v1/checkout/sessions/{id}", self.get_session)
        app.router.add_post("/v1/transfers", self._idem(self.create_transfer))
        app.router.add_get("/v1/transfers/{id}", self.get_transfer)
        app.router.add_post("/_test/checkout/sessions/{id}/complete", self.complete_session)
        app.router.add_route("*", "/{tail:.*}", self.proxy)
        return app

    def _idem(
        self, handler: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            if not request.headers.get("Authorization", "").startswith("Bearer sk_"):
                return web.json_response({"error": {"type": "invalid_request_error"}}, status=401)
            if self.fail_next:
                self.fail_next -= 1
                return web.json_response(
                    {"error": {"type": "api_error", "message": "boom"}}, status=500
                )
            key = request.headers.get("Idempotency-Key")
            if key and key in self.replays:
                return web.json_response(self.replays[key])
            form = _unflatten(dict(await request.post()))
            obj = handler(form)
            if key:
                self.replays[key] = obj
            return web.json_response(obj)

        return wrapped

    def create_session(self, form: dict[str, Any]) -> dict[str, Any]:
        sid = "cs_test_" + secrets.token_hex(12)
        item = form["line_items"]["0"]
        amount = int(item["price_data"]["unit_amount"]) * int(item["quantity"])
        obj = {
            "id": sid,
            "object": "checkout.session",
            "amount_total": amount,
            "currency": item["price_data"]["currency"],
            "client_reference_id": form.get("client_reference_id"),
            "metadata": form.get("metadata", {}),
            "mode": form["mode"],
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": form["success_url"],
            "cancel_url": form["cancel_url"],
            "url": f"https://checkout.stripe.com/c/pay/{sid}",
            "created": int(time.time()),
            "livemode": False,
        }
        self.sessions[sid] = obj
        return obj

    async def get_session(self, request: web.Request) -> web.Response:
        if self.fail_next:
            self.fail_next -= 1
            return web.json_response(
                {"error": {"type": "api_error", "message": "boom"}}, status=500
            )
        obj = self.sessions.get(request.match_info["id"])
        if obj is None:
            return web.json_response({"error": {"type": "invalid_request_error"}}, status=404)
        return web.json_response(obj)

    async def complete_session(self, request: web.Request) -> web.Response:
        """What the customer does on Stripe's page: pay the session's total by card. As at
        Stripe, that makes a PaymentIntent (here a real one in localstripe, confirmed with a
        test card) and the session names it in `payment_intent` (api/checkout/sessions/object)."""
        obj = self.sessions[request.match_info["id"]]
        if obj["status"] == "complete":
            return web.json_response(obj)
        # Who paid, as the customer typed it on the page (optional JSON body: name, email);
        # Stripe reports it as the session's `customer_details` once it is complete.
        payer = await request.json() if request.can_read_body else {}
        auth = {"Authorization": f"Bearer {self.secret_key}"}
        async with httpx.AsyncClient(base_url=self.localstripe, headers=auth) as client:
            pm = await client.post(
                "/v1/payment_methods",
                data={
                    "type": "card",
                    "card[number]": "4242424242424242",
                    "card[exp_month]": "12",
                    "card[exp_year]": "2040",
                    "card[cvc]": "123",
                },
            )
            pm.raise_for_status()
            pi = await client.post(
                "/v1/payment_intents",
                data={
                    "amount": str(obj["amount_total"]),
                    "currency": obj["currency"],
                    "payment_method": pm.json()["id"],
                    "payment_method_types[]": "card",
                },
            )
            pi.raise_for_status()
            intent = pi.json()["id"]
            done = await client.post(f"/v1/payment_intents/{intent}/confirm")
            done.raise_for_status()
            assert done.json()["status"] == "succeeded", done.text
        obj.update(status="complete", payment_status="paid", payment_intent=intent)
        if payer:
            obj["customer_details"] = {
                "name": payer.get("name"),
                "email": payer.get("email"),
                "address": None,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            }
        return web.json_response(obj)

    def create_transfer(self, form: dict[str, Any]) -> dict[str, Any]:
        tid = "tr_" + secrets.token_hex(12)
        obj = {
            "id": tid,
            "object": "transfer",
            "amount": int(form["amount"]),
            "amount_reversed": 0,
            "currency": form["currency"],
            "destination": form["destination"],
            "transfer_group": form.get("transfer_group"),
            "metadata": form.get("metadata", {}),
            "reversed": False,
            "created": int(time.time()),
            "livemode": False,
        }
        self.transfers[tid] = obj
        return obj

    async def get_transfer(self, request: web.Request) -> web.Response:
        obj = self.transfers.get(request.match_info["id"])
        if obj is None:
            return web.json_response({"error": {"type": "invalid_request_error"}}, status=404)
        return web.json_response(obj)

    async def proxy(self, request: web.Request) -> web.Response:
        async with httpx.AsyncClient(base_url=self.localstripe) as client:
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in ("host", "content-length")
            }
            r = await client.request(
                request.method,
                request.path_qs,
                content=await request.read(),
                headers=headers,
            )
        return web.Response(body=r.content, status=r.status_code, content_type="application/json")


def _unflatten(form: dict[str, str]) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`) into nested dicts (list indexes as keys)."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


# ---------------------------------------------------------------- PayPal
@dataclass
class PayPalServer:
    """OAuth2, Orders v2, Payouts and verify-webhook-signature, shaped as PayPal documents."""

    client_id: str = "client-id"
    client_secret: str = "client-secret"
    token_ttl: int = 32400
    tokens: dict[str, float] = field(default_factory=dict)
    token_requests: int = 0
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    request_ids: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoke_tokens_once: bool = False
    fail_5xx: int = 0
    valid_signatures: set[str] = field(default_factory=set)
    captures: int = 0
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/oauth2/token", self.token)
        app.router.add_post("/v2/checkout/orders", self.authed(self.create_order))
        app.router.add_get("/v2/checkout/orders/{id}", self.authed(self.get_order))
        app.router.add_post("/v2/checkout/orders/{id}/capture", self.authed(self.capture))
        app.router.add_post("/v2/payments/captures/{id}/refund", self.authed(self.refund))
        app.router.add_get("/v2/payments/refunds/{id}", self.authed(self.get_refund))
        app.router.add_post("/v1/payments/payouts", self.authed(self.create_payout))
        app.router.add_get("/v1/payments/payouts/{id}", self.authed(self.get_payout))
        app.router.add_post("/v1/notifications/verify-webhook-signature", self.authed(self.verify))
        app.router.add_get("/v1/notifications/certs/{name}", self.cert)
        return app

    # PayPal's signing certificate (a self-signed RSA one here) and how PayPal signs.
    _key: Any = None
    _cert_pem: bytes = b""

    def _signing_material(self) -> tuple[Any, bytes]:
        if self._key is None:
            from datetime import UTC, datetime, timedelta

            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
            from cryptography.x509.oid import NameOID

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            cn = x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.paypal.com")
            name = x509.Name([cn])
            now = datetime.now(UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=365))
                .sign(key, hashes.SHA256())
            )
            self._key, self._cert_pem = key, cert.public_bytes(serialization.Encoding.PEM)
        return self._key, self._cert_pem

    async def cert(self, request: web.Request) -> web.Response:
        pem = self._signing_material()[1]
        return web.Response(body=pem, content_type="application/x-pem-file")

    def sign_webhook(self, transmission_id: str, when: str, webhook_id: str, body: bytes) -> str:
        """The PAYPAL-TRANSMISSION-SIG PayPal sends: RSA-SHA256 over id|time|webhook|crc32."""
        import zlib

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        key, _ = self._signing_material()
        message = f"{transmission_id}|{when}|{webhook_id}|{zlib.crc32(body)}".encode()
        return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        auth = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        form = await request.post()
        if auth != f"Basic {expected}" or form.get("grant_type") != "client_credentials":
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                status=401,
            )
        token = "A21AA" + secrets.token_hex(16)
        self.tokens[token] = time.time() + self.token_ttl
        return web.json_response(
            {
                "scope": "https://uri.paypal.com/services/payments/payment",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": self.token_ttl,
                "nonce": secrets.token_hex(8),
            }
        )

    def authed(
        self, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if self.revoke_tokens_once:
                self.revoke_tokens_once = False
                self.tokens.clear()
            if self.tokens.get(token, 0) < time.time():
                return web.json_response(
                    {
                        "error": "invalid_token",
                        "error_description": "Token signature verification failed",
                    },
                    status=401,
                )
            if self.fail_5xx:
                self.fail_5xx -= 1
                return web.json_response(
                    {
                        "name": "INTERNAL_SERVER_ERROR",
                        "message": "An internal server error occurred.",
                    },
                    status=500,
                )
            rid = request.headers.get("PayPal-Request-Id")
            if request.method == "POST" and rid and rid in self.request_ids:
                return web.json_response(self.request_ids[rid], status=201)
            response = await handler(request)
            if request.method == "POST" and rid and response.status < 300:
                assert response.text is not None
                self.request_ids[rid] = json.loads(response.text)
            return response

        return wrapped

    async def create_order(self, request: web.Request) -> web.Response:
        body = await request.json()
        oid = secrets.token_hex(8).upper()
        unit = body["purchase_units"][0]
        order = {
            "id": oid,
            "intent": body["intent"],
            "status": "PAYER_ACTION_REQUIRED",
            "purchase_units": [
                {
                    "reference_id": unit["reference_id"],
                    "amount": unit["amount"],
                    "custom_id": unit.get("custom_id"),
                    "invoice_id": unit.get("invoice_id"),
                }
            ],
            "links": [
                {
                    "href": f"{request.url.origin()}/v2/checkout/orders/{oid}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"https://www.sandbox.paypal.com/checkoutnow?token={oid}",
                    "rel": "payer-action",
                    "method": "GET",
                },
            ],
        }
        self.orders[oid] = order
        return web.json_response(order, status=200)

    def approve(self, oid: str, payer: dict[str, Any] | None = None) -> None:
        """What the buyer does at the approve URL; PayPal then shows the order's `payer`
        (name, email_address, payer_id) as Orders v2 does once the buyer has signed in."""
        self.orders[oid]["status"] = "APPROVED"
        if payer is not None:
            self.orders[oid]["payer"] = payer

    async def get_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return web.json_response(
                {"name": "RESOURCE_NOT_FOUND", "message": "not found"}, status=404
            )
        return web.json_response(order)

    async def capture(self, request: web.Request) -> web.Response:
        order = self.orders[request.match_info["id"]]
        if order["status"] != "APPROVED":
            return web.json_response(
                {
                    "name": "UNPROCESSABLE_ENTITY",
                    "details": [{"issue": "ORDER_NOT_APPROVED"}],
                    "message": "The requested action could not be performed.",
                },
                status=422,
            )
        self.captures += 1
        amount = order["purchase_units"][0]["amount"]
        gross = round(float(amount["value"]) * 100)
        fee = (gross * 349 + 5000) // 10000 + 49  # PayPal's own rate differs from ours
        order["status"] = "COMPLETED"
        order["purchase_units"][0]["payments"] = {
            "captures": [
                {
                    "id": secrets.token_hex(8).upper(),
                    "status": "COMPLETED",
                    "amount": amount,
                    "final_capture": True,
                    "seller_receivable_breakdown": {
                        "gross_amount": amount,
                        "paypal_fee": {
                            "currency_code": amount["currency_code"],
                            "value": f"{fee // 100}.{fee % 100:02d}",
                        },
                        "net_amount": {
                            "currency_code": amount["currency_code"],
                            "value": f"{(gross - fee) // 100}.{(gross - fee) % 100:02d}",
                        },
                    },
                }
            ]
        }
        return web.json_response(order, status=201)

    def _capture(self, capture_id: str) -> dict[str, Any] | None:
        for order in self.orders.values():
            for unit in order["purchase_units"]:
                for capture in unit.get("payments", {}).get("captures", []):
                    if capture["id"] == capture_id:
                        return dict(capture)
        return None

    async def refund(self, request: web.Request) -> web.Response:
        """Payments v2 `POST /v2/payments/captures/{capture_id}/refund`: all of the capture
        without `amount`, else that part; never more than what is left of the capture."""
        capture_id = request.match_info["id"]
        capture = self._capture(capture_id)
        if capture is None:
            return web.json_response(
                {
                    "name": "RESOURCE_NOT_FOUND",
                    "details": [{"issue": "INVALID_RESOURCE_ID"}],
                    "message": "The specified resource does not exist.",
                },
                status=404,
            )
        body = await request.json() if request.can_read_body else {}
        captured = capture["amount"]
        amount = body.get("amount") or captured
        cents = round(float(amount["value"]) * 100)
        done = sum(
            round(float(r["amount"]["value"]) * 100)
            for r in self.refunds.values()
            if r["capture_id"] == capture_id
        )
        issue = None
        if amount["currency_code"] != captured["currency_code"]:
            issue = "REFUND_CURRENCY_MISMATCH"
        elif done + cents > round(float(captured["value"]) * 100):
            issue = "REFUND_AMOUNT_EXCEEDED"
        if issue is not None:
            return web.json_response(
                {
                    "name": "UNPROCESSABLE_ENTITY",
                    "details": [{"issue": issue}],
                    "message": "The requested action could not be performed.",
                },
                status=422,
            )
        rid = secrets.token_hex(8).upper()
        refund = {
            "id": rid,
            "status": "COMPLETED",
            "amount": amount,
            "invoice_id": body.get("invoice_id"),
            "note_to_payer": body.get("note_to_payer"),
            "links": [
                {
                    "href": f"{request.url.origin()}/v2/payments/refunds/{rid}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{request.url.origin()}/v2/payments/captures/{capture_id}",
                    "rel": "up",
                    "method": "GET",
                },
            ],
        }
        self.refunds[rid] = {**refund, "capture_id": capture_id}
        return web.json_response(refund, status=201)

    async def get_refund(self, request: web.Request) -> web.Response:
        refund = self.refunds.get(request.match_info["id"])
        if refund is None:
            return web.json_response(
                {"name": "RESOURCE_NOT_FOUND", "message": "not found"}, status=404
            )
        return web.json_response({k: v for k, v in refund.items() if k != "capture_id"})

    async def create_payout(self, request: web.Request) -> web.Response:
        body = await request.json()
        bid = secrets.token_hex(6).upper()
        item = body["items"][0]
        self.batches[bid] = {
            "batch_header": {
                "payout_batch_id": bid,
                "batch_status": "PENDING",
                "sender_batch_header": body["sender_batch_header"],
            },
            "items": [
                {
                    "payout_item_id": secrets.token_hex(6).upper(),
                    "transaction_status": "PENDING",
                    "payout_batch_id": bid,
                    "payout_item": {
                        "recipient_type": item["recipient_type"],
                        "amount": item["amount"],
                        "receiver": item["receiver"],
                        "sender_item_id": item["sender_item_id"],
                    },
                }
            ],
        }
        return web.json_response(
            {
                "batch_header": self.batches[bid]["batch_header"],
                "links": [{"href": f"/v1/payments/payouts/{bid}", "rel": "self", "method": "GET"}],
            },
            status=201,
        )

    def settle_payout(self, bid: str, status: str = "SUCCESS") -> None:
        batch = self.batches[bid]
        batch["batch_header"]["batch_status"] = "SUCCESS"
        item = batch["items"][0]
        item["transaction_status"] = status
        item["payout_item_fee"] = {
            "currency": item["payout_item"]["amount"]["currency"],
            "value": "0.25",
        }
        if status != "SUCCESS":
            item["errors"] = {
                "name": "RECEIVER_UNREGISTERED",
                "message": "Receiver is unregistered",
            }

    async def get_payout(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return web.json_response(
                {"name": "INVALID_RESOURCE_ID", "message": "not found"}, status=404
            )
        return web.json_response(batch)

    async def verify(self, request: web.Request) -> web.Response:
        body = await request.json()
        ok = (
            body.get("transmission_sig") in self.valid_signatures
            and isinstance(body.get("webhook_event"), dict)
            and all(
                body.get(k)
                for k in (
                    "auth_algo",
                    "cert_url",
                    "transmission_id",
                    "transmission_time",
                    "webhook_id",
                )
            )
        )
        return web.json_response({"verification_status": "SUCCESS" if ok else "FAILURE"})
