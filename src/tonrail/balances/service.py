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
    return (await all_balances(session, account_id)).get(account_id, [])


async def all_balances(
    session: AsyncSession, account_id: str | None = None
) -> dict[str, list[AssetBalance]]:
    """Balances of every account (or of `account_id`), by account and asset, sorted."""
    held = select(AccountBalance.account_id, AccountBalance.asset, AccountBalance.available)
    moving = (
        select(Payment.account_id, Payment.asset, Payment.direction, func.sum(Payment.amount))
        .where(Payment.status.in_(MOVING))
        .group_by(Payment.account_id, Payment.asset, Payment.direction)
    )
    if account_id is not None:
        held = held.where(AccountBalance.account_id == account_id)
        moving = moving.where(Payment.account_id == account_id)
    amounts: dict[tuple[str, str], list[int]] = {}
    for account, asset, available in (await session.execute(held)).all():
        amounts.setdefault((account, asset), [0, 0, 0])[0] = int(available)
    for account, asset, direction, total in (await session.execute(moving)).all():
        amounts.setdefault((account, asset), [0, 0, 0])[1 if direction == "out" else 2] = int(total)
    found: dict[str, list[AssetBalance]] = {}
    for (account, asset), (available, pending, incoming) in sorted(amounts.items()):
        found.setdefault(account, []).append(AssetBalance(asset, available, pending, incoming))
    return found


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
