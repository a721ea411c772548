"""HTTP: the GDPR requests under the `privacy:admin` scope (an operator's key, docs/PRIVACY.md).

POST rather than GET: the subject (an email, IBAN or address) travels in the body, so it
never lands in access logs or proxies' URLs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tonrail.privacy.service import erase_subject, export_subject
from tonrail.privacy.subjects import parse_subject
from tonrail.security import audit_log
from tonrail.security.api_keys import Principal
from tonrail.web import current_principal, database, require_scope

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])

PrincipalDep = Annotated[Principal, Depends(current_principal)]
SCOPE = "privacy:admin"


class SubjectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=320, description="email, IBAN or TON address")
    kind: Literal["email", "iban", "address"] | None = Field(
        default=None, description="what the subject is; guessed when absent"
    )


class SubjectOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["email", "iban", "address"]
    value: str


class ExportOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: SubjectOut
    generated_at: str = Field(description="ISO 8601 time of the export")
    payments: list[str] = Field(description="ids of the subject's payments")
    records: dict[str, list[dict[str, Any]]] = Field(
        description="table -> its rows naming the subject (and the payments' ledger)"
    )


class EraseOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["email", "iban", "address"]
    pseudonym: str = Field(description="what the subject's personal fields now hold")
    rows: dict[str, int] = Field(description="table -> rows pseudonymised")
    payments: int
    audit_seq: int = Field(description="the audit log entry that records the erasure")


@router.post("/export", response_model=ExportOut)
async def post_export(
    request: Request, body: SubjectRequest, principal: PrincipalDep
) -> dict[str, Any]:
    """Every record about the subject, as JSON (the export is audited)."""
    require_scope(principal, SCOPE)
    subject = parse_subject(body.subject, body.kind)
    async with database(request).transaction() as session:
        bundle = await export_subject(session, subject)
        counts = {table: len(rows) for table, rows in bundle["records"].items()}
        await audit_log.record(
            session, f"api_key:{principal.key_id}", "privacy.export", subject.value, counts
        )
    return bundle


@router.post("/erase", response_model=EraseOut)
async def post_erase(
    request: Request, body: SubjectRequest, principal: PrincipalDep
) -> dict[str, Any]:
    """Pseudonymise the subject's personal data; 409 `subject_has_open_payment` while one
    of its payments is open, `subject_locked` while a lockout holds it."""
    require_scope(principal, SCOPE)
    subject = parse_subject(body.subject, body.kind)
    async with database(request).transaction() as session:
        return await erase_subject(session, subject, f"api_key:{principal.key_id}")
