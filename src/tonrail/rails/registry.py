"""Building the backup rails and the routing policy from settings (one place for the loop)."""

from __future__ import annotations

from typing import Any, Protocol

from tonrail.rails.backup import ProviderEventIn
from tonrail.rails.base import AttemptView, PaymentView, PollResult, Quote, RailName, SubmitResult
from tonrail.rails.pricing import RailRates, RateFeed
from tonrail.rails.router import BACKUP_RAILS, BreakerPolicy, RoutingPolicy
from tonrail.rates import fixed_rates
from tonrail.settings import Settings


class BackupRail(Protocol):
    """`tonrail.rails.base.Rail` plus webhook verification (bank: statement import instead)."""

    name: Any

    async def quote(self, payment: PaymentView) -> Quote: ...
    async def prepare(self, payment: PaymentView, attempt: AttemptView) -> dict[str, Any]: ...
    async def submit(self, payment: PaymentView, attempt: AttemptView) -> SubmitResult: ...
    async def poll(self, payment: PaymentView, attempt: AttemptView) -> PollResult: ...
    async def verify_webhook(self, body: bytes, headers: dict[str, str]) -> ProviderEventIn: ...


def rail_rates(settings: Settings) -> RateFeed:
    return RailRates(fixed_rates(settings), settings.rate_eur_usdt)


def configured_backup_rails(settings: Settings) -> tuple[RailName, ...]:
    """Rails listed in BACKUP_RAILS whose credentials are set, in the listed order."""
    wanted = [r.strip() for r in settings.backup_rails.split(",") if r.strip()]
    unknown = set(wanted) - set(BACKUP_RAILS)
    if unknown:
        raise ValueError(f"BACKUP_RAILS names unknown rails: {sorted(unknown)}")
    ready = {
        "stripe": bool(settings.stripe_secret_key.get_secret_value()),
        "paypal": bool(
            settings.paypal_client_id and settings.paypal_client_secret.get_secret_value()
        ),
        "bank": bool(settings.bank_account_iban and settings.bank_account_name),
    }
    return tuple(r for r in dict.fromkeys(wanted) if ready[r])  # type: ignore[misc]


def enabled_rails(settings: Settings) -> frozenset[RailName]:
    """TON plus every configured backup rail: what `RouteContext.enabled` should hold."""
    return frozenset({"ton", *configured_backup_rails(settings)})


def build_backup_rails(settings: Settings, rates: RateFeed | None = None) -> dict[str, BackupRail]:
    """The configured backup rails by name, each speaking the rail protocol."""
    from tonrail.rails.bank.rail import BankRail
    from tonrail.rails.paypal.rail import PayPalRail
    from tonrail.rails.stripe.rail import StripeRail, stripe_client

    rates = rates or rail_rates(settings)
    rails: dict[str, BackupRail] = {}
    for name in configured_backup_rails(settings):
        if name == "stripe":
            rails[name] = StripeRail(settings, rates, stripe_client(settings))
        elif name == "paypal":
            rails[name] = PayPalRail(settings, rates)
        else:
            rails[name] = BankRail(settings, rates)
    return rails


def routing_policy(settings: Settings) -> RoutingPolicy:
    order = [r.strip() for r in settings.backup_rails.split(",") if r.strip() in BACKUP_RAILS]
    return RoutingPolicy(
        backup_order=tuple(order),  # type: ignore[arg-type]
        congestion_pct={
            "urgent": settings.route_congestion_urgent_pct,
            "normal": settings.route_congestion_normal_pct,
            "low": settings.route_congestion_low_pct,
        },
        breaker=BreakerPolicy(settings.circuit_failure_threshold, settings.circuit_open_seconds),
    )
