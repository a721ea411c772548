"""AML/KYC screening of invoices paid by card (localstripe), PayPal (the local PayPal server)
and bank transfer (a CAMT.053 statement), on SQLite and PostgreSQL, with a sanctions list
file naming the payers: `blocked` is frozen (not credited, invoice failed, alert counter),
`review` is held until an approver releases or freezes it on the Approvals page, `clear` is
credited as before; every decision is stored, and money set apart cannot be refunded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from typer.testing import CliRunner

from tests.dashboard.conftest import admins, sign_in
from tests.rails.camt import Entry, statement
from tests.rails.conftest import OUR_IBAN, PAYEE_IBAN, books_ok
from tests.rails.providers import PayPalServer, StripeExtras
from tests.rails.test_bank import bank_invoice
from tests.rails.test_paypal import paypal_invoice, webhook
from tests.rails.test_stripe import invoice, sdk
from tests.screening.test_held_deposit_decisions import TON, held_deposit
from tonrail.cli import app
from tonrail.db import Database
from tonrail.errors import Conflict
from tonrail.events.models import OutboxEvent
from tonrail.ledger import rules as books
from tonrail.monitoring.models import MonitoringSignal
from tonrail.payments.attempts import attempt_view, payment_view
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.processing.backup_loop import BackupContext, backup_round
from tonrail.processing.bank_files import BankFiles
from tonrail.processing.outcomes import record_poll
from tonrail.rails.registry import routing_policy
from tonrail.screening.models import ScreeningDecision
from tonrail.screening.rules import Outcome, Subject, Verdict
from tonrail.settings import Settings, get_settings

__all__ = ["admins"]  # a fixture, used by name
MERCHANT = books.merchant_account("acct_test")
SANCTIONED_IBAN = "GB29NWBK60161331926819"


@pytest.fixture
def rail_settings(rail_settings: Settings, tmp_path: Path) -> Settings:
    listed = tmp_path / "sanctions.csv"
    listed.write_text(
        "kind,value,outcome,reason\n"
        "name,Ivan Blocked,blocked,OFAC SDN\n"
        "email,watch@example.com,review,under investigation\n"
        f"iban,{SANCTIONED_IBAN},blocked,EU consolidated list\n"
        "name,Rita Review,review,politically exposed\n"
    )
    return rail_settings.model_copy(update={"screening_list_file": str(listed)})


def loop(app: Any, db: Database) -> BackupContext:
    settings = app.state.settings
    return BackupContext(
        db, settings, app.state.payments, app.state.backup_rails, routing_policy(settings), "w-1"
    )


async def decisions(db: Database) -> list[ScreeningDecision]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(ScreeningDecision).order_by(ScreeningDecision.decided_at, ScreeningDecision.id)
        )
        return list(rows.scalars())


async def blocked_counter(db: Database) -> int:
    async with db.transaction() as session:
        value = await session.scalar(
            select(MonitoringSignal.value).where(MonitoringSignal.name == "screening_blocked")
        )
    return int(value or 0)


async def attempt_of(db: Database, invoice_id: str) -> Attempt:
    async with db.transaction() as session:
        [att] = (
            await session.execute(select(Attempt).where(Attempt.payment_id == invoice_id))
        ).scalars()
        return att


async def card_payment(
    client: httpx.AsyncClient, auth: dict[str, str], base: str, name: str, email: str
) -> str:
    """A 20 TON invoice (100.00 USD) paid on localstripe by a card with these billing details."""
    inv = await invoice(client, auth)
    r = await client.post(f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth)
    assert r.status_code == 201, r.text
    stripe = sdk(base)
    pm = await stripe.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
            "billing_details": {"name": name, "email": email},
        }
    )
    pi = r.json()["provider_ref"]
    await stripe.v1.payment_intents.update_async(pi, {"payment_method": pm.id})
    await stripe.v1.payment_intents.confirm_async(pi)
    return inv


async def test_a_card_payer_on_the_list_is_frozen_and_a_clean_one_credited(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    localstripe_url: str,
) -> None:
    # The name as the card holder typed it: case and spaces do not hide them.
    blocked = await card_payment(
        rail_client, auth, localstripe_url, "ivan  BLOCKED", "ivan@example.com"
    )
    clean = await card_payment(
        rail_client, auth, localstripe_url, "Ada Lovelace", "ada@example.com"
    )
    await backup_round(loop(rail_app, db))

    got = (await rail_client.get(f"/v1/invoices/{blocked}", headers=auth)).json()
    assert (got["status"], got["failure_code"]) == ("failed", "screening_blocked"), got
    ok = (await rail_client.get(f"/v1/invoices/{clean}", headers=auth)).json()
    assert ok["status"] == "succeeded"
    att = await attempt_of(db, blocked)
    assert att.status == "confirmed" and att.details["screening"] == "frozen"
    assert att.details["payer"] == {"name": "ivan BLOCKED", "email": "ivan@example.com"}
    balances = await books_ok(db)
    # Only the clean 20 TON reached the merchant; the blocked 100.00 USD is frozen apart.
    assert balances[(MERCHANT, "TON")] == -20 * 10**9
    assert balances[(books.SCREENING_FROZEN, "USD")] == -10_000
    assert balances.get((books.SCREENING_HELD, "USD"), 0) == 0
    stored = {(d.payment_id, d.outcome): d for d in await decisions(db)}
    refused = stored[(blocked, "blocked")]
    assert (refused.stage, refused.provider, refused.reason) == (
        "payment_credit",
        "list",
        "OFAC SDN",
    )
    assert (refused.name, refused.email, refused.address) == (
        "ivan BLOCKED",
        "ivan@example.com",
        None,
    )
    assert stored[(clean, "clear")].name == "Ada Lovelace"
    assert len(stored) == 2
    assert await blocked_counter(db) == 1

    # Frozen money is not the merchant's to give back to the card.
    r = await rail_client.post(f"/v1/invoices/{blocked}/refunds", json={}, headers=auth)
    assert r.status_code == 409 and r.json()["error"]["code"] == "refund_screening_hold"
    # Polled again, nothing changes: no second decision, no second booking.
    await backup_round(loop(rail_app, db))
    assert len(await decisions(db)) == 2
    assert (await books_ok(db)) == balances


async def session_payment(
    rail_app: Any,
    client: httpx.AsyncClient,
    auth: dict[str, str],
    stripe_extras: tuple[StripeExtras, str],
    name: str,
    email: str,
) -> str:
    """A 20 TON invoice (100.00 USD) paid through a Stripe Checkout Session by a customer
    who typed this name and e-mail on Stripe's page (`customer_details`)."""
    rail = rail_app.state.backup_rails["stripe"]
    rail.settings = rail.settings.model_copy(update={"stripe_incoming_mode": "checkout_session"})
    inv = await invoice(client, auth)
    r = await client.post(f"/v1/invoices/{inv}/checkout", json={"rail": "stripe"}, headers=auth)
    assert r.status_code == 201, r.text
    sid = r.json()["provider_ref"]
    assert sid.startswith("cs_")
    _, base = stripe_extras
    async with httpx.AsyncClient() as http:
        done = await http.post(
            f"{base}/_test/checkout/sessions/{sid}/complete", json={"name": name, "email": email}
        )
    assert done.status_code == 200, done.text
    return inv


async def test_a_checkout_session_payer_on_the_list_is_frozen_and_a_clean_one_credited(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    stripe_extras: tuple[StripeExtras, str],
) -> None:
    """The Checkout Session path names its payer from the session's `customer_details`."""
    blocked = await session_payment(
        rail_app, rail_client, auth, stripe_extras, "IVAN blocked", "ivan@example.com"
    )
    clean = await session_payment(
        rail_app, rail_client, auth, stripe_extras, "Ada Lovelace", "ada@example.com"
    )
    review = await session_payment(
        rail_app, rail_client, auth, stripe_extras, "A. Watcher", "watch@example.com"
    )
    await backup_round(loop(rail_app, db))

    got = (await rail_client.get(f"/v1/invoices/{blocked}", headers=auth)).json()
    assert (got["status"], got["failure_code"]) == ("failed", "screening_blocked"), got
    assert (await rail_client.get(f"/v1/invoices/{clean}", headers=auth)).json()[
        "status"
    ] == "succeeded"
    held = (await rail_client.get(f"/v1/invoices/{review}", headers=auth)).json()
    assert held["status"] == "processing", held
    att = await attempt_of(db, blocked)
    assert att.status == "confirmed" and att.details["screening"] == "frozen"
    assert att.details["payer"] == {"name": "IVAN blocked", "email": "ivan@example.com"}
    assert (await attempt_of(db, review)).details["screening"] == "held"
    balances = await books_ok(db)
    # Only the clean 20 TON reached the merchant; the others are set apart, not credited.
    assert balances[(MERCHANT, "TON")] == -20 * 10**9
    assert balances[(books.SCREENING_FROZEN, "USD")] == -10_000
    assert balances[(books.SCREENING_HELD, "USD")] == -10_000
    stored = {(d.payment_id, d.outcome): d for d in await decisions(db)}
    assert (stored[(blocked, "blocked")].name, stored[(blocked, "blocked")].reason) == (
        "IVAN blocked",
        "OFAC SDN",
    )
    assert stored[(review, "review")].email == "watch@example.com"
    assert stored[(clean, "clear")].name == "Ada Lovelace"
    assert len(stored) == 3


async def test_a_paypal_payer_under_review_is_held_until_an_approver_releases_it(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    paypal: tuple[PayPalServer, str],
    admins: dict[str, str],
) -> None:
    server, _ = paypal
    server.valid_signatures.add("good-sig")
    co = await paypal_invoice(rail_client, auth)  # 50.00 USD
    payer = {
        "name": {"given_name": "Sam", "surname": "Watch"},
        "email_address": "Watch@Example.com",
        "payer_id": "PAYERSAM1",
    }
    server.approve(co["provider_ref"], payer)
    body, headers = webhook("WH-R1", "CHECKOUT.ORDER.APPROVED", {"id": co["provider_ref"]})
    r = await rail_client.post("/webhooks/paypal", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "screening_held", r.text
    inv = co["invoice"]
    got = (await rail_client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert (got["status"], got["hold_reason"]) == ("processing", "screening_review")
    balances = await books_ok(db)
    assert balances.get((MERCHANT, "USD"), 0) == 0
    assert balances[(books.SCREENING_HELD, "USD")] == -5_000
    assert balances[(books.PROVIDER_FEES, "USD")] == 224  # PayPal kept its fee
    [held] = await decisions(db)
    assert (held.stage, held.outcome, held.email, held.name) == (
        "payment_credit",
        "review",
        "Watch@Example.com",
        "Sam Watch",
    )
    r = await rail_client.post(f"/v1/invoices/{inv}/refunds", json={}, headers=auth)
    assert r.status_code == 409 and r.json()["error"]["code"] == "refund_screening_hold"

    # The Approvals page lists it beside held deposits; an approver releases it.
    att = (await attempt_of(db, inv)).id
    csrf = await sign_in(rail_client, "approver")
    page = await rail_client.get("/dashboard/approvals")
    assert f'data-attempt="{att}"' in page.text and "Sam Watch" in page.text
    assert "under investigation" in page.text
    released = await rail_client.post(
        f"/dashboard/approvals/deposits/{att}/release", data={"csrf_token": csrf}
    )
    assert released.status_code == 200, released.text
    got = (await rail_client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert (got["status"], got["hold_reason"]) == ("succeeded", None)
    balances = await books_ok(db)
    assert balances[(MERCHANT, "USD")] == -5_000
    assert balances.get((books.SCREENING_HELD, "USD"), 0) == 0
    again = await rail_client.post(
        f"/dashboard/approvals/deposits/{att}/freeze", data={"csrf_token": csrf, "reason": "x"}
    )
    assert again.status_code == 409 and "payment_not_held" in again.text
    page = await rail_client.get("/dashboard/approvals")
    assert f'data-attempt="{att}"' not in page.text
    _, decided = await decisions(db)
    assert (decided.provider, decided.outcome, decided.requested_by) == (
        "approver",
        "clear",
        "admin:approver",
    )
    async with db.transaction() as session:
        events = (
            await session.execute(
                select(OutboxEvent.account_id, OutboxEvent.payload).where(
                    OutboxEvent.type == "payment.screening_released"
                )
            )
        ).all()
    assert [(owner, payload["id"]) for owner, payload in events] == [("system", att)]


async def test_bank_debtors_blocked_by_iban_held_by_name_and_frozen_by_an_approver(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    rail_settings: Settings,
    auth: dict[str, str],
    admins: dict[str, str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = BankFiles(db, rail_settings, PaymentService(db, rail_settings))
    by_iban = await bank_invoice(rail_client, auth, "300.00")
    by_name = await bank_invoice(rail_client, auth, "120.00")
    clean = await bank_invoice(rail_client, auth, "80.00")
    paid = statement(
        OUR_IBAN,
        [
            Entry(
                "C1", 30_000, "USD", "CRDT", by_iban["provider_ref"], debtor_iban=SANCTIONED_IBAN
            ),
            Entry("C2", 12_000, "USD", "CRDT", by_name["provider_ref"], debtor="RITA review"),
            Entry(
                "C3",
                8_000,
                "USD",
                "CRDT",
                clean["provider_ref"],
                debtor="Ada",
                debtor_iban=PAYEE_IBAN,
            ),
        ],
    )
    report = await files.import_statement(paid)
    assert [ln.outcome for ln in report.lines] == ["screening_frozen", "screening_held", "paid"]
    frozen = (await rail_client.get(f"/v1/invoices/{by_iban['invoice']}", headers=auth)).json()
    assert (frozen["status"], frozen["failure_code"]) == ("failed", "screening_blocked")
    held = (await rail_client.get(f"/v1/invoices/{by_name['invoice']}", headers=auth)).json()
    assert (held["status"], held["hold_reason"]) == ("processing", "screening_review")
    balances = await books_ok(db)
    assert balances[(MERCHANT, "USD")] == -8_000
    assert balances[(books.SCREENING_FROZEN, "USD")] == -30_000
    assert balances[(books.SCREENING_HELD, "USD")] == -12_000
    stored = {d.payment_id: d for d in await decisions(db)}
    assert (stored[by_iban["invoice"]].outcome, stored[by_iban["invoice"]].iban) == (
        "blocked",
        SANCTIONED_IBAN,
    )
    assert stored[by_iban["invoice"]].reason == "EU consolidated list"
    assert (stored[by_name["invoice"]].outcome, stored[by_name["invoice"]].name) == (
        "review",
        "RITA review",
    )
    assert stored[clean["invoice"]].outcome == "clear"
    assert await blocked_counter(db) == 1
    # Importing the same statement again changes nothing.
    again = await files.import_statement(paid)
    assert [ln.outcome for ln in again.lines] == ["duplicate"] * 3
    assert len(await decisions(db)) == 3

    # `tonrail deposits release|freeze` takes an attempt id too: a frozen one is not held.
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    frozen_att = (await attempt_of(db, by_iban["invoice"])).id
    cli = await asyncio.to_thread(CliRunner().invoke, app, ["deposits", "release", frozen_att])
    get_settings.cache_clear()
    assert cli.exit_code == 2 and "frozen, not held for review" in cli.output, cli.output

    # An approver freezes the held one: a reason is required; the invoice fails.
    att = (await attempt_of(db, by_name["invoice"])).id
    csrf = await sign_in(rail_client, "approver")
    url = f"/dashboard/approvals/deposits/{att}/freeze"
    no_reason = await rail_client.post(url, data={"csrf_token": csrf, "reason": " "})
    assert no_reason.status_code == 400 and "reason_required" in no_reason.text
    r = await rail_client.post(url, data={"csrf_token": csrf, "reason": "match confirmed"})
    assert r.status_code == 200, r.text
    failed = (await rail_client.get(f"/v1/invoices/{by_name['invoice']}", headers=auth)).json()
    assert (failed["status"], failed["failure_code"]) == ("failed", "screening_blocked")
    balances = await books_ok(db)
    assert balances[(books.SCREENING_FROZEN, "USD")] == -42_000
    assert balances.get((books.SCREENING_HELD, "USD"), 0) == 0
    assert balances[(MERCHANT, "USD")] == -8_000
    assert await blocked_counter(db) == 2
    last = (await decisions(db))[-1]
    assert (last.provider, last.outcome, last.reason) == ("approver", "blocked", "match confirmed")


@pytest.mark.parametrize("first", ["release", "freeze"])
async def test_an_invoice_with_a_held_card_payment_and_a_held_deposit_waits_for_both(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    auth: dict[str, str],
    localstripe_url: str,
    admins: dict[str, str],
    first: str,
) -> None:
    """Issue #16: one decision must not take the invoice off `screening_review` (nor the
    other held payment off the Approvals page) while the other payment is still held."""
    inv = await card_payment(rail_client, auth, localstripe_url, "Rita Review", "rita@example.com")
    await backup_round(loop(rail_app, db))
    card = (await attempt_of(db, inv)).id
    dep = await held_deposit(db, inv, 5 * TON)  # the watcher held a 5 TON deposit of it too
    got = (await rail_client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert (got["status"], got["hold_reason"]) == ("processing", "screening_review")
    csrf = await sign_in(rail_client, "approver")
    page = await rail_client.get("/dashboard/approvals")
    assert f'data-attempt="{card}"' in page.text and f'data-deposit="{dep}"' in page.text

    if first == "release":  # the deposit released first, then the card payment
        one, other, data = dep, card, {"csrf_token": csrf}
    else:  # the card payment frozen first, then the deposit released
        one, other, data = card, dep, {"csrf_token": csrf, "reason": "match confirmed"}
    r = await rail_client.post(f"/dashboard/approvals/deposits/{one}/{first}", data=data)
    assert r.status_code == 200, r.text
    got = (await rail_client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    assert (got["status"], got["hold_reason"]) == ("processing", "screening_review"), got
    page = await rail_client.get("/dashboard/approvals")
    mark = "attempt" if other == card else "deposit"
    assert f'data-{mark}="{other}"' in page.text
    assert f'data-{"deposit" if one == dep else "attempt"}="{one}"' not in page.text
    await books_ok(db)

    r = await rail_client.post(
        f"/dashboard/approvals/deposits/{other}/release", data={"csrf_token": csrf}
    )
    assert r.status_code == 200, r.text
    got = (await rail_client.get(f"/v1/invoices/{inv}", headers=auth)).json()
    page = await rail_client.get("/dashboard/approvals")
    assert f'data-attempt="{card}"' not in page.text and f'data-deposit="{dep}"' not in page.text
    balances = await books_ok(db)
    assert balances.get((books.SCREENING_HELD, "USD"), 0) == 0
    assert balances.get((books.SCREENING_HELD, "TON"), 0) == 0
    if first == "release":
        # Both released: the card paid the 20 TON invoice, the deposit is credited on top.
        assert (got["status"], got["hold_reason"]) == ("succeeded", None), got
        assert balances[(MERCHANT, "TON")] == -25 * TON
        assert balances.get((books.SCREENING_FROZEN, "USD"), 0) == 0
    else:
        # A payment of it was frozen: the invoice fails once nothing is held any more; the
        # released deposit stays credited (as after a blocked sender's deposit).
        assert (got["status"], got["failure_code"], got["hold_reason"]) == (
            "failed",
            "screening_blocked",
            None,
        ), got
        assert balances[(books.SCREENING_FROZEN, "USD")] == -10_000
        assert balances[(MERCHANT, "TON")] == -5 * TON


class TransactionWatch:
    """A screening provider that notes, each time it is asked, whether the database had a
    transaction open then (the engine's begin, commit and rollback events)."""

    name = "watch"

    def __init__(self, db: Database) -> None:
        self.engine = db.engine.sync_engine
        self.open = 0
        self.asked_in_transaction: list[bool] = []
        for name, listener in self._listeners():
            event.listen(self.engine, name, listener)

    def _listeners(self) -> list[tuple[str, Any]]:
        return [("begin", self._begin), ("commit", self._end), ("rollback", self._end)]

    def _begin(self, _conn: Any) -> None:
        self.open += 1

    def _end(self, _conn: Any) -> None:
        self.open -= 1

    def remove(self) -> None:
        for name, listener in self._listeners():
            event.remove(self.engine, name, listener)

    async def screen(self, subject: Subject, context: dict[str, Any]) -> Verdict:
        self.asked_in_transaction.append(self.open > 0)
        return Verdict(Outcome.CLEAR, self.name)


async def test_payers_are_screened_before_the_crediting_transaction_never_inside_it(
    db: Database,
    rail_app: Any,
    rail_client: httpx.AsyncClient,
    rail_settings: Settings,
    auth: dict[str, str],
    localstripe_url: str,
    paypal: tuple[PayPalServer, str],
) -> None:
    """Review finding: `record_poll` screened a payer its caller had not screened inside the
    crediting transaction (with the HTTP provider, a network call with a transaction open).
    It now takes what the caller's `screen_payer` answered and asks nobody itself."""
    watch = TransactionWatch(db)
    payments: PaymentService = rail_app.state.payments
    assert payments.screening is not None
    payments.screening.providers.append(watch)
    try:
        inv = await card_payment(rail_client, auth, localstripe_url, "Ada Lovelace", "a@ex.com")
        att = await attempt_of(db, inv)
        async with db.transaction() as session:
            payment = await session.get(Payment, inv)
            assert payment is not None
            pview, aview = payment_view(payment), attempt_view(att)
        result = await rail_app.state.backup_rails["stripe"].poll(pview, aview)
        assert result.status == "confirmed"
        # Without what the caller screened, the confirmed payment is not recorded at all ...
        with pytest.raises(TypeError, match="screened"):
            async with db.transaction() as session:
                att = await session.get(Attempt, aview.id, with_for_update=True)
                await record_poll(session, payments, att, result)  # type: ignore[call-arg]
        # ... nor credited unscreened when the caller says there was nobody to screen.
        with pytest.raises(Conflict) as unscreened:
            async with db.transaction() as session:
                att = await session.get(Attempt, aview.id, with_for_update=True)
                await record_poll(session, payments, att, result, screened=None)
        assert unscreened.value.code == "payer_not_screened"
        assert watch.asked_in_transaction == []
        assert (await attempt_of(db, inv)).status == "submitted"  # nothing written

        # The backup loop, a PayPal webhook and a bank statement credit: each payer is
        # screened once, with no transaction open, and credited.
        await backup_round(loop(rail_app, db))
        server, _ = paypal
        server.valid_signatures.add("good-sig")
        co = await paypal_invoice(rail_client, auth)
        server.approve(co["provider_ref"], {"name": {"given_name": "Ada"}, "payer_id": "P1"})
        body, headers = webhook("WH-T1", "CHECKOUT.ORDER.APPROVED", {"id": co["provider_ref"]})
        r = await rail_client.post("/webhooks/paypal", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["outcome"] == "succeeded", r.text
        bank = await bank_invoice(rail_client, auth, "80.00")
        files = BankFiles(db, rail_settings, payments)
        line = Entry("W1", 8_000, "USD", "CRDT", bank["provider_ref"], debtor="Ada")
        report = await files.import_statement(statement(OUR_IBAN, [line]))
        assert [ln.outcome for ln in report.lines] == ["paid"]
    finally:
        watch.remove()
    assert watch.asked_in_transaction == [False, False, False]
    for paid in (inv, co["invoice"], bank["invoice"]):
        got = (await rail_client.get(f"/v1/invoices/{paid}", headers=auth)).json()
        assert got["status"] == "succeeded", got
    assert {(d.payment_id, d.outcome) for d in await decisions(db)} == {
        (inv, "clear"),
        (co["invoice"], "clear"),
        (bank["invoice"], "clear"),
    }
    await books_ok(db)
