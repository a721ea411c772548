"""Signals that other parts of tonrail feed: toncenter calls, hot wallet, congestion, fees.

The TON rail, the fee optimizer and the webhook sender call these plain functions; they
are cheap (a dict update under a lock) and never raise. Values are buffered in the process
and written to `monitoring_signals` by `persist_signals` (the `evaluate_alerts` and
`publish_signals` loops call it), so `/metrics` and the alert rules in any process see what
any other process measured. Every value is an integer: counts, minor units, basis points,
milliseconds. Labels must not carry secrets (pass an endpoint name, never a URL with a key).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.db import Database
from tonrail.monitoring.models import MonitoringMinute, MonitoringSignal

# Upper bounds (seconds) of the confirmation latency histogram; +Inf is implied.
CONFIRMATION_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)

# Upper bounds (milliseconds) of the API latency buckets counted per minute; +Inf implied.
API_LATENCY_BUCKETS_MS: tuple[int, ...] = (5, 10, 25, 50, 100, 200, 300, 500, 1000, 2500, 5000)
API_LATENCY = "api_latency"  # per minute and bucket `le` (not cumulative): /v1 requests
READINESS = "readyz"  # per minute and `outcome` (ok | unavailable): /readyz answers

SignalKey = tuple[str, str]  # (name, canonical labels)
MinuteKey = tuple[str, str, datetime]  # (name, canonical labels, start of the minute)

# Written by the TON rail in its own transactions (`write_signal`), read by the alert rules.
SCREENING_BLOCKED = "screening_blocked"  # counter: payments refused by AML/KYC screening
BOOKS_DIFFERENCE = "books_difference"  # per asset: chain minus books at the last quiet check
STRAY_MESSAGE_LAST_MS = "stray_message_last_ms"  # when a message no payout explains left
STRAY_MESSAGES = "stray_messages"  # how many have, ever

_lock = threading.Lock()
_gauges: dict[SignalKey, int] = {}
_counters: dict[SignalKey, int] = {}
_minutes: dict[MinuteKey, int] = {}


def labels_key(labels: Mapping[str, str]) -> str:
    """Canonical `k=v,k=v` (sorted); separators inside values are replaced."""
    return ",".join(
        f"{k}={str(v).replace(',', '_').replace('=', '_')[:60]}" for k, v in sorted(labels.items())
    )


def parse_labels(text: str) -> dict[str, str]:
    if not text:
        return {}
    return dict(part.split("=", 1) for part in text.split(","))


def _set(name: str, value: int, **labels: str) -> None:
    with _lock:
        _gauges[(name, labels_key(labels))] = int(value)


def _add(name: str, delta: int = 1, **labels: str) -> None:
    with _lock:
        key = (name, labels_key(labels))
        _counters[key] = _counters.get(key, 0) + int(delta)


def _epoch_ms() -> int:
    return int(clock.now().timestamp() * 1000)


# ------------------------------------------------------------------ the feeding API
def record_toncenter_call(endpoint: str, ok: bool, kind: str = "") -> None:
    """One toncenter request: `endpoint` a method name (`runGetMethod`), `kind` the error
    class when not ok (`http_5xx`, `timeout`, `connect`, `rate_limited`, ...)."""
    if ok:
        _add("toncenter_requests", endpoint=endpoint, outcome="ok")
        _set("toncenter_last_ok_ms", _epoch_ms(), endpoint=endpoint)
    else:
        _add("toncenter_requests", endpoint=endpoint, outcome=kind or "error")
        _set("toncenter_last_error_ms", _epoch_ms(), endpoint=endpoint)


def record_toncenter_success(endpoint: str) -> None:
    record_toncenter_call(endpoint, True)


def record_toncenter_error(endpoint: str, kind: str) -> None:
    record_toncenter_call(endpoint, False, kind)


def record_provider_call(provider: str, ok: bool, kind: str = "") -> None:
    """One request to a backup-rail provider (`stripe`, `paypal`, `bank`)."""
    _add("provider_requests", provider=provider, outcome="ok" if ok else (kind or "error"))


def record_provider_error(provider: str, kind: str) -> None:
    record_provider_call(provider, False, kind)


def set_hot_wallet_balance(asset: str, amount: int) -> None:
    """On-chain balance of the hot wallet in minor units of `asset` (nanoton, micro-USDT)."""
    _set("hot_wallet_balance", amount, asset=asset)


def set_congestion(pct: float) -> None:
    """TON network congestion 0-100 % (the fee optimizer's estimate)."""
    _set("congestion_bp", round(min(max(pct, 0.0), 100.0) * 100))


def set_gas_price(nanoton_per_gas: int) -> None:
    """Gas price of the basechain in nanoton per gas unit (config param 21)."""
    _set("gas_price", nanoton_per_gas)


def observe_confirmation(rail: str, seconds: float) -> None:
    """Time from submitting an attempt to its confirmation."""
    seconds = max(seconds, 0.0)
    with _lock:
        for bound in (*CONFIRMATION_BUCKETS, math.inf):
            if seconds <= bound:
                le = "+Inf" if bound == math.inf else f"{float(bound)}"
                key = ("confirmation_bucket", labels_key({"rail": rail, "le": le}))
                _counters[key] = _counters.get(key, 0) + 1
        for name, delta in (("confirmation_count", 1), ("confirmation_sum_ms", seconds * 1000)):
            key = (name, labels_key({"rail": rail}))
            _counters[key] = _counters.get(key, 0) + round(delta)


def set_webhook_backlog(pending: int, oldest_age_seconds: float) -> None:
    """Merchant webhook deliveries waiting, and the age of the oldest (the webhooks sender)."""
    _set("webhook_backlog", pending)
    _set("webhook_backlog_oldest_ms", round(oldest_age_seconds * 1000))


def record_rate_limit_store(process: str, ok: bool) -> None:
    """An API process reached Redis, its shared rate-limit store, again (`ok`), or fell back
    to per-process limits because it could not (the `rate_limiter_unavailable` rule)."""
    name = "rate_limit_store_ok_ms" if ok else "rate_limit_store_error_ms"
    _set(name, _epoch_ms(), process=process)


def _add_minute(name: str, at: datetime, **labels: str) -> None:
    key = (name, labels_key(labels), at.replace(second=0, microsecond=0))
    with _lock:
        _minutes[key] = _minutes.get(key, 0) + 1


def latency_bucket(ms: float) -> str:
    """The `le` label of the API latency bucket that holds `ms`."""
    for bound in API_LATENCY_BUCKETS_MS:
        if ms <= bound:
            return str(bound)
    return "+Inf"


def observe_api_request(ms: float) -> None:
    """One /v1 request answered after `ms` milliseconds (the API p99 objective)."""
    _add_minute(API_LATENCY, clock.now(), le=latency_bucket(ms))


def record_readiness(ok: bool) -> None:
    """One /readyz answer (the uptime objective): `ok`, or `unavailable` (503)."""
    _add_minute(READINESS, clock.now(), outcome="ok" if ok else "unavailable")


# ------------------------------------------------------------------ persistence
Buffers = tuple[dict[SignalKey, int], dict[SignalKey, int], dict[MinuteKey, int]]


def take_buffer() -> Buffers:
    """Swap out what was recorded since the last call (gauges, counter deltas, minutes)."""
    global _gauges, _counters, _minutes
    with _lock:
        taken = _gauges, _counters, _minutes
        _gauges, _counters, _minutes = {}, {}, {}
    return taken


def _restore(buffers: Buffers) -> None:
    gauges, counters, minutes = buffers
    with _lock:
        for key, value in gauges.items():
            _gauges.setdefault(key, value)  # a newer value wins
        for key, delta in counters.items():
            _counters[key] = _counters.get(key, 0) + delta
        for mkey, delta in minutes.items():
            _minutes[mkey] = _minutes.get(mkey, 0) + delta


async def persist_signals(db: Database) -> int:
    """Write buffered signals: gauges replace, counters and minutes add. Returns how many
    rows moved."""
    buffers = take_buffer()
    gauges, counters, minutes = buffers
    if not gauges and not counters and not minutes:
        return 0
    insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
    now = clock.now()
    try:
        async with db.transaction() as session:
            for kind, rows in (("gauge", gauges), ("counter", counters)):
                for (name, labels), value in sorted(rows.items()):
                    stmt = insert(MonitoringSignal).values(
                        name=name, labels=labels, kind=kind, value=value, updated_at=now
                    )
                    # A gauge takes the new value; a counter adds the buffered delta.
                    stored: ColumnElement[int] = stmt.excluded.value
                    if kind == "counter":
                        stored = MonitoringSignal.value + stored
                    await session.execute(
                        stmt.on_conflict_do_update(
                            index_elements=["name", "labels"],
                            set_={"value": stored, "updated_at": now},
                        )
                    )
            for (name, labels, minute), delta in sorted(minutes.items()):
                mstmt = insert(MonitoringMinute).values(
                    name=name, labels=labels, minute=minute, value=delta
                )
                await session.execute(
                    mstmt.on_conflict_do_update(
                        index_elements=["name", "labels", "minute"],
                        set_={"value": MonitoringMinute.value + mstmt.excluded.value},
                    )
                )
    except Exception:
        _restore(buffers)
        raise
    return len(gauges) + len(counters) + len(minutes)


async def prune_minutes(db: Database, keep_days: int) -> int:
    """Delete per-minute counts older than `keep_days`; returns how many rows went."""
    cutoff = clock.now() - timedelta(days=keep_days)
    async with db.transaction() as session:
        result = await session.execute(
            delete(MonitoringMinute).where(MonitoringMinute.minute < cutoff)
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def write_signal(
    session: AsyncSession, name: str, value: int, *, kind: str = "gauge", **labels: str
) -> None:
    """Write one signal now, in the caller's transaction (a gauge replaces, a counter adds):
    for facts that must commit with the change that found them, not a buffer later."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = clock.now()
    stmt = insert(MonitoringSignal).values(
        name=name, labels=labels_key(labels), kind=kind, value=int(value), updated_at=now
    )
    stored: ColumnElement[int] = stmt.excluded.value
    if kind == "counter":
        stored = MonitoringSignal.value + stored
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["name", "labels"], set_={"value": stored, "updated_at": now}
        )
    )
