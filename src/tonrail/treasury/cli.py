"""`tonrail treasury ...`: deploy the multisig treasury, read it, approve its orders.

Run by people with their own keys: the operator deploys from a deploy wallet; each approver
approves from the wallet that is their signer address. Keys come from a key file (24-word
mnemonic or 64-hex seed) and never leave this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar, cast

import typer
from ton_core import Address

from tonrail import clock
from tonrail.chain.address import check_network, raw_form
from tonrail.chain.network import TonNetwork, resolve_network
from tonrail.errors import TonrailError
from tonrail.money import format_minor, parse_minor
from tonrail.rails.ton.api import ToncenterTonApi
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.toncenter import ToncenterClient
from tonrail.settings import Settings, get_settings
from tonrail.treasury import service
from tonrail.treasury.multisig import MultisigConfig, MultisigConfigError
from tonrail.treasury.reader import multisig_state, order_state
from tonrail.treasury.wallets import SignerWallet, WalletVersion, open_client, read_key_file

T = TypeVar("T")

treasury_app = typer.Typer(
    help="The treasury: TON's multisig v2 holding funds above the hot wallet's float.",
    no_args_is_help=True,
)

KeyFile = Annotated[
    Path, typer.Option("--key-file", help="your wallet's 24-word mnemonic or 64-hex seed")
]
Version = Annotated[str, typer.Option("--wallet", help="your wallet contract: v5r1 or v4r2")]
WaitSeconds = Annotated[
    float, typer.Option("--wait", help="seconds to wait for the chain to show it (0: no wait)")
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _addresses(text: str, network: TonNetwork, param: str) -> tuple[Address, ...]:
    return tuple(
        Address(raw_form(check_network(part.strip(), network, param)))
        for part in text.split(",")
        if part.strip()
    )


def _hot_wallet(settings: Settings, network: TonNetwork) -> Address | None:
    """The hot wallet's address from its key envelope's public key (no passphrase needed)."""
    from tonrail.rails.ton.highload import HighloadWallet
    from tonrail.rails.ton.keys import WalletKeyError, envelope_public_key, read_envelope

    try:
        public_key = envelope_public_key(read_envelope(settings))
    except WalletKeyError:
        return None
    wallet = HighloadWallet(
        public_key, network.highload_subwallet_id, network.highload_timeout_seconds
    )
    return wallet.address


def _with_wallet(
    settings: Settings,
    network: TonNetwork,
    key_file: Path,
    version: str,
    use: Callable[[ToncenterTonApi, SignerWallet], Awaitable[T]],
) -> T:
    """Open your wallet (from the key file) and the rail's chain reads, run `use`, close."""

    async def main() -> T:
        seed = read_key_file(key_file)
        client = open_client(network.v2_urls[0], network.api_key, network.name)
        wallet = SignerWallet(client, seed, cast(WalletVersion, version))
        api = ToncenterTonApi(ToncenterClient.from_network(network, settings))
        await client.connect()
        try:
            return await use(api, wallet)
        finally:
            await client.close()
            await api.aclose()

    try:
        return asyncio.run(main())
    except TonrailError as exc:
        raise _fail(exc.message) from None


@treasury_app.command("init")
def init(
    signers: Annotated[str, typer.Option(help="signer wallet addresses, comma-separated")],
    threshold: Annotated[int, typer.Option(help="approvals that execute an order")],
    key_file: KeyFile,
    proposers: Annotated[
        str, typer.Option(help="extra proposer addresses (may propose, not approve)")
    ] = "",
    hot_wallet_proposer: Annotated[
        bool,
        typer.Option(help="make the hot wallet a proposer, so the service can create orders"),
    ] = True,
    amount: Annotated[str, typer.Option(help="TON sent to the new multisig")] = "0.5",
    wallet: Version = "v5r1",
    wait: WaitSeconds = 60.0,
) -> None:
    """Deploy the treasury multisig (K of the signers approve each order) from your wallet."""
    settings = get_settings()
    try:
        network = resolve_network(settings)
        extra = _addresses(proposers, network, "proposers")
        hot = _hot_wallet(settings, network) if hot_wallet_proposer else None
        config = MultisigConfig(
            threshold,
            _addresses(signers, network, "signers"),
            extra + ((hot,) if hot is not None else ()),
        )
        value = parse_minor(amount, "TON", param="amount")
    except (TonrailError, MultisigConfigError) as exc:
        raise _fail(str(exc)) from None

    async def deploy(api: ToncenterTonApi, deployer: SignerWallet) -> str:
        address = await service.deploy(deployer, config, value)
        typer.echo(f"treasury: {address}")
        typer.echo(f"deployed from {raw(deployer.address)} with {format_minor(value, 'TON')} TON")

        async def active() -> bool:
            state, _ = await api.account_state(address)
            return state == "active"

        if wait > 0 and not await service.wait_for(active, timeout_s=wait):
            raise _fail(f"the multisig is not active after {wait:.0f} s; check {address}")
        return address

    address = _with_wallet(settings, network, key_file, wallet, deploy)
    typer.echo(f"threshold {threshold} of {len(config.signers)} signers")
    for i, signer in enumerate(config.signers):
        typer.echo(f"  signer {i}: {raw(signer)}")
    for i, proposer in enumerate(config.proposers):
        typer.echo(f"  proposer {i}: {raw(proposer)}")
    typer.echo(f"set TREASURY_ADDRESS={address}")


@treasury_app.command("approve")
def approve(
    order: Annotated[str, typer.Argument(help="the order contract's address")],
    key_file: KeyFile,
    wallet: Version = "v5r1",
    wait: WaitSeconds = 60.0,
) -> None:
    """Approve a treasury order from your signer wallet (read the order first: `order`)."""
    settings = get_settings()
    try:
        network = resolve_network(settings)
        order_address = raw_form(check_network(order, network, "order"))
    except TonrailError as exc:
        raise _fail(exc.message) from None

    async def send(api: ToncenterTonApi, signer: SignerWallet) -> None:
        before = await service.approve(api, signer, order_address, now=int(clock.now().timestamp()))
        typer.echo(f"approval sent from {raw(signer.address)} to order {order_address}")

        async def counted() -> bool:
            after = await order_state(api, order_address)
            return after.approvals > before.approvals or after.executed

        if wait > 0 and not await service.wait_for(counted, timeout_s=wait):
            raise _fail(f"the approval is not counted after {wait:.0f} s")
        after = await order_state(api, order_address)
        executed = ", executed" if after.executed else ""
        typer.echo(f"approvals {after.approvals} of {after.threshold}{executed}")

    _with_wallet(settings, network, key_file, wallet, send)


def _read(
    address: str, param: str, report: Callable[[ToncenterTonApi, str], Awaitable[None]]
) -> None:
    """Run one read of the chain on `address` (checked against the network) and report it."""
    settings = get_settings()

    async def main() -> None:
        network = resolve_network(settings)
        target = raw_form(check_network(address, network, param))
        api = ToncenterTonApi(ToncenterClient.from_network(network, settings))
        try:
            await report(api, target)
        finally:
            await api.aclose()

    try:
        asyncio.run(main())
    except TonrailError as exc:
        raise _fail(exc.message) from None


@treasury_app.command("show")
def show(
    address: Annotated[str, typer.Argument(help="the treasury multisig's address")],
) -> None:
    """The multisig's threshold, signers, proposers and next order seqno."""

    async def report(api: ToncenterTonApi, multisig: str) -> None:
        state = await multisig_state(api, multisig)
        _, balance = await api.account_state(multisig)
        typer.echo(f"treasury {multisig}: {format_minor(balance, 'TON')} TON")
        count = len(state.signers)
        typer.echo(f"threshold {state.threshold} of {count}; next order {state.next_order_seqno}")
        for i, signer in enumerate(state.signers):
            typer.echo(f"  signer {i}: {raw(signer)}")
        for i, proposer in enumerate(state.proposers):
            typer.echo(f"  proposer {i}: {raw(proposer)}")

    _read(address, "address", report)


@treasury_app.command("order")
def order(address: Annotated[str, typer.Argument(help="the order contract's address")]) -> None:
    """An order's approvals, expiry and status."""

    async def report(api: ToncenterTonApi, order_address: str) -> None:
        state = await order_state(api, order_address)
        typer.echo(f"order {state.order_seqno} of treasury {raw(state.multisig)}")
        typer.echo(
            f"approvals {state.approvals} of {state.threshold}; "
            f"{'executed' if state.executed else 'open'}; expires {state.expiration_date}"
        )
        for i, signer in enumerate(state.signers):
            mark = "approved" if state.approved_by(i) else "-"
            typer.echo(f"  signer {i}: {raw(signer)} {mark}")

    _read(address, "order", report)
