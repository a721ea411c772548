"""The Alerts page over HTTP, on SQLite and PostgreSQL: lists, history, acknowledge, resolve."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from tonrail import clock
from tonrail.db import Database
from tonrail.monitoring import store
from tonrail.monitoring.models import Alert, AlertEvent
from tonrail.monitoring.rules import Finding
from tonrail.security import audit_log
from tonrail.security.audit_log import AuditEntry
from tonrail.settings import Settings

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HX = {"HX-Request": "true"}

SUCCESS = Finding(
    "success_rate:ton", "success_rate", "critical", "TON success rate 80.0 % < 95 %", {"pct": 80.0}
)
PENDING = Finding("pending", "pending", "warning", "120 payments pending > 100", {"pending": 120})
STUCK = Finding("stuck", "stuck", "error", "3 payouts stuck > 180 s", {"ids": ["pay_1"]})
HOSTILE = Finding(
    "suspicious:counterparty:x",
    "suspicious_activity",
    "warning",
    "<script>alert('summary')</script> failures",
    {"counterparty": "<img src=x onerror=alert(1)>", "failures": 12},
)


class FrozenClock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"dashboard_page_size": 2})


@pytest.fixture
def frozen() -> FrozenClock:
    c = FrozenClock(T0)
    clock.set_clock(c)
    return c


async def evaluate(db: Database, findings: Sequence[Finding]) -> None:
    """What the evaluate_alerts loop does with the rules' findings (Slack gets criticals)."""
    async with db.transaction() as session:
        await store.apply_findings(
            session, findings, {"critical": ("slack",)}, ["slack"], cooldown_seconds=300
        )


async def alert_of(db: Database, dedup_key: str) -> Alert:
    async with db.transaction() as session:
        found = (
            await session.execute(select(Alert).where(Alert.dedup_key == dedup_key))
        ).scalar_one()
        session.expunge(found)
        return found


async def counts(db: Database) -> tuple[int, int]:
    """(audit entries, alert events): an action that is refused adds to neither."""
    async with db.transaction() as session:
        audits = await session.scalar(select(func.count()).select_from(AuditEntry))
        events = await session.scalar(select(func.count()).select_from(AlertEvent))
    return int(audits or 0), int(events or 0)


def section(html: str, name: str) -> str:
    return html.split(f'id="alerts-{name}"', 1)[1].split("</section>", 1)[0]


def listed(html: str, name: str) -> list[str]:
    return re.findall(r'<tr data-alert="([^"]+)"', section(html, name))


def count_of(html: str, status: str) -> int:
    m = re.search(rf'data-count="{status}">(\d+)<', html)
    assert m
    return int(m.group(1))


@pytest.fixture
async def alerts(db: Database, frozen: FrozenClock) -> dict[str, str]:
    """Success rate (critical), stuck (error), pending (warning) open; an earlier
    suspicious-activity alert resolved by the system when its condition cleared."""
    frozen.at = T0 - timedelta(minutes=30)
    await evaluate(db, [HOSTILE])
    frozen.at = T0 - timedelta(minutes=20)
    await evaluate(db, [])  # the condition cleared: resolved by the system
    frozen.at = T0 - timedelta(minutes=10)
    await evaluate(db, [PENDING, STUCK])
    frozen.at = T0 - timedelta(minutes=5)
    await evaluate(db, [PENDING, STUCK, SUCCESS])
    frozen.at = T0
    return {
        f.rule: (await alert_of(db, f.dedup_key)).id for f in (SUCCESS, PENDING, STUCK, HOSTILE)
    }


async def test_lists_by_status_most_severe_first_with_live_counts(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    alerts: dict[str, str],
) -> None:
    await signed_in("viewer")
    page = await client.get("/dashboard/alerts")
    assert page.status_code == 200, page.text
    html = page.text
    assert listed(html, "open") == [alerts["success_rate"], alerts["stuck"], alerts["pending"]]
    assert listed(html, "acknowledged") == []
    assert listed(html, "resolved") == [alerts["suspicious_activity"]]
    assert (count_of(html, "open"), count_of(html, "acknowledged"), count_of(html, "resolved")) == (
        3,
        0,
        1,
    )
    assert "critical 1 · error 1 · warning 1" in html
    assert 'data-action="acknowledge"' not in html  # a viewer gets no buttons
    assert "hx-swap-oob" not in html  # the badge is only sent out of band by fragments

    lists = await client.get("/dashboard/alerts/lists", headers=HX)
    assert lists.status_code == 200 and "<html" not in lists.text
    assert 'id="nav-open-alerts" hx-swap-oob="true"' in lists.text
    assert re.search(r'id="nav-open-alerts" hx-swap-oob="true"\s*>3<', lists.text)
    assert "every 2s, alerts-changed from:body" in lists.text

    critical = await client.get("/dashboard/alerts/lists?severity=critical")
    assert listed(critical.text, "open") == [alerts["success_rate"]]
    assert listed(critical.text, "resolved") == []
    by_rule = await client.get("/dashboard/alerts/lists?rule=suspicious_activity")
    assert listed(by_rule.text, "open") == [] and listed(by_rule.text, "resolved") == [
        alerts["suspicious_activity"]
    ]


async def test_resolved_alerts_page_by_keyset(
    db: Database,
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    frozen: FrozenClock,
) -> None:
    findings = [Finding(f"pending:{i}", "pending", "warning", f"pending {i}", {}) for i in range(5)]
    await evaluate(db, findings)
    for i in range(5):  # resolved one by one, a minute apart
        frozen.at += timedelta(minutes=1)
        await evaluate(db, findings[i + 1 :])
    await signed_in("viewer")
    seen: list[str] = []
    url: str | None = "/dashboard/alerts/lists"
    while url:
        html = (await client.get(url, headers=HX)).text
        seen += listed(html, "resolved")
        older = re.search(r'id="alerts-resolved-older" hx-get="([^"]+)"', html)
        url = older.group(1).replace("&amp;", "&") if older else None
    summaries = []
    for alert_id in seen:
        async with db.transaction() as session:
            a = await session.get(Alert, alert_id)
            assert a is not None
            summaries.append(a.summary)
    assert summaries == [f"pending {i}" for i in reversed(range(5))]  # latest resolved first


async def test_an_operator_acknowledges_then_resolves(
    db: Database,
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    alerts: dict[str, str],
) -> None:
    csrf = await signed_in("operator")
    alert_id = alerts["success_rate"]
    page = await client.get("/dashboard/alerts")
    assert f'data-action="acknowledge" data-alert="{alert_id}"' in page.text
    assert "hx-confirm=" in page.text

    ack = await client.post(
        f"/dashboard/alerts/{alert_id}/acknowledge", headers={**HX, "X-CSRF-Token": csrf}
    )
    assert ack.status_code == 200, ack.text
    assert ack.headers["HX-Trigger"] == "alerts-changed"
    assert 'data-code="acknowledged"' in ack.text and "Acknowledged: TON success rate" in ack.text
    a = await alert_of(db, SUCCESS.dedup_key)
    assert a.status == "acknowledged" and a.acknowledged_by == "admin:operator"
    lists = (await client.get("/dashboard/alerts/lists", headers=HX)).text
    assert listed(lists, "acknowledged") == [alert_id]
    assert alert_id not in listed(lists, "open")
    assert count_of(lists, "open") == 2 and count_of(lists, "acknowledged") == 1

    done = await client.post(
        f"/dashboard/alerts/{alert_id}/resolve", headers={**HX, "X-CSRF-Token": csrf}
    )
    assert done.status_code == 200 and 'data-code="resolved"' in done.text
    a = await alert_of(db, SUCCESS.dedup_key)
    assert a.status == "resolved" and a.resolved_at is not None
    lists = (await client.get("/dashboard/alerts/lists", headers=HX)).text
    assert listed(lists, "resolved")[0] == alert_id

    async with db.transaction() as session:
        entries = (
            await session.execute(
                select(AuditEntry.actor, AuditEntry.action, AuditEntry.subject).order_by(
                    AuditEntry.seq
                )
            )
        ).all()
        events = (
            await session.execute(
                select(AlertEvent.kind, AlertEvent.actor)
                .where(AlertEvent.alert_id == alert_id)
                .order_by(AlertEvent.id)
            )
        ).all()
        chain = await audit_log.verify(session)
    assert ("admin:operator", "alert.acknowledge", alert_id) in entries
    assert ("admin:operator", "alert.resolve", alert_id) in entries
    assert [tuple(e) for e in events] == [
        ("opened", "system"),
        ("acknowledged", "admin:operator"),
        ("resolved", "admin:operator"),
    ]
    assert chain.ok

    # the detail page tells the story, with the Slack notifications queued for it
    detail = (await client.get(f"/dashboard/alerts/{alert_id}")).text
    history = re.findall(r'<li data-kind="(\w+)">', detail)
    assert history == ["opened", "acknowledged", "resolved"]
    assert "by admin:operator" in detail
    deliveries = detail.split('id="alert-deliveries"', 1)[1]
    assert "<td>slack</td><td>trigger</td>" in deliveries
    assert "<td>slack</td><td>resolve</td>" not in deliveries  # the trigger was never sent


async def test_acting_twice_says_clearly_what_happened(
    db: Database,
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    alerts: dict[str, str],
) -> None:
    csrf = await signed_in("admin")
    alert_id = alerts["stuck"]
    headers = {**HX, "X-CSRF-Token": csrf}
    assert (
        await client.post(f"/dashboard/alerts/{alert_id}/acknowledge", headers=headers)
    ).status_code == 200
    before = await counts(db)
    again = await client.post(f"/dashboard/alerts/{alert_id}/acknowledge", headers=headers)
    assert again.status_code == 409
    assert 'data-code="alert_not_open"' in again.text
    assert "already acknowledged by admin:admin at 2026-11-27 12:00:00" in again.text
    assert again.headers["HX-Retarget"] == "#flash"
    assert await counts(db) == before

    assert (
        await client.post(f"/dashboard/alerts/{alert_id}/resolve", headers=headers)
    ).status_code == 200
    before = await counts(db)
    for action in ("resolve", "acknowledge"):
        refused = await client.post(f"/dashboard/alerts/{alert_id}/{action}", headers=headers)
        assert refused.status_code == 409
        assert f"Alert {alert_id} is already resolved by admin:admin at" in refused.text
        assert f"nothing to {action}" in refused.text
    assert await counts(db) == before

    # resolved by the system when its condition cleared: said so too
    system = await client.post(
        f"/dashboard/alerts/{alerts['suspicious_activity']}/resolve", headers=headers
    )
    assert system.status_code == 409 and "already resolved by system at" in system.text


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_an_unknown_alert_is_a_404(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    db: Database,
    action: str,
) -> None:
    csrf = await signed_in("operator")
    before = await counts(db)
    r = await client.post(
        "/dashboard/alerts/alrt_nope/" + action, headers={**HX, "X-CSRF-Token": csrf}
    )
    assert r.status_code == 404
    assert 'data-code="alert_not_found"' in r.text and "<html" not in r.text
    assert await counts(db) == before
    page = await client.get("/dashboard/alerts/alrt_nope")
    assert page.status_code == 404 and 'data-code="alert_not_found"' in page.text
    body = await client.get("/dashboard/alerts/" + "x" * 300 + "/body", headers=HX)
    assert body.status_code == 404 and "x" * 41 not in body.text


@pytest.mark.parametrize("user", ["viewer", "approver"])
@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_roles_that_may_not_operate_change_nothing(
    db: Database,
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    alerts: dict[str, str],
    user: str,
    action: str,
) -> None:
    csrf = await signed_in(user)
    before = await counts(db)
    alert_id = alerts["pending"]
    r = await client.post(
        f"/dashboard/alerts/{alert_id}/{action}", headers={**HX, "X-CSRF-Token": csrf}
    )
    assert r.status_code == 403 and 'data-code="operate_forbidden"' in r.text
    plain = await client.post(f"/dashboard/alerts/{alert_id}/{action}", data={"csrf_token": csrf})
    assert plain.status_code == 403
    assert (await alert_of(db, PENDING.dedup_key)).status == "open"
    assert await counts(db) == before


async def test_actions_need_the_csrf_token_and_work_without_javascript(
    db: Database,
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    alerts: dict[str, str],
) -> None:
    csrf = await signed_in("operator")
    alert_id = alerts["pending"]
    forged = await client.post(f"/dashboard/alerts/{alert_id}/acknowledge", headers=HX)
    assert forged.status_code == 403
    assert (await alert_of(db, PENDING.dedup_key)).status == "open"
    plain = await client.post(
        f"/dashboard/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf}
    )
    assert plain.status_code == 303
    assert plain.headers["location"] == f"/dashboard/alerts/{alert_id}"
    assert (await alert_of(db, PENDING.dedup_key)).status == "acknowledged"


async def test_alert_texts_are_escaped(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    alerts: dict[str, str],
) -> None:
    await signed_in("operator")
    for url in ("/dashboard/alerts", f"/dashboard/alerts/{alerts['suspicious_activity']}"):
        html = (await client.get(url)).text
        assert "<script>alert(" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#39;summary&#39;)&lt;/script&gt; failures" in html
    detail = (await client.get(f"/dashboard/alerts/{alerts['suspicious_activity']}")).text
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/dashboard/alerts?severity=panic", "severity_invalid"),
        ("/dashboard/alerts/lists?rule=DROP%20TABLE", "rule_invalid"),
        ("/dashboard/alerts/lists?before=yesterday", "cursor_invalid"),
    ],
)
async def test_bad_parameters_are_refused_with_a_code(
    client: httpx.AsyncClient,
    signed_in: Callable[[str], Awaitable[str]],
    url: str,
    code: str,
) -> None:
    await signed_in("viewer")
    r = await client.get(url)
    assert r.status_code == 400 and f'data-code="{code}"' in r.text
    fragment = await client.get(url, headers=HX)
    assert fragment.status_code == 400 and fragment.headers["HX-Retarget"] == "#flash"


async def test_strangers_are_sent_to_sign_in(client: httpx.AsyncClient) -> None:
    assert (await client.get("/dashboard/alerts")).status_code == 303
    post = await client.post("/dashboard/alerts/alrt_x/resolve", headers=HX)
    assert post.status_code == 401 and post.headers["HX-Redirect"].startswith("/dashboard/login")
