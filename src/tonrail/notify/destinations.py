"""Where a webhook may go (the SSRF guard): https in production, and never to a private,
loopback, link-local or otherwise non-global address unless WEBHOOK_ALLOWED_HOSTS names
the host, the address or a range holding it. Checked when an endpoint is saved and again,
on the resolved addresses, before every attempt; the request then goes to the checked
address (so a DNS answer that changes in between cannot redirect it)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from tonrail.errors import InvalidRequest
from tonrail.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2048


class DestinationRefused(Exception):
    """A webhook URL that may not be reached now (a refused address, or no address)."""


@dataclass(frozen=True)
class Target:
    """A checked destination: the URL to request (host replaced by the checked address),
    the Host header and the TLS server name of the original host."""

    url: str
    host_header: str
    server_name: str | None


def _allow_list(
    settings: Settings,
) -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for raw in settings.webhook_allowed_hosts.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry)
    return names, networks


def address_allowed(address: IPAddress, host: str, settings: Settings) -> bool:
    """A global address always; any other only if the allow-list names its host or it."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_global and not address.is_multicast:
        return True
    names, networks = _allow_list(settings)
    return host.lower() in names or any(address in net for net in networks)


def check_url(url: str, settings: Settings) -> str:
    """The URL as it will be stored, or 400 `webhook_url_invalid` / `webhook_url_forbidden`."""
    url = url.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(
            f"url must be 1 to {MAX_URL_LENGTH} characters", param="url", code="webhook_url_invalid"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"url: {exc}", param="url", code="webhook_url_invalid") from exc
    allowed_schemes = ("https",) if settings.environment == "production" else ("https", "http")
    if parts.scheme not in allowed_schemes:
        raise InvalidRequest(
            "url must use " + " or ".join(allowed_schemes), param="url", code="webhook_url_invalid"
        )
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise InvalidRequest(
            "url needs a host and no user or password", param="url", code="webhook_url_invalid"
        )
    if parts.fragment:
        raise InvalidRequest(
            "url may not have a #fragment", param="url", code="webhook_url_invalid"
        )
    if port == 0:
        raise InvalidRequest("url: port 0", param="url", code="webhook_url_invalid")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url
    if not address_allowed(literal, parts.hostname, settings):
        raise InvalidRequest(
            f"url points to {literal}, a private, loopback or link-local address "
            "(allow it with WEBHOOK_ALLOWED_HOSTS)",
            param="url",
            code="webhook_url_forbidden",
        )
    return url


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses `host` resolves to (a literal address is its own)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DestinationRefused(f"{host} does not resolve: {exc}") from exc
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def target(url: str, settings: Settings) -> Target:
    """Check `url` as it resolves now; the Target requests the first allowed address.
    Any refused address refuses the URL (a name that also resolves inward is not safe)."""
    try:
        check_url(url, settings)  # the rules may have changed since the endpoint was saved
    except InvalidRequest as exc:
        raise DestinationRefused(exc.message) from exc
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    refused = [a for a in addresses if not address_allowed(a, host, settings)]
    if refused or not addresses:
        raise DestinationRefused(
            f"{host} resolves to {refused[0] if refused else 'nothing'}: "
            "a private, loopback or link-local address (see WEBHOOK_ALLOWED_HOSTS)"
        )
    address = addresses[0]
    shown = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    host_header = parts.netloc.rsplit("@", 1)[-1]
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return Target(pinned, host_header, host if parts.scheme == "https" else None)
