"""The CloudWatch publisher against moto's CloudWatch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from tests.monitoring.helpers import attempt_outcome, finish, payout
from tests.monitoring.test_alerting import _freeze
from tonrail import clock
from tonrail.db import Database
from tonrail.monitoring import signals
from tonrail.monitoring.jobs import publish_cloudwatch
from tonrail.settings import Settings


@dataclass
class Ctx:
    db: Database
    settings: Settings
    worker_id: str = "w-cw"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield


async def test_publishes_the_five_metrics(aws: None, db: Database, settings: Settings) -> None:
    _freeze()
    cfg = settings.model_copy(update={"cloudwatch_enabled": True, "aws_region": "eu-west-1"})
    for outcome, status in (
        ("confirmed", "succeeded"),
        ("confirmed", "succeeded"),
        ("failed", "failed"),
    ):
        pid = await payout(db, amount=10 * 10**9)
        await attempt_outcome(db, pid, outcome)
        await finish(db, cfg, pid, status)
    await payout(db)
    signals.set_gas_price(400)
    await signals.persist_signals(db)

    await publish_cloudwatch(Ctx(db, cfg))

    cw = boto3.client("cloudwatch", region_name="eu-west-1")
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="Deligate/Payments")["Metrics"]}
    assert names == {
        "TransactionCount",
        "SuccessRate",
        "PendingTransactions",
        "TotalVolume",
        "GasPrice",
    }

    def value(name: str) -> float:
        stats = cw.get_metric_statistics(
            Namespace="Deligate/Payments",
            MetricName=name,
            StartTime=clock.now() - timedelta(minutes=5),
            EndTime=clock.now() + timedelta(minutes=5),
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
        assert len(stats) == 1, (name, stats)
        return float(stats[0]["Maximum"])

    assert value("TransactionCount") == 3
    assert abs(value("SuccessRate") - 200 / 3) < 1e-9
    assert value("PendingTransactions") == 1
    assert value("TotalVolume") == 100.0  # two payouts of 10 TON at 5 USDT
    assert value("GasPrice") == 400


async def test_off_unless_enabled_and_no_invented_values(
    aws: None, db: Database, settings: Settings
) -> None:
    _freeze()
    await publish_cloudwatch(Ctx(db, settings))
    cw = boto3.client("cloudwatch", region_name=settings.aws_region)
    assert cw.list_metrics(Namespace="Deligate/Payments")["Metrics"] == []
    await publish_cloudwatch(Ctx(db, settings.model_copy(update={"cloudwatch_enabled": True})))
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="Deligate/Payments")["Metrics"]}
    # nothing finished and no gas price reported: no SuccessRate and no GasPrice
    assert names == {"TransactionCount", "PendingTransactions", "TotalVolume"}
