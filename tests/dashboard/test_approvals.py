"""The Approvals page over HTTP, on both databases: the list, approve, reject, and refusals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import DEST, row_counts
from tonrail.dashboard.templating import money
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance
from tonrail.limits.models import DailyVolume
from tonrail.security.audit_log import AuditEntry
from tonrail.settings import Settings

SignIn = Callable[[str], Awaitable[str]]
LARGE = "1500000"  # USDT: above the 1M USDT approval threshold


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The shared settings, with pages of two rows to see the pager work."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database_url,
        data_dir=tmp_path,
        payment_processor_address=DEST,
        dashboard_page_size=2,
    )


async def payout(
    client: httpx.AsyncClient, auth: dict[str, str], amount: str = LARGE, **extra: object
) -> dict[str, object]:
    body = {"amount": amount, "asset": "USDT", "destination": DEST, **extra}
    r = await client.post("/v1/payouts", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def status_of(client: httpx.AsyncClient, auth: dict[str, str], pid: object) -> dict:
    r = await client.get(f"/v1/payouts/{pid}", headers=auth)
    assert r.status_code == 200
    return dict(r.json())


async def audit_actions(db: Database) -> list[tuple[str, str, str | None]]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.subject).order_by(AuditEntry.seq)
        )
        return [(a, b, c) for a, b, c in rows if b != "dashboard.sign_in"]


def hx(csrf: str) -> dict[str, str]:
    return {"HX-Request": "true", "X-CSRF-Token": csrf}


async def test_the_list_shows_what_waits_with_amounts_requester_and_approvers(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn
) -> None:
    big = await payout(client, auth, description="<script>alert(1)</script> rent")
    await payout(client, auth, amount="10")  # small: queued at once, not listed
    await signed_in("viewer")
    page = await client.get("/dashboard/approvals")
    assert page.status_code == 200
    html = page.text
    assert f'id="approval-{big["id"]}"' in html
    assert money(1_500_000 * 10**6, "USDT") in html  # the amount, and its USDT equivalent
    assert big["status"] == "requires_approval"
    assert "0 of 2" in html
    # The requester is the API key that asked for it.
    assert "key:" in html
    # Hostile text renders inert.
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; rent" in html
    # A viewer sees the list but no buttons to approve with.
    assert "/approve" not in html and "may look, not approve" in html


async def test_two_distinct_approvers_queue_a_large_payout(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    big = await payout(client, auth)
    csrf = await signed_in("approver")
    r = await client.post(f"/dashboard/approvals/{big['id']}/approve", headers=hx(csrf))
    assert r.status_code == 200, r.text
    assert "1 of 2" in r.text and "waits for 1 more approver" in r.text
    assert r.headers["HX-Trigger"] == "approvals-changed"
    got = await status_of(client, auth, big["id"])
    assert got["status"] == "requires_approval" and got["approvals"] == ["admin:approver"]
    listed = await client.get("/dashboard/approvals/list")
    assert "1 of 2" in listed.text and "admin:approver" in listed.text and "(you)" in listed.text

    # The same approver again: refused with a clear message, nothing written.
    before = await row_counts(db)
    again = await client.post(f"/dashboard/approvals/{big['id']}/approve", headers=hx(csrf))
    assert again.status_code == 409
    assert 'data-code="already_approved"' in again.text
    assert "You have already approved this payout" in again.text
    assert await row_counts(db) == before

    csrf2 = await signed_in("approver2")
    r = await client.post(f"/dashboard/approvals/{big['id']}/approve", headers=hx(csrf2))
    assert r.status_code == 200 and "queued for sending" in r.text
    got = await status_of(client, auth, big["id"])
    assert got["status"] == "queued"
    assert got["approvals"] == ["admin:approver", "admin:approver2"]
    assert [a for a in await audit_actions(db)] == [
        ("admin:approver", "payout.approve", big["id"]),
        ("admin:approver2", "payout.approve", big["id"]),
    ]
    # Approved payouts leave the list; the decisions stay visible.
    listed = await client.get("/dashboard/approvals/list")
    assert f'id="approval-{big["id"]}"' not in listed.text
    assert "approval-decisions" in listed.text

    # Approving a payout that no longer waits is a conflict, not a second queueing.
    admin_csrf = await signed_in("admin")
    late = await client.post(f"/dashboard/approvals/{big['id']}/approve", headers=hx(admin_csrf))
    assert late.status_code == 409 and 'data-code="not_awaiting_approval"' in late.text


async def test_reject_cancels_with_the_reason_and_releases_the_reservation(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    big = await payout(client, auth)
    csrf = await signed_in("approver")
    before = await row_counts(db)
    for reason, code in (
        ("", "reason_required"),
        ("   ", "reason_required"),
        ("x" * 501, "reason_too_long"),
    ):
        r = await client.post(
            f"/dashboard/approvals/{big['id']}/reject", data={"reason": reason}, headers=hx(csrf)
        )
        assert r.status_code == 400 and f'data-code="{code}"' in r.text
    assert await row_counts(db) == before

    r = await client.post(
        f"/dashboard/approvals/{big['id']}/reject",
        data={"reason": "payee not verified <b>"},
        headers=hx(csrf),
    )
    assert r.status_code == 200, r.text
    got = await status_of(client, auth, big["id"])
    assert got["status"] == "canceled"
    assert got["failure_code"] == "rejected_by_approver"
    assert got["failure_message"] == "payee not verified <b>"
    async with db.transaction() as session:
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == 0
        used = await session.scalar(select(func.coalesce(func.sum(DailyVolume.used_usdt), 0)))
        entry = (
            await session.execute(select(AuditEntry).where(AuditEntry.action == "payout.reject"))
        ).scalar_one()
    assert used == 0  # the day's volume was given back
    assert entry.actor == "admin:approver" and entry.details["reason"] == "payee not verified <b>"
    # The decision list shows the reason, escaped.
    listed = await client.get("/dashboard/approvals/list")
    assert "payee not verified &lt;b&gt;" in listed.text

    again = await client.post(
        f"/dashboard/approvals/{big['id']}/reject", data={"reason": "again"}, headers=hx(csrf)
    )
    assert again.status_code == 409 and 'data-code="not_awaiting_approval"' in again.text


@pytest.mark.parametrize("who", ["viewer", "operator"])
async def test_roles_without_approve_are_refused_and_nothing_changes(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database, who: str
) -> None:
    big = await payout(client, auth)
    csrf = await signed_in(who)
    before = await row_counts(db)
    r = await client.post(f"/dashboard/approvals/{big['id']}/approve", headers=hx(csrf))
    assert r.status_code == 403 and 'data-code="approve_forbidden"' in r.text
    r = await client.post(
        f"/dashboard/approvals/{big['id']}/reject", data={"reason": "no"}, headers=hx(csrf)
    )
    assert r.status_code == 403
    assert await row_counts(db) == before
    assert (await status_of(client, auth, big["id"]))["status"] == "requires_approval"


async def test_missing_or_wrong_csrf_is_refused_and_nothing_changes(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    big = await payout(client, auth)
    await signed_in("approver")
    before = await row_counts(db)
    r = await client.post(f"/dashboard/approvals/{big['id']}/approve")
    assert r.status_code == 403
    r = await client.post(
        f"/dashboard/approvals/{big['id']}/approve", headers={"X-CSRF-Token": "forged"}
    )
    assert r.status_code == 403 and "csrf_forbidden" in r.text
    r = await client.post(
        f"/dashboard/approvals/{big['id']}/reject", data={"reason": "x", "csrf_token": "forged"}
    )
    assert r.status_code == 403
    assert await row_counts(db) == before


async def test_unknown_and_small_payouts_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn, db: Database
) -> None:
    small = await payout(client, auth, amount="10")
    invoice = await client.post("/v1/invoices", json={"amount": "5", "asset": "TON"}, headers=auth)
    csrf = await signed_in("approver")
    before = await row_counts(db)
    r = await client.post("/dashboard/approvals/pay_nope/approve", headers=hx(csrf))
    assert r.status_code == 404
    r = await client.post(
        "/dashboard/approvals/pay_nope/reject", data={"reason": "x"}, headers=hx(csrf)
    )
    assert r.status_code == 404 and 'data-code="payment_not_found"' in r.text
    r = await client.post(f"/dashboard/approvals/{small['id']}/approve", headers=hx(csrf))
    assert r.status_code == 409 and 'data-code="not_awaiting_approval"' in r.text
    r = await client.post(
        f"/dashboard/approvals/{invoice.json()['id']}/reject",
        data={"reason": "x"},
        headers=hx(csrf),
    )
    assert r.status_code == 404
    assert await row_counts(db) == before


async def test_pages_of_waiting_payouts_oldest_first(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn
) -> None:
    ids = [(await payout(client, auth))["id"] for _ in range(3)]
    await signed_in("viewer")
    first = (await client.get("/dashboard/approvals")).text
    assert ids[0] in first and ids[1] in first and f'id="approval-{ids[2]}"' not in first
    assert "(3)" in first
    assert f"/dashboard/approvals?after={ids[1]}" in first
    second = (await client.get(f"/dashboard/approvals?after={ids[1]}")).text
    assert f'id="approval-{ids[2]}"' in second and f'id="approval-{ids[0]}"' not in second
    assert 'id="approvals-next"' not in second
    bad = await client.get("/dashboard/approvals/list?after=pay_nope")
    assert bad.status_code == 400 and "cursor_invalid" in bad.text
    page = await client.get("/dashboard/approvals?after=pay_nope")
    assert page.status_code == 400 and "cursor_invalid" in page.text


async def test_a_plain_form_post_without_javascript_gets_the_page_back(
    client: httpx.AsyncClient, auth: dict[str, str], signed_in: SignIn
) -> None:
    big = await payout(client, auth)
    csrf = await signed_in("approver")
    r = await client.post(f"/dashboard/approvals/{big['id']}/approve", data={"csrf_token": csrf})
    assert r.status_code == 200
    assert "<h1>Approvals</h1>" in r.text and "1 of 2" in r.text
