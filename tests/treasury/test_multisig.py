"""The multisig v2 builders, read back field by field against the contract's TL-B."""

from __future__ import annotations

import pytest
from ton_core import Address, Cell

from tonrail.chain.multisig_code import multisig_code, order_code, source_commit
from tonrail.treasury.multisig import (
    MAX_ORDER_SEQNO,
    OP_APPROVE,
    OP_NEW_ORDER,
    MultisigConfig,
    MultisigConfigError,
    approve_body,
    multisig_data,
    new_order_body,
    order_cell,
    order_code_ref,
)
from tonrail.treasury.reader import addresses_of

A, B, C = (Address((0, bytes([i]) * 32)) for i in (1, 2, 3))


def _library_cells(cell: Cell) -> list[Cell]:
    found = [cell] if cell.type_ == 2 else []
    for ref in cell.refs:
        found.extend(_library_cells(ref))
    return found


def test_the_bundled_code_is_the_audited_release() -> None:
    assert bytes(multisig_code().hash).hex().startswith("d3d14da9a627f0ec")
    assert len(source_commit()) == 40
    # The multisig names the order code by a library cell; ours is the same cell.
    embedded = {bytes(c.hash) for c in _library_cells(multisig_code())}
    assert embedded == {bytes(order_code_ref().hash)}
    assert order_code_ref().bits.tobytes()[1:] == bytes(order_code().hash)


@pytest.mark.parametrize(
    ("threshold", "signers", "proposers", "message"),
    [
        (0, (A,), (), "threshold 0"),
        (2, (A,), (), "threshold 2"),
        (1, (), (), "1 to 255 signers"),
        (1, (A, A), (), "signer appears twice"),
        (1, (A,), (B, B), "proposer appears twice"),
    ],
)
def test_configs_the_contract_would_refuse(
    threshold: int, signers: tuple[Address, ...], proposers: tuple[Address, ...], message: str
) -> None:
    with pytest.raises(MultisigConfigError, match=message):
        MultisigConfig(threshold, signers, proposers)


def test_data_layout() -> None:
    config = MultisigConfig(2, (A, B, C), (C,))
    s = multisig_data(config).begin_parse()
    assert s.load_uint(256) == 0
    assert s.load_uint(8) == 2
    assert addresses_of(s.load_ref()) == (A, B, C)
    assert s.load_uint(8) == 3
    assert s.load_bit() and addresses_of(s.load_ref()) == (C,)
    assert not s.load_bit()  # allow_arbitrary_order_seqno
    assert s.remaining_bits == 0 and s.remaining_refs == 0
    assert config.signer_index(B) == 1 and config.signer_index(Address((0, b"\x09" * 32))) is None
    assert config.proposer_index(C) == 0


def test_new_order_and_approve_bodies() -> None:
    action = Cell.empty()
    order = order_cell([action])
    s = new_order_body(order, expiration_date=1_900_000_000, signer=False, index=4).begin_parse()
    assert s.load_uint(32) == OP_NEW_ORDER
    assert s.load_uint(64) == 0
    assert s.load_uint(256) == MAX_ORDER_SEQNO
    assert s.load_bit() == 0
    assert s.load_uint(8) == 4
    assert s.load_uint(48) == 1_900_000_000
    assert s.load_ref().hash == order.hash
    a = approve_body(3, query_id=9).begin_parse()
    assert (a.load_uint(32), a.load_uint(64), a.load_uint(8)) == (OP_APPROVE, 9, 3)
    with pytest.raises(ValueError, match="1 to 255 actions"):
        order_cell([])


def test_a_proposal_taken_without_its_order_is_reported_once() -> None:
    """The loop meets such an order every round until someone acts: one error for the
    operator (the payout then alerts as stuck), not one per round."""
    from structlog.testing import capture_logs

    from tonrail.processing.treasury_loop import _report_taken_without_order

    with capture_logs() as logs:
        for _ in range(3):
            _report_taken_without_order("tro_test_taken_a")
        _report_taken_without_order("tro_test_taken_b")
    # (The repeats log at debug level, which the suite's logging setup may filter out.)
    said = [(e["log_level"], e["order"]) for e in logs if e["log_level"] != "debug"]
    assert said == [("error", "tro_test_taken_a"), ("error", "tro_test_taken_b")]
