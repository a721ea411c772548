"""The TON rail's quote for the router: available or not, and a fee from recent history."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from tonrail import clock
from tonrail.db import Database
from tonrail.rails.base import PaymentView, Quote
from tonrail.rails.ton.models import TonTransfer

# Until there is history, a fee at the high end of what a batched transfer costs here.
DEFAULT_FEE_NANOTON = {"TON": 10_000_000, "USDT": 60_000_000}


async def recent_fees(db: Database, history: timedelta = timedelta(hours=1)) -> dict[str, int]:
    """Average fee per confirmed payout by asset over `history`, defaults where none."""
    since = clock.now() - history
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(TonTransfer.asset, func.avg(TonTransfer.fee))
                .where(TonTransfer.status == "confirmed", TonTransfer.updated_at >= since)
                .group_by(TonTransfer.asset)
            )
        ).all()
    return {**DEFAULT_FEE_NANOTON, **{asset: int(avg) for asset, avg in rows if avg is not None}}


class TonQuoter:
    """`quote` of the Rail protocol for TON (the payout loop itself is payouts.py).

    Built with fees read beforehand, so quoting never opens a second database transaction
    inside the caller's (SQLite allows one writer)."""

    name = "ton"

    def __init__(self, fees: dict[str, int], usdt_enabled: bool):
        self.fees = fees
        self.usdt_enabled = usdt_enabled

    async def quote(self, payment: PaymentView) -> Quote:
        if payment.asset not in ("TON", "USDT"):
            return Quote("ton", 0, "TON", 0, False, "asset_not_on_ton")
        if payment.asset == "USDT" and not self.usdt_enabled:
            return Quote("ton", 0, "TON", 0, False, "usdt_not_configured")
        fee = self.fees.get(payment.asset, DEFAULT_FEE_NANOTON[payment.asset])
        return Quote("ton", fee, "TON", payment.target_confirmation_seconds, True)
