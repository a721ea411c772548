"""The network sampler against the real local network, healthy, congested and failing."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from tests.rails.ton.rail_fixture import Rail
from tonrail.db import Database
from tonrail.fees.models import FeeSample
from tonrail.fees.sampler import ApiTally, Sampler
from tonrail.monitoring import signals
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.settings import Settings


def sampler_for(rail: Rail, db: Database, settings: Settings, **changes: object) -> Sampler:
    tally = ApiTally()
    client = ToncenterClient(
        [rail.net.v2],
        [rail.net.v3],
        max_attempts=2,
        backoff_initial=0.01,
        backoff_max=0.02,
        on_error=tally.on_error,
        on_call=tally.on_call,
    )
    fast = settings.model_copy(update=changes)
    return Sampler(db, fast, client, tally, rail.ctx.wallet, rail.ctx.jetton_wallet)


async def faults(rail: Rail, **values: object) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{rail.net.url}/localnet/faults", json=values)
        assert r.status_code == 200, r.text


async def test_a_healthy_network_sample(rail: Rail, db: Database, settings: Settings) -> None:
    sampler = sampler_for(rail, db, settings)
    try:
        first = await sampler.sample()
        assert first.config is not None and first.config_hash is not None
        gas = first.config["21"]
        assert gas["gas_price"] > 0 and gas["flat_gas_limit"] > 0
        assert first.config["24"]["lump_price"] > 0 and first.config["25"]["bit_price"] > 0
        assert first.fee_ton_single is not None and first.fee_ton_single > 0
        assert first.fee_usdt_single is not None and first.fee_usdt_single > 0
        # a bigger request costs more, but far less than 10 requests of one
        assert first.fee_ton_batch is not None
        assert first.fee_ton_single < first.fee_ton_batch < 10 * first.fee_ton_single
        assert first.queue_size == 0
        assert first.api_calls > 0 and first.api_errors == 0
        # no payout of ours went out yet: latency is unknown, and says so
        assert first.latency_ms is None and "latency_ms" in first.unavailable
        assert first.congestion_bp == 0
        second = await sampler.sample()  # the config is fresh: not re-read, not stored again
        assert second.config is None and second.config_hash is None
        gauges, _, _ = signals.take_buffer()
        assert gauges[("congestion_bp", "")] == 0
    finally:
        await sampler.aclose()


async def test_congestion_rises_with_inclusion_delay(
    rail: Rail,
    db: Database,
    settings: Settings,
    client: httpx.AsyncClient,
    auth: dict[str, str],
) -> None:
    sampler = sampler_for(rail, db, settings, fees_latency_ok_ms=500, fees_latency_full_ms=3_000)
    try:
        calm = await sampler.sample()
        await faults(rail, max_tx_per_block=1, inclusion_delay_ms=2000)
        payee = rail.net.genesis.wallet("customer").address.to_str(is_bounceable=False)
        ids = []
        for amount in ("0.5", "0.25"):
            r = await client.post(
                "/v1/payouts",
                json={"amount": amount, "asset": "TON", "destination": payee},
                headers=auth,
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        await rail.run_until_final(ids, client, auth)
        congested = await sampler.sample()
        # an external cannot be included before the injected delay has passed
        assert congested.latency_ms is not None and congested.latency_ms >= 2000
        assert congested.latency_count >= 1
        assert congested.congestion_raw_bp is not None and congested.congestion_raw_bp > 0
        assert calm.congestion_bp is not None and congested.congestion_bp is not None
        assert congested.congestion_bp > calm.congestion_bp
    finally:
        await sampler.aclose()


async def test_the_sampler_survives_toncenter_errors(
    rail: Rail, db: Database, settings: Settings
) -> None:
    sampler = sampler_for(rail, db, settings)
    try:
        await faults(rail, http_5xx_rate=1.0)
        down = await sampler.sample()
        assert down.api_calls > 0 and down.api_errors == down.api_calls
        assert down.fee_ton_single is None and down.queue_size is None and down.config is None
        assert down.unavailable["queue_size"] == "server_error"
        # nothing else known: the error share alone, weighted 0.5
        assert down.congestion_raw_bp == 5_000
        await faults(rail, http_5xx_rate=0.5, seed=7)
        flaky = await sampler.sample()
        assert flaky.api_errors > 0
        await faults(rail, http_5xx_rate=0.0)
        healthy = await sampler.sample()
        assert healthy.api_errors == 0 and healthy.fee_ton_single is not None
        async with db.transaction() as session:
            stored = await session.scalar(select(func.count()).select_from(FeeSample))
        assert stored == 3
    finally:
        await sampler.aclose()
