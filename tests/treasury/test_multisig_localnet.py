"""TON's multisig v2 on the local network: deploy 2-of-3, propose a payout, two approvals,
the order executes and the payee gets exactly the amount."""

from __future__ import annotations

import time

import pytest
from ton_core import Address

from tests.treasury.conftest import Net
from tonrail.localnet.genesis import TON
from tonrail.rails.ton.api import stack_address
from tonrail.rails.ton.chain_view import raw
from tonrail.treasury.multisig import MultisigConfig, order_address
from tonrail.treasury.reader import multisig_state, order_state
from tonrail.treasury.service import (
    TreasuryRefused,
    approve,
    deploy,
    payout_ton_message,
    propose,
    wait_for,
)


async def _active(net: Net, address: str) -> bool:
    state, _ = await net.api.account_state(address)
    return state == "active"


async def test_two_of_three_pays_exactly_the_amount_in_ton(net: Net) -> None:
    operator = await net.funded_wallet("operator")
    signers = [await net.funded_wallet(f"signer-{i}") for i in range(3)]
    # The operator proposes (as the service's hot wallet will): proposing is no approval.
    config = MultisigConfig(2, tuple(s.address for s in signers), (operator.address,))
    treasury = await deploy(operator, config)
    assert await wait_for(lambda: _active(net, treasury), timeout_s=10, poll_s=0.05)
    net.chain.faucet(treasury, 1_000 * TON)

    state = await multisig_state(net.api, treasury)
    assert (state.next_order_seqno, state.threshold) == (0, 2)
    assert [raw(a) for a in state.signers] == [raw(s.address) for s in signers]
    assert [raw(a) for a in state.proposers] == [raw(operator.address)]

    payee = Address((0, b"\x51" * 32))
    amount = 123_456_789_012
    proposed = await propose(
        net.api,
        operator,
        treasury,
        [payout_ton_message(payee, amount, "pay_treasury_1", bounce=False)],
        now=int(time.time()),
    )
    assert raw(proposed.order) == raw(order_address(Address(treasury), 0))
    assert await wait_for(lambda: _active(net, raw(proposed.order)), timeout_s=10, poll_s=0.05)
    order = await order_state(net.api, raw(proposed.order))
    assert order.initialized and not order.executed
    assert (order.approvals, order.threshold) == (0, 2)
    assert raw(order.multisig) == treasury and order.order_seqno == 0

    await approve(net.api, signers[1], raw(proposed.order), now=int(time.time()))

    async def one_approval() -> bool:
        return (await order_state(net.api, raw(proposed.order))).approvals == 1

    assert await wait_for(one_approval, timeout_s=10, poll_s=0.05)
    assert net.chain.account(payee).balance == 0
    await approve(net.api, signers[2], raw(proposed.order), now=int(time.time()))

    async def paid() -> bool:
        return net.chain.account(payee).balance > 0

    assert await wait_for(paid, timeout_s=10, poll_s=0.05)
    assert net.chain.account(payee).balance == amount
    done = await order_state(net.api, raw(proposed.order))
    assert done.executed and done.approvals == 2
    assert done.approved_by(1) and done.approved_by(2) and not done.approved_by(0)
    assert (await multisig_state(net.api, treasury)).next_order_seqno == 1


async def test_the_order_address_is_the_contracts_own(net: Net) -> None:
    operator = await net.funded_wallet("operator")
    config = MultisigConfig(1, (operator.address,))
    treasury = await deploy(operator, config)
    assert await wait_for(lambda: _active(net, treasury), timeout_s=10, poll_s=0.05)
    for seqno in (0, 1, 7, 2**255):
        exit_code, stack = await net.api.run_get_method(
            treasury, "get_order_address", [["num", hex(seqno)]]
        )
        assert exit_code == 0
        assert stack_address(stack[0]) == raw(order_address(Address(treasury), seqno))


async def test_refusals_send_nothing(net: Net) -> None:
    operator = await net.funded_wallet("operator")
    signers = [await net.funded_wallet(f"signer-{i}") for i in range(2)]
    stranger = await net.funded_wallet("stranger")
    treasury = await deploy(operator, MultisigConfig(2, tuple(s.address for s in signers)))
    assert await wait_for(lambda: _active(net, treasury), timeout_s=10, poll_s=0.05)
    payee = Address((0, b"\x52" * 32))
    message = payout_ton_message(payee, TON, "no", bounce=False)
    with pytest.raises(TreasuryRefused, match="neither a signer nor a proposer"):
        await propose(net.api, stranger, treasury, [message], now=int(time.time()))
    # A signer proposing approves at once (the contract's approve_on_init).
    proposed = await propose(net.api, signers[0], treasury, [message], now=int(time.time()))
    order = raw(proposed.order)
    assert await wait_for(lambda: _active(net, order), timeout_s=10, poll_s=0.05)
    assert (await order_state(net.api, order)).approved_by(0)
    before = await stranger.balance()
    with pytest.raises(TreasuryRefused, match="is not a signer"):
        await approve(net.api, stranger, order, now=int(time.time()))
    with pytest.raises(TreasuryRefused, match=r"approved order .* already"):
        await approve(net.api, signers[0], order, now=int(time.time()))
    assert await stranger.balance() == before
    state = await order_state(net.api, order)
    assert (state.approvals, state.executed) == (1, False)
    assert net.chain.account(payee).balance == 0
