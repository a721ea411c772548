"""The Payments pages over HTTP on both databases: every filter, keyset pages, bad input, the
CSV export and the detail page (attempts, ledger, fee decision, events, explorer links)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tonrail.dashboard.queries import payments as queries
from tonrail.db import Database
from tonrail.fees.service import decide_for_batch, load_conditions
from tonrail.payments.models import Payment
from tonrail.rails.ton.models import TonDeposit, TonRequest, TonTransfer
from tonrail.settings import Settings

from .payments_fixtures import (
    PHISHING,
    XSS_IMG,
    XSS_SCRIPT,
    address,
    attempt,
    invoice,
    move,
    non_bounceable,
    payout,
)

SignIn = Callable[[str], Awaitable[str]]
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ALICE, ALICE_RAW = address(0x11)
BOB, BOB_RAW = address(0x22)


def listed(html: str) -> list[str]:
    """Payment ids in the results table, in order."""
    return re.findall(r'<tr data-payment="(pay_[0-9a-z]+)"', html)


def problem(html: str) -> tuple[str, str]:
    match = re.search(r'data-code="([a-z_]+)" data-param="([a-z_]*)"', html)
    assert match, html[-2000:]
    return match.group(1), match.group(2)


@pytest.fixture
async def seeded(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> dict[str, str]:
    """Six payments over six days: payouts in TON and USDT to two payees, invoices, with
    attempts on TON and Stripe and one payment failed without an attempt."""
    ids: dict[str, str] = {}
    ids["ton_small"] = await payout(
        client, auth, amount="1.5", asset="TON", destination=ALICE, at=T0
    )
    ids["ton_big"] = await payout(
        client, auth, amount="20", asset="TON", destination=BOB_RAW, at=T0 + timedelta(days=1)
    )
    ids["usdt_small"] = await payout(
        client, auth, amount="3", asset="USDT", destination=ALICE, at=T0 + timedelta(days=2)
    )
    ids["usdt_big"] = await payout(
        client, auth, amount="100.25", asset="USDT", destination=BOB, at=T0 + timedelta(days=3)
    )
    ids["inv_usdt"], ids["inv_usdt_ref"] = await invoice(
        client, auth, amount="7", asset="USDT", at=T0 + timedelta(days=4)
    )
    ids["inv_usd"], ids["inv_usd_ref"] = await invoice(
        client, auth, amount="1.00", asset="USD", at=T0 + timedelta(days=5)
    )
    # ton_small succeeded on TON; usdt_big failed on TON and went to Stripe.
    await move(db, settings, ids["ton_small"], "processing")
    await attempt(db, ids["ton_small"], "ton", "confirmed", fee=(2_000_000, "TON"))
    await move(db, settings, ids["ton_small"], "succeeded")
    await move(db, settings, ids["usdt_big"], "processing")
    await attempt(db, ids["usdt_big"], "ton", "failed", error_code="bounced")
    await attempt(db, ids["usdt_big"], "stripe", "submitted", provider_ref="tr_123")
    # usdt_small failed before any rail: no attempt, only a route.
    await move(db, settings, ids["usdt_small"], "failed", failure_code="no_rail_available")
    return ids


async def test_list_is_newest_first_with_the_rail_and_needs_a_session(
    client: httpx.AsyncClient, signed_in: SignIn, seeded: dict[str, str]
) -> None:
    anonymous = await client.get("/dashboard/payments")
    assert anonymous.status_code == 303 and "/dashboard/login" in anonymous.headers["location"]
    await signed_in("viewer")
    r = await client.get("/dashboard/payments")
    assert r.status_code == 200
    order = ["inv_usd", "inv_usdt", "usdt_big", "usdt_small", "ton_big", "ton_small"]
    assert listed(r.text) == [seeded[k] for k in order]
    assert "6 payments match" in r.text
    row = r.text.split(f'data-payment="{seeded["usdt_big"]}"')[1].split("</tr>")[0]
    assert "<td>stripe</td>" in row and "100.250000 USDT" in row  # the latest attempt's rail


SELECTS = ("status", "direction", "rail", "asset")
FILTER_CASES = [
    ("status=succeeded", ["ton_small"]),
    ("status=failed", ["usdt_small"]),
    ("status=awaiting_payment", ["inv_usd", "inv_usdt"]),
    ("direction=in", ["inv_usd", "inv_usdt"]),
    ("direction=out&asset=TON", ["ton_big", "ton_small"]),
    ("asset=USD", ["inv_usd"]),
    ("rail=ton", ["usdt_big", "ton_small"]),
    ("rail=stripe", ["usdt_big"]),
    ("rail=bank", []),
    ("date_from=2026-03-11&date_to=2026-03-12", ["usdt_small", "ton_big"]),
    ("date_from=2026-03-14", ["inv_usd", "inv_usdt"]),
    ("date_to=2026-03-10", ["ton_small"]),
    ("date_from=2026-03-11T12:00&date_to=2026-03-11T12:00", ["ton_big"]),
    # amounts in major units, per asset when no asset is chosen
    ("amount_min=3", ["inv_usdt", "usdt_big", "usdt_small", "ton_big"]),
    ("amount_min=3&amount_max=20", ["inv_usdt", "usdt_small", "ton_big"]),
    ("asset=USDT&amount_min=3.000001", ["inv_usdt", "usdt_big"]),
    ("asset=USDT&amount_max=3", ["usdt_small"]),
    ("amount_max=1.0000000001", ["inv_usd"]),  # 1.00 USD only; 1.5 TON is more
    ("amount_min=100.25&amount_max=100.25", ["usdt_big"]),
    ("status=queued&asset=TON&amount_min=10", ["ton_big"]),
]


@pytest.mark.parametrize("rare_rail_limit", [queries.RARE_RAIL, 0])
async def test_each_filter(
    client: httpx.AsyncClient,
    signed_in: SignIn,
    seeded: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    rare_rail_limit: int,
) -> None:
    # A rail with few attempts is filtered from its attempts, a common one by probing each
    # payment: both plans give the same answers.
    monkeypatch.setattr(queries, "RARE_RAIL", rare_rail_limit)
    await signed_in("viewer")
    for query, expected in FILTER_CASES:
        r = await client.get(f"/dashboard/payments?{query}")
        assert r.status_code == 200, (query, r.text)
        assert listed(r.text) == [seeded[k] for k in expected], query
        for pair in query.split("&"):  # the form shows the filters in use
            key, value = pair.split("=")
            shown = f'value="{value}" selected' if key in SELECTS else f'value="{value}"'
            assert shown in r.text, (query, key)


async def test_search_by_id_reference_and_any_spelling_of_an_address(
    client: httpx.AsyncClient, signed_in: SignIn, seeded: dict[str, str], db: Database
) -> None:
    await signed_in("viewer")

    async def search(q: str) -> list[str]:
        r = await client.get("/dashboard/payments", params={"q": q})
        assert r.status_code == 200, r.text
        return listed(r.text)

    assert await search(seeded["ton_big"]) == [seeded["ton_big"]]
    assert await search(seeded["ton_big"].upper()) == [seeded["ton_big"]]
    assert await search(seeded["inv_usdt_ref"]) == [seeded["inv_usdt"]]
    assert await search(seeded["inv_usdt_ref"].lower()) == [seeded["inv_usdt"]]
    # BOB was given raw once and user-friendly once: any spelling finds both.
    bob = [seeded["usdt_big"], seeded["ton_big"]]
    assert await search(BOB) == bob
    assert await search(BOB_RAW) == bob
    assert await search(non_bounceable(BOB_RAW)) == bob
    assert await search(seeded["inv_usd"][:-3]) == [seeded["inv_usd"]]  # the start of an id
    assert await search(seeded["inv_usdt_ref"][:8].lower()) == [seeded["inv_usdt"]]
    assert await search(ALICE[:12]) == []  # addresses are matched whole (any spelling)
    assert await search("nothing-like-this") == []
    assert await search("%") == []  # no wildcard
    # An invoice paid from an address is found by the sender's address.
    async with db.transaction() as session:
        session.add(
            TonDeposit(
                id="dep_search",
                wallet="0:" + "00" * 32,
                tx_hash="ab" * 32,
                lt=1,
                asset="USDT",
                amount=7_000_000,
                sender=ALICE_RAW,
                comment=seeded["inv_usdt_ref"],
                payment_id=seeded["inv_usdt"],
                status="credited",
                created_at=T0,
            )
        )
    assert seeded["inv_usdt"] in await search(ALICE)


BAD_FILTERS = [
    ("status=paid", "status"),
    ("rail=carrier-pigeon", "rail"),
    ("asset=DOGE", "asset"),
    ("direction=sideways", "direction"),
    ("date_from=yesterday", "date_from"),
    ("date_to=2026-02-30", "date_to"),
    ("date_from=2026-03-12&date_to=2026-03-11", "date_from"),
    ("amount_min=abc", "amount_min"),
    ("amount_min=-1", "amount_min"),
    ("amount_max=1e3", "amount_max"),
    ("amount_max=1.5.2", "amount_max"),
    ("asset=USD&amount_min=0.001", "amount_min"),  # USD has 2 decimals
    ("amount_min=5&amount_max=4", "amount_min"),
    ("q=" + "x" * 129, "q"),
    ("after=pay_doesnotexist", "after"),
    ("before=pay_doesnotexist", "before"),
]


async def test_bad_filters_are_refused_with_400_and_a_code(
    client: httpx.AsyncClient, signed_in: SignIn
) -> None:
    await signed_in("viewer")
    for query, param in BAD_FILTERS:
        r = await client.get(f"/dashboard/payments?{query}")
        assert r.status_code == 400, query
        assert problem(r.text) == ("filter_invalid", param), query
        assert 'id="payment-filters"' in r.text  # the form stays, to fix the value
        fragment = await client.get(f"/dashboard/payments?{query}", headers={"HX-Request": "true"})
        assert fragment.status_code == 400 and "<html" not in fragment.text
        assert problem(fragment.text) == ("filter_invalid", param), query
        if param not in ("after", "before"):
            export = await client.get(f"/dashboard/payments.csv?{query}")
            assert export.status_code == 400, query
            assert export.json()["error"]["code"] == "filter_invalid"
            assert export.json()["error"]["param"] == param


async def test_keyset_pages_forward_and_back_keep_the_filters(
    client: httpx.AsyncClient,
    signed_in: SignIn,
    auth: dict[str, str],
    settings: Settings,
) -> None:
    settings.dashboard_page_size = 3
    # Eight payouts, two of them at the very same instant (the id breaks the tie).
    ids = [
        await payout(client, auth, amount="1", at=T0 + timedelta(minutes=min(i, 6)))
        for i in range(8)
    ]
    other = await payout(client, auth, amount="1", asset="USDT", at=T0)
    newest_first = sorted(ids, key=lambda i: (min(ids.index(i), 6), i), reverse=True)
    await signed_in("viewer")
    first = await client.get("/dashboard/payments?asset=TON")
    assert listed(first.text) == newest_first[:3]
    assert 'id="page-newer"' not in first.text
    link = re.search(r'id="page-older" rel="next" href="([^"]+)"', first.text)
    assert link is not None
    url = link.group(1).replace("&amp;", "&")
    assert "asset=TON" in url and "after=" in url
    second = await client.get(url)
    assert listed(second.text) == newest_first[3:6]
    third_url = re.search(r'id="page-older" rel="next" href="([^"]+)"', second.text)
    assert third_url is not None
    third = await client.get(third_url.group(1).replace("&amp;", "&"))
    assert listed(third.text) == newest_first[6:]
    assert other not in listed(third.text)
    assert 'id="page-older"' not in third.text
    back = re.search(r'id="page-newer" rel="prev" href="([^"]+)"', third.text)
    assert back is not None
    again = await client.get(back.group(1).replace("&amp;", "&"))
    assert listed(again.text) == newest_first[3:6]
    # An htmx page request gets only the results and a clean URL for the address bar.
    fragment = await client.get(url, headers={"HX-Request": "true", "HX-Trigger": "page-older"})
    assert "<html" not in fragment.text and listed(fragment.text) == newest_first[3:6]
    assert fragment.headers["HX-Push-Url"].startswith("/dashboard/payments?asset=TON&after=")
    poll = await client.get(
        "/dashboard/payments?asset=TON",
        headers={"HX-Request": "true", "HX-Trigger": "payments-results"},
    )
    assert "HX-Push-Url" not in poll.headers  # polling never adds history entries
    assert 'hx-trigger="every' in poll.text  # page one is live
    assert 'hx-trigger="every' not in second.text.split('id="payments-results"')[1]


async def test_csv_export_streams_the_filtered_set_exactly_and_defuses_formulas(
    client: httpx.AsyncClient,
    signed_in: SignIn,
    auth: dict[str, str],
    seeded: dict[str, str],
) -> None:
    hostile = await payout(
        client,
        auth,
        amount="0.001000001",
        asset="TON",
        destination=ALICE,
        at=T0 + timedelta(days=6),
        description='=HYPERLINK("https://evil.example","click")',
        metadata={"note": "+1 cmd|' /C calc'!A0", "x": XSS_SCRIPT},
    )
    await signed_in("viewer")
    r = await client.get("/dashboard/payments.csv?direction=out&asset=TON")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith('attachment; filename="payments-')
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["id"] for row in rows] == [hostile, seeded["ton_big"], seeded["ton_small"]]
    by_id = {row["id"]: row for row in rows}
    assert by_id[hostile]["amount"] == "0.001000001"
    assert by_id[hostile]["amount_minor"] == "1000001"
    assert by_id[seeded["ton_big"]]["amount"] == "20.000000000"
    assert by_id[seeded["ton_big"]]["usdt_equivalent"] == "100.000000"
    assert by_id[seeded["ton_small"]]["rail"] == "ton"
    assert by_id[hostile]["description"] == '\'=HYPERLINK("https://evil.example","click")'
    assert XSS_SCRIPT in by_id[hostile]["metadata"]  # text, as given
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), value
    everything = await client.get("/dashboard/payments.csv")
    assert len(list(csv.DictReader(io.StringIO(everything.text)))) == 7


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_cells_that_a_spreadsheet_would_run_get_a_quote(value: str) -> None:
    from tonrail.dashboard.pages.payments import csv_cell

    assert csv_cell(value) == "'" + value
    assert csv_cell("12.50") == "12.50" and csv_cell(None) == ""


async def test_export_reads_in_keyset_batches(
    db: Database, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    ids = [await payout(client, auth, at=T0 + timedelta(seconds=i)) for i in range(5)]
    filters = queries.parse_filters({"asset": "TON"})
    batches = [[r.row.id for r in b] async for b in queries.export_batches(db, filters, 2)]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b] == list(reversed(ids))


async def test_detail_shows_facts_attempts_ledger_decision_events_and_approvals(
    client: httpx.AsyncClient,
    signed_in: SignIn,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    seeded: dict[str, str],
) -> None:
    pid = seeded["usdt_big"]
    cond = await load_conditions(db, settings)
    async with db.transaction() as session:
        payment = await session.get(Payment, pid)
        assert payment is not None
        await decide_for_batch(session, cond, settings, [payment])
    await signed_in("viewer")
    r = await client.get(f"/dashboard/payments/{pid}")
    assert r.status_code == 200
    html = r.text
    assert "100.250000 USDT" in html and "(100250000 minor units)" in html
    assert BOB in html
    attempts = html.split('id="attempts"')[1].split("</ol>")[0]
    assert "#1 ton" in attempts and "bounced" in attempts and "status-failed" in attempts
    assert "#2 stripe" in attempts and "tr_123" in attempts
    ledger = html.split('id="ledger"')[1].split("</table>")[0]
    assert "payout.reserved" in ledger and "liability:payouts_payable" in ledger
    assert ledger.count("100.250000 USDT") == 2  # one debit, one credit
    decision = html.split('id="fee-decision"')[1].split("</dl>")[0]
    assert "window" in decision and "Expected fee" in decision
    events = html.split('id="events"')[1].split("</table>")[0]
    assert "payout.created" in events and "payout.processing" in events
    assert "Below the approval threshold" in html
    assert 'hx-trigger="every' in html  # processing: the page follows it live
    assert 'id="payment-operations"' not in html  # a viewer cannot act
    done = await client.get(f"/dashboard/payments/{seeded['ton_small']}")
    assert "status-succeeded" in done.text and 'hx-trigger="every' not in done.text
    assert "0.002000000 TON" in done.text  # the attempt's fee
    fragment = await client.get(f"/dashboard/payments/{pid}", headers={"HX-Request": "true"})
    assert 'id="payment-detail"' in fragment.text and "<html" not in fragment.text


async def test_detail_of_a_payout_waiting_for_two_approvers(
    client: httpx.AsyncClient, signed_in: SignIn, auth: dict[str, str], db: Database
) -> None:
    big = await payout(client, auth, amount="2000000", asset="USDT")
    await signed_in("viewer")
    r = await client.get(f"/dashboard/payments/{big}")
    assert "status-requires_approval" in r.text
    assert "0 of 2 approvals" in r.text and "waits for approval" in r.text
    await signed_in("operator")
    operator = await client.get(f"/dashboard/payments/{big}")
    assert 'href="/dashboard/operations" id="payment-operations"' in operator.text


async def test_detail_links_ton_hashes_to_the_explorer_of_the_network(
    client: httpx.AsyncClient,
    signed_in: SignIn,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
) -> None:
    pid = await payout(client, auth, amount="2", destination=BOB)
    await move(db, settings, pid, "processing")
    att = await attempt(db, pid, "ton", "confirmed", provider_ref="aa" * 32, fee=(3, "TON"))
    async with db.transaction() as session:
        session.add(
            TonRequest(
                id="treq_1",
                wallet=ALICE_RAW,
                query_seq=1,
                query_id=4242,
                chain_created_at=1,
                valid_until=2,
                boc="",
                msg_hash_norm="aa" * 32,
                status="processed",
                ext_tx_hash="bb" * 32,
                created_at=T0,
                updated_at=T0,
            )
        )
        await session.flush()
        session.add(
            TonTransfer(
                attempt_id=att,
                request_id="treq_1",
                payment_id=pid,
                position=0,
                asset="TON",
                amount=2_000_000_000,
                destination=BOB_RAW,
                message_to=BOB_RAW,
                message_value=2_000_000_000,
                bounce=True,
                body_hash="00" * 32,
                status="confirmed",
                out_msg_hash="cc" * 32,
                trace={"destination_tx": "dd" * 32},
                updated_at=T0,
            )
        )
    await signed_in("viewer")

    async def page() -> str:
        r = await client.get(f"/dashboard/payments/{pid}")
        assert r.status_code == 200
        return r.text

    local = await page()  # localnet: no public explorer, plain text
    assert "dd" * 32 in local and "4242" in local and "tonviewer" not in local
    settings.ton_network = "mainnet"
    main = await page()
    for h in ("aa", "bb", "cc", "dd"):
        assert f'href="https://tonviewer.com/transaction/{h * 32}"' in main
    assert f'href="https://tonviewer.com/{BOB}"' in main
    assert 'rel="noopener noreferrer"' in main
    settings.ton_network = "testnet"
    assert f'href="https://testnet.tonviewer.com/transaction/{"dd" * 32}"' in await page()
    settings.explorer_url = "https://explorer.example/ton/"
    assert f'href="https://explorer.example/ton/transaction/{"dd" * 32}"' in await page()
    settings.explorer_url = "javascript:alert(1)"
    assert "javascript:" not in await page()


async def test_detail_of_an_unknown_payment_is_404(
    client: httpx.AsyncClient, signed_in: SignIn
) -> None:
    await signed_in("viewer")
    r = await client.get("/dashboard/payments/pay_nope")
    assert r.status_code == 404 and 'data-code="payment_not_found"' in r.text
    long = await client.get("/dashboard/payments/" + "x" * 300)
    assert long.status_code == 404


async def test_customer_and_chain_text_is_escaped_everywhere(
    client: httpx.AsyncClient,
    signed_in: SignIn,
    auth: dict[str, str],
    db: Database,
) -> None:
    pid = await payout(client, auth, description=XSS_SCRIPT, metadata={"a": XSS_IMG, "b": PHISHING})
    inv, ref = await invoice(client, auth, description=XSS_IMG)
    async with db.transaction() as session:
        session.add(
            TonDeposit(
                id="dep_xss",
                wallet=ALICE_RAW,
                tx_hash="ef" * 32,
                lt=2,
                asset="USDT",
                amount=1_000_000,
                sender=BOB_RAW,
                comment=f"{ref} {XSS_SCRIPT} {PHISHING}",
                payment_id=inv,
                status="credited",
                created_at=T0,
            )
        )
    await signed_in("viewer")
    pages = [
        (await client.get("/dashboard/payments")).text,
        (await client.get(f"/dashboard/payments/{pid}")).text,
        (await client.get(f"/dashboard/payments/{inv}")).text,
    ]
    for html in pages:
        assert "<script>window" not in html and "<img src=x" not in html
        assert f'href="{PHISHING}' not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in pages[0]
    assert "&lt;img src=x onerror=window.__xss=1&gt;" in pages[1]
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in pages[2]  # the chain comment
