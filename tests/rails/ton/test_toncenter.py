"""The toncenter client against the local TON network and misbehaving local servers."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey
from structlog.testing import capture_logs
from ton_core import Address

from tests.localnet.wallets import V4Wallet
from tonrail.chain.network import resolve_network
from tonrail.localnet.boc import b64
from tonrail.localnet.chain import Chain
from tonrail.localnet.genesis import TON
from tonrail.rails.ton.toncenter import (
    SentMessage,
    ToncenterClient,
    ToncenterError,
    V3Transaction,
    parse_retry_after,
)
from tonrail.settings import Settings

from .conftest import FakeToncenter, Reply


class Recorder:
    """on_error hook and sleep stand-in: records what the client reports and waits."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []
        self.sleeps: list[float] = []

    def on_error(self, endpoint: str, kind: str) -> None:
        self.errors.append((endpoint, kind))

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def kinds(self) -> list[str]:
        return [k for _, k in self.errors]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def make_client(rec: Recorder) -> AsyncIterator[Any]:
    clients: list[ToncenterClient] = []

    def make(v2: list[str], v3: list[str] | None = None, **kw: Any) -> ToncenterClient:
        params: dict[str, Any] = {
            "on_error": rec.on_error,
            "sleep": rec.sleep,
            "timeout": 2.0,
            "max_attempts": 4,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
        }
        params.update(kw)
        client = ToncenterClient(v2, v3 if v3 is not None else [], **params)
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def net(server: str) -> AsyncIterator[str]:
    yield server
    async with httpx.AsyncClient() as http:
        await http.delete(f"{server}/localnet/faults")


async def set_faults(base: str, **faults: Any) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{base}/localnet/faults", json=faults)
        assert r.status_code == 200, r.text


async def wait_for(check: Callable[[], Any], seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def funded_wallet(chain: Chain, seed: bytes) -> V4Wallet:
    w = V4Wallet(SigningKey(seed))
    chain.faucet(w.address, 5 * TON)
    await chain.produce_block()
    return w


def b64_hash(h: bytes) -> str:
    return base64.b64encode(h).decode()


# --- the happy paths, field by field against the real local network


async def test_reads_against_the_local_network(net: str, chain: Chain, make_client: Any) -> None:
    client = make_client([f"{net}/api/v2"], [f"{net}/api/v3"])
    genesis = chain.genesis.to_json()
    hot = next(w for w in genesis["wallets"] if w["name"] == "hot")
    master = genesis["usdt"]["master"]

    info = await client.get_masterchain_info()
    assert info.last.workchain == -1 and info.last.seqno >= 0 and info.init.seqno == 0

    account = await client.get_address_information(hot["address"])
    on_chain = chain.account(Address(hot["address"]))
    assert account.balance == on_chain.balance > 0  # funded at genesis, deployed by its owner
    assert account.state == ("active" if on_chain.status == "active" else "uninitialized")
    assert account.last_transaction_id.lt == chain.account(Address(hot["address"])).last_lt
    assert await client.get_address_balance(hot["address"]) == account.balance

    wallet_info = await client.get_wallet_information(hot["address"])
    assert wallet_info.balance == account.balance and not wallet_info.wallet

    empty = await client.get_address_information("0:" + "ab" * 32)
    assert empty.state == "uninitialized" and empty.balance == 0

    data = await client.run_get_method(master, "get_jetton_data")
    assert data.success and data.exit_code == 0 and data.gas_used > 0
    assert data.stack[0][0] == "num" and int(data.stack[0][1], 16) > 0  # total supply

    wallets = await client.jetton_wallets(hot["address"], master)
    assert len(wallets) == 1
    assert wallets[0].balance == int(hot["funded_usdt"])
    assert Address(wallets[0].owner) == Address(hot["address"])
    assert Address(wallets[0].jetton) == Address(master)
    assert await client.jetton_wallets(hot["address"], "0:" + "cd" * 32) == []

    page = await client.transactions(hot["address"], limit=5, sort="asc")
    assert page.transactions and all(isinstance(t, V3Transaction) for t in page.transactions)
    assert [t.lt for t in page.transactions] == sorted(t.lt for t in page.transactions)
    assert page.transactions[0].account.upper() == hot["address"].upper()
    assert page.address_book


async def test_send_confirm_and_history(net: str, chain: Chain, make_client: Any) -> None:
    client = make_client([f"{net}/api/v2"], [f"{net}/api/v3"])
    w = await funded_wallet(chain, b"\x61" * 32)
    dest = Address((0, b"\x62" * 32))
    external = w.external(w.body(0, chain.now() + 60, dest, TON // 10), deploy=True)

    fees = await client.estimate_fee(
        w.address.to_str(),
        b64(w.body(0, chain.now() + 60, dest, TON // 10)),
        init_code=b64(w.state_init.code),
        init_data=b64(w.state_init.data),
    )
    assert fees.source_fees.gas_fee > 0 and fees.source_fees.total > 0

    sent = await client.send_boc_return_hash(b64(external))
    assert sent == SentMessage(b64_hash(bytes(external.hash)), sent.hash_norm) and sent.hash_norm

    async def landed() -> Any:
        return (await client.transactions_by_message(sent.hash, "in")).transactions

    txs = await wait_for(landed)
    assert len(txs) == 1
    tx = txs[0]
    assert tx.in_msg is not None and tx.in_msg.hash == sent.hash
    assert tx.in_msg.hash_norm == sent.hash_norm
    assert tx.compute_success is True and tx.action_success is True and tx.skipped_actions == 0
    assert tx.total_fees > 0 and len(tx.out_msgs) == 1
    assert tx.out_msgs[0].value == TON // 10 and tx.out_msgs[0].bounce is False

    history = await client.get_transactions(w.address.to_str(), limit=10)
    assert history[0].transaction_id.hash == tx.hash and history[0].transaction_id.lt == tx.lt
    assert history[0].in_msg is not None and history[0].in_msg.hash == sent.hash
    assert history[0].fee == tx.total_fees
    assert history[0].out_msgs[0].value == TON // 10
    older = await client.get_transactions(
        w.address.to_str(),
        limit=10,
        lt=history[-1].transaction_id.lt,
        hash=history[-1].transaction_id.hash,
    )
    assert older[0] == history[-1]
    wallet_info = await client.get_wallet_information(w.address.to_str())
    assert (
        wallet_info.wallet and wallet_info.wallet_type == "wallet v4 r2" and wallet_info.seqno == 1
    )


async def test_rejected_external_is_not_retried(
    net: str, chain: Chain, make_client: Any, rec: Recorder
) -> None:
    client = make_client([f"{net}/api/v2", f"{net}/api/v2"])
    w = await funded_wallet(chain, b"\x63" * 32)
    wrong_key = SigningKey(b"\x64" * 32)
    bad = w.external(w.body(0, chain.now() + 60, w.address, 1, signer=wrong_key), deploy=True)
    with pytest.raises(ToncenterError) as err:
        await client.send_boc_return_hash(b64(bad))
    assert err.value.kind == "rejected" and err.value.code == "toncenter_rejected"
    assert not err.value.retryable and err.value.attempts == 1
    assert "Exit code 35 != 0" in err.value.message  # the local toncenter's words: bad signature
    assert rec.kinds() == ["rejected"] and rec.sleeps == []  # one try, no failover


# --- faults injected into the local network


async def test_429_backs_off_then_fails_bounded(net: str, make_client: Any, rec: Recorder) -> None:
    client = make_client([f"{net}/api/v2"], max_attempts=3)
    await set_faults(net, http_429_rate=1.0)
    with pytest.raises(ToncenterError) as err:
        await client.get_masterchain_info()
    assert err.value.kind == "rate_limited" and err.value.http_status == 429
    assert rec.kinds() == ["rate_limited"] * 3 and err.value.attempts == 3
    assert len(rec.sleeps) == 2 and all(0.01 <= s <= 0.05 for s in rec.sleeps)


async def test_429_half_the_time_still_succeeds(net: str, make_client: Any, rec: Recorder) -> None:
    client = make_client([f"{net}/api/v2"], max_attempts=10)
    await set_faults(net, http_429_rate=0.5, seed=3)
    for _ in range(6):
        assert (await client.get_masterchain_info()).last.seqno >= 0
    assert "rate_limited" in rec.kinds() and set(rec.kinds()) == {"rate_limited"}


async def test_5xx_fails_over_to_the_next_endpoint(
    net: str, fake: FakeToncenter, make_client: Any, rec: Recorder
) -> None:
    # The local network answers 5xx, the second endpoint (a fake) answers: failover.
    await set_faults(net, http_5xx_rate=1.0)
    client = make_client([f"{net}/api/v2", f"{fake.url}/api/v2"])
    assert await client.get_address_balance("0:" + "00" * 32) == 42
    assert rec.errors == [(f"{net}/api/v2", "server_error")]
    assert rec.sleeps == [0.0]  # straight to the next endpoint
    # The client stays on the healthy endpoint for the next call.
    assert await client.get_address_balance("0:" + "00" * 32) == 42
    assert len(rec.errors) == 1


async def test_5xx_everywhere_is_bounded(net: str, make_client: Any, rec: Recorder) -> None:
    await set_faults(net, http_5xx_rate=1.0)
    client = make_client([f"{net}/api/v2"], [f"{net}/api/v3"], max_attempts=4)
    with pytest.raises(ToncenterError) as err:
        await client.transactions("0:" + "00" * 32)
    assert err.value.kind == "server_error" and err.value.http_status in (502, 503, 504)
    assert rec.kinds() == ["server_error"] * 4 and len(rec.sleeps) == 3


async def test_down_endpoint_fails_over_to_the_local_network(
    net: str, down_url: str, make_client: Any, rec: Recorder
) -> None:
    client = make_client([f"{down_url}/api/v2", f"{net}/api/v2"])
    info = await client.get_masterchain_info()
    assert info.last.seqno >= 0
    assert rec.errors == [(f"{down_url}/api/v2", "unreachable")]


async def test_all_endpoints_down(down_url: str, make_client: Any, rec: Recorder) -> None:
    client = make_client([f"{down_url}/api/v2", f"{down_url}/x/api/v2"], max_attempts=5)
    with pytest.raises(ToncenterError) as err:
        await client.get_masterchain_info()
    assert err.value.kind == "unreachable"
    assert rec.kinds() == ["unreachable"] * 5
    assert rec.sleeps[0] == 0.0 and all(s > 0 for s in rec.sleeps[1:])  # failover, then backoff


async def test_dropped_message_never_lands_and_a_resend_does(
    net: str, chain: Chain, make_client: Any
) -> None:
    client = make_client([f"{net}/api/v2"], [f"{net}/api/v3"])
    w = await funded_wallet(chain, b"\x65" * 32)
    boc = b64(w.external(w.body(0, chain.now() + 60, w.address, 1), deploy=True))
    await set_faults(net, drop_external_rate=1.0)
    sent = await client.send_boc_return_hash(boc)  # accepted by the API, lost on the way

    async def landed() -> Any:
        return (await client.transactions_by_message(sent.hash, "in")).transactions

    assert await wait_for(landed, 0.5) == ()
    assert (await client.get_address_information(w.address.to_str())).state == "uninitialized"
    await set_faults(net, drop_external_rate=0.0)
    again = await client.send_boc_return_hash(boc)  # the same message: safe to re-send
    assert again == sent
    txs = await wait_for(landed)
    assert len(txs) == 1 and txs[0].in_msg is not None and txs[0].in_msg.hash == sent.hash


# --- a local server that misbehaves


@pytest.mark.parametrize(
    "body",
    [
        "<html>502 Bad Gateway</html>",
        "",
        '{"result": "1"}',
        '{"ok": true}',
        "[1, 2]",
        '{"ok": true, "result": {"unexpected": 1}}',
    ],
)
async def test_garbage_is_a_bad_response(
    fake: FakeToncenter, make_client: Any, rec: Recorder, body: str
) -> None:
    fake.script(Reply(200, body))
    client = make_client([f"{fake.url}/api/v2"], max_attempts=2)
    with pytest.raises(ToncenterError) as err:
        await client.get_masterchain_info()
    assert err.value.kind == "bad_response" and err.value.code == "toncenter_bad_response"
    assert rec.kinds() == ["bad_response", "bad_response"]


async def test_garbage_then_failover(
    fake: FakeToncenter, net: str, make_client: Any, rec: Recorder
) -> None:
    fake.script(Reply(200, "not json"))
    client = make_client([f"{fake.url}/api/v2", f"{net}/api/v2"])
    assert (await client.get_masterchain_info()).last.seqno >= 0
    assert rec.kinds() == ["bad_response"]


async def test_retry_after_is_honoured(
    fake: FakeToncenter, make_client: Any, rec: Recorder
) -> None:
    fake.script(
        Reply(429, '{"ok": false, "error": "Ratelimit exceed", "code": 429}', {"Retry-After": "2"}),
        Reply(200, '{"ok": true, "result": "7"}'),
    )
    client = make_client([f"{fake.url}/api/v2"])
    assert await client.get_address_balance("0:" + "00" * 32) == 7
    assert rec.sleeps == [2.0] and rec.kinds() == ["rate_limited"]


async def test_too_long_retry_after_gives_up(
    fake: FakeToncenter, make_client: Any, rec: Recorder
) -> None:
    fake.script(Reply(429, "{}", {"Retry-After": "3600"}))
    client = make_client([f"{fake.url}/api/v2"], retry_after_max=30)
    with pytest.raises(ToncenterError) as err:
        await client.get_masterchain_info()
    assert err.value.kind == "rate_limited" and rec.sleeps == []


async def test_timeout_fails_over(
    fake: FakeToncenter, net: str, make_client: Any, rec: Recorder
) -> None:
    fake.script(Reply(200, '{"ok": true, "result": "1"}', delay=1.0))
    client = make_client([f"{fake.url}/api/v2", f"{net}/api/v2"], timeout=0.2)
    assert (await client.get_masterchain_info()).last.seqno >= 0
    assert rec.kinds() == ["timeout"]


async def test_unauthorized_and_api_errors_are_not_retried(
    fake: FakeToncenter, make_client: Any, rec: Recorder
) -> None:
    fake.script(Reply(401, '{"ok": false, "error": "API key does not exist", "code": 401}'))
    client = make_client([f"{fake.url}/api/v2", f"{fake.url}/api/v2"])
    with pytest.raises(ToncenterError) as err:
        await client.get_masterchain_info()
    assert err.value.kind == "unauthorized" and rec.sleeps == []
    fake.script(
        Reply(500, '{"ok": false, "error": "LITE_SERVER_UNKNOWN: lt not in db", "code": 500}')
    )
    with pytest.raises(ToncenterError) as err:
        await client.get_transactions("0:" + "00" * 32, lt=5, hash="AA==")
    assert err.value.kind == "api_error" and err.value.api_code == 500
    fake.script(Reply(500, '{"ok": false, "error": "LITE_SERVER_NETWORK timeout", "code": 500}'))
    with pytest.raises(ToncenterError) as err:
        await client.get_masterchain_info()
    assert err.value.kind == "server_error"  # a node outage is retried
    assert rec.kinds() == ["unauthorized", "api_error"] + ["server_error"] * 4


async def test_api_key_is_sent_but_never_shown(
    fake: FakeToncenter, make_client: Any, rec: Recorder
) -> None:
    key = "tc-secret-5e5e5e"
    fake.script(Reply(503, "down"))
    client = make_client([f"{fake.url}/api/v2"], api_key=key, max_attempts=2)
    with capture_logs() as logs, pytest.raises(ToncenterError) as err:
        await client.get_masterchain_info()
    assert all(headers.get("x-api-key") == key for _, headers in fake.requests)
    assert all(
        key not in str(v)
        for _, headers in fake.requests
        for k, v in headers.items()
        if k != "x-api-key"
    )
    shown = (
        repr(client) + str(err.value) + repr(err.value.to_dict()) + repr(logs) + repr(rec.errors)
    )
    assert key not in shown
    assert logs and logs[0]["event"] == "toncenter_error"


async def test_rate_limiter_spaces_requests(fake: FakeToncenter) -> None:
    client = ToncenterClient([f"{fake.url}/api/v2"], rps=20)
    try:
        started = time.monotonic()
        await asyncio.gather(*(client.get_address_balance("0:" + "00" * 32) for _ in range(5)))
        assert time.monotonic() - started >= 4 / 20 - 0.01
    finally:
        await client.aclose()


async def test_on_error_hook_failure_does_not_break_the_call(fake: FakeToncenter, net: str) -> None:
    def broken(endpoint: str, kind: str) -> None:
        raise RuntimeError("monitoring is down")

    fake.script(Reply(503, "down"))
    client = ToncenterClient(
        [f"{fake.url}/api/v2", f"{net}/api/v2"], on_error=broken, backoff_initial=0.01
    )
    try:
        assert (await client.get_masterchain_info()).last.seqno >= 0
    finally:
        await client.aclose()


def test_from_network_and_retry_after_forms() -> None:
    settings = Settings(_env_file=None, ton_network="mainnet", ton_api_key="k")  # type: ignore[call-arg]
    client = ToncenterClient.from_network(resolve_network(settings), settings)
    assert "toncenter.com/api/v2" in repr(client) and "'k'" not in repr(client)
    assert client._limiter.interval == pytest.approx(0.1)  # 10 rps with a key
    keyless = Settings(_env_file=None, ton_network="testnet")  # type: ignore[call-arg]
    assert ToncenterClient.from_network(resolve_network(keyless), keyless)._limiter.interval == 1.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT") == 0.0
