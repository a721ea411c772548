"""The network's gas caps (TON_GAS_CAP_*) hold a payout whose estimated fee or attach is above
them: it stays queued with the cap as `hold_reason`, nothing is signed or sent, an alert
opens; once the cap is raised (or the estimate falls) it goes, once."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from tests.rails.ton.rail_fixture import Rail
from tonrail.db import Database
from tonrail.events.models import OutboxEvent
from tonrail.monitoring.jobs import evaluate_once
from tonrail.monitoring.models import Alert
from tonrail.payments.models import Attempt
from tonrail.processing.ton_loop import assemble, send_due
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.models import TonRequest, TonTransfer
from tonrail.settings import Settings
from tonrail.states import HoldReason


async def _payout(client: httpx.AsyncClient, auth: dict[str, str], asset: str, to: str) -> str:
    r = await client.post(
        "/v1/payouts", json={"amount": "1.25", "asset": asset, "destination": to}, headers=auth
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _alert(db: Database, key: str) -> Alert | None:
    async with db.transaction() as session:
        return (
            await session.execute(select(Alert).where(Alert.dedup_key == key))
        ).scalar_one_or_none()


async def _sent_for(db: Database, payout_id: str) -> tuple[int, int]:
    """(transfers signed for the payout, its attempts)."""
    async with db.transaction() as session:
        transfers = (
            await session.execute(
                select(func.count())
                .select_from(TonTransfer)
                .where(TonTransfer.payment_id == payout_id)
            )
        ).scalar_one()
        attempts = (
            await session.execute(
                select(func.count()).select_from(Attempt).where(Attempt.payment_id == payout_id)
            )
        ).scalar_one()
    return int(transfers), int(attempts)


async def _held_then_released(
    rail: Rail,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    settings: Settings,
    payout_id: str,
    reason: HoldReason,
    cap: dict[str, int],
) -> None:
    base = rail.ctx.settings
    rail.ctx.settings = base.model_copy(update=cap)
    requests_before = await _count(db, TonRequest)
    for _ in range(3):  # every round decides again; it stays held
        state, _ = await rail.api.account_state(rail.ctx.wallet.address.to_str())
        assert await assemble(rail.ctx, deploy=state != "active") is None
        assert await send_due(rail.ctx) == 0
    p = (await client.get(f"/v1/payouts/{payout_id}", headers=auth)).json()
    assert p["status"] == "queued" and p["hold_reason"] == reason
    assert p["attempts"] == []
    assert await _sent_for(db, payout_id) == (0, 0)
    assert await _count(db, TonRequest) == requests_before
    async with db.transaction() as session:
        held = (
            (
                await session.execute(
                    select(OutboxEvent).where(
                        OutboxEvent.type == "payout.held",
                        OutboxEvent.payment_id == payout_id,
                    )
                )
            )
            .scalars()
            .all()
        )
    [event] = held  # once, not once per round
    [cap_value] = cap.values()
    assert event.payload["reason"] == reason and event.payload["cap_nanoton"] == cap_value
    assert event.payload["estimate_nanoton"] > cap_value

    key = f"gas_cap_exceeded:{reason}"
    await evaluate_once(db, settings, {})
    alert = await _alert(db, key)
    assert alert is not None and alert.status == "open" and alert.severity == "critical"
    assert alert.details["payout_ids"] == [payout_id]

    rail.ctx.settings = base  # the preset's caps again
    final = await rail.run_until_final([payout_id], client, auth)
    assert final[payout_id]["status"] == "succeeded"
    assert final[payout_id]["hold_reason"] is None
    assert await _sent_for(db, payout_id) == (1, 1)
    await evaluate_once(db, settings, {})
    alert = await _alert(db, key)
    assert alert is not None and alert.status == "resolved"


async def _count(db: Database, model: type[TonRequest]) -> int:
    async with db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_ton_fee_above_its_cap_is_held_until_the_cap_allows_it(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> None:
    payee = rail.net.genesis.wallet("customer").address.to_str(
        is_user_friendly=True, is_bounceable=False
    )
    # A first payout makes a fee history: the estimate is the real fee of this network.
    first = await _payout(client, auth, "TON", payee)
    await rail.run_until_final([first], client, auth)
    async with db.transaction() as session:
        real_fee = (
            await session.execute(select(TonTransfer.fee).where(TonTransfer.payment_id == first))
        ).scalar_one()
    assert real_fee is not None and real_fee > 0
    second = await _payout(client, auth, "TON", payee)
    await _held_then_released(
        rail,
        client,
        auth,
        db,
        settings,
        second,
        HoldReason.GAS_CAP_TON_TRANSFER_FEE,
        {"ton_gas_cap_ton_transfer": real_fee // 2},
    )


async def test_jetton_attach_above_its_cap_is_held_until_the_cap_allows_it(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database, settings: Settings
) -> None:
    payee = raw(rail.net.genesis.wallet("customer").address)
    payout = await _payout(client, auth, "USDT", payee)
    usdt_before = await rail.usdt_balance(payee)
    await _held_then_released(
        rail,
        client,
        auth,
        db,
        settings,
        payout,
        HoldReason.GAS_CAP_JETTON_ATTACH,
        {"ton_gas_cap_jetton_attach": rail.ctx.settings.ton_jetton_attach_nanoton - 1},
    )
    assert await rail.usdt_balance(payee) == usdt_before + 1_250_000
