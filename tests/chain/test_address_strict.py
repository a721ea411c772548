"""Strict address parsing: one spelling per form, 32-byte hashes, valid tags, checksums and
workchains; through the API a refused destination writes nothing, on both databases."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from pytoniq_core.boc.address import Address
from pytoniq_core.crypto.crc import crc16

from tests.helpers import row_counts
from tonrail.app import create_app
from tonrail.chain.address import check_network, parse_address
from tonrail.chain.network import LOCALNET, MAINNET, NetworkConfigError, resolve_network
from tonrail.db import Database
from tonrail.errors import InvalidAddress
from tonrail.settings import Settings

BASE = Address("EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs")
HEX = BASE.hash_part.hex()


def friendly(tag: int, wc_byte: int, hash_part: bytes, *, url_safe: bool = True) -> str:
    body = bytes([tag, wc_byte]) + hash_part
    data = body + crc16(body)
    text = base64.urlsafe_b64encode(data) if url_safe else base64.b64encode(data)
    return text.decode()


GOOD_FRIENDLY = friendly(0x11, 0x00, BASE.hash_part)
MASTER_RAW = "-1:" + HEX
MASTER_FRIENDLY = friendly(0x11, 0xFF, BASE.hash_part)


@pytest.mark.parametrize(
    "text",
    [
        "0:" + HEX,
        "0:" + HEX.upper(),
        "-1:" + HEX,
        GOOD_FRIENDLY,
        friendly(0x51, 0x00, BASE.hash_part),  # non-bounceable
        friendly(0x91, 0x00, BASE.hash_part),  # testnet bounceable
        friendly(0xD1, 0x00, BASE.hash_part),  # testnet non-bounceable
        friendly(0x11, 0x00, b"\xfb" * 32, url_safe=False),  # standard alphabet: '+', '/'
        MASTER_FRIENDLY,
        " 0:" + HEX + " ",  # surrounding spaces (copy and paste)
    ],
)
def test_valid_spellings(text: str) -> None:
    parsed = parse_address(text)
    assert len(parsed.hash_part) == 32 and parsed.wc in (0, -1)


def test_flags_are_read_from_the_tag() -> None:
    assert parse_address(friendly(0x51, 0, BASE.hash_part)).is_bounceable is False
    assert parse_address(friendly(0x11, 0, BASE.hash_part)).is_bounceable is True
    assert parse_address(friendly(0x91, 0, BASE.hash_part)).is_test_only is True
    assert parse_address(friendly(0x11, 0, BASE.hash_part)).is_test_only is False
    assert parse_address(MASTER_FRIENDLY).wc == -1


BAD = {
    "plus_workchain": "+0:" + HEX,
    "minus_zero": "-0:" + HEX,
    "zero_padded_workchain": "00:" + HEX,
    "underscore_workchain": "0_0:" + HEX,
    "padded_masterchain": "-01:" + HEX,
    "arabic_indic_digit": "\u0660:" + HEX,
    "workchain_1": "1:" + HEX,
    "hash_31_bytes": "0:" + HEX[:-2],
    "hash_33_bytes": "0:" + HEX + "00",
    "hash_odd_digits": "0:" + HEX[:-1],
    "hex_prefix": "0:0x" + HEX[2:],
    "inner_space": "0: " + HEX[1:],
    "trailing_newline": "0:" + HEX + "\n",
    "friendly_padding": GOOD_FRIENDLY + "=",
    "friendly_short": GOOD_FRIENDLY[:-1],
    "friendly_bad_checksum": GOOD_FRIENDLY[:-1] + ("A" if GOOD_FRIENDLY[-1] != "A" else "B"),
    "friendly_mixed_alphabets": friendly(0x11, 0, b"\xfb" * 32).replace("_", "/", 1),
    "friendly_unknown_tag": friendly(0x12, 0x00, BASE.hash_part),
    "friendly_zero_tag": friendly(0x00, 0x00, BASE.hash_part),
    "friendly_workchain_byte_1": friendly(0x11, 0x01, BASE.hash_part),
    "friendly_workchain_byte_7f": friendly(0x11, 0x7F, BASE.hash_part),
    "empty": "",
    "spaces": "   ",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_addresses_are_refused(name: str) -> None:
    with pytest.raises(InvalidAddress) as err:
        parse_address(BAD[name], "destination")
    assert err.value.code == "address_invalid"
    assert err.value.param == "destination" and err.value.status == 400


def test_workchains_as_configured() -> None:
    basechain_only = (0,)
    parse_address("0:" + HEX, workchains=basechain_only)
    for text in (MASTER_RAW, MASTER_FRIENDLY):
        with pytest.raises(InvalidAddress) as err:
            parse_address(text, workchains=basechain_only)
        assert err.value.code == "address_workchain_unsupported"
        parse_address(text)  # both workchains by default


def settings_for(tmp_path: Path, database_url: str = "", **extra: object) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        database_url=database_url,
        data_dir=tmp_path,
        **extra,  # type: ignore[arg-type]
    )


def test_ton_workchains_setting(tmp_path: Path) -> None:
    assert resolve_network(settings_for(tmp_path)).workchains == (0, -1)
    network = resolve_network(settings_for(tmp_path, ton_workchains="0"))
    assert network.workchains == (0,)
    with pytest.raises(InvalidAddress):
        check_network(MASTER_RAW, network)
    check_network(MASTER_RAW, LOCALNET)
    check_network(MASTER_RAW, MAINNET)
    for bad in ("1", "0,+0", "basechain", "0,-1,2"):
        with pytest.raises(NetworkConfigError):
            resolve_network(settings_for(tmp_path, ton_workchains=bad))


@pytest.mark.parametrize("name", ["plus_workchain", "hash_31_bytes", "hash_33_bytes"])
async def test_api_refuses_malformed_destinations_and_writes_nothing(
    name: str, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    before = await row_counts(db)
    for path, body in (
        ("/v1/payouts", {"amount": "1", "asset": "TON", "destination": BAD[name]}),
        (
            "/v1/payouts/batch",
            {"payouts": [{"amount": "1", "asset": "TON", "destination": BAD[name]}]},
        ),
    ):
        r = await client.post(path, json=body, headers=auth)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "address_invalid"
    assert await row_counts(db) == before


async def test_api_refuses_masterchain_when_configured_so(
    database_url: str, tmp_path: Path, db: Database, auth: dict[str, str]
) -> None:
    app = create_app(settings_for(tmp_path, database_url, ton_workchains="0"), db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        before = await row_counts(db)
        body = {"amount": "1", "asset": "TON", "destination": MASTER_RAW}
        r = await c.post("/v1/payouts", json=body, headers=auth)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "code": "address_workchain_unsupported",
            "message": "destination is on workchain -1; this service pays workchain 0",
            "param": "destination",
        }
        assert await row_counts(db) == before
        r = await c.post("/v1/payouts", json={**body, "destination": "0:" + HEX}, headers=auth)
        assert r.status_code == 201, r.text


async def test_api_refuses_usdt_to_the_masterchain_and_writes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    """Jetton wallets take basechain owners only: USDT to workchain -1 would bounce after
    spending fees, so the API refuses it (TON to the masterchain stays accepted)."""
    before = await row_counts(db)
    body = {"amount": "1", "asset": "USDT", "destination": MASTER_RAW}
    for path, payload in (("/v1/payouts", body), ("/v1/payouts/batch", {"payouts": [body]})):
        r = await client.post(path, json=payload, headers=auth)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "address_workchain_unsupported"
        assert r.json()["error"]["param"].endswith("destination")
    assert await row_counts(db) == before
    r = await client.post("/v1/payouts", json={**body, "asset": "TON"}, headers=auth)
    assert r.status_code == 201, r.text
