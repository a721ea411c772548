"""The testnet rehearsal: real payments through a deployment's public API (`pay`), then each
one checked on the chain through toncenter, independently of tonrail's database, and the
books checked (`verify`), which writes the record the mainnet deploy requires (record.py).

`make test-payments` runs `tonrail rehearsal pay`, `make verify-testnet-payments` runs
`tonrail rehearsal verify`. Both read RehearsalSettings (TONRAIL_*, or var/stack.env from
`make stack-up`), so with TONRAIL_NETWORK=testnet and a toncenter key they run against the
real testnet unchanged. The payments (tiny amounts, each to an address made for this run):

- ton_payout: TON to a fresh address, non-bounceable: succeeds, credited once;
- usdt_payout: USDT to a fresh address: succeeds, the jetton transfer lands;
- idempotent_retry: the same payout POSTed twice with one Idempotency-Key: the second
  answer replays the first (same id), and the chain shows one transfer only;
- bounce: TON to an uninitialised address in bounceable form: the message bounces back
  and the payout fails, with the money back in the hot wallet;
- invoice: an invoice the payer wallet pays with its reference: it succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from ton_core import Address

from tonrail import clock
from tonrail.deploy import record
from tonrail.money import format_minor
from tonrail.payments.states import INVOICE_TRANSITIONS, PAYOUT_TRANSITIONS, PaymentStatus
from tonrail.rails.ton.chain_view import raw
from tonrail.settings import RehearsalSettings

FINAL_PAYOUT = {s for s, moves in PAYOUT_TRANSITIONS.items() if not moves}
FINAL_INVOICE = {s for s, moves in INVOICE_TRANSITIONS.items() if not moves}
# (check, asset, amount in minor units, expected final status)
PLAN: tuple[tuple[str, str, int, PaymentStatus], ...] = (
    ("ton_payout", "TON", 50_000_000, PaymentStatus.SUCCEEDED),
    ("usdt_payout", "USDT", 100_000, PaymentStatus.SUCCEEDED),
    ("idempotent_retry", "TON", 20_000_000, PaymentStatus.SUCCEEDED),
    ("bounce", "TON", 30_000_000, PaymentStatus.FAILED),
    ("invoice", "TON", 40_000_000, PaymentStatus.SUCCEEDED),
)


class RehearsalError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def state_path(record_dir: Path, network: str) -> Path:
    """Where `pay` leaves what it did for `verify`."""
    return record_dir / f"{network}-rehearsal-payments.json"


def fresh_address(run_id: str, label: str, *, bounceable: bool, testnet: bool) -> str:
    """An address nobody holds a key to and nothing was ever sent to: uninitialised."""
    digest = hashlib.sha256(f"tonrail-rehearsal/{run_id}/{label}".encode()).digest()
    return str(
        Address((0, digest)).to_str(
            is_user_friendly=True, is_bounceable=bounceable, is_test_only=testnet
        )
    )


def _require(cfg: RehearsalSettings, *names: str) -> None:
    missing = [
        f"TONRAIL_{n.upper()}"
        for n in names
        if not (v.get_secret_value() if hasattr(v := getattr(cfg, n), "get_secret_value") else v)
    ]
    if missing:
        raise RehearsalError(
            f"not set: {', '.join(missing)} (environment or var/stack.env; docs/DEPLOY.md)"
        )


# -- pay ---------------------------------------------------------------------------------------


@dataclass
class Api:
    """The deployment's public API, as a merchant uses it."""

    client: httpx.AsyncClient

    async def post(self, path: str, body: dict[str, Any], key: str) -> httpx.Response:
        return await self.client.post(path, json=body, headers={"Idempotency-Key": key})

    async def created(self, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        response = await self.post(path, body, key)
        if response.status_code >= 400:
            raise RehearsalError(f"POST {path} answered {response.status_code}: {response.text}")
        data: dict[str, Any] = response.json()
        return data

    async def get(self, path: str) -> dict[str, Any]:
        response = await self.client.get(path)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


async def wait_final(
    api: Api, path: str, final: set[str], wait: float, poll: float = 1.0
) -> dict[str, Any]:
    """GET `path` until its status is final (or give up and return the last answer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        obj = await api.get(path)
        if obj["status"] in final or loop.time() >= deadline:
            return obj
        await asyncio.sleep(poll)


PayInvoice = Callable[[dict[str, Any], int], Awaitable[str]]


async def pay(
    cfg: RehearsalSettings,
    record_dir: Path,
    *,
    pay_invoice: PayInvoice | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    poll: float = 1.0,
) -> dict[str, Any]:
    """Make the rehearsal's payments, wait for their outcomes, write the state for verify.
    Returns the state; each item says whether its outcome was the expected one."""
    _require(cfg, "api_url", "api_key", "toncenter_url")
    testnet = cfg.network == "testnet"
    run_id = f"{clock.now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    payer = pay_invoice or _payer(cfg)
    items: list[dict[str, Any]] = []
    auth = {"Authorization": f"Bearer {cfg.api_key.get_secret_value()}"}
    async with httpx.AsyncClient(
        base_url=cfg.api_url.rstrip("/"), headers=auth, timeout=30.0, transport=transport
    ) as client:
        api = Api(client)
        for check, asset, amount, expected in PLAN:
            key = f"rehearsal-{run_id}-{check}"
            item: dict[str, Any] = {
                "check": check,
                "asset": asset,
                "amount_minor": amount,
                "expected": expected,
                "idempotency_key": key,
            }
            body: dict[str, Any] = {
                "amount": format_minor(amount, asset),
                "asset": asset,
                "description": f"tonrail rehearsal {run_id}: {check}",
                "metadata": {"rehearsal": run_id, "check": check},
            }
            if check == "invoice":
                body["expires_in_seconds"] = 3600
                invoice = await api.created("/v1/invoices", body, key)
                item.update(id=invoice["id"], pay_to=invoice["pay_to"], comment=invoice["comment"])
                item["payer"] = await payer(invoice, amount)
                path = f"/v1/invoices/{invoice['id']}"
            else:
                body["priority"] = "urgent"
                body["destination"] = fresh_address(
                    run_id, check, bounceable=check == "bounce", testnet=testnet
                )
                payout = await api.created("/v1/payouts", body, key)
                item.update(id=payout["id"], destination=body["destination"])
                if check == "idempotent_retry":
                    again = await api.post("/v1/payouts", body, key)
                    item["retry"] = {
                        "status_code": again.status_code,
                        "replayed": again.headers.get("Idempotent-Replayed") == "true",
                        "same_id": again.status_code < 400 and again.json()["id"] == payout["id"],
                    }
                path = f"/v1/payouts/{payout['id']}"
            item["path"] = path
            items.append(item)
        for item in items:
            obj = await wait_final(
                api,
                item["path"],
                FINAL_INVOICE if item["check"] == "invoice" else FINAL_PAYOUT,
                cfg.rehearsal_timeout_seconds,
                poll,
            )
            item["status"] = obj["status"]
            item["ok"] = obj["status"] == item["expected"] and item.get("retry", {}).get(
                "same_id", True
            )
    state = {
        "run_id": run_id,
        "network": cfg.network,
        "api_url": cfg.api_url,
        "started_at": datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").isoformat() + "+00:00",
        "items": items,
    }
    out = state_path(record_dir, cfg.network)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(state, indent=2) + "\n")
    return state


def _payer(cfg: RehearsalSettings) -> PayInvoice:
    """Pay an invoice from the payer wallet, a real signed transfer (tonrail/demo.py)."""

    async def pay_invoice(invoice: dict[str, Any], amount: int) -> str:
        from tonrail.demo import CustomerWallet

        _require(cfg, "payer_address")
        if not (cfg.payer_private_key.get_secret_value() or cfg.payer_mnemonic.get_secret_value()):
            raise RehearsalError("not set: TONRAIL_PAYER_PRIVATE_KEY or TONRAIL_PAYER_MNEMONIC")
        wallet = CustomerWallet(
            cfg.v2_url,
            cfg.payer_private_key.get_secret_value(),
            cfg.usdt_master,
            testnet=cfg.network == "testnet",
            api_key=cfg.toncenter_api_key.get_secret_value() or "local",
            mnemonic=cfg.payer_mnemonic.get_secret_value(),
            rps_limit=1000 if cfg.network == "localnet" else 5,
        )
        try:
            address = await wallet.open()
            if raw(address) != raw(cfg.payer_address):
                raise RehearsalError(
                    f"the payer key opens {address}, not TONRAIL_PAYER_ADDRESS {cfg.payer_address}"
                )
            await wallet.pay(invoice["pay_to"], invoice["asset"], amount, invoice["comment"])
        finally:
            await wallet.close()
        return address

    return pay_invoice


# -- verify ------------------------------------------------------------------------------------


@dataclass
class Chain:
    """toncenter v3, read-only: what the chain says, not what tonrail says."""

    client: httpx.AsyncClient
    attempts: int = 6

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        for attempt in range(self.attempts):
            response = await self.client.get(path, params=params)
            if response.status_code != 429 or attempt == self.attempts - 1:
                break
            await asyncio.sleep(1.0 + attempt)  # the public endpoints rate-limit
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def incoming(self, account: str, limit: int = 50) -> list[dict[str, Any]]:
        """The account's transactions with an internal incoming message, newest first."""
        txs = (await self.get("/transactions", account=account, limit=limit, sort="desc"))[
            "transactions"
        ]
        return [t for t in txs if t.get("in_msg") and t["in_msg"].get("source")]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, **self.facts}


def _bounced_back(tx: dict[str, Any], to: str) -> bool:
    return any(
        m.get("bounced") and (m.get("destination") or "").upper() == to
        for m in tx.get("out_msgs", [])
    )


async def check_ton(chain: Chain, item: dict[str, Any], hot: str) -> Check:
    """Credited once, from the hot wallet, with the amount, not bounced."""
    dest = item["destination"]
    from_hot = [t for t in await chain.incoming(dest) if t["in_msg"]["source"].upper() == hot]
    credited = [
        t
        for t in from_hot
        if int(t["in_msg"]["value"]) == item["amount_minor"] and not _bounced_back(t, hot)
    ]
    name = item["check"]
    if len(credited) != 1 or len(from_hot) != 1:
        return Check(
            name,
            False,
            f"{dest}: {len(from_hot)} messages from the hot wallet, {len(credited)} credited"
            f" with {item['amount_minor']} nanoton; expected exactly one",
        )
    tx = credited[0]
    detail = f"{format_minor(item['amount_minor'], 'TON')} TON credited to {dest} once"
    if name == "idempotent_retry":
        retry = item.get("retry", {})
        if not (retry.get("replayed") and retry.get("same_id")):
            return Check(name, False, f"the retry was not replayed as the same payout: {retry}")
        detail += "; the retry with the same Idempotency-Key replayed the same payout"
    return Check(name, True, detail, {"tx_hash": tx["hash"], "lt": tx["lt"]})


async def check_usdt(chain: Chain, item: dict[str, Any], hot: str, usdt_master: str) -> Check:
    dest = item["destination"]
    transfers = (
        await chain.get("/jetton/transfers", owner_address=dest, direction="in", limit=20)
    )["jetton_transfers"]
    landed = [
        t
        for t in transfers
        if (t.get("source") or "").upper() == hot
        and int(t["amount"]) == item["amount_minor"]
        and not t.get("transaction_aborted")
        and (not usdt_master or (t.get("jetton_master") or "").upper() == usdt_master)
    ]
    if len(landed) != 1:
        return Check(
            "usdt_payout",
            False,
            f"{dest}: {len(landed)} USDT transfers of {item['amount_minor']} micro-USDT from the"
            f" hot wallet ({len(transfers)} incoming in all); expected exactly one",
        )
    return Check(
        "usdt_payout",
        True,
        f"{format_minor(item['amount_minor'], 'USDT')} USDT arrived at {dest}",
        {"tx_hash": landed[0]["transaction_hash"]},
    )


async def check_bounce(chain: Chain, item: dict[str, Any], hot: str) -> Check:
    """The bounceable message reached the uninitialised address and came back."""
    dest = item["destination"]
    from_hot = [t for t in await chain.incoming(dest) if t["in_msg"]["source"].upper() == hot]
    bounced = [t for t in from_hot if t["in_msg"].get("bounce") and _bounced_back(t, hot)]
    state = await chain.get("/addressInformation", address=dest)
    if len(bounced) != 1 or state.get("status") not in ("uninit", "nonexist"):
        return Check(
            "bounce",
            False,
            f"{dest}: {len(from_hot)} messages from the hot wallet, {len(bounced)} bounced back;"
            f" account {state.get('status')}: expected one bounce, still uninitialised",
        )
    # Each check words its own verdict: alike the others in shape only.
    return Check(
        "bounce",
        True,
        f"the bounceable payout to uninitialised {dest} bounced back to the hot wallet",
        {"tx_hash": bounced[0]["hash"]},
    )


async def check_invoice(chain: Chain, item: dict[str, Any]) -> Check:
    """The payer sent the amount with the reference to pay_to, and it was not bounced."""
    payer, pay_to = raw(item["payer"]), raw(item["pay_to"])
    txs = (await chain.get("/transactions", account=payer, limit=50, sort="desc"))["transactions"]
    sent = [
        m
        for t in txs
        for m in t.get("out_msgs", [])
        if (m.get("destination") or "").upper() == pay_to
        and int(m.get("value") or 0) == item["amount_minor"]
        and ((m.get("message_content") or {}).get("decoded") or {}).get("comment")
        == item["comment"]
    ]
    if len(sent) != 1:
        return Check(
            "invoice",
            False,
            f"{len(sent)} transfers of {item['amount_minor']} nanoton from the payer to {pay_to}"
            f" with comment {item['comment']!r}; expected exactly one",
        )
    received = (
        await chain.get("/transactionsByMessage", msg_hash=sent[0]["hash"], direction="in")
    )["transactions"]
    if not received or _bounced_back(received[0], payer):
        return Check("invoice", False, "the payment did not land in the hot wallet (bounced?)")
    return Check(
        "invoice",
        True,
        f"the payer paid {format_minor(item['amount_minor'], 'TON')} TON with reference"
        f" {item['comment']} to {item['pay_to']}",
        {"tx_hash": received[0]["hash"]},
    )


async def check_books(cfg: RehearsalSettings) -> Check:
    """Every journal entry and the whole ledger balance per asset (`tonrail ledger check`)."""
    if not cfg.database_url:
        return Check("books_balance", False, "TONRAIL_DATABASE_URL not set: books not checked")
    from tonrail.db import Database
    from tonrail.ledger.service import check_books as books

    db = Database(cfg.database_url)
    try:
        async with db.transaction() as session:
            report = await books(session)
    finally:
        await db.dispose()
    if not report.ok:
        return Check(
            "books_balance",
            False,
            f"unbalanced: entries {report.unbalanced_entries[:5]}, totals {report.totals_by_asset}",
        )
    return Check(
        "books_balance",
        True,
        f"{report.entries} entries, {report.lines} lines; every entry and asset sums to zero",
    )


async def verify(
    cfg: RehearsalSettings,
    record_dir: Path,
    *,
    sha: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Check every payment of the last `pay` on the chain, and the books; write the record."""
    _require(cfg, "toncenter_url", "hot_wallet_address")
    path = state_path(record_dir, cfg.network)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        raise RehearsalError(f"no rehearsal payments in {path}: run make test-payments") from None
    if state.get("network") != cfg.network:
        raise RehearsalError(f"{path} is from {state.get('network')}, not {cfg.network}")
    hot = raw(cfg.hot_wallet_address)
    usdt_master = raw(cfg.usdt_master) if cfg.usdt_master else ""
    key = cfg.toncenter_api_key.get_secret_value()
    checks: list[Check] = []
    async with httpx.AsyncClient(
        base_url=cfg.v3_url,
        headers={"X-API-Key": key} if key else {},
        timeout=30.0,
        transport=transport,
    ) as client:
        chain = Chain(client)
        for item in state["items"]:
            name = item["check"]
            try:
                if name == "usdt_payout":
                    check = await check_usdt(chain, item, hot, usdt_master)
                elif name == "bounce":
                    check = await check_bounce(chain, item, hot)
                elif name == "invoice":
                    check = await check_invoice(chain, item)
                else:
                    check = await check_ton(chain, item, hot)
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                check = Check(name, False, f"toncenter: {type(exc).__name__}: {exc}")
            if check.ok and item.get("status") != item["expected"]:
                check = Check(
                    name,
                    False,
                    f"on chain as expected, but tonrail says {item.get('status')},"
                    f" not {item['expected']}",
                )
            check.facts.update(payment_id=item["id"], tonrail_status=item.get("status"))
            checks.append(check)
    checks.append(await check_books(cfg))
    rec = record.new_record(
        cfg.network,
        sha or record.git_sha(),
        datetime.fromisoformat(state["started_at"]),
        [c.as_dict() for c in checks],
        run_id=state["run_id"],
        api_url=state["api_url"],
        toncenter_url=cfg.v3_url,
    )
    return record.write(record_dir, rec), rec
