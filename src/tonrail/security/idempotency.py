"""Stripe-style idempotency: same key and body replays the saved response; another body is 409.

The record is written in the same transaction as the effect it describes, so a crash can
never leave an effect without its record, or a record without its effect.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.db import Write, insert_row
from tonrail.errors import IdempotencyConflict, InvalidRequest
from tonrail.json_text import RenderedJson
from tonrail.security.models import IdempotencyRecord

MAX_KEY_LENGTH = 255
# Printable ASCII (what every HTTP stack carries unchanged); a space only inside, since
# servers strip it at either end of a header value.
KEY_PATTERN = "^[!-~]([ -~]*[!-~])?$"
_KEY = re.compile(KEY_PATTERN)


def well_formed_key(key: str, max_length: int = MAX_KEY_LENGTH) -> bool:
    """An idempotency key as the API takes it (the header's, a batch item's)."""
    return len(key) <= max_length and _KEY.fullmatch(key) is not None


RECORDS: Table = IdempotencyRecord.__table__  # type: ignore[assignment]


DEFAULT_TTL_HOURS = 24


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    account_id: str
    key: str
    fingerprint: str
    ttl_hours: int = DEFAULT_TTL_HOURS  # IDEMPOTENCY_TTL_HOURS: after it, the key is new again


def make_key(
    account_id: str,
    key: str | None,
    method: str,
    path: str,
    body: bytes,
    ttl_hours: int = DEFAULT_TTL_HOURS,
    document: tuple[Any] | None = None,
) -> IdempotencyKey | None:
    """The key of a request, or None without one. `document`: the body already parsed as
    JSON (in a 1-tuple; `input_boundary.parsed_json`), which spares parsing it again."""
    if key is None:
        return None
    if not well_formed_key(key):
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            param="Idempotency-Key",
            code="idempotency_key_invalid",
        )
    digest = hashlib.sha256(
        method.encode()
        + b" "
        + path.encode()
        + b"\n"
        + (canonical_body(body) if document is None else canonical_json(document[0]))
    ).hexdigest()
    return IdempotencyKey(account_id, key, digest, ttl_hours)


def canonical_body(body: bytes) -> bytes:
    """The request as parsed, not as sent: a JSON body re-serialised with sorted keys and no
    insignificant whitespace, so a retry that formats the same request differently replays
    (Stripe compares parameters, not bytes). A body that is not JSON counts as its bytes."""
    try:
        return canonical_json(json.loads(body))
    except ValueError:  # not JSON (UnicodeDecodeError is one), or NaN/Infinity
        return body


def canonical_json(document: Any) -> bytes:
    """`canonical_body` of a parsed JSON body (ValueError for NaN or Infinity)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


async def find(session: AsyncSession, ikey: IdempotencyKey) -> IdempotencyRecord | None:
    """The saved record for this key, or None; raises 409 if it was used for another request.

    A record older than the key's TTL is gone: deleted here (in the caller's transaction),
    so the request is a new one and its own record can take the key."""
    where = (IdempotencyRecord.account_id == ikey.account_id) & (IdempotencyRecord.key == ikey.key)
    record = (await session.execute(select(IdempotencyRecord).where(where))).scalar_one_or_none()
    if record is not None and record.created_at < expiry_cutoff(ikey.ttl_hours):
        await session.execute(
            delete(IdempotencyRecord).where(
                where, IdempotencyRecord.created_at < expiry_cutoff(ikey.ttl_hours)
            )
        )
        return None
    if record is not None and record.request_fingerprint != ikey.fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request",
            param="Idempotency-Key",
        )
    return record


def expiry_cutoff(ttl_hours: int) -> datetime:
    """Records created before this are expired."""
    return clock.now() - timedelta(hours=ttl_hours)


async def delete_expired(session: AsyncSession, ttl_hours: int, batch: int) -> int:
    """Delete up to `batch` expired records (oldest first); returns how many went. Concurrent
    cleaners skip each other's rows on PostgreSQL (SKIP LOCKED) instead of waiting."""
    doomed = (
        select(IdempotencyRecord.id)
        .where(IdempotencyRecord.created_at < expiry_cutoff(ttl_hours))
        .order_by(IdempotencyRecord.id)  # ids grow with time: the oldest first, by the key
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.id.in_(doomed))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def save(session: AsyncSession, ikey: IdempotencyKey, status: int, body: dict[str, Any]) -> None:
    session.add(
        IdempotencyRecord(
            account_id=ikey.account_id,
            key=ikey.key,
            request_fingerprint=ikey.fingerprint,
            status_code=status,
            response_body=body,
            created_at=clock.now(),
        )
    )


def record_write(ikey: IdempotencyKey, status: int, body: dict[str, Any] | RenderedJson) -> Write:
    """`save` as a Write, for a caller that knows the response before it writes.

    A second request with the same key fails on the unique (account, key) index, on
    PostgreSQL only once the first one has committed or rolled back; the caller then
    `find`s the winner's record and replays it."""
    return insert_row(
        RECORDS,
        {
            "account_id": ikey.account_id,
            "key": ikey.key,
            "request_fingerprint": ikey.fingerprint,
            "status_code": status,
            "response_body": body,
            "created_at": clock.now(),
        },
    )
