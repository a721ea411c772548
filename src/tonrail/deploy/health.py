"""The post-deploy health checks, through the public HTTP API like any client.

`/readyz` answers 200 (the process serves and its database answers), and `/metrics` carries
the hot wallet's on-chain balance for TON (the worker read it from the chain and every
process sees it), which proves the TON rail is up. Both are retried until `wait` runs out:
fresh tasks take a moment to register behind the load balancer and to read the chain.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class HealthReport:
    ok: bool
    lines: list[str] = field(default_factory=list)


def hot_wallet_balances(metrics_text: str) -> dict[str, float]:
    """{asset: balance in major units} from `tonrail_hot_wallet_balance` samples."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "tonrail_hot_wallet_balance":
            for sample in family.samples:
                out[sample.labels.get("asset", "")] = float(sample.value)
    return out


def balance_text(major_units: float) -> str:
    """A balance as an operator reads it: 10000000, 12.5 (never 1e+07)."""
    return format(Decimal(repr(major_units)).normalize(), "f")


async def _once(
    client: httpx.AsyncClient, metrics_token: str, assets: tuple[str, ...]
) -> tuple[list[str], dict[str, float]]:
    """One round; returns the problems (empty: healthy) and the hot wallet's balances."""
    problems: list[str] = []
    try:
        ready = await client.get("/readyz")
        if ready.status_code != 200:
            problems.append(f"/readyz answered {ready.status_code}: {ready.text[:200]}")
        headers = {"Authorization": f"Bearer {metrics_token}"} if metrics_token else {}
        metrics = await client.get("/metrics", headers=headers)
    except httpx.HTTPError as exc:
        return [*problems, f"{type(exc).__name__}: {exc}"], {}
    if metrics.status_code != 200:
        problems.append(f"/metrics answered {metrics.status_code} (is METRICS_TOKEN right?)")
        return problems, {}
    balances = hot_wallet_balances(metrics.text)
    for asset in assets:
        if asset not in balances:
            problems.append(f"no hot wallet balance for {asset} in /metrics yet")
    return problems, balances


async def check(
    base_url: str,
    metrics_token: str,
    *,
    wait: float = 300.0,
    poll: float = 5.0,
    assets: tuple[str, ...] = ("TON",),
    transport: httpx.AsyncBaseTransport | None = None,
) -> HealthReport:
    """Poll until healthy or `wait` seconds passed."""
    deadline = time.monotonic() + wait
    async with httpx.AsyncClient(
        base_url=base_url.rstrip("/"), timeout=10.0, transport=transport
    ) as client:
        while True:
            problems, balances = await _once(client, metrics_token, assets)
            if not problems:
                return HealthReport(
                    True,
                    ["/readyz: ok"]
                    + [f"hot wallet {a}: {balance_text(balances[a])}" for a in sorted(balances)],
                )
            if time.monotonic() >= deadline:
                return HealthReport(False, problems)
            await asyncio.sleep(poll)
