"""Demo data for `tonrail run`: the first admin, and live traffic on the local TON network.

The traffic generator is a merchant and a customer in one background task. As merchants it
makes payouts and invoices through the public API (the same validation, limits, approvals,
books and rails as any client); as the customer it pays the invoices from the local
network's genesis `customer` wallet, a real signed transfer through the toncenter API. So the
dashboard shows real money moving: TON and USDT, every priority, payouts above the approval
threshold waiting for two approvers, payouts to addresses that bounce (failures), invoices
paid and invoices left to expire. It runs only on the local network: nowhere else is money
free.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import structlog
from sqlalchemy import func, select, update
from ton_core import Address

from tonrail import clock
from tonrail.db import Database
from tonrail.money import format_minor
from tonrail.payments.models import Payment
from tonrail.payments.states import PaymentStatus
from tonrail.rails.ton.api import TonApi, jetton_balance
from tonrail.rails.ton.chain_view import raw
from tonrail.security import audit_log
from tonrail.security.admins import AdminUser, create_admin
from tonrail.security.api_keys import create_key
from tonrail.security.models import ApiKey
from tonrail.settings import Settings

log = structlog.get_logger(__name__)

ADMIN_USERNAME = "admin"
TRAFFIC_KEY_NAME = "demo traffic"
# The merchants the generator acts for. `acct_demo` is the account of the printed demo key,
# so its owner sees the traffic through the API too.
MERCHANTS = ("acct_demo", "acct_market", "acct_games")
PRIORITIES: tuple[tuple[str, float], ...] = (("urgent", 0.2), ("normal", 0.6), ("low", 0.2))
PAYOUT_PURPOSES = (
    "Seller payout",
    "Refund",
    "Affiliate commission",
    "Tournament prize",
    "Marketplace withdrawal",
    "Creator revenue share",
)
INVOICE_PURPOSES = ("Order", "Subscription", "Top-up", "In-game purchase", "Ticket")
PAYEES = 40  # distinct payees that get paid
NOWHERE = 6  # distinct addresses with no account behind them: bounceable payouts bounce
CUSTOMER_MIN_TON = 500 * 10**9  # below this the faucet tops the customer wallet up
CUSTOMER_TOP_UP_TON = 5_000 * 10**9
CUSTOMER_MIN_USDT = 50_000 * 10**6
CUSTOMER_TOP_UP_USDT = 500_000 * 10**6
LARGE_WAITING_MAX = 2  # payouts above the approval threshold waiting at once (volume!)
LARGE_EVERY = 40  # payout n is a large one when n % LARGE_EVERY == 3 (and there is room)
BOUNCE_EVERY = 20  # payout n goes to an address that bounces when n % BOUNCE_EVERY == 5


def demo_address(label: str, *, bounceable: bool) -> str:
    """A deterministic address with no wallet behind it (the payee deploys it later)."""
    digest = hashlib.sha256(f"tonrail-demo/{label}".encode()).digest()
    return Address((0, digest)).to_str(is_user_friendly=True, is_bounceable=bounceable)


# -- the first admin ----------------------------------------------------------------------


async def ensure_admin(db: Database) -> tuple[str, str] | None:
    """Create the admin `admin` with a random password if there is no admin user at all.

    Returns (username, password) to print once; None when an admin already exists.
    """
    async with db.transaction() as session:
        if (await session.execute(select(func.count(AdminUser.id)))).scalar_one():
            return None
        password = secrets.token_urlsafe(15)  # 20 characters, 120 bits
        admin, _ = await create_admin(session, ADMIN_USERNAME, password, "admin")
        await audit_log.record(
            session,
            "system:bootstrap",
            "admin.create",
            admin.id,
            {"username": admin.username, "role": "admin", "why": "first start of tonrail run"},
        )
        return admin.username, password


# -- what to do next: pure, seeded -----------------------------------------------------------

PayoutKind = Literal["payee", "customer", "bounce", "large"]


@dataclass(frozen=True)
class PayoutPlan:
    merchant: str
    kind: PayoutKind
    asset: str
    amount: int  # minor units
    priority: str
    destination: str
    description: str
    metadata: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "amount": format_minor(self.amount, self.asset),
            "asset": self.asset,
            "destination": self.destination,
            "priority": self.priority,
            "description": self.description,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class InvoicePlan:
    merchant: str
    asset: str
    amount: int
    pay: bool  # False: left unpaid, it expires
    expires_in_seconds: int
    description: str
    metadata: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        # The invoice endpoint's request: alike the payout body in shape only.
        return {
            "amount": format_minor(self.amount, self.asset),
            "asset": self.asset,
            "expires_in_seconds": self.expires_in_seconds,
            "description": self.description,
            "metadata": self.metadata,
        }


def _round(amount: float, unit: int) -> int:
    """Round to a human amount: 2 decimals of the major unit."""
    step = unit // 100
    return max(step, round(amount * unit / step) * step)


def _priority(rng: random.Random) -> str:
    return rng.choices([p for p, _ in PRIORITIES], [w for _, w in PRIORITIES])[0]


def plan_payout(
    rng: random.Random,
    n: int,
    customer: str,
    approval_threshold_usdt: int,
    *,
    large_allowed: bool,
) -> PayoutPlan:
    """Payout number `n`: mostly small TON and USDT amounts to a pool of payees, some refunds
    to the customer wallet, one in BOUNCE_EVERY to an address that bounces (TON: a bounceable
    message to an address with no contract comes back) and, when allowed, one in LARGE_EVERY
    above the approval threshold (USDT: the hot wallet holds more USDT than TON). Failures
    and approvals come on a schedule so a fresh start shows them within a minute or two."""
    merchant = rng.choice(MERCHANTS)
    order = f"{rng.choice('ABCDEFGH')}-{rng.randrange(10_000, 99_999)}"
    priority = _priority(rng)
    if large_allowed and n % LARGE_EVERY == 3:
        amount = int(approval_threshold_usdt * rng.uniform(1.02, 1.4)) // 10**6 * 10**6
        return PayoutPlan(
            merchant,
            "large",
            "USDT",
            amount,
            "normal",
            demo_address(f"treasury-{rng.randrange(3)}", bounceable=False),
            "Treasury transfer to exchange",
            {"ticket": f"TRS-{rng.randrange(1000, 9999)}"},
        )
    asset = "USDT" if rng.random() < 0.55 else "TON"
    if asset == "TON":
        amount = _round(min(rng.lognormvariate(0.3, 0.9), 60.0), 10**9)
    else:
        amount = _round(min(rng.lognormvariate(2.8, 1.1), 2_000.0), 10**6)
    if n % BOUNCE_EVERY == 5:
        return PayoutPlan(
            merchant,
            "bounce",
            "TON",
            _round(rng.uniform(0.5, 5.0), 10**9),
            priority,
            demo_address(f"closed-{rng.randrange(NOWHERE)}", bounceable=True),
            rng.choice(PAYOUT_PURPOSES),
            {"order": order},
        )
    if rng.random() < 0.2:
        return PayoutPlan(
            merchant,
            "customer",
            asset,
            amount,
            priority,
            customer,
            "Refund",
            {"order": order, "reason": rng.choice(("damaged", "late delivery", "duplicate"))},
        )
    return PayoutPlan(
        merchant,
        "payee",
        asset,
        amount,
        priority,
        demo_address(f"payee-{rng.randrange(PAYEES)}", bounceable=False),
        rng.choice(PAYOUT_PURPOSES),
        {"order": order, "payee": f"seller_{rng.randrange(PAYEES):03d}"},
    )


def plan_invoice(rng: random.Random) -> InvoicePlan:
    """The next invoice: TON or USDT; four in five are paid, the rest expire unpaid."""
    merchant = rng.choice(MERCHANTS)
    asset = "USDT" if rng.random() < 0.6 else "TON"
    if asset == "TON":
        amount = _round(min(rng.lognormvariate(0.5, 0.8), 40.0), 10**9)
    else:
        amount = _round(min(rng.lognormvariate(3.0, 1.0), 1_500.0), 10**6)
    pay = rng.random() < 0.8
    purpose = rng.choice(INVOICE_PURPOSES)
    return InvoicePlan(
        merchant,
        asset,
        amount,
        pay,
        3600 if pay else 300,
        f"{purpose} #{rng.randrange(100_000, 999_999)}",
        {"customer": f"cus_{rng.randrange(1, 500):04d}"},
    )


# -- the generator ----------------------------------------------------------------------------


@dataclass
class TrafficStats:
    payouts: int = 0
    invoices: int = 0
    invoices_paid: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    errors: int = 0


class CustomerWallet:
    """A v5r1 wallet paying invoices through the toncenter API: the genesis `customer` on the
    local network, or (testnet: the rehearsal, deploy/rehearsal.py) a payer's own wallet,
    from its private key (64 hex) or its 24-word mnemonic."""

    def __init__(
        self,
        v2_url: str,
        private_key_hex: str,
        usdt_master: str,
        *,
        testnet: bool = False,
        api_key: str = "local",
        mnemonic: str = "",
        rps_limit: int = 1000,
    ):
        self.v2_url = v2_url
        self.private_key_hex = private_key_hex
        self.usdt_master = usdt_master
        self.testnet = testnet
        self.api_key = api_key
        self.mnemonic = mnemonic
        self.rps_limit = rps_limit
        self._client: Any = None
        self._wallet: Any = None

    async def open(self) -> str:
        from ton_core import NetworkGlobalID, PrivateKey
        from tonutils.clients import ToncenterClient
        from tonutils.contracts import WalletV5R1

        network = NetworkGlobalID.TESTNET if self.testnet else NetworkGlobalID.MAINNET
        self._client = ToncenterClient(
            network, base_url=self.v2_url, api_key=self.api_key, rps_limit=self.rps_limit
        )
        await self._client.connect()
        if self.mnemonic:
            self._wallet, _, _, _ = WalletV5R1.from_mnemonic(self._client, self.mnemonic.split())
        else:
            key = PrivateKey(bytes.fromhex(self.private_key_hex))
            self._wallet = WalletV5R1.from_private_key(self._client, key)
        address: str = self._wallet.address.to_str(
            is_user_friendly=True, is_bounceable=False, is_test_only=self.testnet
        )
        return address

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()

    async def seqno(self) -> int:
        await self._wallet.refresh()
        try:
            [value] = await self._wallet.run_get_method("seqno")
        except Exception:  # not deployed yet: its first transfer deploys it
            return 0
        return int(value)

    async def pay(self, pay_to: str, asset: str, amount: int, comment: str) -> None:
        """Send one payment and wait until the wallet has processed it (seqno moved)."""
        from tonutils.contracts import JettonTransferBuilder

        before = await self.seqno()
        if asset == "TON":
            await self._wallet.transfer(pay_to, amount, body=comment, bounce=False)
        else:
            await self._wallet.transfer_message(
                JettonTransferBuilder(
                    destination=pay_to,
                    jetton_amount=amount,
                    jetton_master_address=self.usdt_master,
                    forward_amount=1,
                    forward_payload=comment,
                    bounce=True,
                )
            )
        for _ in range(120):  # up to a minute on a loaded machine
            await asyncio.sleep(0.5)
            if await self.seqno() > before:
                return
        raise TimeoutError("the customer wallet did not process its transfer within 60 s")


class DemoTraffic:
    """Payouts and invoices at a modest rate, through the public API of `app`."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        app: Any,
        customer: CustomerWallet,
        *,
        top_up: Callable[[str, int, str], None] | None = None,
        balances: Callable[[], Awaitable[tuple[int, int]]] | None = None,
        seed: int | None = None,
    ):
        # Plain attribute assignments: alike other constructors in shape only.
        self.settings = settings
        self.db = db
        self.app = app
        self.customer = customer
        self.top_up = top_up
        self.balances = balances
        self.rng = random.Random(seed)
        self.stats = TrafficStats()
        self.interval = settings.demo_traffic_seconds
        self._keys: dict[str, str] = {}
        self._customer_address = ""
        self._payout_n = 0
        self._http: httpx.AsyncClient | None = None

    async def _create_keys(self) -> None:
        """One key per merchant; the previous run's traffic keys are revoked (never shown)."""
        async with self.db.transaction() as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.name == TRAFFIC_KEY_NAME, ApiKey.revoked_at.is_(None))
                .values(revoked_at=clock.now())
            )
            for merchant in MERCHANTS:
                _, secret = await create_key(
                    session, merchant, TRAFFIC_KEY_NAME, ("payments:read", "payments:write")
                )
                self._keys[merchant] = secret

    async def open(self) -> None:
        """Keys for the merchants, the customer wallet, an HTTP client on the app."""
        await self._create_keys()
        self._customer_address = await self.customer.open()
        transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 0))
        self._http = httpx.AsyncClient(transport=transport, base_url="http://tonrail.local")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self.customer.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: a payout every ~interval, an invoice every ~2.5 intervals."""
        if self.interval <= 0:
            return
        await self.open()
        try:
            await asyncio.gather(
                self._every(stop, self.interval, self.one_payout),
                self._every(stop, self.interval * 2.5, self.one_invoice),
            )
        finally:
            await self.close()

    async def _every(
        self, stop: asyncio.Event, mean: float, action: Callable[[], Awaitable[object]]
    ) -> None:
        while not stop.is_set():
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # demo traffic must never take `tonrail run` down
                self.stats.errors += 1
                log.warning("demo traffic step failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.rng.uniform(0.5, 1.5) * mean)

    async def _post(self, merchant: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        assert self._http is not None
        response = await self._http.post(
            path,
            json=body,
            headers={
                "Authorization": f"Bearer {self._keys[merchant]}",
                "Idempotency-Key": f"demo-{uuid.uuid4()}",
            },
        )
        if response.status_code >= 400:
            try:
                code = str(response.json()["error"]["code"])
            except (ValueError, KeyError, TypeError):
                code = f"http_{response.status_code}"
            self.stats.refused[code] = self.stats.refused.get(code, 0) + 1
            log.info("demo request refused", path=path, code=code)
            return None
        result: dict[str, Any] = response.json()
        return result

    async def _large_allowed(self) -> bool:
        async with self.db.transaction() as session:
            waiting = await session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(
                    Payment.status == PaymentStatus.REQUIRES_APPROVAL,
                    Payment.account_id.in_(MERCHANTS),
                )
            )
        return int(waiting or 0) < LARGE_WAITING_MAX

    async def one_payout(self) -> PayoutPlan:
        """Make the next payout through the API (a refusal is counted, not raised)."""
        plan = plan_payout(
            self.rng,
            self._payout_n,
            self._customer_address,
            self.settings.approval_threshold_usdt,
            large_allowed=await self._large_allowed(),
        )
        self._payout_n += 1
        created = await self._post(plan.merchant, "/v1/payouts", plan.body())
        if created is not None:
            self.stats.payouts += 1
            log.debug("demo payout", id=created["id"], kind=plan.kind, asset=plan.asset)
        return plan

    async def one_invoice(self) -> InvoicePlan:
        """Make the next invoice through the API and, most times, pay it as the customer."""
        plan = plan_invoice(self.rng)
        created = await self._post(plan.merchant, "/v1/invoices", plan.body())
        if created is None:
            return plan
        self.stats.invoices += 1
        if not plan.pay:
            return plan
        await self._keep_customer_funded()
        await asyncio.sleep(self.rng.uniform(0.5, 3.0))  # the customer opens their wallet
        await self.customer.pay(created["pay_to"], plan.asset, plan.amount, created["comment"])
        self.stats.invoices_paid += 1
        return plan

    async def _keep_customer_funded(self) -> None:
        if self.top_up is None or self.balances is None:
            return
        ton, usdt = await self.balances()
        if ton < CUSTOMER_MIN_TON:
            self.top_up(self._customer_address, CUSTOMER_TOP_UP_TON, "TON")
        if usdt < CUSTOMER_MIN_USDT:
            self.top_up(self._customer_address, CUSTOMER_TOP_UP_USDT, "USDT")


def localnet_traffic(
    settings: Settings, db: Database, app: Any, chain: Any, api: TonApi
) -> DemoTraffic:
    """The generator wired to the in-process local network `chain` (a localnet Chain): it
    pays from the genesis customer wallet and tops it up from the faucet when it runs low."""
    genesis = chain.genesis
    customer = genesis.wallet("customer")
    v2 = settings.ton_api_url.split(",")[0].strip()
    wallet = CustomerWallet(v2, customer.private_key_hex, genesis.usdt_master.to_str())
    owner = raw(customer.address)
    jetton_wallet = raw(genesis.jetton_wallet_address(customer.address))

    async def balances() -> tuple[int, int]:
        _, ton = await api.account_state(owner)
        return ton, await jetton_balance(api, jetton_wallet)

    return DemoTraffic(settings, db, app, wallet, top_up=chain.faucet, balances=balances)
