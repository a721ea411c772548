"""`/metrics` in the Prometheus text format, rendered from a snapshot on each scrape.

Computed from the database, so every API process shows the same numbers whichever process
did the work; signals fed by other processes come from `monitoring_signals`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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
from tonrail.monitoring.snapshot import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _major(amount: int, asset: str) -> float:
    try:
        return float(amount) / float(10 ** decimals_of(asset))
    except Exception:
        return float(amount)


class SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot, alerts_open: dict[tuple[str, str], int]):
        self.snap = snap
        self.alerts_open = alerts_open

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        g = GaugeMetricFamily(
            "tonrail_payments",
            "Payments by direction, status, asset and the rail of their latest attempt",
            labels=["direction", "status", "asset", "rail"],
        )
        v = GaugeMetricFamily(
            "tonrail_payments_amount",
            "Sum of payment amounts in major units of the asset, same labels as tonrail_payments",
            labels=["direction", "status", "asset", "rail"],
        )
        for (direction, status, asset, rail), (count, total) in sorted(s.payments.items()):
            g.add_metric([direction, status, asset, rail], count)
            v.add_metric([direction, status, asset, rail], _major(total, asset))
        yield g
        yield v

        ok, bad = s.finished.get("succeeded", 0), s.finished.get("failed", 0)
        f = GaugeMetricFamily(
            "tonrail_payments_finished_window",
            "Payments that succeeded or failed within the monitoring window",
            labels=["status"],
        )
        f.add_metric(["succeeded"], ok)
        f.add_metric(["failed"], bad)
        yield f
        rate = GaugeMetricFamily(
            "tonrail_success_rate",
            "Share (0-1) of payments finished in the window that succeeded; attempts per rail",
            labels=["scope"],
        )
        if ok + bad:
            rate.add_metric(["all"], ok / (ok + bad))
        for rail in sorted({r for r, _ in s.attempts_finished}):
            good = s.attempts_finished.get((rail, "confirmed"), 0)
            total = sum(n for (r, _), n in s.attempts_finished.items() if r == rail)
            if total:
                rate.add_metric([f"rail:{rail}"], good / total)
        yield rate
        yield GaugeMetricFamily(
            "tonrail_window_seconds", "The monitoring window", value=s.window_seconds
        )

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
        fees = CounterMetricFamily(
            "tonrail_fees_paid",
            "Fees actually paid on attempts, major units of the fee asset",
            labels=["rail", "asset"],
        )
        for (rail, asset), total in sorted(s.fees_paid.items()):
            fees.add_metric([rail, asset], _major(total, asset))
        yield fees
        failures = GaugeMetricFamily(
            "tonrail_attempt_failures_window",
            "Failed or expired attempts in the window by rail and error code",
            labels=["rail", "error_code"],
        )
        for (rail, code), count in sorted(s.failures_by_code.items()):
            failures.add_metric([rail, code], count)
        yield failures

        lag = GaugeMetricFamily(
            "tonrail_worker_loop_lag_seconds",
            "Seconds since the freshest heartbeat of each worker loop",
            labels=["loop"],
        )
        for loop, age in sorted(s.heartbeat_age.items()):
            lag.add_metric([loop], age)
        yield lag
        yield GaugeMetricFamily(
            "tonrail_outbox_backlog", "Outbox events not yet published", value=s.outbox_backlog
        )
        yield GaugeMetricFamily(
            "tonrail_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox event",
            value=s.outbox_oldest_age,
        )
        locks = GaugeMetricFamily(
            "tonrail_lockouts_active", "Active lockouts by subject kind", labels=["kind"]
        )
        for kind in ("counterparty", "api_key", "ip"):
            locks.add_metric([kind], sum(1 for k, _ in s.lockouts if k == kind))
        yield locks

        yield from self._signals()

        alerts = GaugeMetricFamily(
            "tonrail_alerts_active", "Open or acknowledged alerts", labels=["rule", "severity"]
        )
        for (rule, severity), count in sorted(self.alerts_open.items()):
            alerts.add_metric([rule, severity], count)
        yield alerts
        deliveries = GaugeMetricFamily(
            "tonrail_alert_deliveries",
            "Alert deliveries by channel and status (failed = gave up after retries)",
            labels=["channel", "status"],
        )
        for (channel, status), count in sorted(s.deliveries.items()):
            deliveries.add_metric([channel, status], count)
        yield deliveries
        retrying = GaugeMetricFamily(
            "tonrail_alert_deliveries_retrying",
            "Pending alert deliveries that failed at least 3 times and are still retrying",
            labels=["channel"],
        )
        for channel, count in sorted(s.deliveries_retrying.items()):
            retrying.add_metric([channel], count)
        yield retrying

    def _signals(self) -> Iterable[Metric]:
        s = self.snap
        tc = CounterMetricFamily(
            "tonrail_toncenter_requests",
            "toncenter requests by endpoint and outcome (ok or the error kind)",
            labels=["endpoint", "outcome"],
        )
        for sig in s.signals_named("toncenter_requests"):
            tc.add_metric(
                [sig.labels.get("endpoint", ""), sig.labels.get("outcome", "")], sig.value
            )
        yield tc
        last = GaugeMetricFamily(
            "tonrail_toncenter_last_success_timestamp_seconds",
            "Unix time of the last successful toncenter request",
            labels=["endpoint"],
        )
        for sig in s.signals_named("toncenter_last_ok_ms"):
            last.add_metric([sig.labels.get("endpoint", "")], sig.value / 1000)
        yield last
        pr = CounterMetricFamily(
            "tonrail_provider_requests",
            "Backup-rail provider requests by provider and outcome",
            labels=["provider", "outcome"],
        )
        for sig in s.signals_named("provider_requests"):
            pr.add_metric(
                [sig.labels.get("provider", ""), sig.labels.get("outcome", "")], sig.value
            )
        yield pr
        hw = GaugeMetricFamily(
            "tonrail_hot_wallet_balance",
            "On-chain hot wallet balance, major units of the asset",
            labels=["asset"],
        )
        for sig in s.signals_named("hot_wallet_balance"):
            asset = sig.labels.get("asset", "")
            hw.add_metric([asset], _major(sig.value, asset))
        yield hw
        congestion = s.signal("congestion_bp")
        if congestion is not None:
            yield GaugeMetricFamily(
                "tonrail_congestion_percent",
                "TON network congestion estimate 0-100",
                value=congestion.value / 100,
            )
        gas = s.signal("gas_price")
        if gas is not None:
            yield GaugeMetricFamily(
                "tonrail_gas_price", "Basechain gas price, nanoton per gas unit", value=gas.value
            )
        backlog = s.signal("webhook_backlog")
        if backlog is not None:
            yield GaugeMetricFamily(
                "tonrail_webhook_backlog",
                "Merchant webhook deliveries waiting",
                value=backlog.value,
            )
        oldest = s.signal("webhook_backlog_oldest_ms")
        if oldest is not None:
            yield GaugeMetricFamily(
                "tonrail_webhook_backlog_oldest_age_seconds",
                "Age of the oldest waiting merchant webhook delivery",
                value=oldest.value / 1000,
            )
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


def render(snap: Snapshot, alerts_open: dict[tuple[str, str], int]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap, alerts_open))
    return generate_latest(registry)
