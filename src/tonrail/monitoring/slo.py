"""The service objectives of the deployment guide, measured: pure arithmetic.

- success rate: payments that finished in the range, succeeded / (succeeded + failed),
  against SLO_SUCCESS_TARGET_PCT (99 %);
- confirmation time: the share of payouts that succeeded in the range whose created ->
  confirmed took at most SLO_CONFIRMATION_SECONDS (60 s), against
  SLO_CONFIRMATION_TARGET_PCT (95 %);
- API latency: the 99th percentile of /v1 requests (counted per latency bucket and minute
  in `monitoring_minutes`), against SLO_API_P99_MS (200 ms);
- uptime: the minutes in which /readyz answered ok, of the minutes since the first probe
  in the range, against SLO_UPTIME_TARGET_PCT (99.9 %).

The success objective also has an error budget: failures may be (100 - target) % of the
finished payments. Its burn rate is the failure share divided by that allowance (1 = the
budget lasts exactly the period; 14.4 over an hour spends 2 % of a 30-day budget). The
`slo_burn` rule (rules.py) pages when both a long and a short window burn fast, the
multi-window rule of Google's SRE workbook: 14.4 over 1 h and 5 min (critical), 6 over 6 h
and 30 min (warning); the short window makes it resolve soon after the burning stops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tonrail.settings import Settings

# (long window s, short window s, burn rate, severity): the SRE workbook's pairs.
BURN_WINDOWS: tuple[tuple[int, int, float, Literal["critical", "warning"]], ...] = (
    (3600, 300, 14.4, "critical"),
    (21_600, 1800, 6.0, "warning"),
)


@dataclass(frozen=True, slots=True)
class Targets:
    success_pct: float
    confirmation_seconds: int
    confirmation_pct: float
    api_p99_ms: int
    uptime_pct: float

    @classmethod
    def of(cls, s: Settings) -> Targets:
        return cls(
            s.slo_success_target_pct,
            s.slo_confirmation_seconds,
            s.slo_confirmation_target_pct,
            s.slo_api_p99_ms,
            s.slo_uptime_target_pct,
        )


@dataclass(frozen=True, slots=True)
class Objective:
    """One objective over a range: what was measured, against what."""

    key: Literal["success_rate", "confirmation", "api_latency", "uptime"]
    label: str
    value: float | None  # None: nothing to measure in the range
    target: float
    unit: Literal["%", "ms"]
    detail: str

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.target if self.unit == "ms" else self.value >= self.target


def burn_rate(failed: int, total: int, target_pct: float) -> float | None:
    """How fast failures spend the error budget: failure share / allowed share."""
    if total <= 0:
        return None
    return (failed / total) / ((100 - target_pct) / 100)


def bucket_quantile(counts: Mapping[str, int], q: float) -> float | None:
    """The upper bound of the latency bucket holding the q-quantile (nearest rank), from
    counts per bucket `le` ("5", "10", ..., "+Inf"); inf when it is the open bucket."""
    n = sum(counts.values())
    if n <= 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for le in sorted(counts, key=lambda b: math.inf if b == "+Inf" else float(b)):
        seen += counts[le]
        if seen >= rank:
            return math.inf if le == "+Inf" else float(le)
    return math.inf  # unreachable: the counts sum to n


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 3) if whole else None


def success_objective(succeeded: int, failed: int, t: Targets) -> Objective:
    total = succeeded + failed
    burn = burn_rate(failed, total, t.success_pct)
    budget = "" if burn is None else f"; error budget burn rate {burn:.2f}"
    return Objective(
        "success_rate",
        "Success rate",
        _pct(succeeded, total),
        t.success_pct,
        "%",
        f"{failed} failed of {total} finished{budget}",
    )


def confirmation_objective(within: int, confirmed: int, t: Targets) -> Objective:
    return Objective(
        "confirmation",
        f"Payouts confirmed within {t.confirmation_seconds} s",
        _pct(within, confirmed),
        t.confirmation_pct,
        "%",
        f"{within} of {confirmed} succeeded payouts",
    )


def latency_objective(counts: Mapping[str, int], t: Targets) -> Objective:
    p99 = bucket_quantile(counts, 0.99)
    n = sum(counts.values())
    shown = None if p99 is None else p99
    detail = f"{n} /v1 requests; p99 is the bucket bound that holds it"
    if p99 is not None and math.isinf(p99):
        detail = f"{n} /v1 requests; p99 above the largest bucket"
    return Objective("api_latency", "API p99 latency", shown, t.api_p99_ms, "ms", detail)


def uptime_objective(minutes_up: int, minutes_watched: int, t: Targets) -> Objective:
    if minutes_watched <= 0:
        detail = "no /readyz probe in the range (the load balancer's health check sends them)"
    else:
        detail = f"/readyz ok in {minutes_up} of {minutes_watched} minutes"
    return Objective(
        "uptime", "Uptime", _pct(minutes_up, minutes_watched), t.uptime_pct, "%", detail
    )
