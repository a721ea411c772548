"""TON unavailable, a backup rail configured: queued payouts are paid on the backup rail.

The deployment guide's fallback: when the TON loops idle (no hot wallet key) or cannot read
the chain (toncenter down for longer than the client's retry budget), a queued payout goes
to Stripe with the reason `ton_unavailable` — but never while a TON attempt of that payout is
`submitted` or `unknown`: that one may still pay on chain.

The worker's payout loops run as deployed (`run_worker`), against localstripe through the
official Stripe SDK, and either no TON rail, a toncenter address where nothing listens, or
the local network with its fault switch answering every toncenter request with a 5xx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from nacl.signing import SigningKey
from sqlalchemy import select

from tests.conftest import make_key
from tests.fees.test_sampler import faults
from tests.helpers import DEST
from tests.rails.conftest import StripeExtras, books_ok
from tests.rails.ton.rail_fixture import Rail
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.localnet.genesis import HOT_SUBWALLET, HOT_TIMEOUT
from tonrail.payments.models import Attempt
from tonrail.payments.service import PaymentService
from tonrail.payments.transitions import move_attempt
from tonrail.processing.context import TonRailContext
from tonrail.processing.ton_loop import payout_round
from tonrail.rails.registry import build_backup_rails, enabled_rails, routing_policy
from tonrail.rails.ton.api import ToncenterTonApi
from tonrail.rails.ton.highload import HighloadWallet
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.settings import Settings
from tonrail.worker import WorkerContext, run_worker, select_loops

STRIPE_PAYEE = {"stripe_account": "acct_1PayeeConnected"}


def payout_loops() -> list[Any]:
    """Every loop of the worker that moves payouts (whatever they are called)."""
    return [loop for loop in select_loops(None) if "payout" in loop.name]


@asynccontextmanager
async def worker(ctx: WorkerContext) -> AsyncIterator[None]:
    """The worker's payout loops, running as `tonrail worker` runs them, until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(ctx, payout_loops(), stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def final(
    client: httpx.AsyncClient, auth: dict[str, str], pid: str, within: float = 90
) -> dict[str, Any]:
    """The payout once it is final (generous: a loaded 2-core machine is slow)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        p: dict[str, Any] = (await client.get(f"/v1/payouts/{pid}", headers=auth)).json()
        if p["status"] in ("succeeded", "failed"):
            return p
        await asyncio.sleep(0.1)
    raise AssertionError(f"payout {pid} not final: {p}")


def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "fees_window_urgent_ms": 0,
            "fees_window_normal_ms": 0,
            "fees_window_low_ms": 0,
            "circuit_failure_threshold": 3,
        }
    )


def paid_by_stripe_because_ton_unavailable(p: dict[str, Any], extras: StripeExtras) -> None:
    assert p["status"] == "succeeded", p
    assert [(a["rail"], a["status"], a["reason"]) for a in p["attempts"]] == [
        ("stripe", "confirmed", "ton_unavailable")
    ]
    [transfer] = [t for t in extras.transfers.values() if t["transfer_group"] == p["id"]]
    assert (transfer["amount"], transfer["currency"]) == (10_000, "usd")  # 20 TON at 5 USD


async def test_no_hot_wallet_key_sends_queued_payouts_to_stripe(
    db: Database, rail_settings: Settings, stripe_extras: tuple[StripeExtras, str]
) -> None:
    """No hot wallet key: the TON loops idle (`tonrail worker` logs "TON loops idle")."""
    settings = fast(rail_settings)
    app = create_app(settings, db)
    auth = {"Authorization": f"Bearer {await make_key(db)}"}
    ctx = WorkerContext(
        db, settings, PaymentService(db, settings), "w-nokey", None, build_backup_rails(settings)
    )
    body = {"amount": "20", "asset": "TON", "destination": DEST, "metadata": STRIPE_PAYEE}
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
        worker(ctx),
    ):
        pid = (await client.post("/v1/payouts", json=body, headers=auth)).json()["id"]
        p = await final(client, auth, pid)
    paid_by_stripe_because_ton_unavailable(p, stripe_extras[0])
    await books_ok(db)


async def test_toncenter_down_sends_queued_payouts_to_stripe(
    db: Database, rail_settings: Settings, stripe_extras: tuple[StripeExtras, str], down_url: str
) -> None:
    """A hot wallet key, but toncenter refuses every connection, retry after retry."""
    settings = fast(rail_settings)
    app = create_app(settings, db)
    auth = {"Authorization": f"Bearer {await make_key(db)}"}
    key = SigningKey.generate()
    api = ToncenterTonApi(
        ToncenterClient([down_url], [down_url], max_attempts=3, backoff_initial=0.01)
    )
    backup = build_backup_rails(settings)
    payments = PaymentService(db, settings)
    ton = TonRailContext(
        db=db,
        settings=settings,
        payments=payments,
        api=api,
        wallet=HighloadWallet(bytes(key.verify_key), HOT_SUBWALLET, HOT_TIMEOUT),
        sign=lambda data: key.sign(data).signature,
        jetton_wallet=None,
        worker_id="w-down",
        backup=backup,
        routing=routing_policy(settings),
        enabled=enabled_rails(settings),
    )
    ctx = WorkerContext(db, settings, payments, "w-down", ton, backup)
    body = {"amount": "20", "asset": "TON", "destination": DEST, "metadata": STRIPE_PAYEE}
    try:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as client,
            worker(ctx),
        ):
            pid = (await client.post("/v1/payouts", json=body, headers=auth)).json()["id"]
            p = await final(client, auth, pid)
    finally:
        await api.aclose()
    paid_by_stripe_because_ton_unavailable(p, stripe_extras[0])
    await books_ok(db)


async def _ton_attempts(db: Database, ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(Attempt.payment_id, Attempt.rail, Attempt.status)
                .where(Attempt.payment_id.in_(list(ids)))
                .order_by(Attempt.payment_id, Attempt.number)
            )
        ).all()
    out: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for pid, rail, status in rows:
        out[pid].append((rail, status))
    return out


async def test_a_live_ton_attempt_blocks_the_fallback(
    rail: Rail, db: Database, rail_settings: Settings, stripe_extras: tuple[StripeExtras, str]
) -> None:
    """Two payouts went out on TON but their request never reached a block (the local
    network drops every external): one attempt is `submitted`, the other `unknown` (as the
    tracker leaves a request past its validity it cannot prove unprocessed). Then toncenter
    answers only 5xx. A new payout goes to Stripe (`ton_unavailable`); the two stay on TON."""
    settings = fast(rail_settings).model_copy(update={"ton_resend_seconds": 3600})
    backup = build_backup_rails(settings)
    rail.ctx.settings = settings
    rail.ctx.backup, rail.ctx.routing = backup, routing_policy(settings)
    rail.ctx.enabled = enabled_rails(settings)
    app = create_app(settings, db)
    auth = {"Authorization": f"Bearer {await make_key(db)}"}
    payee = rail.net.genesis.wallet("customer").address.to_str(
        is_user_friendly=True, is_bounceable=False
    )
    body = {"amount": "20", "asset": "TON", "destination": payee, "metadata": STRIPE_PAYEE}
    await faults(rail, drop_external_rate=1.0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        live = []
        for _ in range(2):
            r = await client.post("/v1/payouts", json=body, headers=auth)
            live.append(r.json()["id"])
        for _ in range(200):
            await payout_round(rail.ctx)
            got = await _ton_attempts(db, live)
            if all(a == [("ton", "submitted")] for a in got.values()):
                break
            await asyncio.sleep(0.05)
        assert all(a == [("ton", "submitted")] for a in got.values()), got
        submitted, unknown = live
        async with db.transaction() as session:
            attempt = (
                await session.execute(select(Attempt).where(Attempt.payment_id == unknown))
            ).scalar_one()
            await move_attempt(
                session,
                attempt,
                "unknown",
                error_code="unproven",
                error_message="past validity and not provably unprocessed",
            )
        await faults(rail, http_5xx_rate=1.0)  # toncenter fully down from here on
        ctx = WorkerContext(db, settings, rail.ctx.payments, "w-live", rail.ctx, backup)
        async with worker(ctx):
            r = await client.post("/v1/payouts", json=body, headers=auth)
            new = await final(client, auth, r.json()["id"])
            # The live ones had every round the new one had, and more: still on TON.
            held = [(await client.get(f"/v1/payouts/{i}", headers=auth)).json() for i in live]
    await faults(rail, http_5xx_rate=0.0, drop_external_rate=0.0)
    paid_by_stripe_because_ton_unavailable(new, stripe_extras[0])
    assert [p["status"] for p in held] == ["processing", "processing"]
    assert await _ton_attempts(db, live) == {
        submitted: [("ton", "submitted")],
        unknown: [("ton", "unknown")],
    }
    groups = {t["transfer_group"] for t in stripe_extras[0].transfers.values()}
    assert not groups & set(live)  # Stripe never heard of them
    await books_ok(db)
