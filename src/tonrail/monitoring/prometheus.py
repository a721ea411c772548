"""`/metrics` in the Prometheus text format, rendered from a snapshot on each scrape.

Computed from the database, so every API process shows the same numbers whichever process
did the work; signals fed by other processes come from `monitoring_signals`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tonrail.money import decimals_of
from tonrail.monitoring.signals import CONFIRMATION_BUCKETS
from tonrail.monitoring.snapshot import SignalValue, Snapshot
from tonrail.payments.states import AttemptStatus, PaymentStatus
from tonrail.security.lockouts import SUBJECT_KINDS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _major(amount: int, asset: str) -> float:
    try:
        return float(amount) / float(10 ** decimals_of(asset))
    except Exception:
        return float(amount)


Family = type[GaugeMetricFamily] | type[CounterMetricFamily]


def _labelled(
    family: Family,
    name: str,
    documentation: str,
    labels: list[str],
    samples: Iterable[tuple[list[str], float]],
) -> Metric:
    """One metric family with a sample per row of label values."""
    metric = family(name, documentation, labels=labels)
    for values, value in samples:
        metric.add_metric(values, value)
    return metric


def _rows(values: Mapping[Any, float]) -> Iterator[tuple[list[str], float]]:
    """The samples of a mapping keyed by label values (a tuple of them or one), sorted."""
    for key, value in sorted(values.items()):
        yield (list(key) if isinstance(key, tuple) else [key]), value


class SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot, alerts_open: dict[tuple[str, str], int]):
        self.snap = snap
        self.alerts_open = alerts_open

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        by_payment = ["direction", "status", "asset", "rail"]
        payments = sorted(s.payments.items())
        yield _labelled(
            GaugeMetricFamily,
            "tonrail_payments",
            "Payments by direction, status, asset and the rail of their latest attempt",
            by_payment,
            ((list(key), count) for key, (count, _) in payments),
        )
        yield _labelled(
            GaugeMetricFamily,
            "tonrail_payments_amount",
            "Sum of payment amounts in major units of the asset, same labels as tonrail_payments",
            by_payment,
            ((list(key), _major(total, key[2])) for key, (_, total) in payments),
        )

        ok, bad = (
            s.finished.get(PaymentStatus.SUCCEEDED, 0),
            s.finished.get(PaymentStatus.FAILED, 0),
        )
        yield _labelled(
            GaugeMetricFamily,
            "tonrail_payments_finished_window",
            "Payments that succeeded or failed within the monitoring window",
            ["status"],
            [([PaymentStatus.SUCCEEDED], ok), ([PaymentStatus.FAILED], bad)],
        )
        rate = GaugeMetricFamily(
            "tonrail_success_rate",
            "Share (0-1) of payments finished in the window that succeeded; attempts per rail",
            labels=["scope"],
        )
        if ok + bad:
            rate.add_metric(["all"], ok / (ok + bad))
        for rail in sorted({r for r, _ in s.attempts_finished}):
            good = s.attempts_finished.get((rail, AttemptStatus.CONFIRMED), 0)
            total = sum(n for (r, _), n in s.attempts_finished.items() if r == rail)
            if total:
                rate.add_metric([f"rail:{rail}"], good / total)
        yield rate
        # Plain gauges below are declared one by one: alike in shape, each its own metric.
        yield GaugeMetricFamily(
            "tonrail_window_seconds", "The monitoring window", value=s.window_seconds
        )

        # One gauge per figure: alike the other metric families in shape only.
        yield GaugeMetricFamily(
            "tonrail_pending_payments", "Payments queued or processing", value=s.pending_count
        )
        yield GaugeMetricFamily(
            "tonrail_pending_oldest_age_seconds",
            "Age of the oldest queued or processing payment",
            value=s.oldest_pending_age,
        )
        yield GaugeMetricFamily(
            "tonrail_volume_window_usdt",
            "Succeeded volume in the window, USDT equivalent",
            value=s.window_volume_usdt / 10**6,
        )
        yield _labelled(
            CounterMetricFamily,
            "tonrail_fees_paid",
            "Fees actually paid on attempts, major units of the fee asset",
            ["rail", "asset"],
            ((list(key), _major(total, key[1])) for key, total in sorted(s.fees_paid.items())),
        )
        yield _labelled(
            GaugeMetricFamily,
            "tonrail_attempt_failures_window",
            "Failed or expired attempts in the window by rail and error code",
            ["rail", "error_code"],
            _rows(s.failures_by_code),
        )
        yield _labelled(
            GaugeMetricFamily,
            "tonrail_worker_loop_lag_seconds",
            "Seconds since the freshest heartbeat of each worker loop",
            ["loop"],
            _rows(s.heartbeat_age),
        )
        yield GaugeMetricFamily(
            "tonrail_outbox_backlog", "Outbox events not yet published", value=s.outbox_backlog
        )
        yield GaugeMetricFamily(
            "tonrail_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox event",
            value=s.outbox_oldest_age,
        )
        yield GaugeMetricFamily(
            "tonrail_webhook_endpoints_disabled",
            "Merchant webhook endpoints tonrail disabled (410 or failing too long)",
            value=len(s.webhooks_disabled),
        )
        yield _labelled(
            GaugeMetricFamily,
            "tonrail_lockouts_active",
            "Active lockouts by subject kind",
            ["kind"],
            (([kind], sum(1 for k, _ in s.lockouts if k == kind)) for kind in SUBJECT_KINDS),
        )

        yield from self._signals()

        yield _labelled(
            GaugeMetricFamily,
            "tonrail_alerts_active",
            "Open or acknowledged alerts",
            ["rule", "severity"],
            _rows(self.alerts_open),
        )
        yield _labelled(
            GaugeMetricFamily,
            "tonrail_alert_deliveries",
            "Alert deliveries by channel and status (failed = gave up after retries)",
            ["channel", "status"],
            _rows(s.deliveries),
        )
        yield _labelled(
            GaugeMetricFamily,
            "tonrail_alert_deliveries_retrying",
            "Pending alert deliveries that failed at least 3 times and are still retrying",
            ["channel"],
            _rows(s.deliveries_retrying),
        )

    def _from_signals(
        self,
        family: Family,
        name: str,
        documentation: str,
        signal: str,
        labels: list[str],
        value: Callable[[SignalValue], float] = lambda sig: sig.value,
    ) -> Metric:
        """A family with one sample per stored signal row, labelled by the signal's labels."""
        return _labelled(
            family,
            name,
            documentation,
            labels,
            (
                ([sig.labels.get(label, "") for label in labels], value(sig))
                for sig in self.snap.signals_named(signal)
            ),
        )

    def _signals(self) -> Iterable[Metric]:
        s = self.snap
        yield self._from_signals(
            CounterMetricFamily,
            "tonrail_toncenter_requests",
            "toncenter requests by endpoint and outcome (ok or the error kind)",
            "toncenter_requests",
            ["endpoint", "outcome"],
        )
        yield self._from_signals(
            GaugeMetricFamily,
            "tonrail_toncenter_last_success_timestamp_seconds",
            "Unix time of the last successful toncenter request",
            "toncenter_last_ok_ms",
            ["endpoint"],
            lambda sig: sig.value / 1000,
        )
        yield self._from_signals(
            CounterMetricFamily,
            "tonrail_provider_requests",
            "Backup-rail provider requests by provider and outcome",
            "provider_requests",
            ["provider", "outcome"],
        )
        yield self._from_signals(
            GaugeMetricFamily,
            "tonrail_hot_wallet_balance",
            "On-chain hot wallet balance, major units of the asset",
            "hot_wallet_balance",
            ["asset"],
            lambda sig: _major(sig.value, sig.labels.get("asset", "")),
        )
        yield self._from_signals(
            GaugeMetricFamily,
            "tonrail_books_difference",
            "On chain minus the books at the last quiet check (wallet: hot, or treasury), "
            "major units",
            "books_difference",
            ["asset", "wallet"],
            lambda sig: _major(sig.value, sig.labels.get("asset", "")),
        )
        # Gauges shown only once the signal was ever recorded: (signal, name, help, divisor).
        for signal, name, documentation, divisor in _OPTIONAL_GAUGES:
            found = s.signal(signal)
            if found is not None:
                yield GaugeMetricFamily(name, documentation, value=found.value / divisor)
        hist = HistogramMetricFamily(
            "tonrail_confirmation_seconds",
            "Time from submitting an attempt to its confirmation",
            labels=["rail"],
        )
        rails = sorted(
            {sig.labels.get("rail", "") for sig in s.signals_named("confirmation_count")}
        )
        for rail in rails:
            buckets = []
            for bound in (*[f"{float(b)}" for b in CONFIRMATION_BUCKETS], "+Inf"):
                bucket = s.signal("confirmation_bucket", rail=rail, le=bound)
                buckets.append((bound, float(bucket.value if bucket else 0)))
            total_ms = s.signal("confirmation_sum_ms", rail=rail)
            hist.add_metric([rail], buckets, (total_ms.value / 1000) if total_ms else 0.0)
        yield hist


_OPTIONAL_GAUGES = [
    ("congestion_bp", "tonrail_congestion_percent", "TON network congestion estimate 0-100", 100),
    ("gas_price", "tonrail_gas_price", "Basechain gas price, nanoton per gas unit", 1),
    ("webhook_backlog", "tonrail_webhook_backlog", "Merchant webhook deliveries waiting", 1),
    (
        "webhook_backlog_oldest_ms",
        "tonrail_webhook_backlog_oldest_age_seconds",
        "Age of the oldest waiting merchant webhook delivery",
        1000,
    ),
]


def render(snap: Snapshot, alerts_open: dict[tuple[str, str], int]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap, alerts_open))
    return generate_latest(registry)
