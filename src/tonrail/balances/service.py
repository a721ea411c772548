"""Reading an account's balances, and operator top-ups (audited)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.errors import InvalidRequest
from tonrail.ledger import rules as books
from tonrail.ledger.models import AccountBalance
from tonrail.ledger.service import post
from tonrail.money import decimals_of, format_minor, parse_minor
from tonrail.payments.models import Payment
from tonrail.payments.states import PaymentStatus
from tonrail.security import audit_log

# A payout in these states holds its amount (reserved, not yet sent or given back); an
# invoice in them is asked for or being paid, not yet credited.
MOVING = (
    PaymentStatus.REQUIRES_APPROVAL,
    PaymentStatus.QUEUED,
    PaymentStatus.PROCESSING,
    PaymentStatus.AWAITING_PAYMENT,
)


@dataclass(frozen=True, slots=True)
class AssetBalance:
    """One asset of an account: `available` to pay out, `pending` held by payouts not yet
    settled, `incoming` asked for by invoices not yet paid (minor units)."""

    asset: str
    available: int
    pending: int
    incoming: int


async def balances_of(session: AsyncSession, account_id: str) -> list[AssetBalance]:
    """Every asset the account has a balance, a payout or an invoice in, by asset."""
    available = dict(
        (
            await session.execute(
                select(AccountBalance.asset, AccountBalance.available).where(
                    AccountBalance.account_id == account_id
                )
            )
        ).all()
    )
    moving = (
        await session.execute(
            select(Payment.direction, Payment.asset, func.sum(Payment.amount))
            .where(
                Payment.account_id == account_id,
                Payment.status.in_(MOVING),
            )
            .group_by(Payment.direction, Payment.asset)
        )
    ).all()
    pending = {asset: int(total) for direction, asset, total in moving if direction == "out"}
    incoming: dict[str, int] = {}
    for direction, asset, total in moving:
        if direction == "in":
            incoming[asset] = int(total)
    assets = sorted({*available, *pending, *incoming})
    return [
        AssetBalance(a, int(available.get(a, 0)), pending.get(a, 0), incoming.get(a, 0))
        for a in assets
    ]


async def top_up(
    session: AsyncSession, account_id: str, amount: str, asset: str, reason: str, actor: str
) -> int:
    """Credit `amount` of `asset` to the account's balance, with the operator's reason in
    the audit log (same transaction). Returns the new available balance."""
    account_id = account_id.strip()
    if not account_id.startswith("acct_") or len(account_id) > 64:
        raise InvalidRequest(
            "account must be an acct_... id", param="account", code="account_invalid"
        )
    if not reason.strip():
        raise InvalidRequest("a top-up needs a reason", param="reason", code="reason_required")
    decimals_of(asset)
    minor = parse_minor(amount, asset)
    if minor <= 0:
        raise InvalidRequest(
            "amount must be greater than zero", param="amount", code="amount_invalid"
        )
    await post(session, "account.top_up", books.top_up(account_id, asset, minor))
    left = int(
        await session.scalar(
            select(AccountBalance.available).where(
                AccountBalance.account_id == account_id, AccountBalance.asset == asset
            )
        )
        or 0
    )
    await audit_log.record(
        session,
        actor,
        "account.top_up",
        account_id,
        {
            "asset": asset,
            "amount": format_minor(minor, asset),
            "reason": reason.strip(),
            "available": format_minor(left, asset),
        },
    )
    return left
