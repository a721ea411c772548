"""Pseudonymising records whose people are not named: what the retention job does to rows
past their period. Every email, IBAN, TON address and IP address found in a value, and every
name stored under a name key (subjects.NAME_KEYS), becomes the row's pseudonym; amounts,
ids, states and times are kept."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from tonrail.chain.address import parse_address
from tonrail.privacy.subjects import NAME_KEYS, PSEUDONYM_PREFIX
from tonrail.rails.bank.rail import valid_iban

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_RAW_ADDRESS = re.compile(r"-?[0-9]+:[0-9a-fA-F]{64}")
_FRIENDLY_ADDRESS = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{48}(?![A-Za-z0-9+/_-])")
_IBAN = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_IP = re.compile(r"(?<![0-9A-Fa-f:.])[0-9A-Fa-f:.]{3,45}(?![0-9A-Fa-f:.])")


def _address(match: re.Match[str], pseudonym: str) -> str:
    try:
        parse_address(match.group(0), "scrub")
    except Exception:
        return match.group(0)
    return pseudonym


def _iban(match: re.Match[str], pseudonym: str) -> str:
    return pseudonym if valid_iban(match.group(0)) is not None else match.group(0)


def _ip(match: re.Match[str], pseudonym: str) -> str:
    text = match.group(0)
    # "ip:203.0.113.7": the separator before the address is not part of it
    for start in (0, len(text) - len(text.lstrip(":"))):
        candidate = text[start:]
        if "." not in candidate and ":" not in candidate:
            continue
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            continue
        return text[:start] + pseudonym
    return text


def scrub_text(text: str, pseudonym: str) -> str:
    out = _EMAIL.sub(pseudonym, text)
    out = _RAW_ADDRESS.sub(lambda m: _address(m, pseudonym), out)
    out = _FRIENDLY_ADDRESS.sub(lambda m: _address(m, pseudonym), out)
    out = _IBAN.sub(lambda m: _iban(m, pseudonym), out)
    return _IP.sub(lambda m: _ip(m, pseudonym), out)


def scrub(value: Any, pseudonym: str) -> Any:
    """`value` (a string, or JSON) with its personal data replaced by `pseudonym`."""
    if isinstance(value, str):
        return scrub_text(value, pseudonym)
    if isinstance(value, list):
        return [scrub(v, pseudonym) for v in value]
    if isinstance(value, dict):
        return {
            k: (
                pseudonym
                if k in NAME_KEYS
                and isinstance(v, str)
                and v
                and not v.startswith(PSEUDONYM_PREFIX)
                else scrub(v, pseudonym)
            )
            for k, v in value.items()
        }
    return value
