"""What the TON payout loops share: their context and their transactions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.chain.network import GasCaps, TonNetwork, resolve_network
from tonrail.db import Database
from tonrail.payments.models import Attempt
from tonrail.payments.service import PaymentService
from tonrail.rails.base import RailName
from tonrail.rails.router import (
    RoutingPolicy,
)
from tonrail.rails.ton.api import TonApi
from tonrail.rails.ton.chain_view import Tx, raw
from tonrail.rails.ton.feed import OwnFeeds
from tonrail.rails.ton.highload import (
    HighloadWallet,
)
from tonrail.rails.ton.models import TonTransfer
from tonrail.rails.ton.rail import HighloadRail
from tonrail.settings import Settings

log = structlog.get_logger(__name__)


FOLLOW_CONCURRENCY = 32  # transfers followed at once (all requests together)


@dataclass
class TonRailContext:
    """What the TON payout loops need; built once per worker."""

    db: Database
    settings: Settings
    payments: PaymentService
    api: TonApi
    wallet: HighloadWallet
    sign: Callable[[bytes], bytes]
    jetton_wallet: str | None  # raw address of our USDT jetton wallet, when USDT is enabled
    worker_id: str
    # Routing (dispatch.py): the backup rails a payout may fall back to, and how.
    backup: Mapping[str, Any] = field(default_factory=dict)
    routing: RoutingPolicy = field(default_factory=RoutingPolicy)
    enabled: frozenset[RailName] = frozenset({"ton"})
    # False: no fee optimizer; every claimed payout goes at once with the configured jetton
    # attach (plain batching: the fee benchmark's baselines).
    fee_optimizer: bool = True
    # request id -> monotonic time before which the tracker leaves it alone (in flight)
    track_after: dict[str, float] = field(default_factory=dict)
    # request id -> transactions of its trace found so far, by in-message hash: a found
    # transaction never changes, so later rounds only ask for the hops still missing
    found: dict[str, dict[str, Tx]] = field(default_factory=dict)
    # chain reads in flight at once, over all requests being followed (FOLLOW_CONCURRENCY)
    follow_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(FOLLOW_CONCURRENCY)
    )
    # SQLite: this worker's transactions take turns here, first come first served, instead
    # of racing for the write lock in SQLite's busy handler (which is not fair).
    db_turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    # our own accounts (hot wallet, USDT jetton wallet) read as feeds: feed.py
    own_feeds: OwnFeeds | None = None
    # request id -> internal transfer hash -> since when its excess is awaited (monotonic)
    excess_waits: dict[str, dict[str, float]] = field(default_factory=dict)

    # hot wallets retired by a rotation -> their USDT jetton wallets (deposits.py)
    retired_jetton_wallets: dict[str, str | None] = field(default_factory=dict)
    # the hot wallets retired by switched rotations as deposits.py last read them, and when:
    # (the wallet this worker signed with then, monotonic time)
    retired_wallets: tuple[str, ...] = ()
    retired_wallets_read: tuple[str, float] | None = None
    # the rotation whose new key this worker could not adopt (logged once)
    rotation_refused: str | None = None
    # True until a round of this worker has read the chain (and after one that could not):
    # the next round proves the chain readable before it closes the breaker of `ton`
    ton_failing: bool = True
    _network: tuple[Settings, TonNetwork] | None = field(default=None, init=False, repr=False)

    def feeds(self) -> OwnFeeds:
        if self.own_feeds is None:
            mine = {self.wallet_raw, *([self.jetton_wallet] if self.jetton_wallet else [])}
            self.own_feeds = OwnFeeds(frozenset(a.upper() for a in mine))
        return self.own_feeds

    @property
    def network(self) -> TonNetwork:
        """The network as configured, resolved once per `settings` object."""
        if self._network is None or self._network[0] is not self.settings:
            self._network = (self.settings, resolve_network(self.settings))
        return self._network[1]

    @property
    def gas_caps(self) -> GasCaps:
        """The network's gas caps (TON_GAS_CAP_*)."""
        return self.network.gas_caps

    @property
    def rail(self) -> HighloadRail:
        """The TON adapter for payouts (rails/ton/rail.py), on this context's wallet."""
        return HighloadRail(
            self.wallet,
            self.sign,
            self.api,
            self.jetton_wallet,
            self.settings.ton_jetton_forward_nanoton,
        )

    @property
    def confirmation_timeout_s(self) -> int:
        """TON_CONFIRMATION_TIMEOUT_SECONDS, else the network preset's: a payout sent this
        long ago and not confirmed becomes `unknown` (outcomes.py: `mark_overdue`)."""
        return self.network.confirmation_timeout_seconds

    @property
    def wallet_raw(self) -> str:
        return raw(self.wallet.address)


@asynccontextmanager
async def transaction(ctx: TonRailContext) -> AsyncIterator[AsyncSession]:
    """`ctx.db.transaction()`, queued behind this worker's other transactions on SQLite."""
    if ctx.db.dialect != "sqlite":
        async with ctx.db.transaction() as session:
            yield session
        return
    async with ctx.db_turn, ctx.db.transaction() as session:
        yield session


async def request_attempts(session: AsyncSession, request_id: str) -> Sequence[Attempt]:
    stmt = (
        select(Attempt)
        .join(TonTransfer, TonTransfer.attempt_id == Attempt.id)
        .where(TonTransfer.request_id == request_id)
        .order_by(TonTransfer.position)
    )
    return (await session.execute(stmt)).scalars().all()


async def request_transfers(session: AsyncSession, request_id: str) -> Sequence[TonTransfer]:
    """The transfers of a request, in their order in the request."""
    stmt = (
        select(TonTransfer)
        .where(TonTransfer.request_id == request_id)
        .order_by(TonTransfer.position)
    )
    return (await session.execute(stmt)).scalars().all()
