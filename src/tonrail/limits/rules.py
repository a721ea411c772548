"""Pure limit rules: amount range per asset, approval need and approval satisfaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tonrail.errors import AmountOutOfRange
from tonrail.money import format_minor


# The operator's API limits per asset, not the network's range (chain.network.AmountRange):
# plain frozen dataclasses, alike others in shape only.
@dataclass(frozen=True, slots=True)
class AssetLimits:
    minimum: int
    maximum: int


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    per_asset: dict[str, AssetLimits]
    approval_threshold_usdt: int
    approvals_required: int
    daily_volume_limit_usdt: int


def check_amount(policy: LimitPolicy, asset: str, amount: int) -> None:
    """Raise AmountOutOfRange unless min <= amount <= max for the asset."""
    limits = policy.per_asset.get(asset)
    if limits is None:
        return
    if amount < limits.minimum:
        raise AmountOutOfRange(
            f"amount is below the {asset} minimum of {format_minor(limits.minimum, asset)}",
            param="amount",
            code="amount_too_small",
        )
    if amount > limits.maximum:
        raise AmountOutOfRange(
            f"amount is above the {asset} maximum of {format_minor(limits.maximum, asset)}",
            param="amount",
            code="amount_too_large",
        )


def needs_approval(policy: LimitPolicy, usdt_equivalent: int) -> bool:
    """Payouts strictly above the threshold wait for approvers."""
    return usdt_equivalent > policy.approval_threshold_usdt


def approvals_satisfied(policy: LimitPolicy, requester: str, approvers: Iterable[str]) -> bool:
    """Enough distinct approvers, none of them the requester."""
    distinct = {a for a in approvers if a != requester}
    return len(distinct) >= policy.approvals_required


def fits_daily_volume(policy: LimitPolicy, used_usdt: int, usdt_equivalent: int) -> bool:
    return used_usdt + usdt_equivalent <= policy.daily_volume_limit_usdt
