"""Address rules: testnet flag against the network, and the bounce flag of payouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytoniq_core.boc.address import Address

from tonrail.app import create_app
from tonrail.chain.address import AddressWrongNetwork, check_network, payout_bounce
from tonrail.chain.network import LOCALNET, MAINNET, TESTNET
from tonrail.db import Database
from tonrail.errors import InvalidAddress
from tonrail.settings import Settings

BASE = Address("EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs")
RAW = "0:" + BASE.hash_part.hex()


def form(*, bounceable: bool, testnet: bool) -> str:
    return str(
        BASE.to_str(
            is_user_friendly=True,
            is_bounceable=bounceable,
            is_test_only=testnet,
            is_url_safe=True,
        )
    )


MAIN_B, MAIN_NB = form(bounceable=True, testnet=False), form(bounceable=False, testnet=False)
TEST_B, TEST_NB = form(bounceable=True, testnet=True), form(bounceable=False, testnet=True)


def test_forms_are_what_wallets_show() -> None:
    assert (MAIN_B[:2], MAIN_NB[:2], TEST_B[:2], TEST_NB[:2]) == ("EQ", "UQ", "kQ", "0Q")


@pytest.mark.parametrize("text", [MAIN_B, MAIN_NB, RAW])
def test_mainnet_accepts_mainnet_and_raw(text: str) -> None:
    assert check_network(text, MAINNET).hash_part == BASE.hash_part


@pytest.mark.parametrize("text", [TEST_B, TEST_NB])
def test_mainnet_refuses_testnet_addresses(text: str) -> None:
    with pytest.raises(AddressWrongNetwork) as err:
        check_network(text, MAINNET, "destination")
    assert err.value.code == "address_wrong_network"
    assert err.value.param == "destination"
    assert isinstance(err.value, InvalidAddress) and err.value.status == 400


@pytest.mark.parametrize("text", [MAIN_B, MAIN_NB])
def test_testnet_refuses_mainnet_addresses(text: str) -> None:
    with pytest.raises(AddressWrongNetwork):
        check_network(text, TESTNET)


@pytest.mark.parametrize("text", [TEST_B, TEST_NB, RAW])
def test_testnet_accepts_testnet_and_raw(text: str) -> None:
    check_network(text, TESTNET)


@pytest.mark.parametrize("text", [MAIN_B, MAIN_NB, TEST_B, TEST_NB, RAW])
def test_localnet_accepts_either_flag(text: str) -> None:
    check_network(text, LOCALNET)


@pytest.mark.parametrize("text", ["", "EQ", MAIN_B[:-1] + "A", "1:" + "00" * 32, "0:zz"])
def test_invalid_addresses_stay_invalid(text: str) -> None:
    with pytest.raises(InvalidAddress) as err:
        check_network(text, MAINNET)
    assert err.value.code == "address_invalid"


def test_bounce_rules() -> None:
    # TON to a user-friendly address follows the form's own flag, whatever the network flag.
    assert payout_bounce(MAIN_B, "TON") is True
    assert payout_bounce(MAIN_NB, "TON") is False
    assert payout_bounce(TEST_B, "TON") is True
    assert payout_bounce(TEST_NB, "TON") is False
    assert payout_bounce(MAIN_NB, "TON", destination_uninitialized=False) is False
    # Raw: bounceable unless the destination is known to be uninitialized.
    assert payout_bounce(RAW, "TON") is True
    assert payout_bounce(RAW, "TON", destination_uninitialized=True) is False
    # Jetton transfers always bounce (the message goes to our own jetton wallet).
    for text in (MAIN_B, MAIN_NB, RAW):
        assert payout_bounce(text, "USDT", destination_uninitialized=True) is True


# --- through the API: the network rule is enforced when a payout is created


@pytest.fixture(params=["mainnet", "testnet"])
def network_settings(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database_url,
        data_dir=tmp_path,
        ton_network=request.param,
    )


@pytest.fixture
async def net_client(network_settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(network_settings, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        yield c


async def test_payout_to_an_address_of_the_other_network_is_refused(
    net_client: httpx.AsyncClient, network_settings: Settings, auth: dict[str, str]
) -> None:
    mainnet = network_settings.ton_network == "mainnet"
    wrong, right = (TEST_NB, MAIN_NB) if mainnet else (MAIN_NB, TEST_NB)
    body = {"amount": "1.5", "asset": "TON", "destination": wrong}
    r = await net_client.post("/v1/payouts", json=body, headers=auth)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "address_wrong_network"
    assert r.json()["error"]["param"] == "destination"
    listed = await net_client.get("/v1/payouts", headers=auth)
    assert listed.json()["data"] == []  # a refused request writes nothing

    for ok in (right, RAW):
        r = await net_client.post("/v1/payouts", json={**body, "destination": ok}, headers=auth)
        assert r.status_code == 201, r.text


# --- on the local network: the bounce rule does what it promises on the real TVM


async def test_bounce_rule_on_the_local_network(server: str, chain: Any) -> None:
    from nacl.signing import SigningKey

    from tests.localnet.wallets import V4Wallet
    from tonrail.localnet.boc import b64
    from tonrail.rails.ton.toncenter import ToncenterClient, ToncenterError

    sender = V4Wallet(SigningKey(b"\x71" * 32))
    chain.faucet(sender.address, 5 * 10**9)
    await chain.produce_block()
    client = ToncenterClient([f"{server}/api/v2"], [f"{server}/api/v3"], max_attempts=2)
    try:
        outcomes = {}
        for seqno, fresh in enumerate((b"\x72", b"\x73")):
            dest = Address((0, fresh * 32))  # never deployed
            text = str(
                dest.to_str(is_user_friendly=True, is_bounceable=fresh == b"\x73", is_url_safe=True)
            )
            bounce = payout_bounce(text, "TON")
            body = sender.body(seqno, chain.now() + 60, dest, 10**9, bounce=bounce)
            sent = await client.send_boc_return_hash(b64(sender.external(body, deploy=seqno == 0)))
            for _ in range(100):
                page = await client.transactions_by_message(sent.hash, "in")
                if page.transactions:
                    break
                await asyncio.sleep(0.05)
            [tx] = page.transactions
            assert tx.out_msgs[0].bounce is bounce
            for _ in range(100):  # the internal message (and any bounce) lands in later blocks
                if (await client.get_transactions(text, limit=5)) != []:
                    break
                await asyncio.sleep(0.05)
            await chain.produce_block()
            outcomes[text[:2]] = await client.get_address_balance(text)
        # Non-bounceable (UQ) to an uninitialized wallet: the money stays there for its owner.
        assert outcomes["UQ"] == 10**9
        # Bounceable (EQ) to an uninitialized account: it comes back (minus fees).
        assert outcomes["EQ"] == 0
        # Bad input on the network: an invalid address is an api_error, not retried.
        with pytest.raises(ToncenterError) as err:
            await client.get_address_information("not-an-address")
        assert err.value.kind == "api_error" and err.value.attempts == 1
    finally:
        await client.aclose()
