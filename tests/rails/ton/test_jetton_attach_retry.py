"""A USDT payout our own jetton wallet refuses for too little TON attached is retried with more.

The jetton wallet refuses a transfer whose attached TON is below its own estimate of the
transfer's fees (exit code 709 in the standard jetton wallet the local network deploys): its
transaction aborts, nothing moves, and the TON bounces back to the hot wallet less the fees.
That refusal is deterministic and ours, so the payout is not failed as `bounced`: the attempt
is booked (its real fees) and the payout goes back to the queue, to be signed again in a new
request with twice the TON attached (FEES_JETTON_ATTACH_MAX_NANOTON at most, at most
FEES_JETTON_ATTACH_RETRIES times). On the local network with the real TVM, both databases.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from ton_core import Address

from tests.rails.ton.rail_fixture import Rail
from tests.rails.ton.test_payouts import _books_against_chain, _opening_balances
from tonrail.db import Database
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance, check_books
from tonrail.payments.models import Attempt
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.models import TonTransfer

NOWHERE = Address("0:" + "ab" * 32).to_str(is_user_friendly=True, is_bounceable=True)


def attach_settings(rail: Rail, attach: int, **more: Any) -> None:
    """The worker attaches `attach` nanoton to USDT transfers (with or without history)."""
    rail.ctx.settings = rail.ctx.settings.model_copy(
        update={
            "ton_jetton_attach_nanoton": attach,
            "fees_jetton_attach_min_nanoton": attach,
            **more,
        }
    )


def new_payee() -> tuple[str, str]:
    """A fresh address (its jetton wallet does not exist yet): friendly form and raw."""
    address = Address((0, os.urandom(32)))
    return address.to_str(is_user_friendly=True, is_bounceable=False), raw(address)


async def pay(
    client: httpx.AsyncClient, auth: dict[str, str], amount: str, asset: str, to: str
) -> str:
    r = await client.post(
        "/v1/payouts", json={"amount": amount, "asset": asset, "destination": to}, headers=auth
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def transfers_of(db: Database, payment_id: str) -> list[TonTransfer]:
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(TonTransfer)
                .where(TonTransfer.payment_id == payment_id)
                .order_by(TonTransfer.message_value)
            )
        ).scalars()
        return list(rows)


async def error_messages(db: Database, payment_id: str) -> list[str | None]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(Attempt.error_message)
            .where(Attempt.payment_id == payment_id)
            .order_by(Attempt.number)
        )
        return list(rows.scalars())


async def test_a_refused_usdt_payout_is_retried_with_more_ton_and_paid_once(
    rail: Rail, client: httpx.AsyncClient, auth: dict[str, str], db: Database
) -> None:
    await _opening_balances(rail, db)
    attach_settings(rail, 15_000_000)  # the old floor: refused for a new payee
    hot = rail.ctx.wallet.address.to_str()
    ton_before = await rail.ton_balance(hot)
    usdt_before = await rail.usdt_balance(rail.ctx.wallet_raw)
    payee, payee_raw = new_payee()
    usdt = await pay(client, auth, "1.5", "USDT", payee)
    bounced = await pay(client, auth, "0.2", "TON", NOWHERE)  # another failure: still fails
    final = await rail.run_until_final([usdt, bounced], client, auth)

    p = final[usdt]
    assert p["status"] == "succeeded", p
    attempts = p["attempts"]
    assert [a["status"] for a in attempts] == ["failed"] * (len(attempts) - 1) + ["confirmed"]
    assert len(attempts) >= 2
    assert {a["error_code"] for a in attempts[:-1]} == {"jetton_attach_low"}
    assert "exit code 709" in str((await error_messages(db, usdt))[0])
    assert all(int(a["fee"].replace(".", "")) > 0 for a in attempts)
    # Each retry attached twice what was refused; the last one was accepted.
    transfers = await transfers_of(db, usdt)

    assert [t.message_value for t in transfers] == [15_000_000 * 2**i for i in range(len(attempts))]
    assert transfers[0].trace["our_jetton_wallet_exit_code"] == "709"
    # A payee-side failure is not retried: it fails as before, after one attempt.
    b = final[bounced]
    assert (b["status"], b["failure_code"]) == ("failed", "ton_bounced")
    assert [a["error_code"] for a in b["attempts"]] == ["bounced"]

    # The payee got the USDT exactly once; the hot wallet lost it once.
    assert await rail.usdt_balance(payee_raw) == 1_500_000
    assert usdt_before - await rail.usdt_balance(rail.ctx.wallet_raw) == 1_500_000
    # Books equal the chain, the refused attempts' fees included.
    assert await _books_against_chain(rail) == {}
    async with db.transaction() as session:
        fees = [f for f in (await session.execute(select(TonTransfer.fee))).scalars().all()]
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == 0
        assert await balance(session, books.NETWORK_FEES, "TON") == sum(f or 0 for f in fees)
        assert (await check_books(session)).ok
    assert sum(t.fee or 0 for t in transfers[:-1]) > 0
    assert ton_before - await rail.ton_balance(hot) == sum(f or 0 for f in fees)


@pytest.mark.parametrize(
    ("attach", "limit", "retries", "expected"),
    [
        # Refused at 7.5M, retried at 10M (the limit), refused again: nothing more to try.
        (7_500_000, 10_000_000, 2, [7_500_000, 10_000_000]),
        # No retries allowed: failed after the first refusal, as bounced was before.
        (15_000_000, 100_000_000, 0, [15_000_000]),
    ],
)
async def test_the_retry_cap_is_honoured(
    rail: Rail,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    db: Database,
    attach: int,
    limit: int,
    retries: int,
    expected: list[int],
) -> None:
    await _opening_balances(rail, db)
    attach_settings(
        rail,
        attach,
        fees_jetton_attach_max_nanoton=limit,
        fees_jetton_attach_retries=retries,
    )
    hot = rail.ctx.wallet.address.to_str()
    ton_before = await rail.ton_balance(hot)
    payee, payee_raw = new_payee()
    pid = await pay(client, auth, "2", "USDT", payee)
    p = (await rail.run_until_final([pid], client, auth))[pid]
    assert (p["status"], p["failure_code"]) == ("failed", "ton_jetton_attach_exhausted"), p
    codes = [a["error_code"] for a in p["attempts"]]
    assert codes == ["jetton_attach_low"] * (len(expected) - 1) + ["jetton_attach_exhausted"]
    assert "FEES_JETTON_ATTACH" in str((await error_messages(db, pid))[-1])
    transfers = await transfers_of(db, pid)
    assert [t.message_value for t in transfers] == expected
    # Nothing reached the payee; only the fees of the refused attempts left the hot wallet.
    assert await rail.usdt_balance(payee_raw) == 0
    assert await _books_against_chain(rail) == {}
    async with db.transaction() as session:
        assert await balance(session, books.PAYOUTS_PAYABLE, "USDT") == 0
        assert await balance(session, books.merchant_account("acct_test"), "USDT") == 0
        assert (await check_books(session)).ok
    fees = sum(t.fee or 0 for t in transfers)
    assert fees > 0
    assert ton_before - await rail.ton_balance(hot) == fees


def test_attach_refusals_have_their_own_budget_and_exhausted_is_final() -> None:
    from tonrail.processing.dispatch import ton_exhausted_by
    from tonrail.settings import Settings

    settings = Settings(_env_file=None, ton_max_attempts=2)  # type: ignore[call-arg]

    def attempt(status: str, code: str | None) -> Attempt:
        return Attempt(rail="ton", status=status, error_code=code)

    low = attempt("failed", "jetton_attach_low")
    assert not ton_exhausted_by(settings, [low, low, low])
    assert not ton_exhausted_by(settings, [low, low, attempt("expired", "expired")])
    assert ton_exhausted_by(settings, [low, attempt("expired", "expired")] * 2)
    assert ton_exhausted_by(settings, [attempt("failed", "jetton_attach_exhausted")])
    assert ton_exhausted_by(settings, [attempt("failed", "bounced")])
