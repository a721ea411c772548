"""Dashboard fixtures: admin users per role, signed-in HTTP clients, a live server and Chromium.

Browser tests use Debian's Chromium (/usr/bin/chromium, installed by `make setup`) through
Playwright's Python API; Playwright never downloads a browser. Each browser test gets its own
uvicorn server on a free port, with its own engine on the test's SQLite database.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import LiveServer
from tonrail.dashboard import sessions
from tonrail.db import Database
from tonrail.security.admins import create_admin
from tonrail.settings import Settings

PASSWORD = "correct horse battery staple"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USERS = {
    "viewer": "viewer",
    "operator": "operator",
    "approver": "approver",
    "approver2": "approver",
    "admin": "admin",
}


@pytest.fixture
async def admins(db: Database) -> dict[str, str]:
    """Users `viewer`, `operator`, `approver`, `approver2`, `admin` with PASSWORD."""
    async with db.transaction() as session:
        for username, role in USERS.items():
            await create_admin(session, username, PASSWORD, role)
    return dict(USERS)


def login_csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the sign-in form"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Sign `client` in through the form; returns the session's CSRF token for POSTs."""
    client.cookies.clear()
    form = await client.get("/dashboard/login")
    response = await client.post(
        "/dashboard/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": login_csrf(form.text),
            "next": "/dashboard",
        },
    )
    assert response.status_code == 303, response.text
    return csrf_of(client, client_settings(client))


def client_settings(client: httpx.AsyncClient) -> Settings:
    transport = client._transport
    app: Any = getattr(transport, "app", None)
    settings: Settings = app.state.settings
    return settings


def csrf_of(client: httpx.AsyncClient, settings: Settings) -> str:
    claims = sessions.read(settings, client.cookies.get(sessions.COOKIE))
    assert claims is not None
    return sessions.csrf_token(settings, claims.sid)


@pytest.fixture
def signed_in(client: httpx.AsyncClient, admins: dict[str, str]) -> Callable[[str], Awaitable[str]]:
    """`csrf = await signed_in("operator")`: the `client` fixture, signed in as that user."""

    async def _sign_in(username: str) -> str:
        return await sign_in(client, username)

    return _sign_in


@pytest.fixture
def live_server(settings: Settings, admins: dict[str, str]) -> Iterator[LiveServer]:
    if not settings.effective_database_url.startswith("sqlite"):
        pytest.skip("browser tests run on SQLite (the pages' SQL is tested on both backends)")
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    if not CHROMIUM.exists():  # noqa: ASYNC240
        pytest.fail("Chromium is missing: `make setup` installs Debian's chromium package")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def browser_sign_in(page: Any, server: LiveServer, username: str) -> None:
    await page.goto(f"{server.url}/dashboard/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*/dashboard/(?!login).*"))


@pytest.fixture
async def page_as(
    browser: Any, live_server: LiveServer
) -> AsyncIterator[Callable[[str], Awaitable[Any]]]:
    """`page = await page_as("operator")`: a new browser context signed in as that user."""
    contexts: list[Any] = []

    async def _page(username: str) -> Any:
        context = await browser.new_context(viewport={"width": 1400, "height": 900})
        contexts.append(context)
        page = await context.new_page()
        await browser_sign_in(page, live_server, username)
        return page

    yield _page
    for context in contexts:
        await context.close()
    await asyncio.sleep(0)
