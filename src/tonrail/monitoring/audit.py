"""The daily security audit: large payouts, lockouts, admin actions, key usage, config."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.money import format_minor
from tonrail.monitoring.models import AlertEvent, SecurityReport
from tonrail.payments.models import Payment
from tonrail.security.models import ApiKey, Lockout, SecurityFailure
from tonrail.settings import Settings


def config_values(settings: Settings) -> dict[str, str]:
    """Settings as text; secrets become a flag (set / empty), never their value."""
    out: dict[str, str] = {}
    for name in sorted(type(settings).model_fields):
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            out[name] = "<set>" if value.get_secret_value() else "<empty>"
        else:
            out[name] = str(value)
    return out


def fingerprint(values: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


@dataclass
class AuditReport:
    day: str
    body: dict[str, Any]
    fingerprint: str

    def text(self) -> str:
        b = self.body
        lines = [f"tonrail security audit for {self.day} (UTC)", ""]
        lines.append(
            f"Large payouts (>= {b['large_payout_threshold']} USDT equivalent): "
            f"{len(b['large_payouts'])}"
        )
        for p in b["large_payouts"]:
            lines.append(
                f"  {p['id']}  {p['amount']} {p['asset']}  {p['status']}  "
                f"by {p['requested_by']}  to {p['counterparty']}"
            )
        lines.append(f"Lockouts created: {len(b['lockouts_created'])}")
        for lk in b["lockouts_created"]:
            lines.append(f"  {lk['id']}  {lk['kind']} {lk['subject']}  failures {lk['failures']}")
        lines.append(f"Lockouts lifted: {len(b['lockouts_lifted'])}")
        for lk in b["lockouts_lifted"]:
            lines.append(f"  {lk['id']}  {lk['kind']} {lk['subject']}  by {lk['unlocked_by']}")
        lines.append(f"Security failures recorded: {b['security_failures']}")
        lines.append(f"Admin actions: {len(b['admin_actions'])}")
        for a in b["admin_actions"]:
            lines.append(f"  {a['at']}  {a['actor']}  {a['kind']}  alert {a['alert_id']}")
        lines.append("API keys:")
        lines.append(f"  created: {', '.join(b['keys_created']) or 'none'}")
        lines.append(f"  revoked: {', '.join(b['keys_revoked']) or 'none'}")
        for usage in b["key_usage"]:
            lines.append(f"  {usage['key']}: {usage['payments']} payments")
        changes = b["config_changes"]
        if changes is None:
            lines.append("Configuration: first audit, no previous fingerprint to compare")
        elif changes:
            lines.append("Configuration changed: " + ", ".join(changes))
        else:
            lines.append("Configuration: unchanged")
        return "\n".join(lines) + "\n"


async def build_report(
    session: AsyncSession, settings: Settings, day_start: datetime
) -> AuditReport:
    """The audit of the UTC day that starts at `day_start`."""
    day_end = day_start + timedelta(days=1)
    in_day = (day_start, day_end)
    large = (
        await session.execute(
            select(Payment)
            .where(
                Payment.direction == "out",
                Payment.created_at >= in_day[0],
                Payment.created_at < in_day[1],
                Payment.usdt_equivalent >= settings.audit_large_payout_usdt,
            )
            .order_by(Payment.created_at)
            .limit(500)
        )
    ).scalars()
    created = (
        await session.execute(
            select(Lockout).where(Lockout.locked_at >= in_day[0], Lockout.locked_at < in_day[1])
        )
    ).scalars()
    lifted = (
        await session.execute(
            select(Lockout).where(Lockout.unlocked_at >= in_day[0], Lockout.unlocked_at < in_day[1])
        )
    ).scalars()
    failures = (
        await session.execute(
            select(func.count()).where(
                SecurityFailure.at >= in_day[0], SecurityFailure.at < in_day[1]
            )
        )
    ).scalar_one()
    actions = (
        await session.execute(
            select(AlertEvent)
            .where(
                AlertEvent.at >= in_day[0],
                AlertEvent.at < in_day[1],
                AlertEvent.actor != "system",
                ~AlertEvent.actor.startswith("channel:"),
            )
            .order_by(AlertEvent.id)
            .limit(500)
        )
    ).scalars()
    keys_created = (
        await session.execute(
            select(ApiKey.id).where(ApiKey.created_at >= in_day[0], ApiKey.created_at < in_day[1])
        )
    ).scalars()
    keys_revoked = (
        await session.execute(
            select(ApiKey.id).where(ApiKey.revoked_at >= in_day[0], ApiKey.revoked_at < in_day[1])
        )
    ).scalars()
    usage = await session.execute(
        select(Payment.requested_by, func.count())
        .where(Payment.created_at >= in_day[0], Payment.created_at < in_day[1])
        .group_by(Payment.requested_by)
        .order_by(func.count().desc())
        .limit(50)
    )
    values = config_values(settings)
    fp = fingerprint(values)
    previous = (
        await session.execute(
            select(SecurityReport)
            .where(SecurityReport.day < day_start.date().isoformat())
            .order_by(SecurityReport.day.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    changes: list[str] | None = None
    if previous is not None:
        before = previous.body.get("config", {})
        changes = sorted(k for k in set(before) | set(values) if before.get(k) != values.get(k))
    body = {
        "large_payout_threshold": format_minor(settings.audit_large_payout_usdt, "USDT"),
        "large_payouts": [
            {
                "id": p.id,
                "amount": format_minor(p.amount, p.asset),
                "asset": p.asset,
                "status": p.status,
                "requested_by": p.requested_by,
                "counterparty": p.counterparty,
            }
            for p in large
        ],
        "lockouts_created": [
            {"id": lk.id, "kind": lk.subject_kind, "subject": lk.subject, "failures": lk.failures}
            for lk in created
        ],
        "lockouts_lifted": [
            {
                "id": lk.id,
                "kind": lk.subject_kind,
                "subject": lk.subject,
                "unlocked_by": lk.unlocked_by,
            }
            for lk in lifted
        ],
        "security_failures": int(failures),
        "admin_actions": [
            {"at": a.at.isoformat(), "actor": a.actor, "kind": a.kind, "alert_id": a.alert_id}
            for a in actions
        ],
        "keys_created": list(keys_created),
        "keys_revoked": list(keys_revoked),
        "key_usage": [{"key": who, "payments": int(n)} for who, n in usage],
        "config": values,
        "config_changes": changes,
    }
    return AuditReport(day_start.date().isoformat(), body, fp)
