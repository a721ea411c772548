"""Pure rules of the books: which lines a movement posts, and what balanced means."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

# Chart of accounts. Debit-positive signs: assets and expenses grow with debits,
# liabilities (what we owe merchants and payees) grow with credits.
HOT_WALLET = "asset:hot_wallet"
# What the books say is still on hot wallets retired by a rotation (processing/wallet_rotation.py)
RETIRED_HOT_WALLETS = "asset:retired_hot_wallets"
# What reached the new wallet of a rotation before its switch (the part of a failed sweep that
# landed): the new wallet's holdings until the switch makes them the hot wallet's
NEXT_HOT_WALLET = "asset:next_hot_wallet"
TREASURY = "asset:treasury"  # the multisig treasury (docs/TREASURY.md)
PROVIDER_CLEARING = "asset:provider_clearing"
PAYOUTS_PAYABLE = "liability:payouts_payable"
NETWORK_FEES = "expense:network_fees"
PROVIDER_FEES = "expense:provider_fees"


MERCHANT_PREFIX = "liability:merchant:"
# Money an operator credited to an account by hand (`tonrail accounts top-up`): paid to us
# outside the invoice flow, or credit the operator extends; the audit log says which.
OPERATOR_TOP_UPS = "equity:operator_top_ups"
# Network and provider fees of an account's payouts, charged back to the account.
FEES_CHARGED = "income:fees_charged"
# HOUSE_ACCOUNT_ID: this value makes every account the house (no balances enforced).
EVERY_ACCOUNT = "*"


def merchant_account(account_id: str) -> str:
    return f"{MERCHANT_PREFIX}{account_id}"


def draws_on_balance(house_account_id: str, account_id: str) -> bool:
    """Whether the account's payouts must be covered by its balance; the house account
    (HOUSE_ACCOUNT_ID, or every account with `*`) draws on the hot wallet directly."""
    return house_account_id != EVERY_ACCOUNT and account_id != house_account_id


@dataclass(frozen=True, slots=True)
class Line:
    account: str
    asset: str
    amount: int  # debit > 0, credit < 0


def imbalance(lines: Iterable[Line]) -> dict[str, int]:
    """Per-asset sum of the lines; empty when the lines balance."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.asset] += line.amount
    return {asset: total for asset, total in totals.items() if total != 0}


def payout_reserved(account_id: str, asset: str, amount: int) -> list[Line]:
    """A payout is requested: the merchant's balance moves into payouts payable."""
    return [
        Line(merchant_account(account_id), asset, amount),
        Line(PAYOUTS_PAYABLE, asset, -amount),
    ]


def payout_released(account_id: str, asset: str, amount: int) -> list[Line]:
    """A payout is canceled or failed for good: the reservation goes back to the merchant."""
    return [
        Line(PAYOUTS_PAYABLE, asset, amount),
        Line(merchant_account(account_id), asset, -amount),
    ]


def payout_sent(asset: str, amount: int, fee: int, fee_asset: str, source: str) -> list[Line]:
    """A payout is confirmed: payable settled from `source`, and the fee booked as expense."""
    lines = [Line(PAYOUTS_PAYABLE, asset, amount), Line(source, asset, -amount)]
    if fee:
        fee_account = NETWORK_FEES if source in (HOT_WALLET, TREASURY) else PROVIDER_FEES
        lines += [Line(fee_account, fee_asset, fee), Line(source, fee_asset, -fee)]
    return lines


def treasury_order_funded(amount: int, fee: int) -> list[Line]:
    """The hot wallet paid for proposing a treasury order: `amount` goes to the order
    contract (which hands what gas leaves to the treasury when it executes) and `fee` to the
    network for the hot wallet's own two transactions."""
    return [
        Line(TREASURY, "TON", amount),
        Line(NETWORK_FEES, "TON", fee),
        Line(HOT_WALLET, "TON", -amount - fee),
    ]


def treasury_proposal_refused(lost: int, kept: int) -> list[Line]:
    """A treasury proposal the hot wallet executed that created no order (the multisig
    refused it): the hot wallet lost `lost` (its transactions' fees, the forward fees, the
    proposal's value less what bounced back, the fee of taking the bounce back in). Of it,
    `kept` reached the multisig and stayed there: it paid the multisig's transaction, whose
    fees the treasury's watcher books from `asset:treasury` (processing/treasury_reconcile.py);
    the rest went to the network from the hot wallet's own transactions and messages."""
    if not 0 <= kept <= lost:
        raise ValueError(f"kept {kept} must be between 0 and lost {lost}")
    lines = [
        Line(TREASURY, "TON", kept),
        Line(NETWORK_FEES, "TON", lost - kept),
        Line(HOT_WALLET, "TON", -lost),
    ]
    return [line for line in lines if line.amount]


def treasury_topup(asset: str, amount: int, fee: int) -> list[Line]:
    """The treasury refilled the hot wallet's float by `amount` (a multisig order); `fee`
    (TON) is what the treasury paid to forward the message."""
    lines = [Line(HOT_WALLET, asset, amount), Line(TREASURY, asset, -amount)]
    if fee:
        lines += [Line(NETWORK_FEES, "TON", fee), Line(TREASURY, "TON", -fee)]
    return lines


def rotation_sweep(
    *,
    held: dict[str, int],
    arrived: dict[str, int],
    fee: int,
    next_held: dict[str, int],
    retire: bool,
) -> list[Line]:
    """A hot wallet rotation's sweep in the books (processing/wallet_rotation.py), by asset.

    What left the old wallet is what `arrived` on the new one (TON net of the new wallet's own
    transaction fees) plus `fee` (TON, every nanoton the sweep cost both wallets, to the
    network). With `retire` (the sweep ends the old wallet's service): the old wallet's
    holdings `held` leave `asset:hot_wallet` for the retired wallets less what left it, and
    the new wallet's, what arrived plus what it held before (`next_held`, booked on
    `asset:next_hot_wallet`), become `asset:hot_wallet`. Without (a failed sweep: the old
    wallet is still the hot wallet): what left it leaves `asset:hot_wallet`, what arrived is
    booked on `asset:next_hot_wallet`. Zero lines are left out."""
    lines: list[Line] = []
    for asset in sorted({*held, *arrived, *next_held, "TON"}):
        came = arrived.get(asset, 0)
        left = came + (fee if asset == "TON" else 0)
        if retire:
            lines += [
                Line(HOT_WALLET, asset, came + next_held.get(asset, 0) - held.get(asset, 0)),
                Line(RETIRED_HOT_WALLETS, asset, held.get(asset, 0) - left),
                Line(NEXT_HOT_WALLET, asset, -next_held.get(asset, 0)),
            ]
        else:
            lines += [Line(HOT_WALLET, asset, -left), Line(NEXT_HOT_WALLET, asset, came)]
    lines.append(Line(NETWORK_FEES, "TON", fee))
    return [line for line in lines if line.amount]


def top_up(account_id: str, asset: str, amount: int) -> list[Line]:
    """An operator credits an account's balance (audited by the caller)."""
    return [
        Line(OPERATOR_TOP_UPS, asset, amount),
        Line(merchant_account(account_id), asset, -amount),
    ]


def fee_charged(account_id: str, fee_asset: str, fee: int) -> list[Line]:
    """A payout's fee, paid by us to the network or provider, charged to its account."""
    return [Line(merchant_account(account_id), fee_asset, fee), Line(FEES_CHARGED, fee_asset, -fee)]


def balance_changes(lines: Iterable[Line]) -> dict[tuple[str, str], int]:
    """How the lines change each merchant account's available balance, by (account, asset),
    sorted (rows are locked in this order everywhere); a credit to the liability raises it."""
    changes: dict[tuple[str, str], int] = defaultdict(int)
    for line in lines:
        if line.account.startswith(MERCHANT_PREFIX):
            changes[(line.account[len(MERCHANT_PREFIX) :], line.asset)] -= line.amount
    return {key: changes[key] for key in sorted(changes) if changes[key]}


def payment_received(account_id: str, asset: str, amount: int, destination: str) -> list[Line]:
    """Money arrived for an invoice: our holdings grow and so does what we owe the merchant."""
    return [Line(destination, asset, amount), Line(merchant_account(account_id), asset, -amount)]


# --- backup rails (Stripe, PayPal, bank). Money on a backup rail moves in the rail's
# currency (USD); `CONVERSION` carries the exchange so every asset balances on its own.
CONVERSION = "equity:conversion"
UNAPPLIED_RECEIPTS = "liability:unapplied_receipts"


def payout_settled_by_provider(
    asset: str, amount: int, rail_asset: str, rail_amount: int, fee: int
) -> list[Line]:
    """A payout confirmed on a backup rail: the payable is settled from provider clearing
    in the rail's currency, and the provider's fee is booked as an expense."""
    lines = [Line(PAYOUTS_PAYABLE, asset, amount)]
    if asset == rail_asset:
        lines.append(Line(PROVIDER_CLEARING, asset, -amount))
    else:
        lines += [
            Line(CONVERSION, asset, -amount),
            Line(CONVERSION, rail_asset, rail_amount),
            Line(PROVIDER_CLEARING, rail_asset, -rail_amount),
        ]
    if fee:
        lines += [Line(PROVIDER_FEES, rail_asset, fee), Line(PROVIDER_CLEARING, rail_asset, -fee)]
    return lines


def payment_received_by_provider(
    account_id: str,
    asset: str,
    amount: int,
    rail_asset: str,
    rail_amount: int,
    fee: int,
    source: str = PROVIDER_CLEARING,
) -> list[Line]:
    """An invoice paid on a backup rail: `rail_amount` arrives in `source` (provider
    clearing, or unapplied receipts already booked from a bank statement), the merchant is
    owed the invoice amount, and the provider's fee is an expense taken from clearing."""
    lines = [Line(source, rail_asset, rail_amount)]
    if asset == rail_asset:
        if rail_amount != amount:
            raise ValueError("same currency: the applied amount must equal the invoice amount")
        lines.append(Line(merchant_account(account_id), asset, -amount))
    else:
        lines += [
            Line(CONVERSION, rail_asset, -rail_amount),
            Line(CONVERSION, asset, amount),
            Line(merchant_account(account_id), asset, -amount),
        ]
    if fee:
        lines += [Line(PROVIDER_FEES, rail_asset, fee), Line(PROVIDER_CLEARING, rail_asset, -fee)]
    return lines


def bank_credit_booked(asset: str, amount: int) -> list[Line]:
    """A credit line of a bank statement: in our account, not yet applied to an invoice."""
    return [Line(PROVIDER_CLEARING, asset, amount), Line(UNAPPLIED_RECEIPTS, asset, -amount)]


# --- TON rail: fees and receipts that no invoice explains
FORWARDED_TON_INCOME = "income:forwarded_ton"
STRAY_OUTFLOW = "expense:stray_outflow"


# AML/KYC screening of deposits (processing/deposits.py): money that arrived from a sender
# held for review, or frozen (blocked): ours to keep apart, owed to no merchant.
SCREENING_HELD = "liability:screening_held"
SCREENING_FROZEN = "liability:screening_frozen"


def receipt_set_apart(
    account: str, asset: str, amount: int, holder: str = HOT_WALLET
) -> list[Line]:
    """A deposit whose sender screening held or blocked: in the hot wallet (or a retired
    one, `holder`), and owed to `account` (SCREENING_HELD or SCREENING_FROZEN) instead of a
    merchant."""
    return [Line(holder, asset, amount), Line(account, asset, -amount)]


def network_fee(fee: int, asset: str = "TON", holder: str = HOT_WALLET) -> list[Line]:
    """Fees the hot wallet (or a retired one, `holder`) paid to the network."""
    return [Line(NETWORK_FEES, asset, fee), Line(holder, asset, -fee)]


def receipt_unapplied(asset: str, amount: int, holder: str = HOT_WALLET) -> list[Line]:
    """Money arrived that no open invoice explains: held until an operator resolves it."""
    return [Line(holder, asset, amount), Line(UNAPPLIED_RECEIPTS, asset, -amount)]


def forwarded_ton_received(amount: int, holder: str = HOT_WALLET) -> list[Line]:
    """TON a jetton sender attached to its transfer notification: ours, but not a payment."""
    return [Line(holder, "TON", amount), Line(FORWARDED_TON_INCOME, "TON", -amount)]


def stray_outflow(amount: int) -> list[Line]:
    """TON that left the hot wallet in a message no payout explains (processing/outcomes.py:
    `Stray`): gone from our holdings, an expense until an operator recovers it."""
    return [Line(STRAY_OUTFLOW, "TON", amount), Line(HOT_WALLET, "TON", -amount)]
