"""Rotating API keys: roll one key with an overlap, or rotate every key in an emergency.

Rolling (`tonrail keys roll key_...`) creates a successor with the same account, name and
scopes and lets the old key work until `expires_at` (now + the overlap, 24 h by default), so
a merchant can switch without downtime; from then on the old key is refused with
`api_key_expired`. The emergency rotation (`tonrail keys rotate-all`, or the dashboard's
Operations page) revokes every key at once and issues a successor for each; the successors'
secrets are written once to a file only the operator can read (mode 0600, never replaced).
Each writes an audit entry in the same transaction; no secret reaches the log or the audit.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.db import Database
from tonrail.errors import InvalidRequest, NotFound
from tonrail.security import access_version, audit_log
from tonrail.security.api_keys import create_key, limits_of
from tonrail.security.models import ApiKey

DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=30)
CONFIRMATION = "ROTATE ALL API KEYS"  # typed by the operator (dashboard and CLI)


@dataclass(frozen=True)
class Successor:
    account_id: str
    old_id: str
    new_id: str
    name: str
    scopes: tuple[str, ...]
    secret: str  # shown or written once; never stored
    old_expires_at: datetime | None  # None: the old key was revoked at once


def _usable(now: datetime) -> ColumnElement[bool]:
    return and_(
        ApiKey.revoked_at.is_(None), or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)
    )


async def roll_key(
    session: AsyncSession, key_id: str, actor: str, overlap: timedelta = DEFAULT_OVERLAP
) -> Successor:
    """A successor of `key_id`; the old key keeps working for `overlap`, then is refused."""
    if overlap < timedelta(0) or overlap > MAX_OVERLAP:
        raise InvalidRequest("the overlap must be between 0 and 30 days", param="overlap")
    now = clock.now()
    old = (
        await session.execute(
            select(ApiKey).where(ApiKey.id == key_id, _usable(now)).with_for_update()
        )
    ).scalar_one_or_none()
    if old is None:
        raise NotFound(f"no usable API key {key_id}", code="api_key_not_found")
    if old.successor_id is not None:
        raise InvalidRequest(
            f"{key_id} was already rolled to {old.successor_id}", code="api_key_already_rolled"
        )
    new, secret = await create_key(
        session, old.account_id, old.name, tuple(old.scopes), limits_of(old)
    )
    old.expires_at = now + overlap
    old.successor_id = new.id
    await access_version.bump(session)  # every process forgets the key it cached without expiry
    await audit_log.record(
        session,
        actor,
        "api_key.rolled",
        old.id,
        {
            "account_id": old.account_id,
            "successor_id": new.id,
            "old_expires_at": old.expires_at.isoformat(),
        },
    )
    return Successor(
        old.account_id, old.id, new.id, old.name, tuple(old.scopes), secret, old.expires_at
    )


async def rotate_all_keys(session: AsyncSession, actor: str, reason: str) -> list[Successor]:
    """Revoke every usable key now and issue a successor for each (the incident procedure)."""
    if not reason.strip():
        raise InvalidRequest("say why (the audit log keeps it)", param="reason")
    now = clock.now()
    olds = list(
        (
            await session.execute(
                select(ApiKey)
                .where(_usable(now))
                .order_by(ApiKey.account_id, ApiKey.created_at)
                .with_for_update()
            )
        ).scalars()
    )
    out: list[Successor] = []
    for old in olds:
        new, secret = await create_key(
            session, old.account_id, old.name, tuple(old.scopes), limits_of(old)
        )
        old.revoked_at = now
        old.successor_id = new.id
        out.append(
            Successor(old.account_id, old.id, new.id, old.name, tuple(old.scopes), secret, None)
        )
    await access_version.bump(session)
    await audit_log.record(
        session,
        actor,
        "api_keys.rotated_all",
        None,
        {
            "reason": reason.strip(),
            "revoked": [s.old_id for s in out],
            "issued": [s.new_id for s in out],
            "accounts": sorted({s.account_id for s in out}),
        },
    )
    return out


def successors_text(successors: list[Successor], actor: str) -> str:
    """The file's content: per merchant account, each new key and the key it replaces."""
    lines = [
        f"# tonrail emergency API key rotation, {clock.now().isoformat(timespec='seconds')}, "
        f"by {actor}",
        "# Hand each merchant its keys over a secure channel, then delete this file.",
    ]
    account = None
    for s in successors:
        if s.account_id != account:
            account = s.account_id
            lines += ["", f"[{account}]"]
        lines.append(f"{s.new_id}  {s.secret}  name={s.name!r} scopes={','.join(s.scopes)}")
        lines.append(f"  replaces {s.old_id} (revoked)")
    return "\n".join(lines) + "\n"


def write_once(path: Path, text: str) -> None:
    """Create `path` with mode 0600 (whatever the umask) and write `text`; never replace one.
    A folder it creates is 0700: others may not even list the rotation files."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidRequest(f"{path} exists; choose another file", code="file_exists") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def default_rotation_file(data_dir: Path) -> Path:
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    return data_dir / "key-rotations" / f"api-keys-{stamp}.txt"


async def rotate_all_to_file(db: Database, actor: str, reason: str, path: Path) -> list[Successor]:
    """`rotate_all_keys` with the secrets written to `path` before the revocation commits:
    a file that cannot be written revokes nothing, a commit that fails leaves no file."""
    written = False
    try:
        async with db.transaction() as session:
            successors = await rotate_all_keys(session, actor, reason)
            await asyncio.to_thread(write_once, path, successors_text(successors, actor))
            written = True
    except BaseException:
        if written:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return successors
