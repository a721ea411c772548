"""RATE_SOURCE=dex on the local network: a TON/USDT pool's `get_pool_data` read on chain
gives the rate; a pool that cannot be read gives none, and the rate turns stale (the payouts
that need it are then held, as with the HTTP source: tests/payments/test_rate_holds.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select
from ton_core import Address
from tonutils.contracts import WalletV5R1

from tests.rails.ton.conftest import free_port
from tests.rails.ton.dex_pool import pool_state
from tests.rails.ton.rail_fixture import Rail, settled
from tonrail import clock
from tonrail.app import create_app
from tonrail.chain.network import resolve_network
from tonrail.db import Database
from tonrail.localnet.genesis import TON
from tonrail.monitoring.jobs import evaluate_once
from tonrail.monitoring.models import Alert
from tonrail.payments.service import PaymentService, ToncenterOnFirstUse
from tonrail.processing.rate_holds import release_rate_holds
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.rates import DexSource, Rates, SourceUnreadable, rate_source
from tonrail.settings import Settings

PAYEE = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"
TOKEN0 = Address("0:" + "11" * 32)
TOKEN1 = Address("0:" + "22" * 32)


async def deploy(rail: Rail, payer: WalletV5R1, seqno: int, reserve0: int, reserve1: int) -> str:
    state = pool_state(reserve0, reserve1, TOKEN0, TOKEN1)
    address = Address((0, state.serialize().hash))
    await payer.transfer(address, TON // 10, state_init=state, bounce=False)
    await settled(payer, seqno)
    for _ in range(600):
        status, _ = await rail.api.account_state(address.to_str())
        if status == "active":
            return address.to_str()
        await asyncio.sleep(0.05)
    raise AssertionError("the pool was not deployed")


def dex(
    settings: Settings, rail: Rail, pool: str, ton_reserve: int = 0, api_url: str = ""
) -> Settings:
    return settings.model_copy(
        update={
            "rate_source": "dex",
            "rate_dex_pool": pool,
            "rate_dex_ton_reserve": ton_reserve,
            "ton_network": "localnet",
            "ton_api_url": api_url or rail.net.v2,
            "ton_api_v3_url": rail.net.v3,
        }
    )


def toncenter(settings: Settings) -> ToncenterClient:
    """The TON rail's toncenter client for these settings, as the wiring builds it."""
    return ToncenterClient.from_network(resolve_network(settings), settings)


async def test_the_pools_reserves_give_the_rate_and_an_unreadable_pool_none(
    rail: Rail, payer: WalletV5R1, settings: Settings
) -> None:
    # 1,000,000 TON against 5,250,000.5 USDT: 5.2500005 USDT per TON, read exactly.
    pool = await deploy(rail, payer, 0, 1_000_000 * TON, 5_250_000_500_000)
    exit_code, stack = await rail.api.run_get_method(pool, "get_pool_data", [])
    assert exit_code == 0 and len(stack) == 10
    # Another get-method is not there: the contract answers only get_pool_data.
    assert (await rail.api.run_get_method(pool, "get_wallet_data", []))[0] == 11
    client = toncenter(dex(settings, rail, pool))
    source = rate_source(dex(settings, rail, pool), client)
    assert isinstance(source, DexSource)
    assert await source.fetch() == {"TON": Decimal("5.2500005"), "USD": Decimal("1.00")}
    with pytest.raises(ValueError, match="get-method reader"):
        rate_source(dex(settings, rail, pool))  # dex reads through the rail's client only
    # The pool orders its tokens its own way: USDT first.
    flipped = await deploy(rail, payer, 1, 5_000_000 * 10**6, 1_000_000 * TON)
    assert (await DexSource(dex(settings, rail, flipped, 1), client).fetch())["TON"] == Decimal(5)

    rates = Rates(dex(settings, rail, pool), get_methods=client)
    assert rates.fresh("TON") is None  # nothing read yet: payouts that need it are held
    assert await rates.refresh()
    rate = rates.fresh("TON")
    assert rate is not None and (rate.usdt_per_unit, rate.source) == (Decimal("5.2500005"), "dex")

    # Unreadable: an address with no contract, and a pool with an empty reserve.
    nowhere = Address("0:" + "ab" * 32).to_str()
    with pytest.raises(SourceUnreadable):
        await DexSource(dex(settings, rail, nowhere), client).fetch()
    empty = await deploy(rail, payer, 2, 0, 5 * 10**6)
    with pytest.raises(SourceUnreadable, match="empty reserve"):
        await DexSource(dex(settings, rail, empty), client).fetch()
    # The pool goes unreadable after a good read (here: the source now names no contract).
    broken = rates
    broken.source = DexSource(dex(settings, rail, nowhere), client)
    assert not await broken.refresh()
    assert broken.fresh("TON") == rate  # the last good rate is kept until it is stale ...
    later = clock.now() + timedelta(seconds=settings.rate_max_age_seconds + 1)
    clock.set_clock(lambda: later)
    try:
        assert broken.fresh("TON") is None  # ... then held, never guessed
    finally:
        clock.set_clock(None)
    assert raw(pool) != raw(nowhere)
    await client.aclose()


async def test_the_pool_is_read_through_the_next_toncenter_url_when_the_first_is_down(
    rail: Rail, payer: WalletV5R1, settings: Settings, db: Database
) -> None:
    """The rate source reads through the TON rail's toncenter client as the payment service
    wires it: TON_API_URL names a dead endpoint first, the client fails over to the live one
    (the source used to ask the first URL only, and had no rate)."""
    pool = await deploy(rail, payer, 0, 1_000_000 * TON, 5_250_000 * 10**6)
    dead = f"http://127.0.0.1:{free_port()}/api/v2"
    both = dex(settings, rail, pool, api_url=f"{dead},{rail.net.v2}")
    assert resolve_network(both).v2_urls == (dead, rail.net.v2)
    payments = PaymentService(db, both)
    rates = payments.rates
    assert isinstance(rates.source, DexSource)
    lazy = rates.source.reader
    assert isinstance(lazy, ToncenterOnFirstUse) and lazy.client is None  # not opened yet
    assert await rates.refresh()
    rate = rates.fresh("TON")
    assert rate is not None and rate.usdt_per_unit == Decimal("5.25")
    assert lazy.client is not None  # opened by the first read
    # The worker's TON rail hands its own client (processing/ton_runtime.py: open_ton_rail).
    async with toncenter(both) as rails_client:
        payments.read_pools_with(rails_client)
        assert isinstance(rates.source, DexSource) and rates.source.reader is rails_client
        assert payments.rates is rates and await rates.refresh()
    await lazy.client.aclose()
    # Only the dead one: a failed read after the client's retries, no rate.
    alone = PaymentService(
        db,
        dex(settings, rail, pool, api_url=dead).model_copy(
            update={"toncenter_max_attempts": 2, "toncenter_backoff_initial_seconds": 0.01}
        ),
    )
    assert not await alone.rates.refresh()
    assert alone.rates.fresh("TON") is None
    await alone.aclose()


async def test_the_api_closes_the_toncenter_client_its_rates_opened_when_it_stops(
    rail: Rail, payer: WalletV5R1, settings: Settings, db: Database
) -> None:
    """Review finding: the API process's rates open the TON rail's toncenter client at their
    first read of the pool (ToncenterOnFirstUse), and nothing closed it: its HTTP session
    outlived the app. The app's lifespan closes it when the app stops."""
    pool = await deploy(rail, payer, 0, 1_000_000 * TON, 5_250_000 * 10**6)
    app = create_app(dex(settings, rail, pool), db)
    async with app.router.lifespan_context(app):
        rates = app.state.payments.rates
        assert isinstance(rates.source, DexSource)
        lazy = rates.source.reader
        assert isinstance(lazy, ToncenterOnFirstUse)
        assert await rates.refresh()
        assert lazy.client is not None
        session = lazy.client._http  # the client's httpx session
        assert not session.is_closed
    assert session.is_closed


async def test_a_price_that_jumps_while_the_last_one_is_fresh_is_refused(
    rail: Rail, payer: WalletV5R1, settings: Settings
) -> None:
    """A spot price is what one swap moves: a read more than RATE_DEX_MAX_MOVE_PCT (10) from
    the last accepted fresh rate is refused like a failed read; once that rate is stale the
    next read is accepted (the payouts were held meanwhile, as for any failed read)."""
    at_525 = await deploy(rail, payer, 0, 1_000_000 * TON, 5_250_000 * 10**6)
    at_55 = await deploy(rail, payer, 1, 1_000_000 * TON, 5_500_000 * 10**6)
    at_10 = await deploy(rail, payer, 2, 1_000_000 * TON, 10_000_000 * 10**6)
    knobs = {"rate_refresh_seconds": 0, "rate_max_age_seconds": 60}
    async with toncenter(dex(settings, rail, at_525)) as client:
        rates = Rates(dex(settings, rail, at_525).model_copy(update=knobs), get_methods=client)
        assert await rates.refresh()
        rates.source = DexSource(dex(settings, rail, at_55), client)
        assert await rates.refresh()  # 4.8 %: a market move, accepted
        accepted = rates.rate("TON")
        assert accepted.usdt_per_unit == Decimal("5.5")
        rates.source = DexSource(dex(settings, rail, at_10), client)
        assert not await rates.refresh()  # 82 %: refused, the last rate kept
        assert rates.rate("TON") == accepted
        later = clock.now() + timedelta(seconds=61)
        clock.set_clock(lambda: later)
        try:
            assert rates.fresh("TON") is None  # stale: the payouts that need it are held
            assert await rates.refresh()  # nothing fresh to compare with: accepted
            assert rates.rate("TON").usdt_per_unit == Decimal(10)
        finally:
            clock.set_clock(None)
        off = dex(settings, rail, at_525).model_copy(update={**knobs, "rate_dex_max_move_pct": 0})
        unguarded = Rates(off, get_methods=client)
        assert await unguarded.refresh()
        unguarded.source = DexSource(dex(settings, rail, at_10), client)
        assert await unguarded.refresh()
        assert unguarded.rate("TON").usdt_per_unit == Decimal(10)


async def test_payouts_are_held_while_the_pool_cannot_be_read_and_valued_from_it_after(
    rail: Rail, payer: WalletV5R1, settings: Settings, db: Database, auth: dict[str, str]
) -> None:
    """The same hold and alert as the HTTP source's (tests/payments/test_rate_holds.py): the
    API's rates name a pool that is not there, so a TON payout is held (`rate_stale`) and the
    alert opens; the worker's rates read the real pool and value it at the pool's price."""
    pool = await deploy(rail, payer, 0, 1_000_000 * TON, 5_250_000 * 10**6)
    nowhere = Address("0:" + "ab" * 32).to_str()
    knobs = {"rate_refresh_seconds": 0, "rate_max_age_seconds": 60}
    down = dex(settings, rail, nowhere).model_copy(update=knobs)
    up = dex(settings, rail, pool).model_copy(update=knobs)
    transport = httpx.ASGITransport(app=create_app(down, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as api:
        r = await api.post(
            "/v1/payouts",
            json={"amount": "10", "asset": "TON", "destination": PAYEE},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        held = r.json()
        assert (held["status"], held["hold_reason"]) == ("queued", "rate_stale")
        assert Decimal(held["usdt_equivalent"]) == 0
        assert await _alert(db, down) == "open"
        assert await release_rate_holds(db, PaymentService(db, down)) == 0  # still unreadable
        assert await release_rate_holds(db, PaymentService(db, up)) == 1
        valued = (await api.get(f"/v1/payouts/{held['id']}", headers=auth)).json()
    assert (valued["status"], valued["hold_reason"]) == ("queued", None)
    assert Decimal(valued["usdt_equivalent"]) == Decimal("52.5")  # 10 TON at 5.25
    assert await _alert(db, up) == "resolved"


async def _alert(db: Database, settings: Settings) -> str | None:
    await evaluate_once(db, settings, {})
    async with db.transaction() as session:
        stmt = select(Alert.status).where(Alert.dedup_key == "rate_stale")
        return (await session.execute(stmt)).scalar_one_or_none()
