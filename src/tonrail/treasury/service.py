"""Treasury use cases on chain: deploy the multisig, propose an order, approve an order.

Each is one message from a wallet whose key the caller holds (the operator's deploy wallet,
an approver's wallet); what the multisig then does is the contract's own business. Waiting
for the outcome is the caller's choice (`wait_for`), reading the contracts' get-methods.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ton_core import Address, Cell, InternalMessage

from tonrail.errors import TonrailError
from tonrail.rails.ton.api import TonApi
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.highload import jetton_transfer, ton_transfer
from tonrail.treasury.multisig import (
    MultisigConfig,
    approve_body,
    multisig_address,
    multisig_state_init,
    new_order_body,
    order_address,
    order_cell,
    send_message_action,
)
from tonrail.treasury.reader import OrderState, multisig_state, order_state
from tonrail.treasury.wallets import SignerWallet

TON = 10**9
DEPLOY_VALUE = TON // 2  # the multisig's first balance: storage for years, order execution gas
APPROVE_VALUE = TON // 10  # returned (approve_accepted) but for the gas; the last one executes
ORDER_VALUE_MARGIN = TON // 20  # above the contract's own estimate (get_order_estimate)
ORDER_LIFETIME_S = 7 * 24 * 3600


class TreasuryRefused(TonrailError):
    """The multisig or the order would refuse this message; nothing was sent."""

    code = "treasury_refused"
    status = 409


@dataclass(frozen=True)
class ProposedOrder:
    multisig: Address
    order_seqno: int
    order: Address
    expiration_date: int
    message_hash: str  # the proposer wallet's external, normalized


def payout_ton_message(
    destination: Address, amount: int, comment: str, *, bounce: bool
) -> InternalMessage:
    """A TON payout from the treasury: `amount` nanoton with a text comment (`bounce` as the
    payee's address form says, like the hot wallet's payouts)."""
    return ton_transfer(destination, amount, bounce, comment).message()


def payout_jetton_message(
    treasury_jetton_wallet: Address,
    treasury: Address,
    recipient: Address,
    amount: int,
    comment: str,
    *,
    attach_ton: int,
    forward_ton: int = 1,
    query_id: int = 0,
) -> InternalMessage:
    """A jetton (USDT) payout from the treasury's jetton wallet; the excess returns to it."""
    return jetton_transfer(
        treasury_jetton_wallet,
        recipient,
        amount,
        attach_ton=attach_ton,
        forward_ton=forward_ton,
        response=treasury,
        query_id=query_id,
        comment=comment,
    ).message()


async def deploy(wallet: SignerWallet, config: MultisigConfig, value: int = DEPLOY_VALUE) -> str:
    """Send the multisig's state init from `wallet`; returns the multisig's raw address."""
    address = multisig_address(config)
    await wallet.send(address, value, Cell.empty(), multisig_state_init(config))
    return raw(address)


async def order_estimate(api: TonApi, multisig: str, order: Cell, expiration_date: int) -> int:
    """What the contract asks for creating, storing and executing `order` (nanoton)."""
    cell = ["tvm.Cell", base64.b64encode(order.to_boc()).decode()]
    exit_code, stack = await api.run_get_method(
        multisig, "get_order_estimate", [cell, ["num", hex(expiration_date)]]
    )
    if exit_code != 0 or not stack:
        raise TreasuryRefused(f"get_order_estimate failed with exit code {exit_code}")
    return int(str(stack[0][1]), 16)


async def propose(
    api: TonApi,
    wallet: SignerWallet,
    multisig: str,
    messages: list[InternalMessage],
    *,
    now: int,
    lifetime_s: int = ORDER_LIFETIME_S,
) -> ProposedOrder:
    """Create an order carrying exactly `messages`, sent from a signer's or proposer's wallet.

    The order's seqno is the multisig's next one; a concurrent proposal taking it makes the
    multisig refuse ours (the order_seqno is explicit), never create a different order."""
    state = await multisig_state(api, multisig)
    me = raw(wallet.address)
    signers = [raw(a) for a in state.signers]
    proposers = [raw(a) for a in state.proposers]
    if me in signers:
        is_signer, index = True, signers.index(me)
    elif me in proposers:
        is_signer, index = False, proposers.index(me)
    else:
        raise TreasuryRefused(f"{me} is neither a signer nor a proposer of {multisig}")
    if state.next_order_seqno < 0:
        raise TreasuryRefused("this multisig takes arbitrary order seqnos; tonrail does not")
    order = order_cell([send_message_action(m) for m in messages])
    expiration = now + lifetime_s
    value = await order_estimate(api, multisig, order, expiration) + ORDER_VALUE_MARGIN
    body = new_order_body(
        order,
        expiration_date=expiration,
        signer=is_signer,
        index=index,
        order_seqno=state.next_order_seqno,
    )
    multisig_addr = Address(multisig)
    sent = await wallet.send(multisig_addr, value, body)
    return ProposedOrder(
        multisig_addr,
        state.next_order_seqno,
        order_address(multisig_addr, state.next_order_seqno),
        expiration,
        sent,
    )


class NotASigner(TreasuryRefused):
    """The wallet is not one of the order's signers: it cannot approve."""

    code = "not_a_signer"
    status = 403


@dataclass(frozen=True)
class ApproveMessage:
    """The one message that approves an order from signer `signer_index`'s wallet: what the
    CLI sends and what the dashboard hands to the approver's wallet through TON Connect."""

    order: Address
    signer_index: int
    value: int
    body: Cell

    def ton_connect(self) -> dict[str, str]:
        """The message as TON Connect's sendTransaction takes it (bounceable destination:
        an order that is not there returns the TON)."""
        return {
            "address": self.order.to_str(is_user_friendly=True, is_bounceable=True),
            "amount": str(self.value),
            "payload": base64.b64encode(self.body.to_boc()).decode(),
        }


def approval_of(
    state: OrderState, order: str, signer: str, *, now: int, value: int = APPROVE_VALUE
) -> ApproveMessage:
    """The approve message from wallet `signer` (`raw()` form) for the order read as `state`;
    refuses (TreasuryRefused, nothing sent) what the order would refuse."""
    if not state.initialized:
        raise TreasuryRefused(f"{order} is not an initialised order")
    if state.executed:
        raise TreasuryRefused(f"order {order} has been executed already")
    if state.expiration_date < now:
        raise TreasuryRefused(f"order {order} expired")
    signers = [raw(a) for a in state.signers]
    if signer not in signers:
        raise NotASigner(f"{signer} is not a signer of order {order}")
    index = signers.index(signer)
    if state.approved_by(index):
        raise TreasuryRefused(
            f"{signer} (signer {index}) approved order {order} already", code="already_approved"
        )
    return ApproveMessage(Address(order), index, value, approve_body(index))


async def approve(
    api: TonApi, wallet: SignerWallet, order: str, *, now: int, value: int = APPROVE_VALUE
) -> OrderState:
    """Approve the order at `order` from a signer's wallet; refuses what the order would.

    Returns the order as read before approving."""
    state = await order_state(api, order)
    message = approval_of(state, order, raw(wallet.address), now=now, value=value)
    await wallet.send(message.order, message.value, message.body)
    return state


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float, poll_s: float = 0.5
) -> bool:
    """Poll `check` until it holds or `timeout_s` passes; True when it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll_s)
