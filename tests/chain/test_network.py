"""Network presets and their resolution from settings."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import SecretStr

from tonrail.chain.network import (
    LOCALNET,
    MAINNET,
    MAINNET_USDT_MASTER,
    TESTNET,
    NetworkConfigError,
    parse_url_list,
    resolve_network,
)
from tonrail.settings import Settings

TESTNET_MASTER = "kQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_ntm"  # same hash, testnet flag


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_presets() -> None:
    assert MAINNET.v2_urls == ("https://toncenter.com/api/v2",)
    assert MAINNET.v3_urls == ("https://toncenter.com/api/v3",)
    assert TESTNET.v2_urls == ("https://testnet.toncenter.com/api/v2",)
    assert TESTNET.v3_urls == ("https://testnet.toncenter.com/api/v3",)
    assert LOCALNET.v2_urls == ("http://127.0.0.1:8081/api/v2",)
    assert LOCALNET.v3_urls == ("http://127.0.0.1:8081/api/v3",)
    assert MAINNET.usdt_master == MAINNET_USDT_MASTER
    assert TESTNET.usdt_master is None and LOCALNET.usdt_master is None
    assert (MAINNET.testnet_flag, TESTNET.testnet_flag, LOCALNET.testnet_flag) == (
        False,
        True,
        None,
    )
    for preset in (MAINNET, TESTNET, LOCALNET):
        assert preset.highload_subwallet_id == 0x10AD
        assert 0 < preset.confirmation_timeout_seconds < preset.highload_timeout_seconds
        with pytest.raises(dataclasses.FrozenInstanceError):
            preset.name = "x"  # type: ignore[misc]


def test_defaults_resolve_to_the_preset() -> None:
    for name, preset in (("mainnet", MAINNET), ("testnet", TESTNET), ("localnet", LOCALNET)):
        net = resolve_network(make(ton_network=name))
        assert net == preset


def test_overrides() -> None:
    net = resolve_network(
        make(
            ton_network="mainnet",
            ton_api_url=" https://a.example/api/v2/, https://b.example/api/v2 ",
            ton_api_v3_url="https://a.example/api/v3",
            ton_api_key="secret-key-123",
            limits_max_usdt=5 * 10**6,
            approval_threshold_usdt=7,
            ton_gas_cap_jetton_attach=60_000_000,
            ton_confirmation_timeout_seconds=90,
        )
    )
    assert net.v2_urls == ("https://a.example/api/v2", "https://b.example/api/v2")
    assert net.v3_urls == ("https://a.example/api/v3",)
    assert net.api_key == "secret-key-123"
    assert "secret-key-123" not in repr(net)
    assert net.limits_for("USDT").max == 5 * 10**6
    assert net.limits_for("USDT").min == MAINNET.limits_for("USDT").min
    assert net.approval_threshold_usdt == 7
    assert net.gas_caps.jetton_transfer_attach == 60_000_000
    assert net.gas_caps.ton_transfer_fee == MAINNET.gas_caps.ton_transfer_fee
    assert net.confirmation_timeout_seconds == 90


def test_usdt_master_must_fit_the_network() -> None:
    assert resolve_network(make(ton_network="testnet")).usdt_master is None
    net = resolve_network(make(ton_network="testnet", usdt_jetton_master=TESTNET_MASTER))
    assert net.usdt_master == TESTNET_MASTER
    with pytest.raises(NetworkConfigError) as err:
        resolve_network(make(ton_network="testnet", usdt_jetton_master=MAINNET_USDT_MASTER))
    assert err.value.param == "USDT_JETTON_MASTER"
    with pytest.raises(NetworkConfigError):
        resolve_network(make(ton_network="mainnet", usdt_jetton_master="not-an-address"))


@pytest.mark.parametrize(
    "value", ["ftp://x.example/api", "toncenter.com/api/v2", "https://", ",", "http:///api"]
)
def test_bad_url_lists(value: str) -> None:
    with pytest.raises(NetworkConfigError):
        parse_url_list(value, "TON_API_URL")


def test_bad_limits_and_key_secrecy() -> None:
    with pytest.raises(NetworkConfigError):
        resolve_network(make(limits_min_ton=10, limits_max_ton=5))
    settings = make(ton_api_key=SecretStr("k-999"))
    assert "k-999" not in repr(resolve_network(settings))


def test_overrides_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TON_NETWORK", "testnet")
    monkeypatch.setenv("TON_API_URL", "http://127.0.0.1:9001/api/v2,http://127.0.0.1:9002/api/v2")
    monkeypatch.setenv("LIMITS_MIN_TON", "2000000")
    monkeypatch.setenv("TON_GAS_CAP_TON_TRANSFER", "70000000")
    net = resolve_network(make())
    assert net.name == "testnet" and net.testnet_flag is True
    assert net.v2_urls == ("http://127.0.0.1:9001/api/v2", "http://127.0.0.1:9002/api/v2")
    assert net.v3_urls == TESTNET.v3_urls
    assert net.limits_for("TON").min == 2_000_000
    assert net.gas_caps.ton_transfer_fee == 70_000_000
