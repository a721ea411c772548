"""Screening outcomes and the sanctions list file (pure: parsing and matching)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from enum import StrEnum

from tonrail.chain.address import counterparty_key
from tonrail.errors import InvalidRequest


class Outcome(StrEnum):
    CLEAR = "clear"
    REVIEW = "review"  # held for an approver
    BLOCKED = "blocked"  # refused


SEVERITY = {Outcome.CLEAR: 0, Outcome.REVIEW: 1, Outcome.BLOCKED: 2}


@dataclass(frozen=True, slots=True)
class Subject:
    """Who money goes to or comes from: a TON address and, when known, a name; a payer on a
    backup rail by what its provider tells us (name, e-mail, the debtor's IBAN)."""

    address: str | None
    name: str | None = None
    email: str | None = None
    iban: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    provider: str
    reason: str = ""
    reference: str = ""  # the provider's id of its decision, or the list entry matched


CLEAR_BY_LIST = Verdict(Outcome.CLEAR, "list")


def worst(verdicts: list[Verdict]) -> Verdict:
    """The strictest verdict (blocked over review over clear); the first among equals."""
    return max(verdicts, key=lambda v: SEVERITY[v.outcome])


def name_key(name: str) -> str:
    """Names compare without case and with runs of spaces as one."""
    return " ".join(name.casefold().split())


def email_key(email: str) -> str:
    """E-mail addresses compare without case and surrounding spaces."""
    return email.strip().casefold()


def iban_key(iban: str) -> str:
    """IBANs compare without spaces and case (as printed in groups of four, or not)."""
    return "".join(iban.split()).upper()


@dataclass(frozen=True, slots=True)
class SanctionsList:
    """Entries by kind: address (raw form), name (name_key), email (email_key) or iban
    (iban_key) -> (outcome, reason, line)."""

    addresses: dict[str, tuple[Outcome, str, int]]
    names: dict[str, tuple[Outcome, str, int]]
    emails: dict[str, tuple[Outcome, str, int]] = field(default_factory=dict)
    ibans: dict[str, tuple[Outcome, str, int]] = field(default_factory=dict)

    def verdict(self, subject: Subject) -> Verdict:
        found = [
            self.addresses.get(counterparty_key(subject.address)) if subject.address else None,
            self.names.get(name_key(subject.name)) if subject.name else None,
            self.emails.get(email_key(subject.email)) if subject.email else None,
            self.ibans.get(iban_key(subject.iban)) if subject.iban else None,
        ]
        hits = [Verdict(hit[0], "list", hit[1], f"line {hit[2]}") for hit in found if hit]
        return worst(hits) if hits else CLEAR_BY_LIST


def parse_list(text: str) -> SanctionsList:
    """CSV with a header `kind,value[,outcome][,reason]`: kind `address`, `name`, `email` or
    `iban`; outcome `blocked` (default) or `review`. A bad line refuses the whole file (line
    named)."""
    rows = csv.DictReader(io.StringIO(text))
    if not rows.fieldnames or not {"kind", "value"} <= set(rows.fieldnames):
        raise InvalidRequest(
            "the screening list needs a header with kind and value", code="screening_list_invalid"
        )
    addresses: dict[str, tuple[Outcome, str, int]] = {}
    names: dict[str, tuple[Outcome, str, int]] = {}
    emails: dict[str, tuple[Outcome, str, int]] = {}
    ibans: dict[str, tuple[Outcome, str, int]] = {}
    for row in rows:
        line = rows.line_num
        kind, value = (row.get("kind") or "").strip(), (row.get("value") or "").strip()
        outcome_text = (row.get("outcome") or "blocked").strip() or "blocked"
        if outcome_text not in (Outcome.BLOCKED, Outcome.REVIEW) or not value:
            raise InvalidRequest(
                f"screening list line {line}: needs a value and outcome blocked or review",
                code="screening_list_invalid",
            )
        entry = (Outcome(outcome_text), (row.get("reason") or "").strip(), line)
        if kind == "address":
            key = counterparty_key(value)
            if ":" not in key:
                raise InvalidRequest(
                    f"screening list line {line}: {value[:80]!r} is not a TON address",
                    code="screening_list_invalid",
                )
            addresses[key] = entry
        elif kind == "name":
            names[name_key(value)] = entry
        elif kind == "email" and "@" in value:
            emails[email_key(value)] = entry
        elif kind == "iban" and iban_key(value).isalnum():
            ibans[iban_key(value)] = entry
        else:
            raise InvalidRequest(
                f"screening list line {line}: kind must be address, name, email (with an @) "
                "or iban",
                code="screening_list_invalid",
            )
    return SanctionsList(addresses, names, emails, ibans)
