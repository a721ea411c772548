"""Fault injection: a `tonrail worker --only retention` SIGKILLed inside a batch leaves
nothing half-done (the batch and its cursor roll back together); killed right after a
commit, its lease holds the pass until it ends, then another worker goes on from the
committed cursor. Either way every due row goes exactly once and the counts add up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tonrail import clock
from tonrail.db import Database
from tonrail.privacy.models import RetentionRun
from tonrail.privacy.retention import RUN, run_batch
from tonrail.security.models import SecurityFailure
from tonrail.settings import Settings

TONRAIL = str(Path(sys.executable).parent / "tonrail")
LEASE = 2
OLD, RECENT = 5, 3  # security failures past their 90 days, and within them


async def _failures(db: Database) -> None:
    now = clock.now()
    async with db.transaction() as session:
        for i in range(OLD + RECENT):
            at = now - timedelta(days=200 if i < OLD else 10)
            session.add(
                SecurityFailure(subject_kind="ip", subject=f"198.51.100.{i}", code="x", at=at)
            )


async def _crash_worker(settings: Settings, tmp_path: Path, crash_at: str) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TON", "DATABASE", "RETENTION"))
    }
    env.update(
        DATABASE_URL=settings.database_url,
        DATA_DIR=str(tmp_path),
        ENVIRONMENT="test",
        WORKER_LEASE_SECONDS=str(LEASE),
        RETENTION_BATCH_SIZE="2",
        RETENTION_HOUR_UTC="0",
        CRASH_AT=crash_at,
        LOG_LEVEL="WARNING",
    )
    proc = await asyncio.create_subprocess_exec(
        TONRAIL,
        "worker",
        "--only",
        "retention",
        env=env,
        cwd=str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    code = await asyncio.wait_for(proc.wait(), timeout=120)
    assert code == -signal.SIGKILL, (await proc.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]


async def _left(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(SecurityFailure)) or 0)


async def _run(db: Database) -> RetentionRun | None:
    async with db.transaction() as session:
        return await session.get(RetentionRun, RUN)


def _ours(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"retention_batch_size": 2, "retention_hour_utc": 0, "worker_lease_seconds": LEASE}
    )


async def _finish(db: Database, settings: Settings) -> None:
    while await run_batch(db, settings, "w2"):
        pass


@pytest.mark.slow
async def test_a_crash_inside_a_batch_changes_nothing(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    await _failures(db)
    await _crash_worker(settings, tmp_path, "privacy.before_batch_commit")
    run = await _run(db)
    # Rolled back with its batch: no cursor, no count, no lease; the rows are all there.
    assert run is None or (run.report == {} and run.locked_by is None)
    assert await _left(db) == OLD + RECENT
    ours = _ours(settings)
    await _finish(db, ours)
    assert await _left(db) == RECENT
    run = await _run(db)
    assert run is not None and run.report["security_failures"]["count"] == OLD


@pytest.mark.slow
async def test_a_crash_after_a_commit_resumes_from_the_cursor_after_the_lease(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    await _failures(db)
    await _crash_worker(settings, tmp_path, "privacy.after_batch_commit")
    run = await _run(db)
    assert run is not None and run.locked_by is not None  # the dead worker's lease
    committed = sum(v["count"] for v in run.report.values())
    assert committed == 2
    assert await _left(db) == OLD + RECENT - 2
    ours = _ours(settings)
    assert await run_batch(db, ours, "w2") == 0  # its lease holds
    assert await _left(db) == OLD + RECENT - 2
    at = datetime.now(UTC) + timedelta(seconds=LEASE + 1)
    clock.set_clock(lambda: at)
    try:
        await _finish(db, ours)
    finally:
        clock.set_clock(None)
    assert await _left(db) == RECENT
    run = await _run(db)
    assert run is not None and run.finished_day is not None
    assert run.report["security_failures"]["count"] == OLD
