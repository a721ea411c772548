"""Data for the Payments and Errors page tests: payments made through the public API, moved
through their states by the services (attempts, failures, decisions), as the workers would."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pytoniq_core.boc.address import Address

from tonrail import clock
from tonrail.db import Database
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.transitions import move_attempt, move_payment, start_attempt
from tonrail.settings import Settings

WAIT_MS = 20_000  # browser tests: how long to wait for a page to settle on a loaded machine
XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = "<img src=x onerror=window.__xss=1>"
PHISHING = "https://tonrail-support.example/verify?wallet=connect&seed=please"


def address(byte: int) -> tuple[str, str]:
    """A valid TON address: (bounceable user-friendly form, raw form)."""
    a = Address(f"0:{byte:02x}" + f"{byte:02x}" * 31)
    return (
        str(a.to_str(is_user_friendly=True, is_bounceable=True, is_test_only=False)),  # type: ignore[no-untyped-call]
        str(a.to_str(is_user_friendly=False)),  # type: ignore[no-untyped-call]
    )


def non_bounceable(raw: str) -> str:
    return str(
        Address(raw).to_str(is_user_friendly=True, is_bounceable=False, is_test_only=False)  # type: ignore[no-untyped-call]
    )


async def payout(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    *,
    amount: str = "1",
    asset: str = "TON",
    destination: str | None = None,
    at: datetime | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """A payout through POST /v1/payouts, created at `at` (the service's clock)."""
    body: dict[str, Any] = {
        "amount": amount,
        "asset": asset,
        "destination": destination or address(0x11)[0],
    }
    if description is not None:
        body["description"] = description
    if metadata is not None:
        body["metadata"] = metadata
    if at is not None:
        clock.set_clock(lambda: at)
    try:
        r = await client.post("/v1/payouts", json=body, headers=auth)
    finally:
        clock.set_clock(None)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def invoice(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    *,
    amount: str = "1",
    asset: str = "USDT",
    at: datetime | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
) -> tuple[str, str]:
    """An invoice through POST /v1/invoices: (id, reference)."""
    body: dict[str, Any] = {"amount": amount, "asset": asset}
    if description is not None:
        body["description"] = description
    if metadata is not None:
        body["metadata"] = metadata
    if at is not None:
        clock.set_clock(lambda: at)
    try:
        r = await client.post("/v1/invoices", json=body, headers=auth)
    finally:
        clock.set_clock(None)
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), str(r.json()["reference"])


async def attempt(
    db: Database,
    payment_id: str,
    rail: str,
    outcome: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    at: datetime | None = None,
    provider_ref: str | None = None,
    fee: tuple[int, str] | None = None,
    details: dict[str, Any] | None = None,
) -> str:
    """Start an attempt on `rail` and take it to `outcome` (submitted/failed/expired/confirmed),
    at time `at`, with the attempt services the rails use."""
    if at is not None:
        clock.set_clock(lambda: at)
    try:
        async with db.transaction() as session:
            payment = await session.get(Payment, payment_id)
            assert payment is not None
            a: Attempt = await start_attempt(session, payment, rail, details)
            if outcome == "created":
                return a.id
            await move_attempt(session, a, "submitted", provider_ref=provider_ref)
            if outcome in ("failed", "expired"):
                await move_attempt(
                    session, a, outcome, error_code=error_code, error_message=error_message
                )
            elif outcome == "confirmed":
                values: dict[str, Any] = {}
                if fee is not None:
                    values.update(fee_amount=fee[0], fee_asset=fee[1])
                await move_attempt(session, a, "confirmed", **values)
            return a.id
    finally:
        clock.set_clock(None)


async def move(
    db: Database,
    settings: Settings,
    payment_id: str,
    *targets: str,
    at: datetime | None = None,
    failure_code: str | None = None,
) -> None:
    """Move a payment through `targets` with transitions.move_payment (books and events)."""
    if at is not None:
        clock.set_clock(lambda: at)
    try:
        async with db.transaction() as session:
            payment = await session.get(Payment, payment_id)
            assert payment is not None
            for target in targets:
                await move_payment(
                    session,
                    payment,
                    target,
                    actor="test",
                    failure_code=failure_code if target == "failed" else None,
                    failure_message=f"failed: {failure_code}" if target == "failed" else None,
                )
    finally:
        clock.set_clock(None)


async def downloaded_csv(download: Any) -> list[dict[str, str]]:
    """The rows of a CSV file Chromium downloaded."""
    saved = Path(await download.path())
    text = await asyncio.to_thread(saved.read_text, encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def watch_errors(page: Any) -> list[str]:
    """Console errors and uncaught exceptions (a CSP violation shows up here)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors
