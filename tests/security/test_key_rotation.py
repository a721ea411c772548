"""Rotating API keys: `tonrail keys roll` (successor, overlap, `expires_at` in the API, then
refused) and the emergency `tonrail keys rotate-all` (every key revoked, successors written
once to a file only the operator can read), each with its audit entry."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import make_key
from tonrail import clock
from tonrail.app import create_app
from tonrail.cli import app as cli
from tonrail.db import Database
from tonrail.security.api_keys import hash_secret
from tonrail.security.audit_log import recent, verify
from tonrail.security.key_rotation import CONFIRMATION
from tonrail.settings import Settings, get_settings

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args)


async def key_id_of(db: Database, secret: str) -> str:
    from sqlalchemy import select

    from tonrail.security.models import ApiKey

    async with db.transaction() as session:
        return str(
            (
                await session.execute(
                    select(ApiKey.id).where(ApiKey.secret_hash == hash_secret(secret))
                )
            ).scalar_one()
        )


async def test_roll_keeps_the_old_key_for_the_overlap_then_refuses_it(
    cli_env: Path, db: Database, settings: Settings
) -> None:
    now = [T0]
    clock.set_clock(lambda: now[0])
    old_secret = await make_key(db, "acct_roll")
    old_id = await key_id_of(db, old_secret)
    api = create_app(settings.model_copy(update={"access_recheck_ms": 0}), db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://t"
    ) as client:

        async def get(secret: str, path: str = "/v1/payouts") -> httpx.Response:
            return await client.get(path, headers={"Authorization": f"Bearer {secret}"})

        assert (await get(old_secret)).status_code == 200  # cached by this process
        out = await asyncio.to_thread(invoke, ["keys", "roll", old_id, "--actor", "ops"])
        assert out.exit_code == 0, out.output
        new_id = re.search(r"key id: (key_\S+)", out.output)[1]  # type: ignore[index]
        new_secret = re.search(r"secret: (\S+)", out.output)[1]  # type: ignore[index]
        assert "2026-12-05T12:00:00+00:00" in out.output

        listed = (await get(new_secret, "/v1/api_keys")).json()["data"]
        by_id = {k["id"]: k for k in listed}
        assert by_id[old_id]["expires_at"] == "2026-12-05T12:00:00Z"
        assert by_id[old_id]["successor_id"] == new_id
        assert by_id[new_id]["expires_at"] is None
        assert "secret" not in str(listed) and new_secret not in str(listed)

        now[0] = T0 + timedelta(hours=23, minutes=59)
        assert (await get(old_secret)).status_code == 200  # within the overlap, both work
        assert (await get(new_secret)).status_code == 200
        now[0] = T0 + timedelta(hours=24)
        refused = await get(old_secret)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "api_key_expired"
        assert new_id in refused.json()["error"]["message"]
        assert (await get(new_secret)).status_code == 200

    again = await asyncio.to_thread(invoke, ["keys", "roll", old_id])
    assert again.exit_code == 2
    async with db.transaction() as session:
        [entry] = await recent(session, action_prefix="api_key.")
        assert (await verify(session)).ok
    assert (entry.actor, entry.action, entry.subject) == ("admin:ops", "api_key.rolled", old_id)
    assert entry.details["successor_id"] == new_id
    assert new_secret not in str(entry.details)


async def test_roll_with_a_custom_overlap_and_refusals(cli_env: Path, db: Database) -> None:
    clock.set_clock(lambda: T0)
    key_id = await key_id_of(db, await make_key(db, "acct_roll"))
    out = await asyncio.to_thread(invoke, ["keys", "roll", key_id, "--overlap-hours", "1"])
    assert out.exit_code == 0 and "2026-12-04T13:00:00+00:00" in out.output
    for args in (["keys", "roll", "key_nope"], ["keys", "roll", key_id, "--overlap-hours", "999"]):
        bad = await asyncio.to_thread(invoke, args)
        assert bad.exit_code == 2, bad.output


async def test_rotate_all_revokes_every_key_and_writes_successors_once(
    cli_env: Path, db: Database, settings: Settings
) -> None:
    secrets = {
        acct: [await make_key(db, acct), await make_key(db, acct, "payments:read")]
        for acct in ("acct_a", "acct_b")
    }
    revoked = await make_key(db, "acct_c")
    gone = await asyncio.to_thread(invoke, ["keys", "revoke", await key_id_of(db, revoked)])
    assert gone.exit_code == 0
    out_file = cli_env / "incident" / "keys.txt"

    refused = await asyncio.to_thread(
        invoke, ["keys", "rotate-all", "--reason", "leak", "--confirm", "rotate all"]
    )
    assert refused.exit_code == 2 and "not confirmed" in refused.output

    old_umask = os.umask(0o022)
    try:
        out = await asyncio.to_thread(
            invoke,
            [
                "keys",
                "rotate-all",
                "--reason",
                "leaked laptop",
                "--confirm",
                CONFIRMATION,
                "--out",
                str(out_file),
                "--actor",
                "ops",
            ],
        )
    finally:
        os.umask(old_umask)
    assert out.exit_code == 0, out.output
    assert "revoked 4 keys of 2 accounts" in out.output
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(out_file.parent.stat().st_mode) == 0o700
    text = out_file.read_text()
    new_secrets = re.findall(r"^(key_\S+)\s+(trk_\S+)", text, re.M)
    assert len(new_secrets) == 4
    assert "[acct_a]" in text and "[acct_b]" in text and "acct_c" not in text
    assert all(s not in text for pair in secrets.values() for s in pair)

    api = create_app(settings, db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://t"
    ) as client:
        for pair in secrets.values():
            for old in pair:
                r = await client.get("/v1/payouts", headers={"Authorization": f"Bearer {old}"})
                assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_invalid"
        for _, new in new_secrets:
            r = await client.get("/v1/api_keys", headers={"Authorization": f"Bearer {new}"})
            assert r.status_code == 200
            # Successors keep the name and the scopes of the keys they replace.
            live = [k for k in r.json()["data"] if k["revoked_at"] is None]
            assert sorted(k["scopes"] for k in live) == [
                ["payments:read"],
                ["payments:read", "payments:write"],
            ]
    read_only = [n for _, n in new_secrets]
    async with db.transaction() as session:
        entries = await recent(session, action_prefix="api_keys.")
        assert (await verify(session)).ok
    [entry] = entries
    assert entry.action == "api_keys.rotated_all" and entry.actor == "admin:ops"
    assert entry.details["reason"] == "leaked laptop"
    assert len(entry.details["revoked"]) == 4 and len(entry.details["issued"]) == 4
    assert all(n not in str(entry.details) for n in read_only)

    # The file is never replaced: a second rotation into it is refused and revokes nothing.
    again = await asyncio.to_thread(
        invoke,
        [
            "keys",
            "rotate-all",
            "--reason",
            "again",
            "--confirm",
            CONFIRMATION,
            "--out",
            str(out_file),
        ],
    )
    assert again.exit_code == 2 and "exists" in again.output
    assert out_file.read_text() == text
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings, db)), base_url="http://t"
    ) as client:
        r = await client.get("/v1/api_keys", headers={"Authorization": f"Bearer {read_only[0]}"})
        assert r.status_code == 200
