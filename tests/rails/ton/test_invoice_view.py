"""What a merchant sees on the objects: an invoice's deposits and what it has received, a
payout's transaction and its explorer link — on the local network, through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from tonutils.contracts import JettonTransferBuilder, WalletV5R1

from tests.rails.ton.rail_fixture import Rail, settled
from tests.rails.ton.test_deposits import USDT, drain, invoice
from tonrail.app import create_app
from tonrail.db import Database
from tonrail.localnet.genesis import TON
from tonrail.rails.ton.chain_view import raw
from tonrail.settings import Settings


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as c:
        return await c.get(url)


@pytest.fixture
async def api(rail: Rail, settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its explorer on the running local network (its toncenter v3)."""
    local = settings.model_copy(update={"ton_api_v3_url": rail.net.v3})
    transport = httpx.ASGITransport(app=create_app(local, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        yield c


async def test_partial_then_over_payment_shows_on_the_invoice(
    rail: Rail, payer: WalletV5R1, api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    hot = rail.ctx.wallet.address
    ton_inv = await invoice(api, auth, "3", "TON")
    usdt_inv = await invoice(api, auth, "10", "USDT")
    assert ton_inv["amount_received"] == "0.000000000"
    assert ton_inv["amount_remaining"] == "3.000000000"
    assert ton_inv["deposits"] == [] and ton_inv["paid_at"] is None
    await payer.transfer(hot, 1 * TON, body=ton_inv["reference"], bounce=False)
    await settled(payer, 0)
    await drain(rail, 2)  # the genesis funding, then ours
    part = (await api.get(f"/v1/invoices/{ton_inv['id']}", headers=auth)).json()
    assert part["status"] == "awaiting_payment" and part["paid_at"] is None
    assert part["amount_received"] == "1.000000000"
    assert part["amount_received_minor"] == TON
    assert part["amount_remaining"] == "2.000000000"
    [dep] = part["deposits"]
    assert dep["status"] == "underpaid" and dep["asset"] == "TON"
    assert dep["amount"] == "1.000000000" and dep["amount_minor"] == TON
    assert dep["sender"] == raw(payer.address) and len(dep["tx_hash"]) == 64
    # The explorer link of the local network shows that very transaction.
    assert dep["explorer_url"] == f"{rail.net.v3}/transactions?hash={dep['tx_hash']}"
    shown = (await _get(dep["explorer_url"])).json()["transactions"]
    assert len(shown) == 1 and shown[0]["in_msg"]["value"] == str(TON)

    await payer.transfer(hot, 2_500_000_000, body=ton_inv["reference"], bounce=False)
    await settled(payer, 1)
    await payer.transfer_message(
        JettonTransferBuilder(
            destination=hot,
            jetton_amount=4 * USDT,
            jetton_master_address=rail.net.genesis.usdt_master,
            forward_amount=1,
            forward_payload=usdt_inv["reference"],
            bounce=True,
        )
    )
    await settled(payer, 2)
    await drain(rail, 4)
    paid = (await api.get(f"/v1/invoices/{ton_inv['id']}", headers=auth)).json()
    assert paid["status"] == "succeeded" and paid["paid_at"] == paid["completed_at"]
    assert paid["amount_received"] == "3.500000000" and paid["amount_remaining"] == "0.000000000"
    assert [d["status"] for d in paid["deposits"]] == ["underpaid", "overpaid"]
    # The list shows the same.
    listed = (await api.get("/v1/invoices", headers=auth)).json()["data"]
    assert {i["id"]: i["amount_received"] for i in listed} == {
        ton_inv["id"]: "3.500000000",
        usdt_inv["id"]: "4.000000",
    }
    usdt = next(i for i in listed if i["id"] == usdt_inv["id"])
    assert usdt["amount_remaining"] == "6.000000" and usdt["status"] == "awaiting_payment"
    [jetton_dep] = usdt["deposits"]
    # A USDT deposit is paid by the owner of the sending jetton wallet.
    assert jetton_dep["sender"] == raw(payer.address) and jetton_dep["asset"] == "USDT"


async def test_a_confirmed_payout_shows_its_transaction(
    rail: Rail, api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    payee = rail.net.genesis.wallet("customer").address
    r = await api.post(
        "/v1/payouts",
        json={
            "amount": "0.5",
            "asset": "TON",
            "destination": payee.to_str(is_user_friendly=True, is_bounceable=False),
        },
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["tx_hash"] is None and r.json()["explorer_url"] is None
    [done] = (await rail.run_until_final([r.json()["id"]], api, auth)).values()
    assert done["status"] == "succeeded"
    assert len(done["tx_hash"]) == 64
    assert done["explorer_url"] == f"{rail.net.v3}/transactions?hash={done['tx_hash']}"
    [tx] = (await _get(done["explorer_url"])).json()["transactions"]
    # The hot wallet's transaction whose out messages carry the payout to the payee.
    assert raw(tx["account"]) == rail.ctx.wallet_raw
    assert any(
        raw(m["destination"]) == raw(payee) and m["value"] == "500000000" for m in tx["out_msgs"]
    )
