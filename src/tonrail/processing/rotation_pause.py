"""The pause a hot wallet rotation puts on the wallet it retires (processing/wallet_rotation.py),
as the payout loop and reconciliation ask it, without importing the rotation itself."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.rails.ton.models import TonQueryCounter, TonWalletRotation
from tonrail.rails.ton.states import OLD_WALLET_PAUSED_STATES


async def signing_paused(session: AsyncSession, wallet_raw: str) -> TonWalletRotation | None:
    """The rotation that stops `wallet_raw` from signing (paused, or retired by a switch),
    or None."""
    return (
        await session.execute(
            select(TonWalletRotation)
            .where(
                TonWalletRotation.old_wallet == wallet_raw.upper(),
                TonWalletRotation.state.in_(OLD_WALLET_PAUSED_STATES),
            )
            .order_by(TonWalletRotation.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def lock_query_counter(session: AsyncSession, wallet_raw: str) -> None:
    """Lock the wallet's query counter row, which every request signed for the wallet takes
    (processing/ton_loop.py: `next_query_seq`) before it checks `signing_paused`."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(TonQueryCounter)
        .values(wallet=wallet_raw, next_seq=0)
        .on_conflict_do_nothing(index_elements=["wallet"])
    )
    await session.execute(
        select(TonQueryCounter.wallet).where(TonQueryCounter.wallet == wallet_raw).with_for_update()
    )
