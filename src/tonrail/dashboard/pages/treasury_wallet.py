"""Approving treasury orders with the approver's own wallet through TON Connect.

The Approvals page's wallet panel (vendor/treasury-wallet.js, bundled from
dashboard/wallet/approve.js) connects the approver's wallet, then asks:

- `GET /dashboard/treasury/signer?wallet=ADDR`: whether that wallet is one of the treasury
  multisig's signers, and which index (read from the chain: `get_multisig_data`). The page
  offers the approve buttons only to a signer.
- `POST /dashboard/treasury/orders/{id}/approve-message` (CSRF, `approve` permission, form
  field `wallet`): the exact transaction for the wallet to send, built by the same
  `approval_of` the CLI's `tonrail treasury approve` sends (the order contract's `approve`
  op with the signer's index, 0.1 TON, to the order's address), after reading the order from
  the chain: a wallet that is not a signer, has approved already, or an order executed or
  expired is refused with a code (nothing for the wallet to send). Audited.

The page never builds a message itself: it hands the server's one to the wallet. What the
wallet then sends is the chain's business; the list shows approvals as the treasury loop
reads them from the chain.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from tonrail import clock
from tonrail.chain.address import check_network, raw_form
from tonrail.chain.network import resolve_network
from tonrail.dashboard.deps import actor, db_of, require, settings_of
from tonrail.errors import NotFound, TonrailError
from tonrail.rails.ton.api import ToncenterTonApi
from tonrail.rails.ton.chain_view import raw
from tonrail.rails.ton.toncenter import ToncenterClient, ToncenterError
from tonrail.security import audit_log
from tonrail.security.admins import Admin
from tonrail.treasury.models import OrderStatus, TreasuryOrder
from tonrail.treasury.reader import TreasuryReadError, multisig_state, order_state
from tonrail.treasury.service import approval_of

router = APIRouter()

VALID_FOR_S = 300  # how long the wallet may take to send it (TON Connect's validUntil)
NO_STORE = {"Cache-Control": "no-store"}


class TreasuryNotConfigured(TonrailError):
    code = "treasury_not_configured"
    status = 409


class OrderNotOpen(TonrailError):
    code = "order_not_open"
    status = 409


class ChainUnreadable(TonrailError):
    code = "chain_unreadable"
    status = 503


def _api(request: Request) -> ToncenterTonApi:
    """The dashboard's chain reads (opened on first use, closed with the app)."""
    api: ToncenterTonApi | None = getattr(request.app.state, "treasury_api", None)
    if api is None:
        settings = settings_of(request)
        api = ToncenterTonApi(ToncenterClient.from_network(resolve_network(settings), settings))
        request.app.state.treasury_api = api
    return api


def _wallet(request: Request, text: str) -> str:
    parsed = check_network(text, resolve_network(settings_of(request)), "wallet")
    return raw(raw_form(parsed))


def _problem(exc: TonrailError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=NO_STORE)


def _unreadable(what: str) -> TonrailError:
    return ChainUnreadable(f"the chain cannot be read now ({what}); try again")


@router.get("/dashboard/treasury/signer")
async def signer(
    request: Request,
    wallet: str = Query(..., max_length=100),
    admin: Admin = Depends(require("view")),
) -> JSONResponse:
    """Whether `wallet` is a signer of the treasury multisig, and its index."""
    try:
        treasury = settings_of(request).treasury_address.strip()
        if not treasury:
            raise TreasuryNotConfigured("no treasury is configured (TREASURY_ADDRESS)")
        me = _wallet(request, wallet)
        try:
            state = await multisig_state(_api(request), raw(treasury))
        except (ToncenterError, TreasuryReadError) as exc:
            raise _unreadable(str(exc)) from None
    except TonrailError as exc:
        return _problem(exc)
    signers = [raw(a) for a in state.signers]
    index = signers.index(me) if me in signers else None
    body: dict[str, Any] = {
        "wallet": me,
        "treasury": raw(treasury),
        "signer": index is not None,
        "signer_index": index,
        "threshold": state.threshold,
        "signers": len(signers),
    }
    return JSONResponse(body, headers=NO_STORE)


@router.post("/dashboard/treasury/orders/{order_id}/approve-message")
async def approve_message(
    request: Request,
    order_id: str,
    wallet: str = Form(..., max_length=100),
    admin: Admin = Depends(require("approve")),
) -> JSONResponse:
    """The transaction that approves order `order_id` from `wallet`, for TON Connect."""
    db = db_of(request)
    try:
        me = _wallet(request, wallet)
        async with db.transaction() as session:
            row = (
                await session.execute(select(TreasuryOrder).where(TreasuryOrder.id == order_id))
            ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no treasury order {order_id}")
        if row.status != OrderStatus.PROPOSED:
            raise OrderNotOpen(
                f"order {order_id} is {row.status}: only a proposed order takes approvals"
            )
        try:
            state = await order_state(_api(request), row.order_address)
        except (ToncenterError, TreasuryReadError) as exc:
            raise _unreadable(str(exc)) from None
        now = int(clock.now().timestamp())
        message = approval_of(state, row.order_address, me, now=now)
    except TonrailError as exc:
        return _problem(exc)
    async with db.transaction() as session:
        await audit_log.record(
            session,
            actor(admin),
            "treasury.approve_requested",
            row.id,
            {
                "order": row.order_address,
                "wallet": me,
                "signer_index": message.signer_index,
                "approvals": state.approvals,
                "threshold": state.threshold,
            },
        )
    body = {
        "order": row.order_address,
        "signer_index": message.signer_index,
        "approvals": state.approvals,
        "threshold": state.threshold,
        "transaction": {
            "validUntil": now + VALID_FOR_S,
            "messages": [message.ton_connect()],
        },
    }
    return JSONResponse(body, headers=NO_STORE)
