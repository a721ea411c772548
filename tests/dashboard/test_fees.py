"""The Fees page over HTTP, on SQLite and PostgreSQL: every number from recorded data."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import DEST
from tonrail import clock
from tonrail.db import Database
from tonrail.fees.models import FeeSample
from tonrail.fees.service import decide_for_batch, load_conditions, record_outcome
from tonrail.ids import new_id
from tonrail.payments.models import Payment
from tonrail.settings import Settings

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
# estimateFee of one TON payout alone, and of a probe batch of 4: per payout 1,000,000,
# request overhead 5,700,000 nanoton (docs/FEES.md, "Fee model").
SINGLE, BATCH, BATCH_SIZE = 6_700_000, 9_700_000, 4


class FrozenClock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"dashboard_page_size": 2})


@pytest.fixture
def frozen() -> FrozenClock:
    c = FrozenClock(T0 - timedelta(minutes=30))
    clock.set_clock(c)
    return c


async def add_sample(
    db: Database,
    at: datetime,
    congestion_bp: int | None,
    raw_bp: int | None = None,
    *,
    latency_ms: int | None = 1500,
    queue: int | None = 40,
    single: int | None = SINGLE,
    batch: int | None = BATCH,
    unavailable: dict[str, str] | None = None,
) -> None:
    """A row as the sampler writes it (the sampler itself needs the local network)."""
    async with db.transaction() as session:
        session.add(
            FeeSample(
                id=new_id("fsmp"),
                sampled_at=at,
                latency_ms=latency_ms,
                latency_count=3,
                queue_size=queue,
                api_calls=4,
                api_errors=1,
                api_rate_limited=0,
                congestion_raw_bp=raw_bp if raw_bp is not None else congestion_bp,
                congestion_bp=congestion_bp,
                fee_ton_single=single,
                fee_usdt_single=None,
                fee_ton_batch=batch,
                batch_size=BATCH_SIZE,
                config_hash=None,
                config=None,
                unavailable=unavailable or {},
            )
        )


async def payout(client: httpx.AsyncClient, auth: dict[str, str], amount: str, prio: str) -> str:
    r = await client.post(
        "/v1/payouts",
        json={"amount": amount, "asset": "TON", "destination": DEST, "priority": prio},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def decide_all(db: Database, settings: Settings) -> None:
    """What the payout loop does each round: the optimizer decides for every queued payout."""
    cond = await load_conditions(db, settings)
    async with db.transaction() as session:
        payouts = (await session.execute(select(Payment))).scalars().all()
        await decide_for_batch(session, cond, settings, payouts)


def chart(html: str, chart_id: str) -> dict[str, Any]:
    m = re.search(rf'<div hidden class="chart-data" id="{chart_id}">(.*?)</div>', html, re.S)
    assert m, f"no chart data {chart_id}"
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def saved_tile(html: str) -> int:
    m = re.search(r'data-saved-nanoton="(-?\d+)"', html)
    assert m
    return int(m.group(1))


def decision_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-payment="([^"]+)"', html)


@pytest.fixture
async def history(
    db: Database,
    settings: Settings,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    frozen: FrozenClock,
) -> dict[str, str]:
    """Three samples (10, 30, 50 % congestion), three TON payouts decided; two confirmed
    (paid 0.0029 and 0.0031 TON against 0.0067 alone), one failed."""
    for minutes, bp in ((30, 1000), (20, 3000), (10, 5000)):
        await add_sample(db, T0 - timedelta(minutes=minutes), bp, bp + 500)
    frozen.at = T0 - timedelta(minutes=25)
    ids = {
        "a": await payout(client, auth, "1", "normal"),
        "b": await payout(client, auth, "2", "low"),
        "c": await payout(client, auth, "3", "urgent"),
    }
    await decide_all(db, settings)
    frozen.at = T0 - timedelta(minutes=15)
    async with db.transaction() as session:
        queued = T0 - timedelta(minutes=25)
        for key, fee in (("a", 2_900_000), ("b", 3_100_000)):
            await record_outcome(
                session,
                ids[key],
                "confirmed",
                fee_paid=fee,
                queued_at=queued,
                confirmed_at=clock.now(),
            )
        await record_outcome(session, ids["c"], "failed")
    frozen.at = T0
    return ids


async def test_the_page_shows_savings_congestion_and_fees_from_recorded_numbers(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    auth: dict[str, str],
    history: dict[str, str],
) -> None:
    await signed_in("viewer")
    page = await client.get("/dashboard/fees?range=1h")
    assert page.status_code == 200, page.text
    html = page.text
    # alone = per payout 1,000,000 + overhead 5,700,000 = the sampled single estimate
    assert saved_tile(html) == 2 * SINGLE - (2_900_000 + 3_100_000) == 7_400_000
    api = (await client.get("/v1/fees/status", headers=auth)).json()
    assert api["savings"]["saved_nanoton"] == saved_tile(html)
    assert api["savings"]["payouts"] == 2
    assert "0.007400000 TON" in html
    # congestion: the newest sample smoothed (as stored), in %
    assert 'id="fees-tile-congestion"' in html and "50.0 %" in html

    cong = chart(html, "fees-chart-congestion")
    labels = cong["data"]["labels"]
    assert len(labels) == 61  # one-minute buckets over the hour, both ends included
    smoothed = dict(zip(labels, cong["data"]["datasets"][0]["data"], strict=True))
    raw = dict(zip(labels, cong["data"]["datasets"][1]["data"], strict=True))
    assert smoothed["11:30"] == 10.0 and smoothed["11:40"] == 30.0 and smoothed["11:50"] == 50.0
    assert raw["11:50"] == 55.0
    assert smoothed["11:31"] is None  # no sample: a gap, not a zero

    fee = chart(html, "fees-chart-fee")
    series = {
        d["label"]: dict(zip(labels, d["data"], strict=True)) for d in fee["data"]["datasets"]
    }
    assert series["paid per TON payout (TON)"]["11:45"] == 0.003  # mean of 0.0029 and 0.0031
    assert series["estimate: one TON payout alone"]["11:40"] == 0.0067
    assert series["estimate: per TON payout in a batch"]["11:40"] == pytest.approx(0.002425)

    saving = chart(html, "fees-chart-savings")
    bars = {
        d["label"]: dict(zip(labels, d["data"], strict=True)) for d in saving["data"]["datasets"]
    }
    assert (
        bars["paid (TON)"]["11:45"] == 0.006
        and bars["alone would have cost (TON)"]["11:45"] == 0.0134
    )

    # the decisions: newest first, two a page (settings), with their inputs and outcomes
    assert len(decision_ids(html)) == 2
    assert "confirmed" in html and "revision" in html


async def test_decisions_filter_and_page_by_keyset(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    history: dict[str, str],
) -> None:
    await signed_in("operator")
    first = await client.get("/dashboard/fees/decisions", headers={"HX-Request": "true"})
    assert first.status_code == 200
    seen = decision_ids(first.text)
    assert len(seen) == 2
    older = re.search(r'id="fees-decisions-older" hx-get="([^"]+)"', first.text)
    assert older, "a second page exists"
    second = await client.get(older.group(1).replace("&amp;", "&"))
    rest = decision_ids(second.text)
    assert len(rest) == 1 and not set(rest) & set(seen)
    assert set(seen) | set(rest) == set(history.values())
    assert 'id="fees-decisions-older"' not in second.text

    confirmed = await client.get("/dashboard/fees/decisions?outcome=confirmed")
    assert set(decision_ids(confirmed.text)) == {history["a"], history["b"]}
    failed = await client.get("/dashboard/fees/decisions?outcome=failed")
    assert decision_ids(failed.text) == [history["c"]]
    assert decision_ids((await client.get("/dashboard/fees/decisions?outcome=pending")).text) == []
    urgent = await client.get("/dashboard/fees/decisions?priority=urgent&asset=TON")
    assert decision_ids(urgent.text) == [history["c"]]
    saved = re.findall(r'data-saved="(-?\d*)"', confirmed.text)
    assert sorted(saved) == sorted([str(SINGLE - 2_900_000), str(SINGLE - 3_100_000)])


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/dashboard/fees?range=2d", "range_invalid"),
        ("/dashboard/fees/live?range=", None),
        ("/dashboard/fees/live?range=30m", "range_invalid"),
        ("/dashboard/fees?outcome=lost", "outcome_invalid"),
        ("/dashboard/fees/decisions?asset=BTC", "asset_invalid"),
        ("/dashboard/fees/decisions?priority=asap", "priority_invalid"),
        ("/dashboard/fees/decisions?before=yesterday", "cursor_invalid"),
        ("/dashboard/fees/decisions?before=20261127T120000.000000Z~", "cursor_invalid"),
    ],
)
async def test_bad_parameters_are_refused_with_a_code(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    url: str,
    code: str | None,
) -> None:
    await signed_in("viewer")
    page = await client.get(url)
    if code is None:  # empty means the default range
        assert page.status_code == 200
        return
    assert page.status_code == 400
    assert f'data-code="{code}"' in page.text
    fragment = await client.get(url, headers={"HX-Request": "true"})
    assert fragment.status_code == 400
    assert fragment.headers["HX-Retarget"] == "#flash"
    assert f'data-code="{code}"' in fragment.text and "<html" not in fragment.text


async def test_an_empty_database_renders_without_numbers_made_up(
    client: httpx.AsyncClient, signed_in: Callable[[str], Awaitable[str]]
) -> None:
    await signed_in("viewer")
    page = await client.get("/dashboard/fees")
    assert page.status_code == 200
    assert saved_tile(page.text) == 0
    assert "No fee model yet" in page.text and "No decisions" in page.text
    assert "sample: none yet" not in page.text  # shown as "Not measured: sample (none yet)"
    assert "(none yet)" in page.text
    cong = chart(page.text, "fees-chart-congestion")
    assert set(cong["data"]["datasets"][0]["data"]) == {None}


async def test_network_texts_are_escaped(
    db: Database,
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
) -> None:
    await add_sample(db, clock.now(), 100, unavailable={"queue_size": "<script>alert(1)</script>"})
    await signed_in("viewer")
    page = await client.get("/dashboard/fees/live?range=1h", headers={"HX-Request": "true"})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_strangers_are_sent_to_sign_in(client: httpx.AsyncClient) -> None:
    for url in ("/dashboard/fees", "/dashboard/fees/live", "/dashboard/fees/decisions"):
        response = await client.get(url)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/dashboard/login")
