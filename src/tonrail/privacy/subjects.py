"""Data subjects (an email, an IBAN or a TON address) and how their data is pseudonymised.

A subject is found by every spelling it may be stored under (a TON address: raw in either
case and the eight user-friendly forms; an IBAN: compact and grouped; an email: any case).
Pseudonymising replaces each spelling, wherever it occurs in a string, by one token per
erasure (`erased_<random>`): records of the subject stay linked to each other, not to the
person, and nothing maps the token back. Names stored beside a matched IBAN or email
(`bank_name`, `DebtorName`, a creditor's `name`...) go with it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from tonrail.chain.address import parse_address, raw_form
from tonrail.errors import InvalidRequest
from tonrail.rails.bank.rail import valid_iban

SubjectKind = Literal["email", "iban", "address"]
KINDS: tuple[SubjectKind, ...] = ("email", "iban", "address")
PSEUDONYM_PREFIX = "erased_"
# Keys of a JSON object that hold the name of the person whose account or email sits beside
# them (bank payouts, refunds, CAMT.053 lines, provider events).
NAME_KEYS = frozenset(
    {
        "name",
        "bank_name",
        "holder",
        "account_holder",
        "DebtorName",
        "CreditorName",
        "UltimateDebtorName",
        "UltimateCreditorName",
        "given_name",
        "surname",
        "full_name",
    }
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Subject:
    """One person's identifier, normalised, with every spelling it may be stored under."""

    kind: SubjectKind
    value: str  # canonical: lower-case email, compact IBAN, raw address
    spellings: tuple[str, ...]

    def matches(self, text: str) -> bool:
        folded = text.lower()
        return any(s.lower() in folded for s in self.spellings)


def parse_subject(text: str, kind: str | None = None) -> Subject:
    """The subject `text` names; `kind` (email, iban, address) or guessed from the text.
    Refused with 400 `subject_invalid` when it is none of them."""
    spelled = text.strip()
    kinds = (kind,) if kind else KINDS
    for k in kinds:
        subject = _parse_as(spelled, k)
        if subject is not None:
            return subject
    raise InvalidRequest(
        "the subject must be an email address, an IBAN or a TON address"
        + (f" ({kind})" if kind else ""),
        param="subject",
        code="subject_invalid",
    )


def _parse_as(text: str, kind: str) -> Subject | None:
    if kind == "email":
        if not _EMAIL.fullmatch(text):
            return None
        return Subject("email", text.lower(), (text.lower(),))
    if kind == "iban":
        compact = valid_iban(text)
        if compact is None:
            return None
        grouped = " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
        return Subject("iban", compact, (compact, grouped))
    if kind == "address":
        try:
            address = parse_address(text, "subject")
        except Exception:
            return None
        forms = {raw_form(address)}
        for bounceable in (True, False):
            for test_only in (True, False):
                for url_safe in (True, False):
                    forms.add(
                        address.to_str(  # type: ignore[no-untyped-call]
                            is_user_friendly=True,
                            is_url_safe=url_safe,
                            is_bounceable=bounceable,
                            is_test_only=test_only,
                        )
                    )
        return Subject("address", raw_form(address), tuple(sorted(forms)))
    raise InvalidRequest(f"unknown subject kind {kind!r}", param="kind", code="subject_invalid")


def new_pseudonym() -> str:
    return PSEUDONYM_PREFIX + secrets.token_hex(8)


@dataclass(frozen=True)
class Pseudonymiser:
    """Replaces a subject's spellings (and the names beside them) by one pseudonym."""

    subject: Subject
    pseudonym: str

    def text(self, value: str) -> str:
        out = value
        for spelling in sorted(self.subject.spellings, key=len, reverse=True):
            out = re.sub(re.escape(spelling), self.pseudonym, out, flags=re.IGNORECASE)
        return out

    def __call__(self, value: Any) -> Any:
        """`value` (a string, or JSON) with the subject replaced; other data unchanged."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            out = {k: self(v) for k, v in value.items()}
            if any(isinstance(v, str) and self.subject.matches(v) for v in value.values()):
                for key in NAME_KEYS & out.keys():
                    if isinstance(out[key], str) and out[key]:
                        out[key] = self.pseudonym
            return out
        return value


def mentions(subject: Subject, value: Any) -> bool:
    """Whether `value` (a string or JSON) names the subject anywhere."""
    if isinstance(value, str):
        return subject.matches(value)
    if isinstance(value, list):
        return any(mentions(subject, v) for v in value)
    if isinstance(value, dict):
        return any(mentions(subject, v) for v in value.values())
    return False
