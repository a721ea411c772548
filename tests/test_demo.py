"""Demo data of `tonrail run`: the first admin, and demo traffic that moves real money."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from ton_core import Address

from tests.dashboard.conftest import login_csrf, sign_in
from tests.tonnet import free_port, running_localnet
from tonrail.db import Database
from tonrail.demo import (
    BOUNCE_EVERY,
    LARGE_EVERY,
    CustomerWallet,
    DemoTraffic,
    ensure_admin,
    plan_invoice,
    plan_payout,
)
from tonrail.money import parse_minor
from tonrail.payments.models import Payment
from tonrail.security.admins import AdminUser
from tonrail.security.audit_log import AuditEntry
from tonrail.settings import Settings

TONRAIL = str(Path(sys.executable).parent / "tonrail")
THRESHOLD = 1_000_000 * 10**6
CUSTOMER = Address("0:" + "11" * 32).to_str(is_user_friendly=True, is_bounceable=False)


def test_payout_plans_mix_assets_priorities_failures_and_approvals() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rng = random.Random(7)
    plans = [plan_payout(rng, n, CUSTOMER, THRESHOLD, large_allowed=True) for n in range(400)]
    kinds = Counter(p.kind for p in plans)
    assert {p.asset for p in plans} == {"TON", "USDT"}
    assert {p.priority for p in plans} == {"urgent", "normal", "low"}
    assert kinds["bounce"] == 400 // BOUNCE_EVERY
    assert kinds["large"] == 400 // LARGE_EVERY
    assert kinds["customer"] > 20 and kinds["payee"] > 200
    limits = {
        "TON": (settings.limits_min_ton, settings.limits_max_ton),
        "USDT": (settings.limits_min_usdt, settings.limits_max_usdt),
    }
    for plan in plans:
        body = plan.body()
        assert parse_minor(body["amount"], plan.asset) == plan.amount  # the API accepts it
        low, high = limits[plan.asset]
        assert low <= plan.amount <= high
        address = Address(plan.destination)
        if plan.kind == "bounce":
            # Bounceable TON to an address without a contract: the message comes back.
            assert plan.asset == "TON" and address.is_bounceable
        else:
            assert not address.is_bounceable
        if plan.kind == "large":
            assert plan.asset == "USDT" and plan.amount > THRESHOLD
        else:
            assert plan.amount <= {"TON": 60 * 10**9, "USDT": 2_000 * 10**6}[plan.asset]
    # No room for another payout waiting for approval: none is planned.
    rng = random.Random(7)
    plans = [plan_payout(rng, n, CUSTOMER, THRESHOLD, large_allowed=False) for n in range(400)]
    assert not any(p.kind == "large" for p in plans)


def test_invoice_plans_are_mostly_paid() -> None:
    rng = random.Random(3)
    plans = [plan_invoice(rng) for _ in range(500)]
    paid = sum(p.pay for p in plans)
    assert 350 < paid < 450
    assert {p.asset for p in plans} == {"TON", "USDT"}
    assert all(p.expires_in_seconds >= 60 for p in plans)
    assert all(parse_minor(p.body()["amount"], p.asset) == p.amount > 0 for p in plans)


async def test_first_admin_is_created_once_and_can_sign_in(
    db: Database, client: httpx.AsyncClient
) -> None:
    created = await ensure_admin(db)
    assert created is not None
    username, password = created
    assert username == "admin" and len(password) >= 12
    assert await ensure_admin(db) is None  # an admin exists: nothing new, nothing printed
    async with db.transaction() as session:
        rows = (await session.execute(select(AdminUser.username, AdminUser.role))).all()
        audited = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "admin.create")
        )
    assert [tuple(r) for r in rows] == [("admin", "admin")]
    assert audited == 1
    await sign_in(client, username, password)
    page = await client.get("/dashboard/overview", follow_redirects=False)
    assert page.status_code != 303, "signed in, the dashboard must not send us to sign in"


async def test_traffic_makes_payouts_and_pays_invoices_on_the_local_network(
    db: Database, app: Any, settings: Settings
) -> None:
    async with running_localnet(block_ms=50) as net:
        customer = net.genesis.wallet("customer")
        wallet = CustomerWallet(net.v2, customer.private_key_hex, net.genesis.usdt_master.to_str())
        traffic = DemoTraffic(settings, db, app, wallet, seed=11)
        await traffic.open()
        try:
            plans = [await traffic.one_payout() for _ in range(2 * LARGE_EVERY)]
            before = net.chain.account(customer.address).balance
            invoices = [await traffic.one_invoice() for _ in range(4)]
        finally:
            await traffic.close()
        after = net.chain.account(customer.address).balance
    assert traffic.stats.refused == {}, traffic.stats
    assert traffic.stats.payouts == len(plans)
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(Payment.direction, Payment.status, Payment.asset, Payment.amount)
            )
        ).all()
    out = [r for r in rows if r.direction == "out"]
    assert len(out) == len(plans)
    assert sorted(r.amount for r in out) == sorted(p.amount for p in plans)
    # At most LARGE_WAITING_MAX above the threshold are waiting for approvers; the rest queue.
    waiting = [r for r in out if r.status == "requires_approval"]
    assert len(waiting) == 2 and all(r.amount > THRESHOLD for r in waiting)
    assert {r.status for r in out} == {"queued", "requires_approval"}
    assert len([r for r in rows if r.direction == "in"]) == len(invoices)
    # The paid invoices were paid on chain from the customer wallet (real transfers).
    paid = [p for p in invoices if p.pay]
    assert paid and traffic.stats.invoices_paid == len(paid)
    assert after < before  # TON paid, or at least the fees of a USDT transfer


@pytest.mark.slow
async def test_run_prints_admin_credentials_and_demo_traffic_moves(tmp_path: Path) -> None:
    port, localnet_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TON", "DATABASE", "PORT", "DATA_DIR", "DEMO", "BOOTSTRAP", "FEES"))
    }
    env.update(
        DATA_DIR=str(tmp_path),
        PORT=str(port),
        LOCALNET_PORT=str(localnet_port),
        LOG_LEVEL="WARNING",
        LOCALNET_BLOCK_MS="100",
        DEMO_TRAFFIC_SECONDS="0.5",
        # Shorter batch windows than production's, so the test sees payouts finish soon.
        FEES_WINDOW_NORMAL_MS="2000",
        FEES_WINDOW_LOW_MS="4000",
    )
    proc = await asyncio.create_subprocess_exec(
        TONRAIL,
        "run",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = ""
    loop = asyncio.get_running_loop()
    try:
        credentials = None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = loop.time() + 90
            while credentials is None or not await _healthy(client):
                assert loop.time() < deadline, output
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), timeout=1)
                except TimeoutError:
                    continue
                output += line.decode(errors="replace")
                if m := re.search(
                    r"dashboard admin \(shown once\): user (\S+)  password (\S+)", output
                ):
                    credentials = (m.group(1), m.group(2))
            assert "demo traffic on" in output
            drain = asyncio.create_task(_drain(proc.stdout))
            # The printed credentials sign in.
            form = await client.get("/dashboard/login")
            signed = await client.post(
                "/dashboard/login",
                data={
                    "username": credentials[0],
                    "password": credentials[1],
                    "csrf_token": login_csrf(form.text),
                    "next": "/dashboard/payments",
                },
            )
            assert signed.status_code == 303, signed.text
            assert signed.headers["location"] == "/dashboard/payments"
            # Real traffic: both assets paid, invoices paid by the customer, a bounce failed,
            # a large payout waiting for approvers; and it keeps moving.
            db_file = tmp_path / "tonrail.sqlite3"
            seen: Counter[tuple[str, str, str]] = Counter()
            deadline = loop.time() + 240
            while not _enough(seen):
                assert loop.time() < deadline, (
                    f"demo traffic did not get there: {seen}; failures: {_failures(db_file)}"
                )
                await asyncio.sleep(2)
                seen = _states(db_file)
            first = seen[("out", "TON", "succeeded")] + seen[("out", "USDT", "succeeded")]
            while True:
                assert loop.time() < deadline + 60, "the demo traffic stopped"
                await asyncio.sleep(2)
                now = _states(db_file)
                if now[("out", "TON", "succeeded")] + now[("out", "USDT", "succeeded")] > first:
                    break
            recent = _recent_payment(db_file)
            page = await client.get("/dashboard/payments")
            assert page.status_code == 200
            assert recent in page.text
            drain.cancel()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=30)
    # The books balance after all that traffic.
    check = await asyncio.create_subprocess_exec(
        TONRAIL,
        "ledger",
        "check",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    report, _ = await check.communicate()
    assert check.returncode == 0, report.decode()


def _enough(seen: Counter[tuple[str, str, str]]) -> bool:
    return (
        seen[("out", "TON", "succeeded")] >= 2
        and seen[("out", "USDT", "succeeded")] >= 2
        and seen[("in", "TON", "succeeded")] + seen[("in", "USDT", "succeeded")] >= 2
        and seen[("out", "TON", "failed")] >= 1
        and seen[("out", "USDT", "requires_approval")] >= 1
    )


def _states(db_file: Path) -> Counter[tuple[str, str, str]]:
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute(
            "SELECT direction, asset, status, count(*) FROM payments GROUP BY 1, 2, 3"
        ).fetchall()
    return Counter({(d, a, s): n for d, a, s, n in rows})


def _failures(db_file: Path) -> Counter[tuple[str, str, str]]:
    """Failed payouts by asset, code and message: what to look at when the demo stalls."""
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute(
            "SELECT asset, failure_code, failure_message, count(*) FROM payments"
            " WHERE status = 'failed' GROUP BY 1, 2, 3"
        ).fetchall()
    return Counter({(a, str(c), str(m)): n for a, c, m, n in rows})


def _recent_payment(db_file: Path) -> str:
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute("SELECT id FROM payments ORDER BY created_at DESC, id DESC").fetchone()
    return str(row[0])


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keep reading the server's output so a full pipe never blocks it."""
    while await stream.readline():
        pass


async def _healthy(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False
