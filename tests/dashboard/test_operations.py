"""The Operations page over HTTP, on both databases: switches, retry and cancel, lockouts,
the audit log and its chain check; every refusal writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from tests.helpers import DEST, row_counts
from tonrail import clock
from tonrail.chain.address import counterparty_key
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance
from tonrail.monitoring.rules import Thresholds, payments_stuck
from tonrail.monitoring.snapshot import build_snapshot
from tonrail.payments.models import Payment
from tonrail.payments.transitions import move_attempt, move_payment, start_attempt
from tonrail.security import lockouts
from tonrail.security.audit_log import AuditEntry
from tonrail.security.models import Lockout
from tonrail.security.switches import all_switches
from tonrail.settings import Settings
from tonrail.treasury.models import OrderPurpose, OrderStatus, TreasuryOrder

SignIn = Callable[[str], Awaitable[str]]


def hx(csrf: str) -> dict[str, str]:
    return {"HX-Request": "true", "X-CSRF-Token": csrf}


async def payout(client: httpx.AsyncClient, auth: dict[str, str], amount: str = "2") -> str:
    r = await client.post(
        "/v1/payouts", json={"amount": amount, "asset": "TON", "destination": DEST}, headers=auth
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def api_status(client: httpx.AsyncClient, auth: dict[str, str], pid: str) -> dict[str, Any]:
    r = await client.get(f"/v1/payouts/{pid}", headers=auth)
    return dict(r.json())


async def audit(db: Database, prefix: str = "") -> list[AuditEntry]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(AuditEntry).where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.seq)
        )
        return [e for e in rows.scalars() if e.action != "dashboard.sign_in"]


async def attempt_then(
    db: Database, settings: Settings, pid: str, outcome: str, *, backoff_s: int = 0
) -> None:
    """Put payout `pid` through one TON attempt that ends in `outcome`, as the rail would:
    `failed`/`expired` send it back to the queue (with `backoff_s` of retry backoff);
    `unknown` leaves it processing with the attempt unknown; `succeeded` settles it."""
    async with db.transaction() as session:
        p = await session.get(Payment, pid)
        assert p is not None
        await move_payment(session, p, "processing", actor="system:test")
        a = await start_attempt(session, p, "ton")
        await move_attempt(session, a, "submitted")
        if outcome in ("failed", "expired"):
            await move_attempt(session, a, outcome, error_code="not_sent")
            await move_payment(session, p, "queued", actor="system:test")
            await session.execute(
                update(Payment)
                .where(Payment.id == pid)
                .values(locked_until=clock.now() + timedelta(seconds=backoff_s), locked_by=None)
            )
        elif outcome == "unknown":
            await move_attempt(session, a, "unknown", error_code="unproven")
        elif outcome == "succeeded":
            await move_attempt(session, a, "confirmed")
            await move_payment(session, p, "succeeded", actor="system:test")


# ------------------------------------------------------------------ switches
async def test_pause_and_resume_with_reason_audit_and_event(
    client: httpx.AsyncClient, signed_in: SignIn, db: Database
) -> None:
    csrf = await signed_in("operator")
    before = await row_counts(db)
    r = await client.post(
        "/dashboard/operations/switches/payments_paused",
        data={"enabled": "on", "reason": ""},
        headers=hx(csrf),
    )
    assert r.status_code == 400 and 'data-code="reason_required"' in r.text
    assert await row_counts(db) == before

    r = await client.post(
        "/dashboard/operations/switches/payments_paused",
        data={"enabled": "on", "reason": "hot wallet key rotation"},
        headers=hx(csrf),
    )
    assert r.status_code == 200, r.text
    assert r.headers.get("HX-Refresh") == "true"  # every page's banner must show it
    assert "Payments paused" in r.text
    async with db.transaction() as session:
        assert (await all_switches(session))["payments_paused"] is True
        events = (
            (await session.execute(select(OutboxEvent.type).where(OutboxEvent.type.like("ops.%"))))
            .scalars()
            .all()
        )
    assert events == ["ops.payments_paused.on"]
    [entry] = await audit(db, "ops.")
    assert (entry.actor, entry.action, entry.subject) == (
        "admin:operator",
        "ops.payments_paused.on",
        "payments_paused",
    )
    assert entry.details == {"reason": "hot wallet key rotation"}
    page = await client.get("/dashboard/operations")
    assert 'id="banner-paused"' in page.text
    assert 'data-enabled="on"' in page.text and "hot wallet key rotation" in page.text
    assert 'id="resume"' in page.text

    # Pausing twice changes nothing and says so.
    before = await row_counts(db)
    again = await client.post(
        "/dashboard/operations/switches/payments_paused",
        data={"enabled": "on", "reason": "again"},
        headers=hx(csrf),
    )
    assert again.status_code == 409 and 'data-code="switch_unchanged"' in again.text
    assert "already on" in again.text
    assert await row_counts(db) == before

    r = await client.post(
        "/dashboard/operations/switches/payments_paused",
        data={"enabled": "off"},
        headers=hx(csrf),
    )
    assert r.status_code == 200 and "Payments resumed" in r.text
    async with db.transaction() as session:
        assert (await all_switches(session))["payments_paused"] is False
    assert [e.action for e in await audit(db, "ops.")] == [
        "ops.payments_paused.on",
        "ops.payments_paused.off",
    ]


async def test_maintenance_mode_refuses_new_payments_until_turned_off(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    csrf = await signed_in("admin")
    r = await client.post(
        "/dashboard/operations/switches/maintenance",
        data={"enabled": "on", "reason": "database upgrade"},
        headers=hx(csrf),
    )
    assert r.status_code == 200
    refused = await client.post(
        "/v1/payouts", json={"amount": "1", "asset": "TON", "destination": DEST}, headers=auth
    )
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "maintenance"
    page = await client.get("/dashboard/operations")
    assert 'id="banner-maintenance"' in page.text and 'id="maintenance-off"' in page.text
    r = await client.post(
        "/dashboard/operations/switches/maintenance", data={"enabled": "off"}, headers=hx(csrf)
    )
    assert r.status_code == 200
    await payout(client, auth)
    assert [e.actor for e in await audit(db, "ops.maintenance")] == ["admin:admin"] * 2


async def test_bad_switch_requests_are_refused_and_change_nothing(
    client: httpx.AsyncClient, signed_in: SignIn, db: Database
) -> None:
    csrf = await signed_in("operator")
    before = await row_counts(db)
    for path, data, status, code in (
        ("switches/self_destruct", {"enabled": "on", "reason": "x"}, 404, "switch_unknown"),
        ("switches/payments_paused", {"enabled": "maybe", "reason": "x"}, 400, "enabled_invalid"),
        ("switches/payments_paused", {"reason": "x"}, 400, "enabled_invalid"),
        (
            "switches/payments_paused",
            {"enabled": "on", "reason": "y" * 501},
            400,
            "reason_too_long",
        ),
    ):
        r = await client.post(f"/dashboard/operations/{path}", data=data, headers=hx(csrf))
        assert r.status_code == status, (path, r.text)
        assert f'data-code="{code}"' in r.text
    assert await row_counts(db) == before


async def test_a_viewer_and_a_missing_csrf_token_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    pid = await payout(client, auth)
    csrf = await signed_in("viewer")
    page = await client.get("/dashboard/operations")
    assert page.status_code == 200 and 'id="view-only"' in page.text
    assert 'hx-post="/dashboard/operations/switches' not in page.text
    before = await row_counts(db)
    posts = (
        ("switches/payments_paused", {"enabled": "on", "reason": "x"}),
        (f"payments/{pid}/cancel", {"reason": "x"}),
        (f"payments/{pid}/retry", {}),
        ("lockouts/lock_x/unlock", {}),
    )
    for path, data in posts:
        r = await client.post(f"/dashboard/operations/{path}", data=data, headers=hx(csrf))
        assert r.status_code == 403 and 'data-code="operate_forbidden"' in r.text, path
    assert await row_counts(db) == before
    await signed_in("operator")
    before = await row_counts(db)  # the sign-in is audited
    for path, data in posts:
        r = await client.post(f"/dashboard/operations/{path}", data=data)  # no token at all
        assert r.status_code == 403 and "csrf_forbidden" in r.text, path
        r = await client.post(
            f"/dashboard/operations/{path}", data={**data, "csrf_token": "forged"}
        )
        assert r.status_code == 403, path
    assert await row_counts(db) == before
    async with db.transaction() as session:
        assert (await all_switches(session))["payments_paused"] is False
    assert (await api_status(client, auth, pid))["status"] == "queued"


# ------------------------------------------------------------------ cancel
async def test_cancel_a_queued_payout_releases_it_and_audits(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    pid = await payout(client, auth)
    csrf = await signed_in("operator")
    before = await row_counts(db)
    r = await client.post(
        f"/dashboard/operations/payments/{pid}/cancel", data={"reason": ""}, headers=hx(csrf)
    )
    assert r.status_code == 400 and 'data-code="reason_required"' in r.text
    assert await row_counts(db) == before
    r = await client.post(
        f"/dashboard/operations/payments/{pid}/cancel",
        data={"reason": "duplicate of an earlier payout"},
        headers=hx(csrf),
    )
    assert r.status_code == 200, r.text
    assert r.headers["HX-Trigger"] == "ops-changed"
    got = await api_status(client, auth, pid)
    assert got["status"] == "canceled" and got["failure_code"] == "canceled_by_operator"
    async with db.transaction() as session:
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
    [entry] = await audit(db, "payment.")
    assert (entry.actor, entry.action, entry.subject) == ("admin:operator", "payment.cancel", pid)
    assert entry.details["reason"] == "duplicate of an earlier payout"
    assert entry.details["from"] == "queued"


async def test_cancel_refuses_what_may_pay_or_is_final(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    signed_in: SignIn,
    db: Database,
    settings: Settings,
) -> None:
    done = await payout(client, auth)
    await attempt_then(db, settings, done, "succeeded")
    flying = await payout(client, auth)
    await attempt_then(db, settings, flying, "unknown")
    csrf = await signed_in("operator")
    before = await row_counts(db)
    r = await client.post(
        f"/dashboard/operations/payments/{done}/cancel", data={"reason": "x"}, headers=hx(csrf)
    )
    assert r.status_code == 409 and 'data-code="payment_final"' in r.text
    assert "succeeded already: there is nothing to cancel" in r.text
    r = await client.post(
        f"/dashboard/operations/payments/{flying}/cancel", data={"reason": "x"}, headers=hx(csrf)
    )
    assert r.status_code == 409 and 'data-code="payment_in_flight"' in r.text
    assert "may still pay" in r.text
    r = await client.post(
        "/dashboard/operations/payments/pay_nope/cancel", data={"reason": "x"}, headers=hx(csrf)
    )
    assert r.status_code == 404 and 'data-code="payment_not_found"' in r.text
    assert await row_counts(db) == before
    assert (await api_status(client, auth, done))["status"] == "succeeded"
    assert (await api_status(client, auth, flying))["status"] == "processing"


async def test_cancel_an_open_invoice(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    inv = await client.post("/v1/invoices", json={"amount": "5", "asset": "TON"}, headers=auth)
    iid = inv.json()["id"]
    csrf = await signed_in("admin")
    r = await client.post(
        f"/dashboard/operations/payments/{iid}/cancel",
        data={"reason": "customer asked"},
        headers=hx(csrf),
    )
    assert r.status_code == 200
    got = (await client.get(f"/v1/invoices/{iid}", headers=auth)).json()
    assert got["status"] == "canceled"


# ------------------------------------------------------------------ retry
async def test_retry_ends_the_backoff_of_a_payout_whose_attempt_sent_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    signed_in: SignIn,
    db: Database,
    settings: Settings,
) -> None:
    pid = await payout(client, auth)
    await attempt_then(db, settings, pid, "expired", backoff_s=600)
    csrf = await signed_in("operator")
    look = await client.get(f"/dashboard/operations/payment?id={pid}", headers=hx(csrf))
    assert look.status_code == 200 and 'data-code="retry_allowed"' in look.text
    r = await client.post(
        f"/dashboard/operations/payments/{pid}/retry",
        data={"reason": "network recovered"},
        headers=hx(csrf),
    )
    assert r.status_code == 200, r.text
    async with db.transaction() as session:
        p = await session.get(Payment, pid)
        assert p is not None and p.status == "queued" and p.locked_until is None
    [entry] = await audit(db, "payment.")
    assert entry.action == "payment.retry" and entry.details["last_status"] == "expired"
    assert entry.details["reason"] == "network recovered"
    # Once due, a second retry has nothing to do.
    again = await client.post(f"/dashboard/operations/payments/{pid}/retry", headers=hx(csrf))
    assert again.status_code == 409 and 'data-code="already_due"' in again.text


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        ("fresh", "not_tried_yet", "has not been tried yet"),
        ("unknown", "attempt_outcome_unknown", "could pay twice"),
        ("succeeded", "payment_final", "would pay twice"),
        ("paused", "payments_paused", "payments are paused"),
        ("approval", "awaiting_approval", "approvers"),
    ],
)
async def test_retry_is_refused_unless_proven_safe(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    signed_in: SignIn,
    db: Database,
    settings: Settings,
    setup: str,
    code: str,
    words: str,
) -> None:
    csrf = await signed_in("operator")
    if setup == "approval":
        r = await client.post(
            "/v1/payouts",
            json={"amount": "1500000", "asset": "USDT", "destination": DEST},
            headers=auth,
        )
        pid = r.json()["id"]
    else:
        pid = await payout(client, auth)
    if setup in ("unknown", "succeeded"):
        await attempt_then(db, settings, pid, setup)
    if setup == "paused":
        await attempt_then(db, settings, pid, "failed", backoff_s=600)
        r = await client.post(
            "/dashboard/operations/switches/payments_paused",
            data={"enabled": "on", "reason": "test"},
            headers=hx(csrf),
        )
        assert r.status_code == 200
    before = await row_counts(db)
    r = await client.post(f"/dashboard/operations/payments/{pid}/retry", headers=hx(csrf))
    assert r.status_code == 409, r.text
    assert f'data-code="{code}"' in r.text and words in r.text
    assert await row_counts(db) == before


async def test_retry_of_an_unknown_payment_is_404(
    client: httpx.AsyncClient, signed_in: SignIn
) -> None:
    csrf = await signed_in("operator")
    r = await client.post("/dashboard/operations/payments/pay_nope/retry", headers=hx(csrf))
    assert r.status_code == 404 and 'data-code="payment_not_found"' in r.text
    look = await client.get("/dashboard/operations/payment?id=pay_nope")
    assert look.status_code == 404 and 'data-code="payment_not_found"' in look.text
    empty = await client.get("/dashboard/operations/payment?id=")
    assert empty.status_code == 400 and 'data-code="id_required"' in empty.text


async def test_stuck_payments_are_listed_with_what_can_be_done(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    signed_in: SignIn,
    db: Database,
    settings: Settings,
) -> None:
    real = datetime.now(UTC)
    clock.set_clock(lambda: real - timedelta(hours=1))
    old_queued = await payout(client, auth)
    old_unknown = await payout(client, auth)
    await attempt_then(db, settings, old_unknown, "unknown")
    clock.set_clock(None)
    fresh = await payout(client, auth)
    await signed_in("operator")
    live = await client.get("/dashboard/operations/live")
    assert live.status_code == 200
    html = live.text
    assert f'id="stuck-{old_queued}"' in html and f'id="stuck-{old_unknown}"' in html
    assert f'id="stuck-{fresh}"' not in html
    assert 'Stuck payments <span class="muted">(2)' in html
    assert 'data-code="attempt_outcome_unknown"' in html and 'data-code="payment_in_flight"' in html
    assert 'data-code="not_tried_yet"' in html and 'data-code="cancel_allowed"' not in html
    assert f'id="cancel-reason-{old_queued}"' in html


async def _route_to_treasury(db: Database, pid: str, order: OrderStatus, expires: int) -> None:
    """Payout `pid` in `processing` on the treasury route, with an order in state `order`."""
    async with db.transaction() as session:
        p = await session.get(Payment, pid)
        assert p is not None
        p.route = "treasury"
        await move_payment(session, p, "processing", actor="system:test")
        session.add(
            TreasuryOrder(
                id=f"tord_{pid}",
                purpose=OrderPurpose.PAYOUT,
                payment_id=pid,
                asset="TON",
                amount=p.amount,
                multisig="0:" + "11" * 32,
                order_seqno=int(pid.encode().hex(), 16) % 10**9,
                order_address="0:" + "22" * 32,
                order_hash="33" * 32,
                message_hash="44" * 32,
                expiration_date=expires,
                proposal_value=10**8,
                query_seq=1,
                valid_until=expires,
                boc="te6c",
                msg_hash_norm=pid.encode().hex()[:64].ljust(64, "0"),
                status=order,
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )


async def test_payouts_waiting_for_people_are_not_listed_as_stuck(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    signed_in: SignIn,
    db: Database,
    settings: Settings,
) -> None:
    """The dashboard's stuck list is the monitoring rule's (`is_stuck`): an hour-old bank
    payout is within its business days, and a treasury payout whose order waits for its
    signers is waiting for people; a treasury payout whose order expired unapproved, or whose
    proposal is still not on chain, is stuck."""
    real = datetime.now(UTC)
    clock.set_clock(lambda: real - timedelta(hours=1))
    bank, signers, expired, proposing = [await payout(client, auth) for _ in range(4)]
    clock.set_clock(None)
    async with db.transaction() as session:
        p = await session.get(Payment, bank)
        assert p is not None
        p.route = "bank"
        await move_payment(session, p, "processing", actor="system:test")
    later, earlier = int(real.timestamp()) + 3600, int(real.timestamp()) - 60
    await _route_to_treasury(db, signers, OrderStatus.PROPOSED, later)
    await _route_to_treasury(db, expired, OrderStatus.PROPOSED, earlier)
    await _route_to_treasury(db, proposing, OrderStatus.SIGNED, later)
    await signed_in("operator")
    html = (await client.get("/dashboard/operations/live")).text
    assert f'id="stuck-{expired}"' in html and f'id="stuck-{proposing}"' in html
    assert f'id="stuck-{bank}"' not in html and f'id="stuck-{signers}"' not in html
    assert 'Stuck payments <span class="muted">(2)' in html
    # The alert names the same payouts.
    async with db.transaction() as session:
        found = payments_stuck(
            await build_snapshot(session, settings, clock.now()), Thresholds.from_settings(settings)
        )
    assert [set(f.details["payment_ids"]) for f in found] == [{expired, proposing}]


async def test_payouts_held_by_the_pause_are_listed(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn
) -> None:
    csrf = await signed_in("operator")
    await client.post(
        "/dashboard/operations/switches/payments_paused",
        data={"enabled": "on", "reason": "incident"},
        headers=hx(csrf),
    )
    pid = await payout(client, auth)
    live = (await client.get("/dashboard/operations/live")).text
    assert 'id="held-by-pause"' in live and pid in live and "payments_paused" in live


# ------------------------------------------------------------------ lockouts
async def test_unlock_a_locked_counterparty(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    async with db.transaction() as session:
        lock = await lockouts.lock(
            session, "counterparty", counterparty_key(DEST), 12, "12 failures in 600 s"
        )
    refused = await client.post(
        "/v1/payouts", json={"amount": "1", "asset": "TON", "destination": DEST}, headers=auth
    )
    assert refused.status_code == 423
    csrf = await signed_in("operator")
    live = (await client.get("/dashboard/operations/live")).text
    assert f'id="lockout-{lock.id}"' in live and "12 failures in 600 s" in live
    r = await client.post(
        f"/dashboard/operations/lockouts/{lock.id}/unlock",
        data={"reason": "payee confirmed the address"},
        headers=hx(csrf),
    )
    assert r.status_code == 200, r.text
    assert "Unlocked counterparty:" in r.text
    async with db.transaction() as session:
        row = await session.get(Lockout, lock.id)
        assert row is not None and row.unlocked_by == "admin:operator"
    [entry] = await audit(db, "lockout.")
    assert entry.subject == lock.id and entry.details["reason"] == "payee confirmed the address"
    await payout(client, auth)  # accepted again
    before = await row_counts(db)
    for target in (lock.id, "lock_nope", "counterparty:whatever"):
        r = await client.post(f"/dashboard/operations/lockouts/{target}/unlock", headers=hx(csrf))
        assert r.status_code == 404 and 'data-code="lockout_not_found"' in r.text
    assert await row_counts(db) == before


# ------------------------------------------------------------------ audit log
async def test_the_audit_log_pages_filters_and_verifies(
    client: httpx.AsyncClient, signed_in: SignIn, db: Database, settings: Settings
) -> None:
    csrf = await signed_in("operator")
    for _ in range(3):
        for state in ("on", "off"):
            r = await client.post(
                "/dashboard/operations/switches/maintenance",
                data={"enabled": state, "reason": "<img src=x onerror=alert(1)>"},
                headers=hx(csrf),
            )
            assert r.status_code == 200
    page = await client.get("/dashboard/operations")
    assert page.status_code == 200
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    size = settings.dashboard_page_size
    newest = await client.get("/dashboard/operations/audit")
    assert newest.text.count("data-seq=") == min(size, 7)  # 6 flips and the sign-in
    filtered = await client.get("/dashboard/operations/audit?action=ops.maintenance.on")
    assert filtered.text.count('data-action="ops.maintenance.on"') == 3
    assert 'data-action="ops.maintenance.off"' not in filtered.text
    older = await client.get("/dashboard/operations/audit?before=3")
    assert older.text.count("data-seq=") == 2
    bad = await client.get("/dashboard/operations/audit?before=abc")
    assert bad.status_code == 400 and "cursor_invalid" in bad.text

    ok = await client.get("/dashboard/operations/audit/verify")
    assert ok.status_code == 200 and 'data-ok="true"' in ok.text and "7 entries" in ok.text
    # Tamper with an entry the way an intruder with database access would.
    async with db.transaction() as session:
        await session.execute(
            text("UPDATE audit_log SET actor = 'admin:someone-else' WHERE seq = 4")
        )
    broken = await client.get("/dashboard/operations/audit/verify")
    assert 'data-ok="false"' in broken.text and "BROKEN at entry #4" in broken.text


async def test_a_plain_form_post_gets_the_whole_page_with_the_result(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn
) -> None:
    pid = await payout(client, auth)
    csrf = await signed_in("operator")
    r = await client.post(
        f"/dashboard/operations/payments/{pid}/cancel",
        data={"reason": "test", "csrf_token": csrf},
    )
    assert r.status_code == 200 and "<h1>Operations</h1>" in r.text
    assert f"Canceled {pid}" in r.text
    r = await client.post(
        f"/dashboard/operations/payments/{pid}/cancel",
        data={"reason": "test", "csrf_token": csrf},
    )
    assert r.status_code == 409 and "<h1>Operations</h1>" in r.text
