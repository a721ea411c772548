"""The operations commands, run as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from tests.helpers import DEST
from tonrail.cli import app
from tonrail.db import Database
from tonrail.ledger.models import LedgerLine
from tonrail.settings import get_settings


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url  # type: ignore[misc]
    get_settings.cache_clear()


def test_keys_create_shows_the_secret_once(cli_env: str) -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--account", "acct_cli", "--name", "ci"])
    assert result.exit_code == 0, result.output
    assert "secret: trk_" in result.output
    assert "not shown again" in result.output


def test_keys_create_rejects_unknown_scope(cli_env: str) -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--scope", "root"])
    assert result.exit_code == 2
    assert "unknown scopes" in result.output


def test_revoke_unknown_key(cli_env: str) -> None:
    result = CliRunner().invoke(app, ["keys", "revoke", "key_nope"])
    assert result.exit_code == 2 and "no active key" in result.output


async def test_ledger_check_passes_then_catches_tampering(
    cli_env: str, client: object, auth: dict[str, str], db: Database
) -> None:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    await client.post(
        "/v1/payouts", json={"amount": "2", "asset": "USDT", "destination": DEST}, headers=auth
    )
    ok = await asyncio.to_thread(CliRunner().invoke, app, ["ledger", "check"])
    assert ok.exit_code == 0, ok.output
    assert "books balance" in ok.output
    async with db.transaction() as session:
        await session.execute(
            update(LedgerLine).where(LedgerLine.amount > 0).values(amount=LedgerLine.amount + 1)
        )
    bad = await asyncio.to_thread(CliRunner().invoke, app, ["ledger", "check"])
    assert bad.exit_code == 1
    assert "UNBALANCED" in bad.output


def test_worker_rejects_unknown_loop(cli_env: str) -> None:
    result = CliRunner().invoke(app, ["worker", "--only", "nope"])
    assert result.exit_code == 2 and "unknown loops" in result.output


async def test_worker_stops_cleanly_on_sigterm_and_releases_its_leases(
    database_url: str, tmp_path: Path
) -> None:
    """`docker stop` / ECS: SIGTERM ends `tonrail worker` with exit 0 and its leases given back."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "TON", "LOG"))}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(tmp_path), LOG_JSON="true")
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "tonrail"), "worker", "--only", "expire_invoices",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output = b""
    while b"worker started" not in output:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line, output.decode(errors="replace")
        output += line
    proc.send_signal(signal.SIGTERM)
    rest, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    output += rest
    assert proc.returncode == 0, output.decode(errors="replace")
    stopped = [ln for ln in output.decode().splitlines() if '"worker stopped"' in ln]
    assert stopped and json.loads(stopped[-1])["released_leases"] == 0


async def test_treasury_book_funding_books_in_and_out_audited(cli_env: str, db: Database) -> None:
    from tonrail.ledger import rules as books
    from tonrail.ledger.service import balance, check_books
    from tonrail.security.audit_log import recent

    async def run(*args: str) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, app, ["treasury", *args])

    ok = await run("book-funding", "--asset", "TON", "--amount", "1.5", "--note", "owner funds")
    assert ok.exit_code == 0, ok.output
    out = await run("book-funding", "--asset", "TON", "--amount", "-0.25", "--note", "order 7")
    assert out.exit_code == 0 and "out of the treasury" in out.output
    zero = await run("book-funding", "--asset", "TON", "--amount", "0", "--note", "x")
    no_note = await run("book-funding", "--asset", "USDT", "--amount", "1", "--note", " ")
    assert zero.exit_code == 2 and no_note.exit_code == 2  # nothing booked
    async with db.transaction() as session:
        assert await balance(session, books.TREASURY, "TON") == 1_250_000_000
        assert await balance(session, books.STRAY_OUTFLOW, "TON") == 250_000_000
        assert await balance(session, books.TREASURY, "USDT") == 0
        assert (await check_books(session)).ok
        entries = await recent(session, 10, "treasury.book_funding")
    assert sorted(e.details["amount"] for e in entries) == ["-250000000", "1500000000"]
