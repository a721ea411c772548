"""The least TON the fee optimizer attaches to a USDT transfer is enough for the jetton wallet.

The optimizer attaches max(FEES_JETTON_ATTACH_MIN_NANOTON, twice the observed p90 spend).
A jetton wallet refuses a transfer before sending it unless the attached TON covers its own
estimate (forward amount, two forward fees, the state-init overhead, both wallets' compute
fees and the new wallet's minimum storage), which is well above what a transfer really
spends (most of it comes back as the excess). With the old floor (0.015 TON) the optimizer,
once it had seen a few transfers (~0.012 TON spent, so ~0.024 attached), went below that
estimate and our jetton wallet refused nearly every USDT payout (they failed as bounced).
"""

from __future__ import annotations

import asyncio
import os

from ton_core import Address
from tonutils.contracts import JettonTransferBuilder, WalletV5R1

from tests.rails.ton.rail_fixture import Rail, settled
from tonrail.settings import Settings


async def test_the_default_floor_is_accepted_by_the_usdt_jetton_wallet(
    rail: Rail, payer: WalletV5R1
) -> None:
    floor = Settings.model_fields["fees_jetton_attach_min_nanoton"].default
    owner = payer.address.to_str(is_user_friendly=False)
    before = await rail.usdt_balance(owner)
    assert before >= 2_000_000
    fresh = Address((0, os.urandom(32)))  # a new payee: its jetton wallet is deployed
    await payer.refresh()
    try:
        [seqno] = await payer.run_get_method("seqno")
    except Exception:
        seqno = 0
    await payer.transfer_message(
        JettonTransferBuilder(
            destination=fresh,
            jetton_amount=1_000_000,
            jetton_master_address=rail.net.genesis.usdt_master,
            forward_amount=1,  # as tonrail's payouts (FeePolicy.jetton_forward)
            amount=floor,
            bounce=True,
        )
    )
    await settled(payer, seqno)
    for _ in range(100):  # the transfer's trace takes a few blocks
        if await rail.usdt_balance(owner) != before:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    assert await rail.usdt_balance(owner) == before - 1_000_000, (
        f"the jetton wallet refused a transfer with {floor} nanoton attached"
    )
