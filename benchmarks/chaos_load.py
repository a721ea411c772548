"""The chaos run's load (benchmarks/chaos.py): payouts through the API, invoices paid on chain.

Every request is retried with its own idempotency key until an API process answers (the
processes are being killed under it), against either API process. What was asked for is
recorded here, so the end checks can compare it with the chain.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

TON = 10**9
USDT = 10**6
BIG_USDT = 150 * USDT  # above the run's approval threshold (APPROVAL_THRESHOLD_USDT)


@dataclass
class Asked:
    """One payout the load asked for: to a fresh address of its own."""

    id: str
    asset: str
    amount: int  # minor units
    destination: str
    approvals: bool = False


@dataclass
class Invoice:
    id: str
    asset: str
    amount: int
    reference: str
    landed: bool = False  # the payer's transfer was processed on chain (its seqno moved)
    lost: bool = False  # never processed (dropped external): nobody paid it


@dataclass
class Load:
    apis: list[str]
    secret: str
    approvers: list[str]
    rng: random.Random
    payouts: list[Asked] = field(default_factory=list)
    invoices: list[Invoice] = field(default_factory=list)
    retries: int = 0
    refused: list[str] = field(default_factory=list)  # 4xx answers: the run fails on them
    approvals: int = 0


def fresh_destination(rng: random.Random) -> str:
    """A never-deployed address (non-bounceable form), one per payout."""
    from ton_core import Address

    return Address((0, rng.randbytes(32))).to_str(is_user_friendly=True, is_bounceable=False)


async def call(
    load: Load,
    session: aiohttp.ClientSession,
    path: str,
    body: dict[str, Any] | None,
    secret: str,
    key: str | None,
    within: float = 180.0,
) -> tuple[int, Any]:
    """POST (or GET when body is None) until an API process answers something other than a
    5xx or a broken connection; the same idempotency key every time."""
    headers = {"Authorization": f"Bearer {secret}"}
    if key:
        headers["Idempotency-Key"] = key
    deadline = time.monotonic() + within
    while True:
        base = load.rng.choice(load.apis)
        try:
            if body is None:
                resp = await session.get(f"{base}{path}", headers=headers)
            else:
                resp = await session.post(f"{base}{path}", json=body, headers=headers)
            async with resp:
                status = resp.status
                answer = await resp.json(content_type=None) if status != 204 else None
            if status < 500 and status != 429:
                return status, answer
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        load.retries += 1
        if time.monotonic() > deadline:
            raise RuntimeError(f"no API answered {path} within {within:.0f} s")
        await asyncio.sleep(0.2)


def _amount(rng: random.Random, asset: str) -> tuple[str, int]:
    if asset == "TON":
        milli = rng.randint(1, 50)  # 0.001 .. 0.05 TON
        return f"{milli / 1000:.3f}", milli * TON // 1000
    cents = rng.randint(1, 500)  # 0.01 .. 5 USDT
    return f"{cents / 100:.2f}", cents * USDT // 100


async def one_payout(load: Load, session: aiohttp.ClientSession) -> None:
    asset = load.rng.choice(["TON", "USDT"])
    text, amount = _amount(load.rng, asset)
    dest = fresh_destination(load.rng)
    key = f"chaos-{secrets.token_hex(8)}"
    body = {"amount": text, "asset": asset, "destination": dest}
    status, answer = await call(load, session, "/v1/payouts", body, load.secret, key)
    if status not in (200, 201):
        load.refused.append(f"POST /v1/payouts {status} {str(answer)[:200]}")
        return
    load.payouts.append(Asked(answer["id"], asset, amount, dest))


async def batch_payouts(load: Load, session: aiohttp.ClientSession) -> None:
    items, asked = [], []
    for _ in range(load.rng.randint(2, 6)):
        asset = load.rng.choice(["TON", "USDT"])
        text, amount = _amount(load.rng, asset)
        dest = fresh_destination(load.rng)
        key = f"chaos-{secrets.token_hex(8)}"
        items.append({"amount": text, "asset": asset, "destination": dest, "idempotency_key": key})
        asked.append((asset, amount, dest))
    key = f"chaos-batch-{secrets.token_hex(8)}"
    status, answer = await call(
        load, session, "/v1/payouts/batch", {"payouts": items}, load.secret, key
    )
    if status not in (200, 201):
        load.refused.append(f"POST /v1/payouts/batch {status} {str(answer)[:200]}")
        return
    for (asset, amount, dest), payout in zip(asked, answer["data"], strict=True):
        load.payouts.append(Asked(payout["id"], asset, amount, dest))


async def approved_payout(load: Load, session: aiohttp.ClientSession) -> None:
    """A USDT payout above the threshold, approved by two approvers at the same moment."""
    dest = fresh_destination(load.rng)
    body = {"amount": f"{BIG_USDT // USDT}", "asset": "USDT", "destination": dest}
    key = f"chaos-big-{secrets.token_hex(8)}"
    status, answer = await call(load, session, "/v1/payouts", body, load.secret, key)
    if status not in (200, 201):
        load.refused.append(f"POST /v1/payouts (big) {status} {str(answer)[:200]}")
        return
    payout_id = answer["id"]
    load.payouts.append(Asked(payout_id, "USDT", BIG_USDT, dest, approvals=True))
    path = f"/v1/payouts/{payout_id}/approve"
    answers = await asyncio.gather(
        *(
            call(load, session, path, {}, approver, f"chaos-ok-{secrets.token_hex(8)}")
            for approver in load.approvers
        )
    )
    for status, answer in answers:
        # 409 not_awaiting_approval is not expected: both approvals are needed to queue it.
        if status != 200:
            load.refused.append(f"approve {status} {str(answer)[:200]}")
        else:
            load.approvals += 1


async def generate(load: Load, stop: asyncio.Event, pause: float = 0.25) -> None:
    """Post payouts until `stop`: singles, batches, and now and then a big approved one."""
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            roll = load.rng.random()
            if roll < 0.55:
                await one_payout(load, session)
            elif roll < 0.85:
                await batch_payouts(load, session)
            else:
                await approved_payout(load, session)
            await asyncio.sleep(pause)


# ----------------------------------------------------------------------------- invoices
async def _retry(what: Any, attempts: int = 200) -> Any:
    """A toncenter call of the payer, through the injected faults."""
    for _ in range(attempts):
        try:
            return await what()
        except Exception:  # tonutils raises its own errors for 5xx, 429 and timeouts
            await asyncio.sleep(0.3)
    raise RuntimeError("the payer's toncenter calls kept failing")


async def _seqno(session: aiohttp.ClientSession, net_v2: str, address: str) -> int:
    """The payer wallet's seqno through toncenter (0 while it is not deployed)."""

    async def read() -> int:
        body = {"address": address, "method": "seqno", "stack": []}
        async with session.post(f"{net_v2}/runGetMethod", json=body) as resp:
            resp.raise_for_status()
            result = (await resp.json())["result"]
        if int(result["exit_code"]) != 0:
            return 0
        value = result["stack"][0][1]
        return int(value, 16) if isinstance(value, str) else int(value)

    return int(await _retry(read))


async def deploy_payer(net_v2: str, payer_key: bytes, to: str) -> None:
    """Deploy the payer's wallet (its first message never expires: send it before faults)."""
    from ton_core import NetworkGlobalID, PrivateKey
    from tonutils.clients import ToncenterClient as TonutilsClient
    from tonutils.contracts import WalletV5R1

    client = TonutilsClient(NetworkGlobalID.MAINNET, base_url=net_v2, api_key="local")
    await client.connect()
    try:
        wallet = WalletV5R1.from_private_key(client, PrivateKey(payer_key))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            await wallet.transfer(to, TON // 100, body="chaos payer", bounce=False)
            for _ in range(600):
                if await _seqno(session, net_v2, wallet.address.to_str()) > 0:
                    return
                await asyncio.sleep(0.2)
        raise RuntimeError("the payer's wallet was not deployed")
    finally:
        await client.close()


async def pay_invoices(
    load: Load, net_v2: str, usdt_master: Any, payer_key: bytes, hot: str, stop: asyncio.Event
) -> None:
    """Create invoices and pay each from a customer's wallet, one transfer at a time.

    A transfer is never re-sent: if its seqno does not move within the wallet message's
    lifetime (a dropped external), it can no longer be processed, and the invoice stays
    unpaid (`lost`); the checks then expect it not credited."""
    from ton_core import NetworkGlobalID, PrivateKey
    from tonutils.clients import ToncenterClient as TonutilsClient
    from tonutils.contracts import JettonTransferBuilder, WalletV5R1

    client = TonutilsClient(NetworkGlobalID.MAINNET, base_url=net_v2, api_key="local")
    await client.connect()
    wallet = WalletV5R1.from_private_key(client, PrivateKey(payer_key))
    payer = wallet.address.to_str()
    timeout = aiohttp.ClientTimeout(total=20)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                asset = load.rng.choice(["TON", "USDT"])
                amount = (
                    load.rng.randint(1, 20) * TON // 100
                    if asset == "TON"
                    else load.rng.randint(1, 20) * USDT
                )
                text = f"{amount / (TON if asset == 'TON' else USDT):.2f}"
                key = f"chaos-inv-{secrets.token_hex(8)}"
                body = {"amount": text, "asset": asset}
                status, answer = await call(load, session, "/v1/invoices", body, load.secret, key)
                if status not in (200, 201):
                    load.refused.append(f"POST /v1/invoices {status} {str(answer)[:200]}")
                    continue
                inv = Invoice(answer["id"], asset, amount, answer["reference"])
                load.invoices.append(inv)
                pay_to = answer.get("pay_to") or hot
                before = await _seqno(session, net_v2, payer)
                try:
                    if asset == "TON":
                        await wallet.transfer(pay_to, amount, body=inv.reference, bounce=False)
                    else:
                        jetton = JettonTransferBuilder(
                            destination=pay_to,
                            jetton_amount=amount,
                            jetton_master_address=usdt_master,
                            forward_amount=1,
                            forward_payload=inv.reference,
                            bounce=True,
                        )
                        await wallet.transfer_message(jetton)
                except Exception:
                    pass  # answered 5xx or dropped: maybe sent, maybe not; the seqno tells
                # Wallet v5 messages are valid for 60 s: after that one never lands.
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    if await _seqno(session, net_v2, payer) > before:
                        inv.landed = True
                        break
                    await asyncio.sleep(0.5)
                inv.lost = not inv.landed
                await asyncio.sleep(1.0)
    finally:
        await client.close()
