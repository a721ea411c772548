"""The network sampler: one look at TON per call, stored in `fee_samples`.

Each sample records config params 20/21/24/25 (re-read every FEES_CONFIG_REFRESH_SECONDS,
stored when their hash changes), the inclusion latency of our own recent requests, the
outbound message queue, toncenter errors and 429s seen while sampling, and the exact fee
(`estimateFee`) of representative hot-wallet requests: one TON transfer, one USDT transfer,
a batch of FEES_PROBE_BATCH_SIZE TON transfers. A signal that could not be read is stored as
None with the reason in `unavailable`; nothing is invented. From the signals it computes the
congestion estimate (fees/policy.py) and feeds `monitoring.signals.set_congestion`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from ton_core import Address, Cell, MessageAny

from tonrail import clock
from tonrail.chain.network import TonNetwork, resolve_network
from tonrail.db import Database
from tonrail.fees import repository as repo
from tonrail.fees.models import FeeSample
from tonrail.fees.policy import (
    CongestionScale,
    CongestionSignals,
    percentile,
    raw_congestion,
    smooth_congestion,
)
from tonrail.ids import new_id
from tonrail.monitoring import signals
from tonrail.rails.ton.highload import (
    QUERY_ID_SPACE,
    HighloadWallet,
    OutTransfer,
    jetton_transfer,
    query_id_for,
    sign_request,
    ton_transfer,
)
from tonrail.rails.ton.toncenter import ToncenterClient, ToncenterError
from tonrail.settings import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")
CONFIG_PARAMS = (20, 21, 24, 25)
# Representative probes use the last query_id of the space: a real request reaches it only
# after 8.4 million requests, and estimateFee never executes anything for good anyway.
PROBE_QUERY_ID = query_id_for(QUERY_ID_SPACE - 1)
PROBE_COMMENT = "pay_" + "0" * 26  # the size of a real payout comment (our payment id)
GAS_PRICE_UNIT = 1 << 16  # config prices are in 1/65536 nanoton


# ------------------------------------------------------------------ config params
def parse_gas_prices(cell: Cell) -> dict[str, int]:
    """GasLimitsPrices (params 20/21), prices as stored (1/65536 nanoton per gas)."""
    s = cell.begin_parse()
    out: dict[str, int] = {}
    tag = s.load_uint(8)
    if tag == 0xD1:  # gas_flat_pfx
        out["flat_gas_limit"] = s.load_uint(64)
        out["flat_gas_price"] = s.load_uint(64)
        tag = s.load_uint(8)
    if tag not in (0xDD, 0xDE):
        raise ValueError(f"unknown GasLimitsPrices tag {tag:#x}")
    out["gas_price"] = s.load_uint(64)
    out["gas_limit"] = s.load_uint(64)
    if tag == 0xDE:
        out["special_gas_limit"] = s.load_uint(64)
    for name in ("gas_credit", "block_gas_limit", "freeze_due_limit", "delete_due_limit"):
        out[name] = s.load_uint(64)
    return out


def parse_msg_prices(cell: Cell) -> dict[str, int]:
    """MsgForwardPrices (params 24/25)."""
    s = cell.begin_parse()
    tag = s.load_uint(8)
    if tag != 0xEA:
        raise ValueError(f"unknown MsgForwardPrices tag {tag:#x}")
    return {
        "lump_price": s.load_uint(64),
        "bit_price": s.load_uint(64),
        "cell_price": s.load_uint(64),
        "ihr_price_factor": s.load_uint(32),
        "first_frac": s.load_uint(16),
        "next_frac": s.load_uint(16),
    }


def parse_param(param: int, boc_b64: str) -> dict[str, int]:
    cell = Cell.one_from_boc(base64.b64decode(boc_b64))
    return parse_gas_prices(cell) if param in (20, 21) else parse_msg_prices(cell)


# ------------------------------------------------------------------ toncenter calls
@dataclass
class ApiTally:
    """Toncenter tries seen by the sampler's client: every failed try (retries included)
    through `on_error`, every successful call through `on_call`."""

    calls: int = 0
    errors: int = 0
    rate_limited: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def on_error(self, endpoint: str, kind: str) -> None:
        self.calls += 1
        self.errors += 1
        self.rate_limited += kind == "rate_limited"
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def on_call(self, method: str, ok: bool, kind: str) -> None:
        if ok:
            self.calls += 1
        signals.record_toncenter_call(method, ok, kind)

    def reset(self) -> None:
        self.calls = self.errors = self.rate_limited = 0
        self.kinds = {}


@dataclass(eq=False)
class Sampler:
    """The sampler's own toncenter client (so its error counts are its own), the hot wallet
    it prices requests for, and the settings. One per worker; `sample` is one look."""

    # Typed fields: alike other dataclasses in shape only.
    db: Database
    settings: Settings
    client: ToncenterClient
    tally: ApiTally
    wallet: HighloadWallet | None = None
    jetton_wallet: str | None = None

    @classmethod
    def for_network(
        cls,
        db: Database,
        settings: Settings,
        network: TonNetwork,
        wallet: HighloadWallet | None = None,
        jetton_wallet: str | None = None,
        **client_overrides: Any,
    ) -> Sampler:
        tally = ApiTally()
        client = ToncenterClient.from_network(
            network, settings, on_error=tally.on_error, on_call=tally.on_call, **client_overrides
        )
        return cls(db, settings, client, tally, wallet, jetton_wallet)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _try(
        self, name: str, call: Callable[[], Awaitable[T]], unavailable: dict[str, Any]
    ) -> T | None:
        try:
            return await call()
        except ToncenterError as exc:
            unavailable[name] = exc.kind
        except (ValueError, KeyError, TypeError) as exc:
            unavailable[name] = f"unreadable: {str(exc)[:120]}"
        return None

    # -------------------------------------------------------------- the parts
    async def _config(
        self, previous: FeeSample | None, now: datetime, unavailable: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any] | None]:
        """(hash, parsed params) when re-read and changed; (hash, None) when unchanged."""
        fresh = previous is not None and now - previous.sampled_at < timedelta(
            seconds=self.settings.fees_config_refresh_seconds
        )
        if fresh:
            return None, None
        bocs: dict[int, str] = {}
        for param in CONFIG_PARAMS:

            async def read(p: int = param) -> str:
                return await self.client.get_config_param(p)

            boc = await self._try(f"config_param_{param}", read, unavailable)
            if boc is None:
                return None, None  # a partial read is not a config: try again next time
            bocs[param] = boc
        digest = hashlib.sha256("".join(bocs[p] for p in CONFIG_PARAMS).encode()).hexdigest()
        if previous is not None and previous.config_hash == digest:
            return digest, None
        try:
            parsed: dict[str, dict[str, Any]] = {
                str(p): {**parse_param(p, bocs[p]), "boc": bocs[p]} for p in CONFIG_PARAMS
            }
        except ValueError as exc:
            unavailable["config_params"] = f"unreadable: {exc}"
            return None, None
        gas = int(parsed["21"]["gas_price"])
        signals.set_gas_price(gas // GAS_PRICE_UNIT)
        log.info("ton config params changed", hash=digest[:12], gas_price=gas)
        return digest, parsed

    def _probe(self, transfers: list[OutTransfer]) -> str:
        assert self.wallet is not None
        signed = sign_request(
            self.wallet,
            lambda _: bytes(64),  # estimateFee ignores the signature (ignore_chksig)
            transfers,
            query_id=PROBE_QUERY_ID,
            created_at=int(clock.now().timestamp()) - self.settings.ton_created_at_lag_s,
            deploy=False,
        )
        message = MessageAny.deserialize(
            Cell.one_from_boc(base64.b64decode(signed.boc)).begin_parse()
        )
        return base64.b64encode(message.body.to_boc()).decode()

    async def _estimate(
        self, name: str, transfers: list[OutTransfer], deployed: bool, unavailable: dict[str, Any]
    ) -> int | None:
        assert self.wallet is not None
        init_code = init_data = None
        if not deployed:
            init = self.wallet.state_init
            assert init.code is not None and init.data is not None
            init_code = base64.b64encode(init.code.to_boc()).decode()
            init_data = base64.b64encode(init.data.to_boc()).decode()
        address = self.wallet.address.to_str()
        body = self._probe(transfers)
        fees = await self._try(
            name,
            lambda: self.client.estimate_fee(address, body, init_code, init_data),
            unavailable,
        )
        return fees.source_fees.total if fees is not None else None

    async def _estimates(self, unavailable: dict[str, Any]) -> tuple[int | None, ...]:
        if self.wallet is None:
            for name in ("fee_ton_single", "fee_usdt_single", "fee_ton_batch"):
                unavailable[name] = "no hot wallet configured"
            return None, None, None
        me = self.wallet.address
        info = await self._try(
            "hot_wallet_state",
            lambda: self.client.get_address_information(me.to_str()),
            unavailable,
        )
        if info is None:
            return None, None, None
        deployed = info.state == "active"

        def ton(i: int) -> OutTransfer:
            return ton_transfer(me, 1_000_000 + i, True, PROBE_COMMENT)

        single = await self._estimate("fee_ton_single", [ton(0)], deployed, unavailable)
        n = max(2, self.settings.fees_probe_batch_size)
        batch = await self._estimate(
            "fee_ton_batch", [ton(i) for i in range(n)], deployed, unavailable
        )
        usdt = None
        if self.jetton_wallet is None:
            unavailable["fee_usdt_single"] = "USDT not configured"
        else:
            out = jetton_transfer(
                Address(self.jetton_wallet),
                me,
                1_000_000,
                attach_ton=self.settings.ton_jetton_attach_nanoton,
                forward_ton=self.settings.ton_jetton_forward_nanoton,
                response=me,
                query_id=0,
                comment=PROBE_COMMENT,
            )
            usdt = await self._estimate("fee_usdt_single", [out], deployed, unavailable)
        return single, usdt, batch

    # -------------------------------------------------------------- one sample
    async def sample(self) -> FeeSample:
        """Look at the network once, store the sample, feed the congestion signal.

        Never raises for toncenter trouble: what failed is recorded as unavailable, and the
        errors themselves count toward congestion."""
        s = self.settings
        self.tally.reset()
        unavailable: dict[str, Any] = {}
        now = clock.now()
        async with self.db.transaction() as session:
            previous = await repo.latest_sample(session)
            previous_config = await repo.latest_config_sample(session)
            latencies = await repo.request_latencies_ms(
                session, now - timedelta(seconds=s.fees_latency_window_seconds)
            )
        config_hash, config = await self._config(previous_config, now, unavailable)
        queue = await self._try("queue_size", self.client.get_out_msg_queue_size, unavailable)
        fee_ton, fee_usdt, fee_batch = await self._estimates(unavailable)
        latency = percentile(latencies, 90) if latencies else None
        if latency is None:
            unavailable["latency_ms"] = "no request of ours was processed in the window"
        if self.tally.kinds:
            unavailable["api_error_kinds"] = dict(self.tally.kinds)
        scale = CongestionScale(
            s.fees_latency_ok_ms,
            s.fees_latency_full_ms,
            s.fees_queue_ok,
            s.fees_queue_full,
            s.fees_error_weight,
        )
        raw = raw_congestion(
            CongestionSignals(latency, queue, self.tally.calls, self.tally.errors), scale
        )
        prev_pct = (
            previous.congestion_bp / 100
            if previous is not None and previous.congestion_bp is not None
            else None
        )
        dt = (now - previous.sampled_at).total_seconds() if previous is not None else 0.0
        smoothed = smooth_congestion(prev_pct, raw, dt, s.fees_congestion_tau_seconds)
        sample = FeeSample(
            id=new_id("fsmp"),
            sampled_at=now,
            latency_ms=latency,
            latency_count=len(latencies),
            queue_size=queue,
            api_calls=self.tally.calls,
            api_errors=self.tally.errors,
            api_rate_limited=self.tally.rate_limited,
            congestion_raw_bp=round(raw * 100) if raw is not None else None,
            congestion_bp=round(smoothed * 100) if smoothed is not None else None,
            fee_ton_single=fee_ton,
            fee_usdt_single=fee_usdt,
            fee_ton_batch=fee_batch,
            batch_size=max(2, s.fees_probe_batch_size),
            config_hash=config_hash,
            config=config,
            unavailable=unavailable,
        )
        async with self.db.transaction() as session:
            session.add(sample)
        if smoothed is not None:
            signals.set_congestion(smoothed)
        return sample


# ------------------------------------------------------------------ the worker loop
_samplers: dict[str, Sampler] = {}


async def sample_if_due(
    db: Database,
    settings: Settings,
    worker_id: str,
    wallet: HighloadWallet | None = None,
    jetton_wallet: str | None = None,
) -> int:
    """The `fee_sampler` loop: sample when the newest sample (from any worker) is older than
    FEES_SAMPLE_SECONDS. Returns 0 so the worker sleeps its interval between checks."""
    async with db.transaction() as session:
        latest = await repo.latest_sample(session)
    due = timedelta(seconds=settings.fees_sample_seconds)
    if latest is not None and clock.now() - latest.sampled_at < due:
        return 0
    sampler = _samplers.get(worker_id)
    if sampler is None:
        sampler = Sampler.for_network(
            db, settings, resolve_network(settings), wallet, jetton_wallet
        )
        _samplers[worker_id] = sampler
    await sampler.sample()
    return 0
