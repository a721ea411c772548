"""A person's own TON wallet (an approver's or the operator's deploy wallet) from a key file.

The wallet is one of the standard contracts (v5r1, the default of current wallet apps, or
v4r2), driven with tonutils against the configured toncenter endpoint. The key file holds a
24-word TON mnemonic or a 64-hex Ed25519 seed; it is read, used to sign, and never logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ton_core import Address, Cell, NetworkGlobalID, PrivateKey, StateInit
from tonutils.clients import ToncenterClient as TonutilsClient
from tonutils.contracts import WalletV4R2, WalletV5R1

from tonrail.errors import TonrailError
from tonrail.rails.ton.keys import WalletKeyError, seed_from_import

WalletVersion = Literal["v5r1", "v4r2"]
WALLET_VERSIONS: tuple[WalletVersion, ...] = ("v5r1", "v4r2")


class SignerWalletError(TonrailError):
    """The signer's wallet cannot be opened or cannot send."""

    code = "treasury_wallet_invalid"
    status = 400


def read_key_file(path: Path) -> bytes:
    """The Ed25519 seed in a key file (mnemonic or hex); errors never echo the content."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SignerWalletError(f"cannot read the key file {path}: {exc.strerror}") from None
    try:
        return seed_from_import(text)
    except WalletKeyError as exc:
        raise SignerWalletError(f"{path}: {exc.message}") from None


def network_id(network_name: str) -> NetworkGlobalID:
    """The global id wallets sign for: testnet's, else mainnet's (the local network's too)."""
    return NetworkGlobalID.TESTNET if network_name == "testnet" else NetworkGlobalID.MAINNET


def open_client(v2_url: str, api_key: str, network_name: str) -> TonutilsClient:
    """A tonutils toncenter client on the configured v2 endpoint (no rate limit locally)."""
    rps = 1000 if network_name == "localnet" else (10 if api_key else 1)
    return TonutilsClient(
        network_id(network_name), base_url=v2_url, api_key=api_key or None, rps_limit=rps
    )


class SignerWallet:
    """A standard wallet that sends one internal message at a time."""

    def __init__(self, client: TonutilsClient, seed: bytes, version: WalletVersion = "v5r1"):
        if version not in WALLET_VERSIONS:
            raise SignerWalletError(f"unknown wallet version {version!r}: use v5r1 or v4r2")
        key = PrivateKey(seed)
        cls: Any = WalletV5R1 if version == "v5r1" else WalletV4R2
        self._wallet = cls.from_private_key(client, key)
        self.version = version

    @property
    def address(self) -> Address:
        address: Address = self._wallet.address
        return address

    async def balance(self) -> int:
        await self._wallet.refresh()
        return int(self._wallet.balance)

    async def send(
        self, destination: Address, value: int, body: Cell, state_init: StateInit | None = None
    ) -> str:
        """Sign and send one bounceable message; returns the external's normalized hash."""
        sent = await self._wallet.transfer(
            destination, value, body=body, state_init=state_init, bounce=True
        )
        return str(sent.normalized_hash)
