"""Unknown TON attempts: the confirmation timeout puts a sent, unconfirmed payout in `unknown`
with an alert; `resolve-unknown` proves it sent (tracked on) or expired unsent (retried), or
changes nothing. On the local network, both databases."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.crash_support import TONRAIL, worker_env
from tests.rails.ton.rail_fixture import Rail
from tests.rails.ton.test_faults import faults, paid_once_on_retry, payout, status, times_paid
from tonrail import clock
from tonrail.db import Database
from tonrail.ledger.service import check_books
from tonrail.monitoring.jobs import evaluate_once
from tonrail.monitoring.models import Alert
from tonrail.processing.ton_loop import assemble, send_due
from tonrail.processing.ton_track import track_open
from tonrail.processing.unknown_attempts import ChainUnreachable, resolve_unknown
from tonrail.rails.ton.api import ToncenterTonApi
from tonrail.rails.ton.models import TonRequest
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.security.audit_log import AuditEntry
from tonrail.settings import Settings


def shift_clock(seconds: float) -> None:
    """The service's clock `seconds` ahead of the wall clock (the chain's is its own)."""
    clock.set_clock(lambda: datetime.now(UTC) + timedelta(seconds=seconds))


async def sent_and_overdue(rail: Rail, client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    """A payout signed and sent, then tracked past the confirmation timeout (1 s here)."""
    rail.ctx.settings = rail.ctx.settings.model_copy(
        update={"ton_confirmation_timeout_seconds": 1, "ton_max_attempts": 2}
    )
    pid = await payout(client, auth, rail)
    await assemble(rail.ctx, deploy=True)
    await send_due(rail.ctx)
    shift_clock(5)
    rail.ctx.track_after.clear()
    await track_open(rail.ctx)
    return pid


async def lost_and_past_validity(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str]
) -> str:
    """A payout whose message was lost on its way, unknown, then two hours later on both
    clocks: past its valid_until."""
    await faults(rail, drop_external_rate=1.0)
    pid = await sent_and_overdue(rail, client, auth)
    assert (await status(client, auth, pid))["attempts"][0]["status"] == "unknown"
    shift_clock(7200)
    await faults(rail, drop_external_rate=0.0, time_offset_s=7200)
    return pid


async def audit_entries(db: Database, subject: str) -> list[AuditEntry]:
    async with db.transaction() as session:
        stmt = select(AuditEntry).where(
            AuditEntry.subject == subject, AuditEntry.action == "payout.unknown_resolved"
        )
        return list((await session.execute(stmt)).scalars())


async def alert_status(db: Database, key: str) -> str | None:
    async with db.transaction() as session:
        stmt = select(Alert.status).where(Alert.dedup_key == key)
        return (await session.execute(stmt)).scalar_one_or_none()


async def test_a_sent_payout_unconfirmed_past_the_timeout_is_unknown_then_proven_sent(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> None:
    await faults(rail, stall_blocks=True)  # accepted by the node, no block takes it yet
    pid = await sent_and_overdue(rail, client, auth)
    p = await status(client, auth, pid)
    assert p["status"] == "processing"
    assert [(a["status"], a["error_code"]) for a in p["attempts"]] == [
        ("unknown", "confirmation_timeout")
    ]
    await evaluate_once(db, settings, {})
    assert await alert_status(db, "payout_unknown") == "open"

    # Still valid on chain: it may land, so nothing can be decided and nothing changes.
    [line] = await resolve_unknown(rail.ctx, pid, "admin:test")
    assert line.verdict == "undecided" and "still valid" in line.reason
    assert (await status(client, auth, pid))["attempts"][0]["status"] == "unknown"
    assert await audit_entries(db, pid) == []

    await faults(rail, stall_blocks=False)
    async with db.transaction() as session:
        [request] = (await session.execute(select(TonRequest))).scalars().all()
    for _ in range(600):  # the queued message lands in the next blocks
        if await rail.api.tx_by_in_message(request.msg_hash_norm) is not None:
            break
        await asyncio.sleep(0.05)
    [line] = await resolve_unknown(rail.ctx, pid, "admin:test")
    assert line.verdict == "sent"
    final = await rail.run_until_final([pid], client, auth)
    assert final[pid]["status"] == "succeeded"
    [attempt] = final[pid]["attempts"]
    assert attempt["status"] == "confirmed" and attempt["error_code"] is None
    assert await times_paid(rail, pid) == 1
    [entry] = await audit_entries(db, pid)
    assert entry.actor == "admin:test" and entry.details["verdict"] == "sent"
    async with db.transaction() as session:
        assert (await check_books(session)).ok
    await evaluate_once(db, settings, {})
    assert await alert_status(db, "payout_unknown") == "resolved"


async def test_the_tracker_itself_carries_an_overdue_payout_to_confirmed(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    await faults(rail, stall_blocks=True)
    pid = await sent_and_overdue(rail, client, auth)
    assert (await status(client, auth, pid))["attempts"][0]["status"] == "unknown"
    await faults(rail, stall_blocks=False)  # no operator: tracking goes on by itself
    final = await rail.run_until_final([pid], client, auth)
    assert [a["status"] for a in final[pid]["attempts"]] == ["confirmed"]
    assert await times_paid(rail, pid) == 1
    assert await audit_entries(db, pid) == []
    async with db.transaction() as session:
        assert (await check_books(session)).ok


async def test_an_unknown_payout_proven_expired_unsent_is_retried_and_paid_once(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    pid = await lost_and_past_validity(rail, client, auth)
    [line] = await resolve_unknown(rail.ctx, None, "admin:ops")
    assert (line.payout_id, line.verdict, line.status) == (pid, "expired", "queued")
    assert "processed?" in line.reason
    [entry] = await audit_entries(db, pid)
    assert entry.details["verdict"] == "expired" and entry.actor == "admin:ops"
    # Again: nothing is unknown any more, nothing happens.
    assert await resolve_unknown(rail.ctx, None, "admin:ops") == []
    await paid_once_on_retry(rail, client, auth, db, pid)


async def test_resolve_unknown_refuses_when_the_chain_cannot_be_read(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database, down_url: str
) -> None:
    pid = await lost_and_past_validity(rail, client, auth)
    before = await status(client, auth, pid)
    rail.ctx.api = ToncenterTonApi(
        ToncenterClient(
            [f"{down_url}/api/v2"],
            [f"{down_url}/api/v3"],
            max_attempts=1,
            backoff_initial=0.01,
            backoff_max=0.01,
        )
    )
    with pytest.raises(ChainUnreachable) as refused:
        await resolve_unknown(rail.ctx, pid, "admin:test")
    assert refused.value.code == "chain_unreachable"
    assert "nothing was changed" in refused.value.message
    assert await status(client, auth, pid) == before
    assert await audit_entries(db, pid) == []
    async with db.transaction() as session:
        [request] = (await session.execute(select(TonRequest))).scalars().all()
        assert request.status == "sent"


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        TONRAIL,
        "payouts",
        "resolve-unknown",
        *args,
        env=env,
        cwd=env["DATA_DIR"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_the_command_survives_a_crash_at_the_resolution_point(
    rail: Rail,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    tmp_path: Path,
) -> None:
    pid = await lost_and_past_validity(rail, client, auth)
    env = worker_env(rail.net, settings, tmp_path, "ton.resolve_unknown")

    code, _, err = await run_cli(env, "--all", "--actor", "ops")
    assert code == -signal.SIGKILL, err[-2000:]
    # Killed before its commit: nothing of the decision was written.
    p = await status(client, auth, pid)
    assert (p["status"], [a["status"] for a in p["attempts"]]) == ("processing", ["unknown"])
    assert await audit_entries(db, pid) == []

    code, out, err = await run_cli({**env, "CRASH_AT": ""}, pid, "--actor", "ops")
    assert code == 0, err[-2000:]
    assert f"{pid}  expired" in out and "-> queued" in out
    [entry] = await audit_entries(db, pid)
    assert entry.actor == "admin:ops"
    await paid_once_on_retry(rail, client, auth, db, pid)


@pytest.mark.slow
async def test_the_command_refuses_with_a_clear_message_when_toncenter_is_down(
    rail: Rail,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    tmp_path: Path,
    down_url: str,
) -> None:
    await faults(rail, drop_external_rate=1.0)
    pid = await sent_and_overdue(rail, client, auth)
    before = await status(client, auth, pid)
    env = worker_env(rail.net, settings, tmp_path, "")
    env.update(
        TON_API_URL=f"{down_url}/api/v2",
        TON_API_V3_URL=f"{down_url}/api/v3",
        TONCENTER_MAX_ATTEMPTS="1",
    )
    code, out, err = await run_cli(env, "--all")
    assert code == 2, out + err
    assert "the chain cannot be read" in err and "nothing was changed" in err
    assert "chain_unreachable" in err
    assert await status(client, auth, pid) == before
    assert await audit_entries(db, pid) == []
    # Neither a payout id and --all, nor none of them.
    code, _, err = await run_cli(env)
    assert code == 2 and "PAYOUT_ID or --all" in err
