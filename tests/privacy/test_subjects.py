"""Subjects and pseudonymising, pure: every spelling of a subject is found and replaced,
names beside a matched account go with it, other data stays."""

from __future__ import annotations

import pytest

from tests.helpers import DEST
from tonrail.chain.address import parse_address, raw_form
from tonrail.errors import InvalidRequest
from tonrail.privacy.scrub import scrub
from tonrail.privacy.subjects import Pseudonymiser, mentions, parse_subject


def test_a_subject_is_recognised_and_spelled_every_way() -> None:
    assert parse_subject("Ada@Example.com").value == "ada@example.com"
    iban = parse_subject("gb33 bukb 2020 1555 5555 55")
    assert (iban.kind, iban.value) == ("iban", "GB33BUKB20201555555555")
    address = parse_subject(DEST)
    assert address.kind == "address" and address.value == raw_form(parse_address(DEST))
    assert DEST in address.spellings and len(address.spellings) == 9
    for text, kind in (("nobody", None), ("ada@example.com", "iban"), ("GB00BUKB2020", None)):
        with pytest.raises(InvalidRequest) as refused:
            parse_subject(text, kind)
        assert refused.value.code == "subject_invalid"


def test_pseudonymising_replaces_the_subject_and_the_name_beside_it_only() -> None:
    subject = parse_subject("GB33BUKB20201555555555")
    erase = Pseudonymiser(subject, "erased_x")
    record = {
        "creditor": {"iban": "GB33 BUKB 2020 1555 5555 55", "name": "Ada Lovelace"},
        "debtor": {"iban": "DE89370400440532013000", "name": "Tonrail Ltd"},
        "note": "paid to gb33bukb20201555555555 on time",
        "amount": 10_000,
    }
    assert mentions(subject, record)
    assert erase(record) == {
        "creditor": {"iban": "erased_x", "name": "erased_x"},
        "debtor": {"iban": "DE89370400440532013000", "name": "Tonrail Ltd"},
        "note": "paid to erased_x on time",
        "amount": 10_000,
    }
    assert not mentions(subject, erase(record))


def test_scrubbing_finds_people_without_being_told_who() -> None:
    raw = raw_form(parse_address(DEST))
    value = {
        "to": DEST,
        "raw": raw,
        "memo": "from ada@example.com at 203.0.113.7 and 2001:db8::1, GB33BUKB20201555555555",
        "bank_name": "Ada Lovelace",
        "id": "pay_01J0000000000000000000000",
        "at": "2026-12-04T10:00:00",
        "amount": "12.50",
        "hash": "ab" * 32,
    }
    assert scrub(value, "erased_y") == {
        "to": "erased_y",
        "raw": "erased_y",
        "memo": "from erased_y at erased_y and erased_y, erased_y",
        "bank_name": "erased_y",
        "id": "pay_01J0000000000000000000000",
        "at": "2026-12-04T10:00:00",
        "amount": "12.50",
        "hash": "ab" * 32,
    }
