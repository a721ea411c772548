"""Hot wallet rotation (`tonrail keys rotate-wallet`, processing/wallet_rotation.py): the state
machine, the new key's envelope, the pause of the old wallet while its requests settle and a
cancel (on the local network), and the CLI's refusals. The full rotation, crashed after each
step and resumed, is in test_wallet_rotation_crash.py."""

from __future__ import annotations

import asyncio
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.rails.ton.rail_fixture import Rail
from tests.rails.ton.test_faults import payout, status
from tonrail.cli import app
from tonrail.db import Database
from tonrail.errors import Conflict, IllegalTransition
from tonrail.processing import wallet_rotation as rot
from tonrail.processing.ton_loop import assemble, payout_round, send_due
from tonrail.rails.ton import keys
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.models import TonRequest, TonWalletRotation
from tonrail.rails.ton.states import ROTATION_MOVES, RotationState
from tonrail.security.audit_log import recent, verify
from tonrail.settings import Settings, get_settings

PASSPHRASE = "rotation-test-passphrase"
TONRAIL = str(Path(sys.executable).parent / "tonrail")


def write_key(path: Path, seed: bytes) -> None:
    keys.write_envelope(path, keys.seal(seed, keys.PassphraseKek(PASSPHRASE, n=2**14)))


def with_key(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "ton_key_passphrase": settings.ton_key_passphrase.__class__(PASSPHRASE),
            "ton_master_key_file": str(tmp_path / "hot_wallet.key"),
        }
    )


# Blocking file reads, kept out of the async tests.
def read(path: Path) -> str:
    return path.read_text().strip()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def exists(path: Path) -> bool:
    return path.exists()


def key_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "hot_wallet" in p.name)


# --- the state machine, as data


def test_every_move_outside_the_table_is_refused() -> None:
    for start in RotationState:
        for to in RotationState:
            row = TonWalletRotation(id="wrot_x", state=start, open_marker="open")
            if to in ROTATION_MOVES[start]:
                rot.move(row, to)
                assert row.state == to
                assert row.open_marker == (None if to in ("switched", "canceled") else "open")
            else:
                with pytest.raises(IllegalTransition):
                    rot.move(row, to)
                assert row.state == start


# --- on the local network: the old wallet pauses until its requests settle


async def test_rotation_pauses_the_old_wallet_until_its_requests_settle(
    rail: Rail,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    tmp_path: Path,
) -> None:
    hot = rail.net.genesis.wallet("hot")
    write_key(tmp_path / "hot_wallet.key", bytes.fromhex(hot.to_json()["private_key"]))
    s = with_key(settings, tmp_path)
    first = await payout(client, auth, rail, "1")
    assert await assemble(rail.ctx, deploy=True)
    assert await send_due(rail.ctx) == 1

    started = await rot.start(db, s, "admin:test")
    assert started.state == "created" and started.old_wallet == rail.ctx.wallet_raw
    assert started.new_wallet != started.old_wallet
    new_file = Path(started.new_key_file)
    assert mode_of(new_file) == 0o600
    envelope = read(new_file)
    assert keys.parse_envelope(envelope)["kek"]["kind"] == "scrypt"  # the kind in use today
    new_seed = keys.open_envelope(envelope, keys.passphrase_kek(s))
    assert raw(rot.wallet_of(s, keys.HotWalletSigner(new_seed).public_key).address) == (
        started.new_wallet
    )
    with pytest.raises(Conflict) as open_already:
        await rot.start(db, s, "admin:test")
    assert open_already.value.code == "wallet_rotation_open"

    assert (await rot.pause(db, s, started.id, "admin:test")).state == "paused"
    # The first request is still open: the rotation cannot be drained yet.
    with pytest.raises(Conflict) as not_drained:
        await rot.wait_drained(db, started.id, "admin:test", within_s=0)
    assert not_drained.value.code == "wallet_rotation_not_drained"

    second = await payout(client, auth, rail, "2")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while (await status(client, auth, first))["status"] != "succeeded":
        assert loop.time() < deadline, await status(client, auth, first)
        await payout_round(rail.ctx)
        await asyncio.sleep(0.05)
    for _ in range(3):
        await payout_round(rail.ctx)
    # Nothing new was signed by the paused wallet: the second payout waits, queued.
    async with db.transaction() as session:
        requests = (await session.execute(select(TonRequest))).scalars().all()
    assert len(requests) == 1 and requests[0].status == "final"
    assert (await status(client, auth, second))["status"] == "queued"

    assert (await rot.wait_drained(db, started.id, "admin:test", within_s=5)).state == "drained"
    assert (await rot.cancel(db, "admin:test", "test over")).state == "canceled"
    assert not exists(new_file)
    # Canceled: the old wallet signs again, and the second payout goes out once.
    final = await rail.run_until_final([second], client, auth)
    assert final[second]["status"] == "succeeded"

    async with db.transaction() as session:
        entries = await recent(session, action_prefix="hot_wallet.")
        assert (await verify(session)).ok
    assert [e.action for e in reversed(entries)] == [
        "hot_wallet.rotation_created",
        "hot_wallet.rotation_paused",
        "hot_wallet.rotation_drained",
        "hot_wallet.rotation_canceled",
    ]
    assert all(e.subject == started.id for e in entries)
    assert PASSPHRASE not in str([e.details for e in entries])


# --- the command


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Iterator[Path]:
    write_key(tmp_path / "hot_wallet.key", b"\x11" * 32)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TON_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("TON_NETWORK", "localnet")
    for name in ("TON_MASTER_KEY", "TON_MASTER_KEY_FILE", "TON_KEY_KMS_KEY_ID", "CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, ["keys", "rotate-wallet", *args])


async def rotations(db: Database) -> list[TonWalletRotation]:
    async with db.transaction() as session:
        return list((await session.execute(select(TonWalletRotation))).scalars())


async def test_bad_input_gets_a_clear_message_and_writes_nothing(
    cli_env: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = await asyncio.to_thread(invoke, ["--confirm", "rotate hot wallet"])
    assert wrong.exit_code == 2
    assert 'not confirmed: type exactly "ROTATE HOT WALLET"' in wrong.output
    for args in (["--resume"], ["--cancel", "why"]):
        none = await asyncio.to_thread(invoke, args)
        assert none.exit_code == 2
        assert "no hot wallet rotation in progress (wallet_rotation_none)" in none.output
    no_reason = await asyncio.to_thread(invoke, ["--cancel", " "])
    assert no_reason.exit_code == 2
    monkeypatch.setenv("TON_MASTER_KEY", read(cli_env / "hot_wallet.key"))
    get_settings.cache_clear()
    inline = await asyncio.to_thread(invoke, ["--confirm", rot.CONFIRMATION])
    assert inline.exit_code == 2 and "wallet_rotation_inline_key" in inline.output
    assert await rotations(db) == []
    assert key_files(cli_env) == ["hot_wallet.key"]
