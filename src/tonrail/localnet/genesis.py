"""Deterministic genesis: a funded faucet wallet, a USDT jetton master and demo wallets.

Every key derives from a seed, so the same seed gives the same addresses on every machine.
The faucet is a real wallet v4r2: the chain signs its external messages when a block takes
a faucet order, so funding goes through the TVM like any other transfer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey
from ton_core import (
    CONTRACT_CODES,
    Address,
    Cell,
    ContractVersion,
    CurrencyCollection,
    ExternalMsgInfo,
    InternalMsgInfo,
    JettonInternalTransferBody,
    JettonMasterStandardData,
    JettonStandardMintBody,
    MessageAny,
    NetworkGlobalID,
    OnchainContent,
    PublicKey,
    StateInit,
    WalletHighloadV3Data,
    WalletV5Data,
    WalletV5SubwalletID,
    begin_cell,
    to_cell,
)

from tonrail.localnet.boc import friendly, raw_address

DEFAULT_SEED = "tonrail-localnet"
TON = 10**9
USDT = 10**6
FAUCET_SUBWALLET = 698983191
FAUCET_BALANCE = 10**9 * TON  # a billion TON: enough for any local run
USDT_MASTER_BALANCE = 10 * TON  # the standard minter must pay to deploy jetton wallets
HOT_SUBWALLET = 0x10AD
HOT_TIMEOUT = 3600
MINT_TON = TON // 10  # TON attached to a mint; the excess comes back to the faucet
JETTON_WALLET_TON = TON // 20  # TON the minter forwards to a new jetton wallet

# The genesis funds arrive as an internal message from this masterchain address: the local
# network's stand-in for the minting the real network did at its own genesis.
GENESIS_SOURCE = Address((-1, b"\0" * 32))


@dataclass(frozen=True)
class Transfer:
    """One internal message the faucet wallet sends."""

    dest: Address
    amount: int
    body: Cell
    bounce: bool
    state_init: StateInit | None = None


def derive_key(seed: str, label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(f"{seed}/{label}".encode()).digest())


def _address(state_init: StateInit) -> Address:
    return Address((0, state_init.serialize().hash))


@dataclass(frozen=True)
class DemoWallet:
    """A wallet whose keys the payment service may use: version, keys, address, config."""

    name: str
    version: str  # ton_core ContractVersion value
    private_key_hex: str  # 32-byte ed25519 seed
    public_key_hex: str
    address: Address
    state_init: StateInit
    config: dict[str, int]  # subwallet_id, timeout, ...
    ton: int  # nanoton funded at genesis
    usdt: int  # USDT minor units funded at genesis

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "private_key": self.private_key_hex,
            "public_key": self.public_key_hex,
            "address": raw_address(self.address),
            "address_friendly": friendly(self.address, bounceable=False),
            "config": self.config,
            "funded_ton": str(self.ton),
            "funded_usdt": str(self.usdt),
        }


class Genesis:
    """The genesis accounts for one seed, and the messages that create and use them."""

    def __init__(self, seed: str = DEFAULT_SEED) -> None:
        self.seed = seed
        self.faucet_key = derive_key(seed, "faucet")
        self.faucet_address, self.faucet_state_init = wallet_v4r2(self.faucet_key)

        self.jetton_wallet_code = to_cell(CONTRACT_CODES[ContractVersion.JettonWalletStandard])
        content = OnchainContent(
            {"name": "USDT", "symbol": "USDT", "decimals": "6", "description": "Local USDT"}
        )
        master_data = JettonMasterStandardData(
            admin_address=self.faucet_address,
            content=content,
            jetton_wallet_code=self.jetton_wallet_code,
        ).serialize()
        self.usdt_master_state_init = StateInit(
            code=to_cell(CONTRACT_CODES[ContractVersion.JettonMasterStandard]), data=master_data
        )
        self.usdt_master = _address(self.usdt_master_state_init)
        self.demo_wallets = [
            self._v5("customer", 10_000 * TON, 1_000_000 * USDT),
            self._v5("deposit", 10 * TON, 0),
            self._highload("hot", 100_000 * TON, 10_000_000 * USDT),
        ]

    def _v5(self, name: str, ton: int, usdt: int) -> DemoWallet:
        sub = WalletV5SubwalletID(network=NetworkGlobalID.MAINNET)
        return self._demo_wallet(
            name,
            ContractVersion.WalletV5R1,
            lambda pub: WalletV5Data(public_key=pub, subwallet_id=sub).serialize(),
            {"subwallet_id": sub.pack(), "network_global_id": int(NetworkGlobalID.MAINNET)},
            ton,
            usdt,
        )

    def _highload(self, name: str, ton: int, usdt: int) -> DemoWallet:
        return self._demo_wallet(
            name,
            ContractVersion.WalletHighloadV3R1,
            lambda pub: WalletHighloadV3Data(
                public_key=pub, subwallet_id=HOT_SUBWALLET, timeout=HOT_TIMEOUT
            ).serialize(),
            {"subwallet_id": HOT_SUBWALLET, "timeout": HOT_TIMEOUT},
            ton,
            usdt,
        )

    def _demo_wallet(
        self,
        name: str,
        version: ContractVersion,
        data_of: Callable[[PublicKey], Cell],
        config: dict[str, int],
        ton: int,
        usdt: int,
    ) -> DemoWallet:
        """A wallet of the given contract whose key derives from the seed and `name`."""
        key = derive_key(self.seed, name)
        pub = PublicKey(bytes(key.verify_key))
        si = StateInit(code=to_cell(CONTRACT_CODES[version]), data=data_of(pub))
        return DemoWallet(
            name, version.value, bytes(key).hex(), pub.as_hex, _address(si), si, config, ton, usdt
        )

    def wallet(self, name: str) -> DemoWallet:
        for w in self.demo_wallets:
            if w.name == name:
                return w
        raise KeyError(name)

    def jetton_wallet_address(self, owner: Address) -> Address:
        data = (
            begin_cell()
            .store_coins(0)
            .store_address(owner)
            .store_address(self.usdt_master)
            .store_ref(self.jetton_wallet_code)
            .end_cell()
        )
        return _address(StateInit(code=self.jetton_wallet_code, data=data))

    def genesis_mint(self, created_lt: int, now: int) -> Cell:
        """The internal message that creates and funds the faucet wallet."""
        info = InternalMsgInfo(
            True,
            False,
            False,
            GENESIS_SOURCE,
            self.faucet_address,
            CurrencyCollection(FAUCET_BALANCE),
            0,
            0,
            created_lt,
            now,
        )
        return MessageAny(info, self.faucet_state_init, Cell.empty()).serialize()

    def usdt_deploy_order(self) -> Transfer:
        return Transfer(
            self.usdt_master, USDT_MASTER_BALANCE, Cell.empty(), False, self.usdt_master_state_init
        )

    def usdt_mint_order(self, owner: Address, amount: int) -> Transfer:
        """A faucet order that asks the USDT master to mint `amount` to `owner`."""
        transfer = JettonInternalTransferBody(
            jetton_amount=amount,
            forward_amount=0,
            from_address=self.usdt_master,
            response_address=self.faucet_address,
        )
        body = JettonStandardMintBody(
            destination=owner, internal_transfer=transfer, forward_amount=JETTON_WALLET_TON
        ).serialize()
        return Transfer(self.usdt_master, MINT_TON, body, True)

    def faucet_external(self, seqno: int, orders: list[Transfer], now: int) -> Cell:
        """A signed faucet external carrying up to four transfers."""
        return sign_wallet_v4r2(
            self.faucet_key, self.faucet_address, seqno, now + 60, orders, FAUCET_SUBWALLET
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "network_global_id": int(NetworkGlobalID.MAINNET),
            "faucet": {
                "version": ContractVersion.WalletV4R2.value,
                "address": raw_address(self.faucet_address),
                "public_key": bytes(self.faucet_key.verify_key).hex(),
            },
            "usdt": {
                "master": raw_address(self.usdt_master),
                "master_friendly": friendly(self.usdt_master),
                "decimals": 6,
                "symbol": "USDT",
                "jetton_wallet_version": ContractVersion.JettonWalletStandard.value,
            },
            "wallets": [w.to_json() for w in self.demo_wallets],
        }


def wallet_v4r2(key: SigningKey, subwallet_id: int = FAUCET_SUBWALLET) -> tuple[Address, StateInit]:
    """Address and state init of a wallet v4r2 for `key`."""
    data = (
        begin_cell()
        .store_uint(0, 32)
        .store_uint(subwallet_id, 32)
        .store_bytes(bytes(key.verify_key))
        .store_bit(0)
        .end_cell()
    )
    si = StateInit(code=to_cell(CONTRACT_CODES[ContractVersion.WalletV4R2]), data=data)
    return _address(si), si


def sign_wallet_v4r2(
    key: SigningKey,
    address: Address,
    seqno: int,
    valid_until: int,
    orders: list[Transfer],
    subwallet_id: int = FAUCET_SUBWALLET,
    state_init: StateInit | None = None,
) -> Cell:
    """A signed wallet v4r2 external message carrying one to four transfers."""
    if not 0 < len(orders) <= 4:
        raise ValueError("a wallet v4r2 message carries 1 to 4 transfers")
    body = (
        begin_cell()
        .store_uint(subwallet_id, 32)
        .store_uint(valid_until, 32)
        .store_uint(seqno, 32)
        .store_uint(0, 8)  # op: simple send
    )
    for order in orders:
        info = InternalMsgInfo(
            True,
            order.bounce,
            False,
            None,
            order.dest,
            CurrencyCollection(order.amount),
            0,
            0,
            0,
            0,
        )
        msg = MessageAny(info, order.state_init, order.body)
        body = body.store_uint(3, 8).store_ref(msg.serialize())  # mode 3: pay fees separately
    unsigned = body.end_cell()
    signature = key.sign(unsigned.hash).signature
    signed = begin_cell().store_bytes(signature).store_cell(unsigned).end_cell()
    return MessageAny(ExternalMsgInfo(None, address, 0), state_init, signed).serialize()
