"""The client's address: the socket peer, or X-Forwarded-For read behind trusted proxies.

The one place every caller asks "who sent this request?" (lockouts, rate limits, the
dashboard's sign-in, the audit log). `X-Forwarded-For` is read only when the socket peer is
one of TRUSTED_PROXIES (IPs or CIDR networks, comma-separated; empty = trust no proxy and use
the peer). The header is walked from the right, skipping our own proxies; the first address
that is not one of them is the client. A client can put anything at the left of the header,
but never to the right of what our proxy appended, so it can neither dodge a lock nor frame
another address. Uvicorn's own proxy-header rewriting is off (cli.py, embedded.py), so the
ASGI scope's `client` is the real socket peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def trusted_networks(text: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES parsed (`10.0.0.0/8, 127.0.0.1`); ValueError names a bad entry."""
    networks: list[Network] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES: {item!r} is not an IP address or network") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def forwarded_client(peer: str, forwarded_for: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The client behind `peer`, given every X-Forwarded-For value in arrival order."""
    nearest = _address(peer)
    if nearest is None or not _trusted(nearest, trusted):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # not written by a proxy of ours: stop at the last address we trust
        nearest = address
        if not _trusted(address, trusted):
            break
    return str(nearest)


def client_ip(scope: Mapping[str, Any], trusted_proxies: str) -> str | None:
    """The client address of an ASGI request scope (None when the server gives no peer)."""
    client = scope.get("client")
    if not client:
        return None
    peer = str(client[0])
    trusted = trusted_networks(trusted_proxies)
    if not trusted:
        return peer
    values = [
        value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
    ]
    return forwarded_client(peer, values, trusted)
