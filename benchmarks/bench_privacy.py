"""Privacy benchmark: what a GDPR request and the retention pass cost on a large database.

What is measured, on SQLite and on PostgreSQL (TONRAIL_TEST_POSTGRES_URL's server, a scratch
database): BENCH_PRIVACY_PAYMENTS payouts (half of them completed eight years ago), each
with an attempt carrying a bank creditor (IBAN and name) and an outbox event carrying the
payment, every payee a different TON address; one subject owns BENCH_PRIVACY_SUBJECT of them.
Timed, once each, wall clock: `export_subject` and `erase_subject` of that subject (every
inventory table searched by every spelling: LIKE scans, no index can serve a substring), the
dry run (`plan`: counts per step), and the whole retention pass (`run_batch` until done,
RETENTION_BATCH_SIZE 500), whose rows per second is the pseudonymisation throughput.

    python -m benchmarks.bench_privacy
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

N = int(os.environ.get("BENCH_PRIVACY_PAYMENTS", "100000"))
SUBJECT_PAYMENTS = int(os.environ.get("BENCH_PRIVACY_SUBJECT", "10"))
BENCH_DB = "tonrail_bench_privacy"
SUBJECT_ADDRESS = "0:" + "5a" * 32
CHUNK = 5000


@contextmanager
def backend_url(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-privacy-") as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'privacy.sqlite3'}"
        return
    admin = os.environ.get("TONRAIL_TEST_POSTGRES_URL", "")
    if not admin:
        raise RuntimeError("TONRAIL_TEST_POSTGRES_URL is not set")
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def recreate(drop_only: bool = False) -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
            if not drop_only:
                await conn.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
        await engine.dispose()

    asyncio.run(recreate())
    try:
        yield admin.rsplit("/", 1)[0] + "/" + BENCH_DB
    finally:
        asyncio.run(recreate(drop_only=True))


def _rows(i: int, now: datetime) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    old = i % 2 == 0
    at = now - timedelta(days=8 * 365 if old else 30)
    ours = i < SUBJECT_PAYMENTS
    address = SUBJECT_ADDRESS if ours else "0:" + secrets.token_hex(32)
    pay = f"pay_bench{i:012d}"
    payment = {
        "id": pay,
        "account_id": "acct_bench",
        "direction": "out",
        "status": "succeeded",
        "asset": "TON",
        "amount": 10**9,
        "usdt_equivalent": 5 * 10**6,
        "rate": "5",
        "rate_at": at,
        "counterparty": address,
        "priority": "normal",
        "target_confirmation_seconds": 60,
        "metadata": {"bank_iban": "GB33BUKB20201555555555", "bank_name": f"Payee {i}"},
        "requested_by": "key_bench",
        "created_at": at,
        "updated_at": at,
        "completed_at": at,
    }
    attempt = {
        "id": f"att_bench{i:012d}",
        "payment_id": pay,
        "number": 1,
        "rail": "bank",
        "status": "confirmed",
        "idempotency_key": f"{pay}:1",
        "details": {"creditor": {"iban": "GB33BUKB20201555555555", "name": f"Payee {i}"}},
        "created_at": at,
        "updated_at": at,
    }
    event = {
        "id": f"evt_bench{i:012d}",
        "type": "payout.succeeded",
        "account_id": "acct_bench",
        "payment_id": pay,
        "payload": {"destination": address, "amount": "1"},
        "created_at": at,
        "published_at": at,
    }
    return payment, attempt, event


async def _seed(url: str) -> None:
    from sqlalchemy import insert

    from tonrail.db import Database
    from tonrail.events.models import OutboxEvent
    from tonrail.payments.models import Attempt, Payment

    db = Database(url)
    now = datetime.now(UTC)
    try:
        for start in range(0, N, CHUNK):
            rows = [_rows(i, now) for i in range(start, min(N, start + CHUNK))]
            async with db.transaction() as session:
                await session.execute(insert(Payment.__table__), [r[0] for r in rows])
                await session.execute(insert(Attempt.__table__), [r[1] for r in rows])
                await session.execute(insert(OutboxEvent.__table__), [r[2] for r in rows])
    finally:
        await db.dispose()


async def _measure(url: str) -> dict[str, float]:
    from tonrail.db import Database
    from tonrail.privacy.retention import plan, run_batch
    from tonrail.privacy.service import erase_subject, export_subject
    from tonrail.privacy.subjects import parse_subject
    from tonrail.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=url,
        retention_hour_utc=0,
        retention_batch_size=500,
    )
    subject = parse_subject(SUBJECT_ADDRESS)
    db = Database(url)
    out: dict[str, float] = {}
    try:
        t = time.perf_counter()
        async with db.transaction() as session:
            bundle = await export_subject(session, subject)
        out["export_s"] = time.perf_counter() - t
        assert len(bundle["payments"]) == SUBJECT_PAYMENTS, bundle["payments"]
        t = time.perf_counter()
        async with db.transaction() as session:
            result = await erase_subject(session, subject, "bench")
        out["erase_s"] = time.perf_counter() - t
        assert result["payments"] == SUBJECT_PAYMENTS
        t = time.perf_counter()
        async with db.transaction() as session:
            due = await plan(session, settings)
        out["plan_s"] = time.perf_counter() - t
        out["due_rows"] = float(sum(d.rows for d in due))
        t = time.perf_counter()
        while await run_batch(db, settings, "bench"):
            pass
        out["pass_s"] = time.perf_counter() - t
    finally:
        await db.dispose()
    return out


def run_backend(backend: str) -> dict[str, float]:
    from tonrail.migrate import upgrade

    with backend_url(backend) as url:
        upgrade(url)
        t = time.perf_counter()
        asyncio.run(_seed(url))
        print(
            f"bench_privacy: {backend}: seeded in {time.perf_counter() - t:.1f} s", file=sys.stderr
        )
        return asyncio.run(_measure(url))


def main() -> str:
    lines = [
        "## Privacy: GDPR requests and the retention pass",
        "",
        f"{N:,} settled payouts (half of them eight years old), each with an attempt naming a",
        "bank creditor and an outbox event; one TON address owns "
        f"{SUBJECT_PAYMENTS} of them. Wall clock, once each (`benchmarks/bench_privacy.py`).",
        "",
        "| backend | export | erase | dry run | retention pass | rows due | pass rows/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend in ("sqlite", "postgresql"):
        try:
            m = run_backend(backend)
        except Exception as exc:  # a backend that cannot run is reported, not fatal
            lines.append(f"| {backend} | error: {exc} | | | | | |")
            continue
        rate = m["due_rows"] / m["pass_s"] if m["pass_s"] else 0.0
        lines.append(
            f"| {backend} | {m['export_s']:.2f} s | {m['erase_s']:.2f} s | {m['plan_s']:.2f} s "
            f"| {m['pass_s']:.1f} s | {int(m['due_rows']):,} | {rate:,.0f} |"
        )
    lines += [
        "",
        "Export and erasure scan every inventory table for every spelling of the subject (nine",
        "for a TON address): their time grows with the database, not with the subject; they are",
        "operator requests, run rarely. The pass pseudonymises row by row in Python (scrub.py).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
