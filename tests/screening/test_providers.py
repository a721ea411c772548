"""The sanctions list file (any spelling of an address, names without case, reloaded when
the file changes, a broken file keeps the last good list) and the HTTP provider against a
real local screening API (aiohttp on 127.0.0.1)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.dashboard.payments_fixtures import address
from tonrail.errors import InvalidRequest
from tonrail.screening.providers import HttpProvider, ListProvider
from tonrail.screening.rules import Outcome, Subject, parse_list

SANCTIONED, SANCTIONED_RAW = address(0x51)
WATCHED, _ = address(0x52)
CLEAN, _ = address(0x53)


def write_list(path: Path, body: str, mtime: int) -> None:
    path.write_text(body)
    os.utime(path, (mtime, mtime))


async def test_the_list_matches_addresses_in_any_spelling_and_names_without_case(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sanctions.csv"
    write_list(
        path,
        "kind,value,outcome,reason\n"
        f"address,{SANCTIONED_RAW},blocked,OFAC SDN\n"
        f"address,{WATCHED},review,exchange under investigation\n"
        "name,Ivan  PETROV,,EU list\n",
        1_000,
    )
    provider = ListProvider(path)
    blocked = await provider.screen(Subject(SANCTIONED), {})
    assert (blocked.outcome, blocked.reason, blocked.reference) == (
        Outcome.BLOCKED,
        "OFAC SDN",
        "line 2",
    )
    assert (await provider.screen(Subject(WATCHED), {})).outcome == Outcome.REVIEW
    assert (await provider.screen(Subject(CLEAN, "ivan petrov"), {})).outcome == Outcome.BLOCKED
    assert (await provider.screen(Subject(CLEAN, "Ivana Petrova"), {})).outcome == Outcome.CLEAR
    # The strictest match wins: a watched address paid to a listed name is blocked.
    assert (await provider.screen(Subject(WATCHED, "IVAN PETROV"), {})).outcome == Outcome.BLOCKED

    # The file changes: the next screening reads it again.
    write_list(path, f"kind,value\naddress,{CLEAN}\n", 2_000)
    assert (await provider.screen(Subject(CLEAN), {})).outcome == Outcome.BLOCKED
    assert (await provider.screen(Subject(SANCTIONED), {})).outcome == Outcome.CLEAR
    # A broken file keeps the last good list rather than clearing everyone.
    write_list(path, "kind,value\naddress,not-an-address\n", 3_000)
    assert (await provider.screen(Subject(CLEAN), {})).outcome == Outcome.BLOCKED
    path.unlink()
    assert (await provider.screen(Subject(CLEAN), {})).outcome == Outcome.BLOCKED


async def test_the_list_matches_payer_emails_and_ibans_of_backup_rails(tmp_path: Path) -> None:
    path = tmp_path / "sanctions.csv"
    write_list(
        path,
        "kind,value,outcome,reason\n"
        "email, Ivan@Example.COM ,blocked,OFAC SDN\n"
        "iban,GB29 NWBK 6016 1331 9268 19,review,EU list\n",
        1_000,
    )
    provider = ListProvider(path)
    by_email = await provider.screen(Subject(None, "Somebody", "ivan@example.com"), {})
    assert (by_email.outcome, by_email.reason) == (Outcome.BLOCKED, "OFAC SDN")
    by_iban = await provider.screen(Subject(None, None, None, "gb29nwbk60161331926819"), {})
    assert (by_iban.outcome, by_iban.reference) == (Outcome.REVIEW, "line 3")
    both = Subject(None, None, "IVAN@example.com", "GB29NWBK60161331926819")
    assert (await provider.screen(both, {})).outcome == Outcome.BLOCKED
    assert (await provider.screen(Subject(None, None, "ivan@example.org"), {})).outcome == (
        Outcome.CLEAR
    )
    assert (await provider.screen(Subject(None), {})).outcome == Outcome.CLEAR


async def test_without_a_good_list_everyone_is_held_for_review(tmp_path: Path) -> None:
    path = tmp_path / "sanctions.csv"
    missing = await ListProvider(path).screen(Subject(CLEAN), {})
    assert (missing.outcome, missing.reason) == (Outcome.REVIEW, "screening list unreadable")
    write_list(path, "kind,value\nwallet,x\n", 1_000)
    provider = ListProvider(path)
    assert (await provider.screen(Subject(CLEAN), {})).outcome == Outcome.REVIEW
    write_list(path, f"kind,value\naddress,{SANCTIONED}\n", 2_000)  # fixed: read at once
    assert (await provider.screen(Subject(CLEAN), {})).outcome == Outcome.CLEAR


def test_a_bad_list_is_refused_with_its_line() -> None:
    for body, message in (
        ("value\nx\n", "header with kind and value"),
        ("kind,value\nwallet,x\n", "line 2: kind must be"),
        ("kind,value\nemail,not-an-email\n", "line 2: kind must be"),
        ("kind,value\niban,GB29-NWBK\n", "line 2: kind must be"),
        (f"kind,value,outcome\naddress,{CLEAN},clear\n", "line 2: needs a value and outcome"),
        ("kind,value\naddress,EQnotanaddress\n", "line 2: 'EQnotanaddress' is not a TON address"),
    ):
        with pytest.raises(InvalidRequest, match=message) as caught:
            parse_list(body)
        assert caught.value.code == "screening_list_invalid"


class ScreeningApi:
    """A commercial screening API as the HTTP provider expects it."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, Any], str]] = []
        self.answers: dict[str, tuple[int, str]] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((body, request.headers.get("Authorization", "")))
        status, text = self.answers.get(body["address"], (200, '{"outcome": "clear"}'))
        return web.Response(status=status, text=text, content_type="application/json")


@pytest.fixture
async def screening_api() -> AsyncIterator[ScreeningApi]:
    api = ScreeningApi()
    app = web.Application()
    app.router.add_post("/v1/screenings", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api.url = f"http://127.0.0.1:{port}"
    yield api
    await runner.cleanup()


async def test_the_http_provider_asks_the_api_and_holds_when_it_cannot(
    screening_api: ScreeningApi,
) -> None:
    screening_api.answers = {
        SANCTIONED: (200, json.dumps({"outcome": "blocked", "reason": "SDN", "id": "chk_1"})),
        WATCHED: (200, json.dumps({"outcome": "review", "reason": "PEP", "id": "chk_2"})),
        CLEAN: (500, "boom"),
        "EQ-odd": (200, json.dumps({"outcome": "maybe"})),
    }
    provider = HttpProvider(screening_api.url + "/", "sk_screen", 2.0)
    context = {"direction": "out", "asset": "USDT", "amount": "12.5"}
    blocked = await provider.screen(Subject(SANCTIONED, "Acme"), context)
    assert (blocked.outcome, blocked.reason, blocked.reference) == (Outcome.BLOCKED, "SDN", "chk_1")
    assert screening_api.requests[0] == (
        {"address": SANCTIONED, "name": "Acme", **context},
        "Bearer sk_screen",
    )
    assert (await provider.screen(Subject(WATCHED), context)).outcome == Outcome.REVIEW
    # An error or an answer we cannot read: a person decides, never a silent clear.
    failed = await provider.screen(Subject(CLEAN), context)
    assert failed.outcome == Outcome.REVIEW and "HTTPStatusError" in failed.reason
    assert (await provider.screen(Subject("EQ-odd"), context)).outcome == Outcome.REVIEW
    assert (await provider.screen(Subject(address(0x54)[0]), context)).outcome == Outcome.CLEAR
    unreachable = HttpProvider("http://127.0.0.1:9", "", 1.0)
    assert (await unreachable.screen(Subject(CLEAN), context)).outcome == Outcome.REVIEW
