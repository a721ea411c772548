"""HTTP endpoints of payouts and invoices: parse, authorize, call the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response as HttpResponse
from pydantic import BaseModel
from starlette.convertors import StringConvertor, register_url_convertor

from tonrail.api_limits import refuse_large_payouts_while_unshared
from tonrail.chain.links import qr_svg
from tonrail.direct_routes import direct_route
from tonrail.errors import NotFound, TonrailError
from tonrail.payments.bulk import BulkPayouts, PayoutBatchCreate, PayoutBatchOut
from tonrail.payments.refunds import RefundService
from tonrail.payments.schemas import (
    InvoiceCreate,
    PaymentList,
    PaymentOut,
    PayoutCreate,
    RefundCreate,
    RefundList,
    RefundOut,
)
from tonrail.payments.service import PaymentService
from tonrail.security.api_keys import Principal
from tonrail.security.idempotency import IdempotencyKey
from tonrail.web import (
    BearerDep,
    client_ip_of,
    current_principal,
    idempotency_key_of,
    principal_of,
    require_scope,
    send_answer,
)

router = APIRouter(prefix="/v1", tags=["payments"])


class PaymentIdConvertor(StringConvertor):
    """`{payment_id:payment_id}`: only a payment id (`pay_...`) routes to a payment, so
    `GET /v1/payouts/batch` is 405 (POST only), not "no payout 'batch'"."""

    regex = "pay_[^/]+"


register_url_convertor("payment_id", PaymentIdConvertor())


async def payment_service(request: Request) -> PaymentService:
    service: PaymentService = request.app.state.payments
    return service


PrincipalDep = Annotated[Principal, Depends(current_principal)]
ServiceDep = Annotated[PaymentService, Depends(payment_service)]
IdemHeader = Annotated[str | None, Header(alias="Idempotency-Key")]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": 'error: {"error": {code, message, param}}'}
    for code in (400, 401, 403, 404, 409, 422, 423)
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who writes, under which idempotency key, from where, through which service."""

    principal: Principal
    ikey: IdempotencyKey | None
    client_ip: str | None
    service: PaymentService


async def _call_of(request: Request, scope: str | None, idempotency_key: str | None) -> Caller:
    principal = await principal_of(request)
    if scope is not None:
        require_scope(principal, scope)
    ikey = await idempotency_key_of(request, principal, idempotency_key)
    service: PaymentService = request.app.state.payments
    return Caller(principal, ikey, client_ip_of(request), service)


def _caller(scope: str | None) -> Callable[..., Awaitable[Caller]]:
    # One dependency does what `current_principal` and `payment_service` would as two more:
    # FastAPI's cost per dependency is a sizeable part of a payout's CPU (issue #18).
    async def caller(
        request: Request,
        _bearer: BearerDep = None,
        idempotency_key: IdemHeader = None,
    ) -> Caller:
        return await _call_of(request, scope, idempotency_key)

    return caller


async def _writer(request: Request) -> Caller:
    """What `WriterDep` gives, for a `direct_route` (the same header, read directly)."""
    return await _call_of(request, "payments:write", request.headers.get("idempotency-key"))


WriterDep = Annotated[Caller, Depends(_caller("payments:write"))]
# Approving needs payouts:approve, checked by the service (the dashboard approves too).
ApproverDep = Annotated[Caller, Depends(_caller(None))]


def _batch_usdt(service: PaymentService, body: PayoutBatchCreate) -> int:
    """What a batch's valid items are worth in micro-USDT (bad items refuse it later)."""
    total = 0
    for item in body.payouts:
        try:
            total += service.check_payout(item).usdt
        except TonrailError:
            continue
    return total


async def create_payout(request: Request, body: PayoutCreate, call: WriterDep) -> HttpResponse:
    """Create a payout in TON or USDT. Above the approval threshold it waits for approvers."""
    service = call.service
    refuse_large_payouts_while_unshared(
        request, service.settings, lambda: service.check_payout(body).usdt
    )
    return send_answer(await service.create_payout(call.principal, body, call.ikey, call.client_ip))


async def _create_payout(request: Request, body: PayoutCreate) -> HttpResponse:
    return await create_payout(request, body, await _writer(request))


async def create_payout_batch(
    request: Request, body: PayoutBatchCreate, call: WriterDep
) -> HttpResponse:
    """Create up to PAYOUTS_BATCH_MAX payouts in one transaction, each as `POST /v1/payouts`
    would; one bad item refuses the batch (its index in `param`) and nothing is written."""
    service = call.service
    bulk = BulkPayouts(service)
    refuse_large_payouts_while_unshared(
        request, service.settings, lambda: _batch_usdt(service, body)
    )
    return send_answer(await bulk.create(call.principal, body, call.ikey, call.client_ip))


async def _create_payout_batch(request: Request, body: PayoutBatchCreate) -> HttpResponse:
    return await create_payout_batch(request, body, await _writer(request))


# The payout endpoints, the API's hottest, answer a valid body by the short way
# (direct_routes.py); their OpenAPI operations and every refusal stay FastAPI's.
for _path, _endpoint, _model, _out, _direct in (
    ("/payouts", create_payout, PayoutCreate, PaymentOut, _create_payout),
    (
        "/payouts/batch",
        create_payout_batch,
        PayoutBatchCreate,
        PayoutBatchOut,
        _create_payout_batch,
    ),
):
    router.add_api_route(
        _path,
        _endpoint,
        methods=["POST"],
        status_code=201,
        response_model=_out,
        responses=ERRORS,
        route_class_override=direct_route(_model, _direct),
    )


@router.post(
    "/payouts/{payment_id:payment_id}/approve", response_model=PaymentOut, responses=ERRORS
)
async def approve_payout(payment_id: str, call: ApproverDep) -> HttpResponse:
    """Approve a payout waiting in requires_approval (scope payouts:approve, not the requester)."""
    return send_answer(await call.service.approve(call.principal, payment_id, call.ikey))


@router.post("/invoices", status_code=201, response_model=PaymentOut, responses=ERRORS)
async def create_invoice(body: InvoiceCreate, call: WriterDep) -> HttpResponse:
    """Create an incoming payment: the customer pays `amount` with `reference` as comment."""
    return send_answer(await call.service.create_invoice(call.principal, body, call.ikey))


@router.post(
    "/invoices/{payment_id:payment_id}/refunds",
    status_code=201,
    response_model=RefundOut,
    responses=ERRORS,
)
async def create_refund(
    payment_id: str, body: RefundCreate, call: WriterDep, request: Request
) -> HttpResponse:
    """Give back (part of) what an invoice received: on TON, a payout to the address that
    paid it, through the payout pipeline (limits, approvals, exactly once). `amount` omitted:
    everything not refunded yet. Never more than received."""
    refunds = RefundService(call.service, request.app.state.backup_rails)
    return send_answer(
        await refunds.create(call.principal, payment_id, body, call.ikey, call.client_ip)
    )


@router.get(
    "/invoices/{payment_id:payment_id}/refunds", response_model=RefundList, responses=ERRORS
)
async def list_refunds(
    payment_id: str, principal: PrincipalDep, service: ServiceDep
) -> dict[str, Any]:
    """The invoice's refunds, oldest first."""
    require_scope(principal, "payments:read")
    return await RefundService(service).list(principal, payment_id)


@router.get("/refunds/{refund_id}", response_model=RefundOut, responses=ERRORS)
async def get_refund(
    refund_id: str, principal: PrincipalDep, service: ServiceDep
) -> dict[str, Any]:
    """One refund: its status follows the payout that carries it."""
    require_scope(principal, "payments:read")
    return await RefundService(service).get(principal, refund_id)


@router.get(
    "/invoices/{payment_id:payment_id}/qr.svg",
    response_class=HttpResponse,
    responses={
        200: {"content": {"image/svg+xml": {"schema": {"type": "string", "format": "binary"}}}},
        **ERRORS,
    },
)
async def invoice_qr(payment_id: str, principal: PrincipalDep, service: ServiceDep) -> HttpResponse:
    """The invoice's `ton://transfer` deep link as an SVG QR code, for a checkout page."""
    require_scope(principal, "payments:read")
    invoice = await service.get(principal, payment_id, "in")
    if not invoice.get("deep_link"):
        raise NotFound("this invoice has no TON payment link", param="id")
    return HttpResponse(qr_svg(invoice["deep_link"]), media_type="image/svg+xml")


def _collection(path: str, direction: str, noun: str) -> None:
    """List, get and cancel: the same for payouts and invoices, only the direction differs."""

    async def list_(
        principal: PrincipalDep,
        service: ServiceDep,
        limit: Annotated[int, Query()] = 10,
        starting_after: Annotated[str | None, Query()] = None,
        status: Annotated[str | None, Query()] = None,
    ) -> dict[str, Any]:
        require_scope(principal, "payments:read")
        return await service.list(principal, direction, limit, starting_after, status)

    async def get(payment_id: str, principal: PrincipalDep, service: ServiceDep) -> dict[str, Any]:
        require_scope(principal, "payments:read")
        return await service.get(principal, payment_id, direction)

    async def cancel(payment_id: str, call: WriterDep) -> HttpResponse:
        return send_answer(
            await call.service.cancel(call.principal, payment_id, direction, call.ikey)
        )

    list_.__doc__ = f"List {noun}s, newest first, with cursor pagination."
    get.__doc__ = f"One {noun}, with its approvals and attempts."
    cancel.__doc__ = f"Cancel a {noun} that has not started moving money."
    routes: list[tuple[str, Callable[..., Any], str, type[BaseModel], str]] = [
        ("", list_, "GET", PaymentList, f"list_{noun}s"),
        ("/{payment_id:payment_id}", get, "GET", PaymentOut, f"get_{noun}"),
        ("/{payment_id:payment_id}/cancel", cancel, "POST", PaymentOut, f"cancel_{noun}"),
    ]
    for suffix, endpoint, method, model, name in routes:
        router.add_api_route(
            path + suffix,
            endpoint,
            methods=[method],
            response_model=model,
            responses=ERRORS,
            name=name,
        )


_collection("/payouts", "out", "payout")
_collection("/invoices", "in", "invoice")
