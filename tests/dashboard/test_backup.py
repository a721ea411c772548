"""The Backup payments page over HTTP, on SQLite and PostgreSQL.

Attempts are driven through the services the processing loop uses (start_attempt,
record_submit, record_poll, the breaker recorders) with what a provider would answer, so the
page reads the same rows, statuses and books that real traffic leaves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.helpers import DEST
from tonrail import clock
from tonrail.db import Database
from tonrail.payments.models import Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.transitions import move_attempt, move_payment, start_attempt
from tonrail.processing.health import record_rail_error
from tonrail.processing.outcomes import record_poll, record_submit
from tonrail.rails.base import PollResult, SubmitResult
from tonrail.rails.router import BreakerPolicy
from tonrail.settings import Settings

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = BreakerPolicy(failure_threshold=5, open_seconds=60)


class FrozenClock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The bank rail configured (Stripe and PayPal not), two rows a page."""
    return settings.model_copy(
        update={
            "dashboard_page_size": 2,
            "bank_account_name": "Tonrail Operations Ltd",
            "bank_account_iban": "DE89370400440532013000",
            "circuit_failure_threshold": POLICY.failure_threshold,
            "circuit_open_seconds": POLICY.open_seconds,
        }
    )


@pytest.fixture
def frozen() -> FrozenClock:
    c = FrozenClock(T0 - timedelta(minutes=40))
    clock.set_clock(c)
    return c


async def payout(client: httpx.AsyncClient, auth: dict[str, str], amount: str) -> str:
    r = await client.post(
        "/v1/payouts", json={"amount": amount, "asset": "TON", "destination": DEST}, headers=auth
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def invoice(client: httpx.AsyncClient, auth: dict[str, str], amount: str) -> str:
    r = await client.post("/v1/invoices", json={"amount": amount, "asset": "USDT"}, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def attempt(
    db: Database,
    app: Any,
    payment_id: str,
    rail: str,
    outcome: str,
    *,
    reason: str | None = None,
    rail_amount: int | None = None,
    fee: int | None = None,
    error: tuple[str, str] | None = None,
) -> str:
    """One attempt, as the loop and the provider leave it: `submitted`, `unknown`,
    `confirmed` (with the provider's fee), `failed` or `expired`."""
    service: PaymentService = app.state.payments
    async with db.transaction() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        if payment.direction == "out" and payment.status == "queued":
            await move_payment(session, payment, "processing", actor="test-loop")
        details: dict[str, Any] = {"reason": reason} if reason else {}
        if rail_amount is not None:
            details.update(rail_amount=rail_amount, rail_asset="USD")
        a = await start_attempt(session, payment, rail, details)
        if rail == "ton":
            await move_attempt(session, a, "submitted")
            if outcome != "submitted":
                await move_attempt(session, a, outcome, error_code=error[0] if error else None)
            return a.id
        if outcome == "unknown":
            await record_submit(
                session,
                service.settings,
                a,
                SubmitResult("unknown", error_code="timeout", error_message="timed out"),
            )
            return a.id
        await record_submit(
            session, service.settings, a, SubmitResult("submitted", provider_ref=f"ref_{a.id}")
        )
        if outcome != "submitted":
            result = PollResult(
                outcome,  # type: ignore[arg-type]
                fee=fee,
                fee_asset="USD" if fee is not None else None,
                error_code=error[0] if error else None,
                error_message=error[1] if error else None,
            )
            # Screening is off in these settings: nobody to screen (screen_payer: None).
            await record_poll(session, service, a, result, screened=None)
        return a.id


@pytest.fixture
async def traffic(
    db: Database,
    app: Any,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    frozen: FrozenClock,
) -> dict[str, str]:
    """TON: 3 attempts (2 confirmed, 1 failed). Stripe: a payout confirmed after TON failed
    (fee $3.20), one that failed with a hostile provider message. Bank: a congested payout
    still submitted. An invoice paid by card on Stripe (customer's choice), unknown."""
    ids: dict[str, str] = {}
    frozen.at = T0 - timedelta(minutes=40)
    for key in ("t1", "t2"):
        ids[key] = await payout(client, auth, "1")
        await attempt(db, app, ids[key], "ton", "confirmed")
    ids["t3"] = await payout(client, auth, "2")
    await attempt(db, app, ids["t3"], "ton", "failed", error=("bounced", "bounced"))
    frozen.at = T0 - timedelta(minutes=30)
    ids["s1"] = await attempt(
        db,
        app,
        ids["t3"],
        "stripe",
        "confirmed",
        reason="ton_failed_after_retries",
        rail_amount=1000,
        fee=320,
    )
    frozen.at = T0 - timedelta(minutes=20)
    ids["p2"] = await payout(client, auth, "3")
    ids["s2"] = await attempt(
        db,
        app,
        ids["p2"],
        "stripe",
        "failed",
        reason="ton_congested",
        rail_amount=1500,
        error=("card_declined", "<script>alert('provider')</script>"),
    )
    frozen.at = T0 - timedelta(minutes=10)
    ids["p3"] = await payout(client, auth, "4")
    ids["b1"] = await attempt(
        db, app, ids["p3"], "bank", "submitted", reason="ton_congested", rail_amount=2000
    )
    ids["inv"] = await invoice(client, auth, "5")
    ids["s3"] = await attempt(db, app, ids["inv"], "stripe", "unknown", reason="customer_choice")
    frozen.at = T0
    return ids


def chart(html: str, chart_id: str) -> dict[str, Any]:
    m = re.search(rf'<div hidden class="chart-data" id="{chart_id}">(.*?)</div>', html, re.S)
    assert m, f"no chart data {chart_id}"
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def rail_cells(html: str, rail: str) -> dict[str, str]:
    table = html.split('id="backup-rails"', 1)[1].split("</table>", 1)[0]
    row = table.split(f'<tr data-rail="{rail}"', 1)[1].split("</tr>", 1)[0]
    return {
        k: re.sub(r"<[^>]+>", " ", v).split()[0] if v.strip() else ""
        for k, v in re.findall(r'data-k="(\w+)">(.*?)</td>', row, re.S)
    } | {"_row": row}


def tile(html: str, tile_id: str) -> tuple[str, str]:
    """(value, sub) of a tile, as text."""
    m = re.search(
        rf'id="{tile_id}">.*?<div class="value"[^>]*>(.*?)</div>\s*<div class="sub">(.*?)</div>',
        html,
        re.S,
    )
    assert m, tile_id
    return m.group(1).strip(), " ".join(m.group(2).split())


def attempts_listed(html: str) -> list[str]:
    return re.findall(r'<tr data-attempt="([^"]+)"', html)


async def test_volume_and_success_by_rail(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    traffic: dict[str, str],
) -> None:
    await signed_in("viewer")
    page = await client.get("/dashboard/backup?range=1h")
    assert page.status_code == 200, page.text
    html = page.text
    ton = rail_cells(html, "ton")
    assert (ton["attempts"], ton["confirmed"], ton["failed"], ton["live"]) == ("3", "2", "1", "0")
    assert ton["success"] == "66.7"  # 2 of 3 finished
    assert "2.000000000 TON" in ton["_row"]  # confirmed volume: 1 + 1 TON
    stripe = rail_cells(html, "stripe")
    assert (stripe["attempts"], stripe["confirmed"], stripe["failed"], stripe["live"]) == (
        "3",
        "1",
        "1",
        "1",
    )
    assert stripe["success"] == "50.0"  # the unknown one is not judged yet
    assert "2.000000000 TON" in stripe["_row"] and "3.20 USD" in stripe["_row"]
    assert "not configured" in stripe["_row"]
    bank = rail_cells(html, "bank")
    assert (bank["attempts"], bank["live"], bank["success"]) == ("1", "1", "-")
    assert "not configured" not in bank["_row"]  # the bank rail is configured here
    paypal = rail_cells(html, "paypal")
    assert paypal["attempts"] == "0"

    # payouts only: the invoice's card attempt drops out
    payouts = await client.get("/dashboard/backup/live?range=1h&direction=out")
    assert rail_cells(payouts.text, "stripe")["attempts"] == "2"
    invoices = await client.get("/dashboard/backup/live?range=1h&direction=in")
    assert rail_cells(invoices.text, "stripe")["attempts"] == "1"
    assert rail_cells(invoices.text, "ton")["attempts"] == "0"

    attempts = chart(html, "backup-chart-attempts")
    labels = attempts["data"]["labels"]
    per = {
        d["label"]: dict(zip(labels, d["data"], strict=True)) for d in attempts["data"]["datasets"]
    }
    assert per["ton"]["11:20"] == 3 and per["stripe"]["11:30"] == 1 and per["stripe"]["11:50"] == 1
    assert sum(per["stripe"].values()) == 3 and sum(per["bank"].values()) == 1
    success = chart(html, "backup-chart-success")
    rate = {
        d["label"]: dict(zip(labels, d["data"], strict=True)) for d in success["data"]["datasets"]
    }
    assert rate["ton"]["11:20"] == pytest.approx(66.67)
    assert rate["stripe"]["11:30"] == 100.0 and rate["stripe"]["11:40"] == 0.0
    assert rate["stripe"]["11:50"] is None  # only an unknown attempt: not judged

    # the range: an hour later the 1 h view is empty, the 24 h view is not
    clock.set_clock(lambda: T0 + timedelta(hours=1))
    later = await client.get("/dashboard/backup/live?range=1h")
    assert rail_cells(later.text, "stripe")["attempts"] == "0"
    day = await client.get("/dashboard/backup/live?range=24h")
    assert rail_cells(day.text, "stripe")["attempts"] == "3"


async def test_fallbacks_with_their_reasons(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    traffic: dict[str, str],
) -> None:
    await signed_in("operator")
    html = (await client.get("/dashboard/backup?range=1h")).text
    reasons = html.split('id="backup-reasons"', 1)[1].split("</table>", 1)[0]
    row = r'<tr data-reason="([^"]+)" data-rail="(\w+)">.*?'
    row += r'<td class="num">(\d+)</td><td class="num">(\d+)</td>'
    rows = re.findall(row, reasons, re.S)
    assert sorted(rows) == sorted(
        [
            ("ton_congested", "stripe", "1", "0"),
            ("ton_congested", "bank", "1", "0"),
            ("ton_failed_after_retries", "stripe", "1", "1"),
            ("customer_choice", "stripe", "1", "0"),
        ]
    )
    # the list: backup attempts only, newest first, two a page, keyset
    first = attempts_listed(html)
    assert first == [traffic["s3"], traffic["b1"]]
    older = re.search(r'id="backup-fallbacks-older" hx-get="([^"]+)"', html)
    assert older
    second = await client.get(older.group(1).replace("&amp;", "&"))
    assert attempts_listed(second.text) == [traffic["s2"], traffic["s1"]]
    assert 'id="backup-fallbacks-older"' not in second.text
    assert "ton_failed_after_retries" in second.text and "10.00 USD" in second.text

    async def listed(query: str) -> list[str]:
        r = await client.get(f"/dashboard/backup/fallbacks?range=1h&{query}")
        assert r.status_code == 200, r.text
        return attempts_listed(r.text)

    assert await listed("reason=ton_congested") == [traffic["b1"], traffic["s2"]]
    assert await listed("reason=ton_congested&rail=stripe") == [traffic["s2"]]
    assert await listed("status=confirmed") == [traffic["s1"]]
    assert await listed("direction=in") == [traffic["s3"]]
    assert await listed("rail=paypal") == []
    assert traffic["t1"] not in html  # TON attempts are not fallbacks


async def test_breakers_as_the_router_sees_them(
    db: Database,
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    frozen: FrozenClock,
) -> None:
    frozen.at = T0
    async with db.transaction() as session:
        for _ in range(POLICY.failure_threshold):
            await record_rail_error(session, "stripe", POLICY, "<img src=x onerror=alert(1)> 503")
        await record_rail_error(session, "paypal", POLICY, "timeout")
    await signed_in("viewer")

    def breaker(html: str, rail: str) -> str:
        table = html.split('id="backup-breakers"', 1)[1].split("</table>", 1)[0]
        return table.split(f'<tr data-rail="{rail}"', 1)[1].split("</tr>", 1)[0]

    html = (await client.get("/dashboard/backup/live?range=1h")).text
    stripe = breaker(html, "stripe")
    assert 'data-state="open"' in stripe and ">5<" in stripe
    assert "refused until 2026-11-27 12:01:00" in stripe
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt; 503" in stripe
    paypal = breaker(html, "paypal")
    assert 'data-state="closed"' in paypal and ">1<" in paypal and "admitted" in paypal
    assert 'data-state="closed"' in breaker(html, "bank")
    assert "1 not closed" in html

    frozen.at = T0 + timedelta(seconds=POLICY.open_seconds)
    html = (await client.get("/dashboard/backup/live?range=1h")).text
    assert "one probe may go now" in breaker(html, "stripe")


async def test_payouts_no_rail_could_take_and_routed_ones_waiting(
    db: Database,
    app: Any,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    signed_in: Callable[[str], Awaitable[str]],
    frozen: FrozenClock,
) -> None:
    frozen.at = T0 - timedelta(minutes=5)
    failed = await payout(client, auth, "1")
    routed = await payout(client, auth, "2")
    async with db.transaction() as session:
        p = await session.get(Payment, failed)
        assert p is not None
        await move_payment(
            session,
            p,
            "failed",
            actor="system:router",
            failure_code="no_rail_available",
            failure_message="ton: ton_congested; stripe: not_configured; bank: amount_over_max",
        )
        q = await session.get(Payment, routed)
        assert q is not None
        q.route, q.route_reason = "bank", "ton_congested"
    frozen.at = T0
    await signed_in("viewer")
    html = (await client.get("/dashboard/backup?range=1h")).text
    assert tile(html, "backup-tile-norail") == ("1", "payouts failed: every rail refused")
    assert failed in html and "bank: amount_over_max" in html
    assert tile(html, "backup-tile-waiting") == ("1", "bank (ton_congested) 1")


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/dashboard/backup?range=1w", "range_invalid"),
        ("/dashboard/backup?direction=sideways", "direction_invalid"),
        ("/dashboard/backup/live?direction=up", "direction_invalid"),
        ("/dashboard/backup/fallbacks?rail=ton", "rail_invalid"),
        ("/dashboard/backup/fallbacks?status=lost", "status_invalid"),
        ("/dashboard/backup/fallbacks?reason=drop%20table", "reason_invalid"),
        ("/dashboard/backup/fallbacks?reason=" + "x" * 65, "reason_invalid"),
        ("/dashboard/backup/fallbacks?before=att_1", "cursor_invalid"),
    ],
)
async def test_bad_parameters_are_refused_with_a_code(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    url: str,
    code: str,
) -> None:
    await signed_in("viewer")
    page = await client.get(url)
    assert page.status_code == 400
    assert f'data-code="{code}"' in page.text
    fragment = await client.get(url, headers={"HX-Request": "true"})
    assert fragment.status_code == 400 and fragment.headers["HX-Retarget"] == "#flash"


async def test_an_empty_database(
    client: httpx.AsyncClient, signed_in: Callable[[str], Awaitable[str]]
) -> None:
    await signed_in("viewer")
    page = await client.get("/dashboard/backup")
    assert page.status_code == 200
    assert "No payment went to a backup rail in this range." in page.text
    assert "No attempts on backup rails in the last 24h." in page.text
    assert rail_cells(page.text, "ton")["success"] == "-"


async def test_strangers_are_sent_to_sign_in(client: httpx.AsyncClient) -> None:
    for url in ("/dashboard/backup", "/dashboard/backup/live", "/dashboard/backup/fallbacks"):
        response = await client.get(url)
        assert response.status_code == 303
