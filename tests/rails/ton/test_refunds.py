"""Refunds paid back on the local network: TON to the wallet that paid, USDT to the owner
of the jetton wallet that sent it; refund and payout succeed together, books balance."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from tonutils.contracts import JettonTransferBuilder, WalletV5R1

from tests.rails.ton.rail_fixture import Rail, settled
from tests.rails.ton.test_deposits import USDT, drain, invoice
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.localnet.genesis import TON
from tonrail.rails.ton.chain_view import raw


async def test_ton_and_usdt_refunds_go_back_to_the_payer(
    rail: Rail, payer: WalletV5R1, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    hot = rail.ctx.wallet.address
    ton_inv = await invoice(client, auth, "2", "TON")
    usdt_inv = await invoice(client, auth, "10", "USDT")
    await payer.transfer(hot, 3 * TON, body=ton_inv["reference"], bounce=False)  # overpaid
    await settled(payer, 0)
    await payer.transfer_message(
        JettonTransferBuilder(
            destination=hot,
            jetton_amount=10 * USDT,
            jetton_master_address=rail.net.genesis.usdt_master,
            forward_amount=1,
            forward_payload=usdt_inv["reference"],
            bounce=True,
        )
    )
    await settled(payer, 1)
    await drain(rail, 3)  # the genesis funding, then ours
    ton_before = await rail.ton_balance(payer.address.to_str())
    usdt_before = await rail.usdt_balance(raw(payer.address))

    excess = await client.post(
        f"/v1/invoices/{ton_inv['id']}/refunds",
        json={"amount": "1", "reason": "overpaid"},
        headers=auth,
    )
    usdt_part = await client.post(
        f"/v1/invoices/{usdt_inv['id']}/refunds", json={"amount": "2.5"}, headers=auth
    )
    assert excess.status_code == usdt_part.status_code == 201, (excess.text, usdt_part.text)
    assert excess.json()["destination"] == usdt_part.json()["destination"] == raw(payer.address)
    payouts = [excess.json()["payout"], usdt_part.json()["payout"]]
    final = await rail.run_until_final(payouts, client, auth)
    assert [p["status"] for p in final.values()] == ["succeeded", "succeeded"]
    for r in (excess, usdt_part):
        got = (await client.get(f"/v1/refunds/{r.json()['id']}", headers=auth)).json()
        assert got["status"] == "succeeded" and got["failure_code"] is None
    assert await rail.usdt_balance(raw(payer.address)) - usdt_before == 2_500_000
    # The payer's wallet pays its own storage and nothing else meanwhile: it got 1 TON back.
    gained = await rail.ton_balance(payer.address.to_str()) - ton_before
    assert TON - TON // 100 < gained <= TON
    async with db.transaction() as session:
        succeeded = (
            await session.execute(
                select(OutboxEvent.payload).where(OutboxEvent.type == "refund.succeeded")
            )
        ).scalars()
        assert sorted(e["id"] for e in succeeded) == sorted(
            [excess.json()["id"], usdt_part.json()["id"]]
        )
        # The merchant was owed 3 TON and 10 USDT; the refunds took 1 TON and 2.5 USDT back.
        merchant = books.merchant_account("acct_test")
        assert await balance(session, merchant, "TON") == -2 * TON
        assert await balance(session, merchant, "USDT") == -7_500_000
        assert await balance(session, books.PAYOUTS_PAYABLE, "TON") == 0
        assert (await check_books(session)).ok
    ton_view = (await client.get(f"/v1/invoices/{ton_inv['id']}", headers=auth)).json()
    assert ton_view["amount_received"] == "3.000000000"
    assert ton_view["amount_refunded"] == "1.000000000"
