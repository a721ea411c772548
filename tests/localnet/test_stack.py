"""TVM stacks in toncenter's formats survive the round trip through VmStack."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st
from ton_core import Cell, begin_cell

from tonrail.localnet.boc import b64
from tonrail.localnet.stack import stack_from_v2, stack_from_v3, stack_to_v2, stack_to_v3

INT257 = st.integers(min_value=-(2**256), max_value=2**256 - 1)


@given(st.lists(INT257, max_size=5))
def test_numbers_round_trip(values: list[int]) -> None:
    cell = stack_from_v2([["num", str(v)] for v in values])
    out = stack_to_v2(b64(cell))
    assert [int(v, 16) if not v.startswith("-") else -int(v[1:], 16) for _, v in out] == values
    v3 = stack_to_v3(b64(stack_from_v3([{"type": "num", "value": hex(v)} for v in values])))
    assert [e["type"] for e in v3] == ["num"] * len(values)


def test_cells_slices_and_tuples() -> None:
    inner = begin_cell().store_uint(7, 8).end_cell()
    cell = begin_cell().store_uint(5, 11).store_ref(inner).end_cell()
    stack = stack_from_v2([["tvm.Cell", b64(cell)], ["tvm.Slice", b64(inner)]])
    out = stack_to_v2(b64(stack))
    kinds = [k for k, _ in out]
    assert kinds == ["cell", "slice"]
    got = Cell.one_from_boc(base64.b64decode(out[0][1]["bytes"]))
    assert got.hash == cell.hash
    assert out[0][1]["object"]["data"]["len"] == 11
    assert len(out[0][1]["object"]["refs"]) == 1
    tup = stack_from_v2([["tuple", {"elements": [["num", "1"], ["num", "2"]]}]])
    rendered = stack_to_v2(b64(tup))
    assert rendered[0][0] == "tuple"
    assert [e["number"]["number"] for e in rendered[0][1]["elements"]] == ["1", "2"]
