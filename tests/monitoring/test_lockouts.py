"""Suspicious activity: >= 10 failures per counterparty, API key or IP lock the subject;
payouts are refused (423) until an admin unlocks it, and an alert fires and resolves."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from tests.helpers import DEST, DEST_RAW, row_counts
from tests.monitoring.helpers import attempt_outcome, payout
from tests.monitoring.test_alerting import Ctx, _alerts, _freeze
from tonrail import clock
from tonrail.cli import app as cli
from tonrail.db import Database
from tonrail.monitoring.jobs import evaluate_alerts
from tonrail.payments.models import Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.transitions import start_attempt
from tonrail.processing.outcomes import record_poll, record_submit
from tonrail.rails.base import PollResult, SubmitResult
from tonrail.security.lockouts import SubjectLocked, charge_failure, check_not_locked
from tonrail.security.models import ApiKey, Lockout
from tonrail.settings import Settings

OTHER = "0:" + "ab" * 32


async def _cli(args: list[str]) -> Result:
    # The command runs its own event loop: give it a thread.
    return await asyncio.to_thread(CliRunner().invoke, cli, args)


async def _key_id(db: Database) -> str:
    async with db.transaction() as session:
        return (await session.execute(select(ApiKey.id))).scalar_one()


async def _payout(client: httpx.AsyncClient, auth: dict[str, str], dest: str) -> httpx.Response:
    return await client.post(
        "/v1/payouts", json={"amount": "1", "asset": "TON", "destination": dest}, headers=auth
    )


async def test_counterparty_lock_refuses_payouts_until_unlocked(
    db: Database,
    settings: Settings,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    cli_env: str,
) -> None:
    c = _freeze()
    ctx = Ctx(db, settings)
    # failures to one destination from ten different keys: only the counterparty is suspicious
    for i in range(10):
        await attempt_outcome(
            db, await payout(db, counterparty=DEST, key=f"key_{i}"), "failed", error_code=f"e{i}"
        )
    await evaluate_alerts(ctx)
    alert = (await _alerts(db))[f"suspicious_activity:counterparty:{DEST_RAW}"]
    assert alert.status == "open" and alert.severity == "critical"

    before = await row_counts(db)
    for spelling in (DEST, DEST_RAW):  # any spelling of the address is the same counterparty
        r = await _payout(client, auth, spelling)
        assert r.status_code == 423, r.text
        assert r.json()["error"]["code"] == "counterparty_locked"
        assert r.json()["error"]["param"] == "destination"
    assert await row_counts(db) == before  # a refusal writes nothing
    assert (await _payout(client, auth, OTHER)).status_code == 201

    listed = await _cli(["lockouts", "list"])
    assert listed.exit_code == 0 and DEST_RAW in listed.output, listed.output
    unlocked = await _cli(["lockouts", "unlock", f"counterparty:{DEST}"])
    assert unlocked.exit_code == 0, unlocked.output
    assert f"unlocked counterparty:{DEST_RAW}" in unlocked.output

    assert (await _payout(client, auth, DEST)).status_code == 201
    c.advance(1)
    await evaluate_alerts(ctx)  # the old failures do not lock it again; the alert resolves
    assert (await _alerts(db))[alert.dedup_key].status == "resolved"
    async with db.transaction() as session:
        locks = list((await session.execute(select(Lockout))).scalars())
    assert len(locks) == 1 and locks[0].unlocked_by and locks[0].unlocked_by.startswith("admin:")
    again = await _cli(["lockouts", "unlock", f"counterparty:{DEST}"])
    assert again.exit_code == 2 and "no active lockout" in again.output


async def test_api_key_lock(
    db: Database, settings: Settings, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    _freeze()
    key = await _key_id(db)
    for i in range(10):
        dest = "0:" + f"{i:02x}" * 32
        await attempt_outcome(db, await payout(db, counterparty=dest, key=key), "failed")
    await evaluate_alerts(Ctx(db, settings))
    r = await _payout(client, auth, DEST)
    assert r.status_code == 423 and r.json()["error"]["code"] == "api_key_locked"
    assert set(await _alerts(db)) >= {f"suspicious_activity:api_key:{key}"}


async def test_nine_failures_lock_nothing(db: Database, settings: Settings) -> None:
    _freeze()
    for _ in range(9):
        await attempt_outcome(db, await payout(db, key="key_9"), "failed", error_code="x")
    await evaluate_alerts(Ctx(db, settings))
    async with db.transaction() as session:
        assert (await session.execute(select(Lockout))).first() is None
        await check_not_locked(session, "key_9", DEST, "10.0.0.1")


async def test_retries_of_one_payout_count_once(db: Database, settings: Settings) -> None:
    """The rail retries a payout (a bounce, up to TON_MAX_ATTEMPTS): that is one failure of
    the counterparty and of the key, not one per attempt. Four payouts retried three times
    lock nothing, while the attempt-level failure pattern still sees all twelve."""
    c = _freeze()
    for _ in range(4):
        pid = await payout(db, key="key_r")
        for _ in range(3):
            await attempt_outcome(db, pid, "failed", error_code="bounced")
    c.advance(1)
    await evaluate_alerts(Ctx(db, settings))
    async with db.transaction() as session:
        assert (await session.execute(select(Lockout))).first() is None
        await check_not_locked(session, "key_r", DEST, None)
    assert set(await _alerts(db)) == {"failure_pattern:ton:bounced"}


async def test_ip_failures_lock_the_ip(db: Database, settings: Settings) -> None:
    c = _freeze()
    for _ in range(10):  # charged without locking: the evaluator counts them
        await charge_failure(
            db,
            "ip",
            "198.51.100.7",
            "api_key_invalid",
            threshold=0,
            window_seconds=settings.monitoring_window_seconds,
            lock_seconds=settings.lockout_seconds,
        )
    c.advance(1)
    await evaluate_alerts(Ctx(db, settings))
    async with db.transaction() as session:
        with pytest.raises(SubjectLocked) as err:
            await check_not_locked(session, None, None, "198.51.100.7")
        assert err.value.code == "ip_locked" and err.value.status == 423
        await check_not_locked(session, None, None, "198.51.100.8")


async def test_failures_outside_the_window_do_not_count(db: Database, settings: Settings) -> None:
    c = _freeze()
    for _ in range(5):
        await attempt_outcome(db, await payout(db, key="key_w"), "failed", error_code="x")
    c.advance(settings.monitoring_window_seconds + 1)
    for _ in range(5):
        await attempt_outcome(db, await payout(db, key="key_w"), "failed", error_code="x")
    await evaluate_alerts(Ctx(db, settings))
    async with db.transaction() as session:
        assert (await session.execute(select(Lockout))).first() is None


async def test_bad_keys_over_http_lock_the_callers_address(
    db: Database, settings: Settings, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """Ten refused API keys from one address lock it at once (no evaluator run); its payouts
    then get 423 ip_locked, and the evaluator opens the alert for the lock."""
    c = _freeze()
    for _ in range(10):
        r = await client.get("/v1/payouts", headers={"Authorization": "Bearer trk_guess"})
        assert r.status_code == 401
    r = await client.post(
        "/v1/payouts", json={"amount": "1", "asset": "TON", "destination": DEST}, headers=auth
    )
    assert r.status_code == 423 and r.json()["error"]["code"] == "ip_locked"
    c.advance(1)
    await evaluate_alerts(Ctx(db, settings))
    assert "suspicious_activity:ip:127.0.0.1" in await _alerts(db)
    r = await client.post(
        "/v1/payouts", json={"amount": "1", "asset": "TON", "destination": DEST}, headers=auth
    )
    assert r.status_code == 423 and r.json()["error"]["code"] == "ip_locked"


async def _fail_on_a_rail(db: Database, settings: Settings, pid: str, by_poll: bool) -> None:
    """As the backup loop records a provider's refusal: at submit, or at a later poll."""
    async with db.transaction() as session:
        payment = await session.get(Payment, pid)
        assert payment is not None
        attempt = await start_attempt(session, payment, "paypal", {"rail_asset": "USD"})
        refused = ("declined", "the provider declined the payout")
        if by_poll:
            await record_submit(session, settings, attempt, SubmitResult("submitted", "ref"))
            payments = PaymentService(db, settings)
            result = PollResult("failed", error_code=refused[0], error_message=refused[1])
            await record_poll(session, payments, attempt, result, screened=None)
        else:
            result = SubmitResult("failed", error_code=refused[0], error_message=refused[1])
            await record_submit(session, settings, attempt, result)


async def test_the_tenth_failed_payout_locks_before_the_next_request(
    db: Database, settings: Settings, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """The failure that reaches the threshold locks its counterparty and key in its own
    transaction: the next payout is refused without waiting for the alert evaluator."""
    _freeze()
    key = await _key_id(db)
    for i in range(9):
        await _fail_on_a_rail(db, settings, await payout(db, key=key), by_poll=i % 2 == 0)
    async with db.transaction() as session:
        assert (await session.execute(select(Lockout))).first() is None  # nine lock nothing
    assert (await _payout(client, auth, OTHER)).status_code == 201
    await _fail_on_a_rail(db, settings, await payout(db, key=key), by_poll=True)
    async with db.transaction() as session:
        locked = {
            (lk.subject_kind, lk.subject)
            for lk in (await session.execute(select(Lockout))).scalars()
        }
    assert locked == {("counterparty", DEST_RAW), ("api_key", key)}
    r = await _payout(client, auth, DEST)  # no evaluation ran in between
    assert r.status_code == 423, r.text
    assert r.json()["error"]["code"] in ("api_key_locked", "counterparty_locked")
    # The evaluator finds them locked already: one lock each, one alert each.
    await evaluate_alerts(Ctx(db, settings))
    async with db.transaction() as session:
        assert len((await session.execute(select(Lockout))).all()) == 2
    assert {k for k in await _alerts(db) if k.startswith("suspicious_activity")} == {
        f"suspicious_activity:counterparty:{DEST_RAW}",
        f"suspicious_activity:api_key:{key}",
    }


async def test_retries_of_one_failed_payout_count_once_where_they_fail(
    db: Database, settings: Settings
) -> None:
    _freeze()
    pid = await payout(db, key="key_r")
    for _ in range(12):
        await _fail_on_a_rail(db, settings, pid, by_poll=False)
    async with db.transaction() as session:
        assert (await session.execute(select(Lockout))).first() is None


async def test_our_jetton_wallet_refusing_too_little_ton_is_not_the_counterpartys_failure(
    db: Database, settings: Settings
) -> None:
    """Attempts our own jetton wallet refused for too little TON attached (retried with more,
    or failed when no retry is left) are our doing: they never lock the payee or the key."""
    from tonrail.monitoring.suspicious import subject_failures

    _freeze()
    codes = ["jetton_attach_low", "jetton_attach_exhausted"] * 6
    for i, code in enumerate(codes):
        await attempt_outcome(
            db, await payout(db, counterparty=DEST, key=f"key_{i}"), "failed", error_code=code
        )
    since = clock.now() - timedelta(hours=1)
    async with db.transaction() as session:
        assert await subject_failures(session, since) == {}
    await attempt_outcome(db, await payout(db, counterparty=DEST, key="key_x"), "failed")
    async with db.transaction() as session:
        counts = await subject_failures(session, since)
    assert counts[("counterparty", DEST_RAW)] == 1
