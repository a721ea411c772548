"""The client's address behind trusted proxies (security/client_ip.py), and through the API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tonrail.app import create_app
from tonrail.db import Database
from tonrail.security.client_ip import client_ip, trusted_networks
from tonrail.settings import Settings


def scope(peer: str | None, *forwarded: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 51000) if peer else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_ip(scope("127.0.0.1", "203.0.113.9"), "") == "127.0.0.1"
    assert client_ip(scope(None), "") is None


def test_a_peer_outside_the_trusted_networks_cannot_forward() -> None:
    assert client_ip(scope("198.51.100.7", "203.0.113.9"), "10.0.0.0/8") == "198.51.100.7"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() -> None:
    trusted = "10.0.0.0/8, 127.0.0.1"
    # The client wrote "1.2.3.4" itself; our proxy appended the address it saw.
    assert client_ip(scope("10.0.0.5", "1.2.3.4, 203.0.113.9"), trusted) == "203.0.113.9"
    # Two of our proxies in a row, and the header split over two fields.
    assert client_ip(scope("127.0.0.1", "1.2.3.4", "203.0.113.9, 10.0.0.5"), trusted) == (
        "203.0.113.9"
    )
    # Only our proxies: the leftmost of them.
    assert client_ip(scope("10.0.0.5", "10.1.1.1"), trusted) == "10.1.1.1"
    # No header at all: the proxy itself.
    assert client_ip(scope("10.0.0.5"), trusted) == "10.0.0.5"


def test_garbage_in_the_header_stops_the_walk_at_the_last_trusted_hop() -> None:
    assert client_ip(scope("10.0.0.5", "203.0.113.9, not-an-ip"), "10.0.0.0/8") == "10.0.0.5"


def test_ports_brackets_and_mapped_v4_addresses() -> None:
    trusted = "10.0.0.0/8,::1"
    assert client_ip(scope("10.0.0.5", "203.0.113.9:4711"), trusted) == "203.0.113.9"
    assert client_ip(scope("::1", "[2001:db8::1]:443"), trusted) == "2001:db8::1"
    assert client_ip(scope("::ffff:10.0.0.5", "203.0.113.9"), trusted) == "203.0.113.9"


def test_a_bad_trusted_proxies_entry_is_refused_at_start(settings: Settings, db: Database) -> None:
    with pytest.raises(ValueError, match=r"TRUSTED_PROXIES: 'ten\.0\.0\.0/8'"):
        trusted_networks("127.0.0.1, ten.0.0.0/8")
    bad = settings.model_copy(update={"trusted_proxies": "10.0.0.0/33"})
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        create_app(bad, db)


async def test_refused_keys_are_charged_to_the_forwarded_client(
    settings: Settings, db: Database
) -> None:
    """A bad key behind the proxy is charged to the client the proxy saw, not to the proxy
    (which would lock every merchant out) and not to what the client claims."""
    from sqlalchemy import select

    from tonrail.security.models import SecurityFailure

    app = create_app(settings.model_copy(update={"trusted_proxies": "10.0.0.0/8"}), db)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.5", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tonrail.test") as c:
        r = await c.get(
            "/v1/payouts",
            headers={
                "Authorization": "Bearer trk_wrong",
                "X-Forwarded-For": "1.2.3.4, 203.0.113.9",
            },
        )
    assert r.status_code == 401
    async with db.transaction() as session:
        subjects = (await session.execute(select(SecurityFailure.subject))).scalars().all()
    assert list(subjects) == ["203.0.113.9"]
