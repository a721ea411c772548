"""The dashboard's emergency "rotate all API keys": admins only, CSRF, the phrase typed in
full; every key revoked, successors written once to a 0600 file, never shown on the page."""

from __future__ import annotations

import re
import stat
from collections.abc import Awaitable, Callable

import httpx

from tests.conftest import make_key
from tonrail.db import Database
from tonrail.security.audit_log import recent
from tonrail.security.key_rotation import CONFIRMATION
from tonrail.settings import Settings

SignIn = Callable[[str], Awaitable[str]]
PATH = "/dashboard/operations/api-keys/rotate-all"


async def works(client: httpx.AsyncClient, secret: str) -> bool:
    r = await client.get("/v1/api_keys", headers={"Authorization": f"Bearer {secret}"})
    return r.status_code == 200


async def test_only_admins_see_and_use_it_with_csrf_and_the_phrase(
    client: httpx.AsyncClient, signed_in: SignIn, db: Database, settings: Settings
) -> None:
    secret = await make_key(db, "acct_x")
    for role in ("viewer", "operator", "approver"):
        csrf = await signed_in(role)
        assert 'id="rotate-keys"' not in (await client.get("/dashboard/operations")).text
        r = await client.post(
            PATH, data={"csrf_token": csrf, "reason": "leak", "confirm": CONFIRMATION}
        )
        assert r.status_code == 403 and "administer_forbidden" in r.text, role

    await signed_in("admin")
    page = (await client.get("/dashboard/operations")).text
    assert 'id="rotate-keys"' in page and CONFIRMATION in page
    r = await client.post(PATH, data={"reason": "leak", "confirm": CONFIRMATION})
    assert r.status_code == 403 and "csrf_forbidden" in r.text
    r = await client.post(
        PATH, data={"csrf_token": "forged", "reason": "leak", "confirm": CONFIRMATION}
    )
    assert r.status_code == 403
    csrf = await signed_in("admin")
    for data, code in (
        ({"reason": "leak", "confirm": "rotate all api keys"}, "confirmation_mismatch"),
        ({"reason": " ", "confirm": CONFIRMATION}, "reason_required"),
    ):
        r = await client.post(PATH, data={"csrf_token": csrf, **data})
        assert r.status_code == 400 and f'data-code="{code}"' in r.text
    assert await works(client, secret)
    assert not (settings.data_dir / "key-rotations").exists()
    async with db.transaction() as session:
        assert await recent(session, action_prefix="api_keys.") == []


async def test_an_admin_rotates_every_key_into_a_private_file(
    client: httpx.AsyncClient, signed_in: SignIn, db: Database, settings: Settings
) -> None:
    olds = [await make_key(db, "acct_x"), await make_key(db, "acct_y")]
    csrf = await signed_in("admin")
    r = await client.post(
        PATH, data={"csrf_token": csrf, "reason": "laptop stolen", "confirm": CONFIRMATION}
    )
    assert r.status_code == 200, r.text
    assert "Revoked 2 API keys of 2 accounts" in r.text
    [path] = (settings.data_dir / "key-rotations").iterdir()
    assert str(path) in r.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    news = re.findall(r"^key_\S+\s+(trk_\S+)", path.read_text(), re.M)
    assert len(news) == 2
    assert all(n not in r.text for n in news)  # the page never shows a secret
    for old in olds:
        assert not await works(client, old)
    for new in news:
        assert await works(client, new)
    async with db.transaction() as session:
        [entry] = await recent(session, action_prefix="api_keys.")
    assert (entry.actor, entry.details["reason"]) == ("admin:admin", "laptop stolen")
