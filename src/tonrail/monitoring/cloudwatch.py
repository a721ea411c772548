"""CloudWatch publisher (boto3): TransactionCount, SuccessRate, PendingTransactions,
TotalVolume, GasPrice in the namespace CLOUDWATCH_NAMESPACE. Off unless CLOUDWATCH_ENABLED."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3

from tonrail.monitoring.snapshot import Snapshot
from tonrail.payments.states import PaymentStatus
from tonrail.settings import Settings


def metric_data(snap: Snapshot) -> list[dict[str, Any]]:
    """The datapoints of one snapshot. SuccessRate only when something finished; GasPrice
    only when the fee optimizer has reported one (nothing is invented)."""
    ok, bad = (
        snap.finished.get(PaymentStatus.SUCCEEDED, 0),
        snap.finished.get(PaymentStatus.FAILED, 0),
    )
    data: list[dict[str, Any]] = [
        {"MetricName": "TransactionCount", "Value": float(ok + bad), "Unit": "Count"},
        {"MetricName": "PendingTransactions", "Value": float(snap.pending_count), "Unit": "Count"},
        # Succeeded volume in the window, in USDT (the equivalent recorded on each payment).
        {"MetricName": "TotalVolume", "Value": snap.window_volume_usdt / 10**6, "Unit": "None"},
    ]
    if ok + bad:
        data.append(
            {"MetricName": "SuccessRate", "Value": 100.0 * ok / (ok + bad), "Unit": "Percent"}
        )
    gas = snap.signal("gas_price")
    if gas is not None:
        data.append({"MetricName": "GasPrice", "Value": float(gas.value), "Unit": "None"})
    for item in data:
        item["Timestamp"] = snap.at
    return data


class CloudWatchPublisher:
    def __init__(self, settings: Settings):
        kwargs: dict[str, Any] = {"region_name": settings.aws_region}
        if settings.cloudwatch_endpoint_url:
            kwargs["endpoint_url"] = settings.cloudwatch_endpoint_url
        self.client = boto3.client("cloudwatch", **kwargs)
        self.namespace = settings.cloudwatch_namespace

    def publish_sync(self, snap: Snapshot) -> int:
        data = metric_data(snap)
        self.client.put_metric_data(Namespace=self.namespace, MetricData=data)
        return len(data)

    async def publish(self, snap: Snapshot) -> int:
        return await asyncio.to_thread(self.publish_sync, snap)
